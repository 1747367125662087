//! Policy: the files security teams edit, validated into one immutable [`Snapshot`].
//!
//! Data enters as a directory of TOML files ([`file`]), is parsed and validated in full
//! ([`load_dir`]), and leaves as an `Arc<Snapshot>` with typed fields only (durations,
//! socket addresses, compiled host matchers, CIDR sets). Every problem is reported with file,
//! line, column and field; validation collects all of them rather than stopping at the first.
//! The proxy never sees the file types.

pub mod attach;
pub mod diff;
pub mod file;
pub mod fingerprint;
pub mod lint;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::{access_log, auth, cache, forwarding, limit, resilience, route, upstream};

/// One problem in the policy files, located precisely enough for an editor to jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem concerns the directory as a whole.
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field, e.g. `route[2].cluster`.
    pub field: String,
    /// What was found and what was expected.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.field,
            self.message
        )
    }
}

impl std::error::Error for PolicyError {}

/// All errors of one load, in file order.
#[derive(Debug)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// A validated, immutable policy. Built once per (re)load, shared by `Arc`, never mutated.
/// Each field is one capability's spec; the runtime built from it lives in
/// [`crate::state::Runtime`].
#[derive(Debug)]
pub struct Snapshot {
    /// Content hash of the policy files (first 12 hex digits of SHA-256 over names and bytes).
    pub version: Arc<str>,
    pub routes: Vec<Arc<route::Route>>,
    pub clusters: Vec<upstream::ClusterSpec>,
    pub forwarding: forwarding::Forwarding,
    pub access_log: access_log::policy::AccessLogPolicy,
    pub auth: auth::spec::AuthPolicy,
    /// Rate limits, IP lists, load shedding.
    pub limits: limit::LimitPolicy,
    pub cache: cache::spec::CachePolicies,
    /// Shard maps (`[shard_map.<name>]`).
    pub shards: crate::shard::ShardPolicy,
    /// Valid but risky settings (`gateway check` prints them; the gateway logs them at load).
    pub warnings: Vec<PolicyError>,
    /// `[resilience.<cluster>]` by cluster name; a cluster without one gets the baseline.
    pub resilience: std::collections::HashMap<Arc<str>, resilience::ResilienceSpec>,
    /// Where each named definition (`cluster.api`) was written, for errors found later.
    pub origins: Origins,
}

/// A place in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

/// Where each named definition was written, by field path (`cluster.api`).
pub type Origins = std::collections::HashMap<String, Origin>;

/// A located error for `field`, for problems found after validation (building the runtime:
/// DNS, fetches). Falls back to the policy directory when the field has no recorded place.
pub fn locate(origins: &Origins, dir: &Path, field: String, message: String) -> PolicyError {
    let origin = origins.get(&field).cloned().unwrap_or(Origin {
        file: dir.to_path_buf(),
        line: 0,
        column: 0,
    });
    PolicyError {
        file: origin.file,
        line: origin.line,
        column: origin.column,
        field,
        message,
    }
}

/// One source file, as read from disk.
pub struct Source {
    pub path: PathBuf,
    pub text: String,
}

/// Read every `*.toml` file of `dir` (sorted, non-recursive).
pub fn read_dir(dir: &Path) -> Result<Vec<Source>, PolicyErrors> {
    let io_err = |path: &Path, e: std::io::Error| {
        PolicyErrors(vec![PolicyError {
            file: path.to_path_buf(),
            line: 0,
            column: 0,
            field: "-".into(),
            message: format!("cannot read: {e}"),
        }])
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let path = entry.map_err(|e| io_err(dir, e))?.path();
        if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(PolicyErrors(vec![PolicyError {
            file: dir.to_path_buf(),
            line: 0,
            column: 0,
            field: "-".into(),
            message: "found no *.toml policy files, expected at least one".into(),
        }]));
    }
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
            Ok(Source { path, text })
        })
        .collect()
}

/// Read, parse and validate a policy directory: read the sources, parse them, read the
/// files they refer to (resolved relative to `dir`), then validate, purely.
pub fn load_dir(dir: &Path) -> Result<Snapshot, PolicyErrors> {
    load_dir_fingerprinted(dir).0
}

/// [`load_dir`], and the [`fingerprint::Fingerprint`] of what it read (the content version
/// and a hash per file), whether the policy is valid or not: the reload audit trail names
/// the files an applied or rejected load changed.
pub fn load_dir_fingerprinted(
    dir: &Path,
) -> (Result<Snapshot, PolicyErrors>, fingerprint::Fingerprint) {
    let sources = match read_dir(dir) {
        Ok(s) => s,
        Err(e) => {
            let none = attach::Attachments::default();
            return (Err(e), fingerprint::Fingerprint::of(&[], &none, dir));
        }
    };
    let mut errs = validate::Errors::new(&sources);
    let files = validate::parse(&mut errs, &sources);
    let attachments = attach::Attachments::load(&files, dir);
    let print = fingerprint::Fingerprint::of(&sources, &attachments, dir);
    let result = validate::validate(&files, &attachments, dir, errs).map(|mut snapshot| {
        snapshot.version = print.version.as_str().into();
        snapshot
    });
    (result, print)
}

/// The policy version: a content hash of the policy files and of the files they refer to (IP
/// lists, CA files), so identical policies always give the same version and an edit of a
/// referenced file alone is a new version (and is reloaded).
pub fn content_version(
    sources: &[Source],
    attachments: &attach::Attachments,
    dir: &Path,
) -> String {
    let mut h = Sha256::new();
    attachments.digest(dir, &mut h);
    for s in sources {
        let name = s
            .path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((s.text.len() as u64).to_le_bytes());
        h.update(s.text.as_bytes());
    }
    let digest = h.finalize();
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// JSON Schema of one policy file, for editors.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(file::PolicyFile);
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}

/// Byte offset → (line, column), both 1-based.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}
