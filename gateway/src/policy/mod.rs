//! Policy: the files security teams edit, validated into one immutable [`Snapshot`].
//!
//! Data enters as a directory of TOML files ([`file`]), is parsed and validated in full
//! ([`load_dir`]), and leaves as an `Arc<Snapshot>` with typed fields only (durations,
//! socket addresses, compiled host matchers, CIDR sets). Every problem is reported with file,
//! line, column and field; validation collects all of them rather than stopping at the first.
//! The proxy never sees the file types.

pub mod file;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::route::Router;

pub use validate::validate;

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
#[derive(Debug)]
pub struct Snapshot {
    /// Content hash of the policy files (first 12 hex digits of SHA-256 over names and bytes).
    pub version: Arc<str>,
    pub routes: Vec<Route>,
    pub clusters: Vec<ClusterSpec>,
    pub forwarding: Forwarding,
    pub access_log: AccessLogPolicy,
    pub router: Router,
}

/// What access-log records keep.
#[derive(Debug, Default)]
pub struct AccessLogPolicy {
    /// Allow-listed query parameter names (exact, case-sensitive).
    pub query_params: Vec<String>,
}

#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub hosts: Vec<HostMatch>,
    pub path_prefix: String,
    /// `None` accepts any method.
    pub methods: Option<Vec<Method>>,
    /// Index into [`Snapshot::clusters`].
    pub cluster: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// Lower-case host without port.
    Exact(String),
    /// `*.example.com` is stored as the suffix `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterSpec {
    pub name: Arc<str>,
    /// `host:port`, resolved when the runtime is built.
    pub endpoints: Vec<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub tls: Option<UpstreamTls>,
    pub health_check: Option<HealthCheckSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    pub sni: String,
    /// DER certificates read from `ca_file`; `None` trusts the system roots.
    pub ca_der: Option<Vec<Vec<u8>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HealthCheckSpec {
    pub path: String,
    pub host: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
}

#[derive(Debug, Default)]
pub struct Forwarding {
    pub trusted_proxies: Vec<IpNet>,
}

impl Forwarding {
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
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

/// Read, parse and validate a policy directory. Referenced files (`ca_file`) are resolved
/// relative to `dir`.
pub fn load_dir(dir: &Path) -> Result<Snapshot, PolicyErrors> {
    let sources = read_dir(dir)?;
    let mut snapshot = validate(&sources, dir)?;
    snapshot.version = content_version(&sources).into();
    Ok(snapshot)
}

/// The policy version: a content hash, so identical files always give the same version.
pub fn content_version(sources: &[Source]) -> String {
    let mut h = Sha256::new();
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
