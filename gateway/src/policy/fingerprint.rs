//! What a policy load read, file by file: the content version and one SHA-256 per file (the
//! `*.toml` policy files by name, and the files they refer to by their path relative to the
//! policy directory). Comparing two fingerprints names the files an edit touched, which the
//! reload audit trail ([`crate::audit`]) records, for rejected loads as well as applied ones.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::attach::Attachments;
use super::Source;

/// The content of one policy load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// [`super::content_version`] of the same content (the snapshot's version when valid).
    pub version: String,
    /// File name (or referenced path) → SHA-256 of its bytes (or of its read error).
    pub files: BTreeMap<String, [u8; 32]>,
}

impl Fingerprint {
    pub fn of(sources: &[Source], attachments: &Attachments, dir: &Path) -> Fingerprint {
        let mut files = BTreeMap::new();
        for s in sources {
            let name = s
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.insert(name, Sha256::digest(s.text.as_bytes()).into());
        }
        for (name, bytes) in attachments.contents(dir) {
            files.insert(name.into_owned(), Sha256::digest(bytes).into());
        }
        Fingerprint {
            version: super::content_version(sources, attachments, dir),
            files,
        }
    }

    /// Files added, removed or edited from `before` to `self`, in name order.
    pub fn changed_since(&self, before: &Fingerprint) -> Vec<String> {
        let mut names: Vec<&String> = self
            .files
            .iter()
            .filter(|(name, hash)| before.files.get(*name) != Some(hash))
            .map(|(name, _)| name)
            .collect();
        names.extend(
            before
                .files
                .keys()
                .filter(|name| !self.files.contains_key(*name)),
        );
        names.sort();
        names.into_iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::load_dir_fingerprinted;

    const CLUSTERS: &str = "[cluster.api]\nendpoints = [\"127.0.0.1:9\"]\n";

    #[test]
    fn names_the_files_an_edit_touched_valid_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("clusters.toml", CLUSTERS);
        write(
            "routes.toml",
            "[[route]]\nname = \"a\"\ncluster = \"api\"\n",
        );
        let (ok, first) = load_dir_fingerprinted(dir.path());
        assert_eq!(&*ok.unwrap().version, first.version.as_str());
        assert_eq!(
            first.files.keys().collect::<Vec<_>>(),
            ["clusters.toml", "routes.toml"]
        );

        // An invalid edit of one file and a new file: both named, the version moves.
        write(
            "routes.toml",
            "[[route]]\nname = \"a\"\ncluster = \"nope\"\n",
        );
        write("extra.toml", "");
        let (err, second) = load_dir_fingerprinted(dir.path());
        assert!(err.is_err());
        assert_ne!(second.version, first.version);
        assert_eq!(second.changed_since(&first), ["extra.toml", "routes.toml"]);

        // A removed file is named too; the same content gives the same fingerprint.
        std::fs::remove_file(dir.path().join("extra.toml")).unwrap();
        write(
            "routes.toml",
            "[[route]]\nname = \"a\"\ncluster = \"api\"\n",
        );
        let (_, third) = load_dir_fingerprinted(dir.path());
        assert_eq!(third, first);
        assert_eq!(third.changed_since(&second), ["extra.toml", "routes.toml"]);
        assert!(third.changed_since(&first).is_empty());
    }

    #[test]
    fn referenced_files_are_part_of_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("lists")).unwrap();
        std::fs::write(dir.path().join("lists/deny.txt"), "10.0.0.0/8\n").unwrap();
        std::fs::write(
            dir.path().join("lists.toml"),
            "[ip_list.deny]\nfiles = [\"lists/deny.txt\"]\n",
        )
        .unwrap();
        let (_, before) = load_dir_fingerprinted(dir.path());
        std::fs::write(dir.path().join("lists/deny.txt"), "192.0.2.0/24\n").unwrap();
        let (_, after) = load_dir_fingerprinted(dir.path());
        assert_eq!(after.changed_since(&before), ["lists/deny.txt"]);
    }
}
