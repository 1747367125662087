//! The one loading step that touches the disk for a policy: files the policy refers to (a
//! cluster's `ca_file` today; JWKS files and CIDR list files as capabilities add them) are
//! read here, before validation, so that validation stays pure and a reload reads each file
//! once.
//!
//! Each capability lists the paths it refers to; they are resolved relative to the policy
//! directory. A file that cannot be read is not an error here: validation reports it at the
//! field that names it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::validate::Files;

/// Bytes of every referenced file, or why it could not be read, by resolved path.
#[derive(Debug, Default)]
pub struct Attachments {
    files: HashMap<PathBuf, Result<Vec<u8>, String>>,
}

impl Attachments {
    /// Read every file the parsed policy refers to.
    pub fn load(files: &Files, base_dir: &Path) -> Attachments {
        let mut out = Attachments::default();
        for (_, f) in files {
            let auth = crate::auth::file::referenced_files(f);
            for rel in crate::upstream::referenced_files(f).chain(auth) {
                out.read(base_dir, rel);
            }
            for rel in crate::limit::referenced_files(f) {
                out.read(base_dir, rel);
            }
        }
        out
    }

    fn read(&mut self, base_dir: &Path, rel: &str) {
        let path = base_dir.join(rel);
        if self.files.contains_key(&path) {
            return;
        }
        let bytes =
            std::fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()));
        self.files.insert(path, bytes);
    }

    /// Hash every attachment (its path relative to `base_dir`, and its bytes or the read
    /// error) in path order, into the policy version: the same content in another directory
    /// gives the same version.
    pub fn digest(&self, base_dir: &Path, h: &mut sha2::Sha256) {
        use sha2::Digest;
        for (name, bytes) in self.contents(base_dir) {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
    }

    /// Every attachment as (path relative to `base_dir`, its bytes or the read error), in
    /// path order.
    pub fn contents<'a>(
        &'a self,
        base_dir: &'a Path,
    ) -> impl Iterator<Item = (std::borrow::Cow<'a, str>, &'a [u8])> + 'a {
        let mut paths: Vec<&PathBuf> = self.files.keys().collect();
        paths.sort();
        paths.into_iter().map(move |p| {
            let name = p.strip_prefix(base_dir).unwrap_or(p).to_string_lossy();
            let bytes: &[u8] = match &self.files[p] {
                Ok(b) => b,
                Err(e) => e.as_bytes(),
            };
            (name, bytes)
        })
    }

    /// The bytes of `rel` (relative to `base_dir`), as read by [`Attachments::load`].
    pub fn get(&self, base_dir: &Path, rel: &str) -> Result<&[u8], String> {
        let path = base_dir.join(rel);
        match self.files.get(&path) {
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(e)) => Err(e.clone()),
            None => Err(format!("`{}` was not loaded", path.display())),
        }
    }
}
