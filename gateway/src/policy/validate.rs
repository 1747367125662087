//! Parsed files → [`Snapshot`]: the orchestration, and the helpers every capability's own
//! `validate` uses.
//!
//! Validation is pure: it reads nothing from disk. Files that a policy references (CA files
//! today, JWKS and CIDR list files tomorrow) are read once, before validation, by
//! [`super::attach`], and handed in as [`Attachments`]. Every error is collected with its
//! file, line, column and field; nothing stops at the first.
//!
//! The order is the order of dependencies: a capability is validated after the ones whose
//! names it refers to (routes name clusters), and receives those names in [`Names`].

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::attach::Attachments;
use super::file::PolicyFile;
use super::{line_col, Origin, Origins, PolicyError, PolicyErrors, Snapshot, Source};
use crate::{access_log, auth, cache, forwarding, limit, resilience, route, shard, upstream};

/// Collects located errors against the policy sources.
pub struct Errors<'a> {
    sources: &'a [Source],
    out: Vec<PolicyError>,
    /// Valid but risky settings: reported by `gateway check` and logged at load, never fatal.
    warnings: Vec<PolicyError>,
    origins: Origins,
}

impl<'a> Errors<'a> {
    pub fn new(sources: &'a [Source]) -> Self {
        Errors {
            sources,
            out: Vec::new(),
            warnings: Vec::new(),
            origins: Origins::default(),
        }
    }

    /// Report a problem with the value at `span` of file `file`.
    pub fn at(&mut self, file: usize, span: Range<usize>, field: &str, message: String) {
        let origin = self.origin(file, span);
        self.out.push(PolicyError {
            file: origin.file,
            line: origin.line,
            column: origin.column,
            field: field.to_string(),
            message,
        });
    }

    /// Report a valid but risky setting at `span` (a warning: the policy still loads).
    pub fn warn(&mut self, file: usize, span: Range<usize>, field: &str, message: String) {
        let origin = self.origin(file, span);
        self.warnings.push(PolicyError {
            file: origin.file,
            line: origin.line,
            column: origin.column,
            field: field.to_string(),
            message,
        });
    }

    /// Remember where `field` (e.g. `cluster.api`) is defined, so that a failure to build
    /// its runtime later (DNS, a JWKS fetch) still names the file and line.
    pub fn define(&mut self, field: String, file: usize, span: Range<usize>) {
        let origin = self.origin(file, span);
        self.origins.insert(field, origin);
    }

    fn origin(&self, file: usize, span: Range<usize>) -> Origin {
        let src = &self.sources[file];
        let (line, column) = line_col(&src.text, span.start);
        Origin {
            file: src.path.clone(),
            line,
            column,
        }
    }

    /// `path:line` of the value at `span`, for messages that name a second place.
    pub fn place(&self, file: usize, span: Range<usize>) -> String {
        let o = self.origin(file, span);
        format!("{}:{}", o.file.display(), o.line)
    }

    /// The path of file `file`, for "already defined in …" messages.
    pub fn path(&self, file: usize) -> String {
        self.sources[file].path.display().to_string()
    }

    /// Errors so far; a capability compares before and after to know whether its part failed.
    pub fn count(&self) -> usize {
        self.out.len()
    }
}

/// Parsed policy files, each with its index into the sources.
pub type Files = [(usize, PolicyFile)];

/// Names defined by one capability that another refers to. Validated in dependency order, so
/// a reference can be checked (with a "did you mean") before the runtime exists.
#[derive(Debug, Default)]
pub struct Names {
    /// Cluster name → the file that defines it. A cluster whose own definition is invalid is
    /// still listed, so routes naming it are not reported twice.
    pub clusters: HashMap<String, usize>,
    /// `[issuer.<name>]` → file.
    pub issuers: HashMap<String, usize>,
    /// `[auth.<name>]` → file.
    pub auth_rules: HashMap<String, usize>,
    /// `[limit.<name>]` → its file.
    pub limits: HashMap<String, usize>,
    /// `[ip_list.<name>]` → its file.
    pub ip_lists: HashMap<String, usize>,
    /// `[cache.<name>]` → file.
    pub cache_policies: HashMap<String, usize>,
    /// `[shard_map.<name>]` → file.
    pub shard_maps: HashMap<String, usize>,
}

/// Record a named definition (`[cluster.<name>]`, `[auth.<name>]`, `[limit.<name>]`...): the
/// name is taken (in `defined`, with its file) and its place is kept for errors found later.
/// A name defined twice, or not made of letters, digits, `-`, `_` and `.`, is an error and
/// returns `false`; an invalid name is still recorded, so references to it are not reported
/// a second time. `what` names the kind in messages ("cluster", "auth rule").
pub fn define_name(
    errs: &mut Errors,
    defined: &mut HashMap<String, usize>,
    file: usize,
    name: &str,
    span: Range<usize>,
    field: &str,
    what: &str,
) -> bool {
    if let Some(other) = defined.get(name) {
        let other = errs.path(*other);
        errs.at(
            file,
            span,
            field,
            format!("duplicate {what} `{name}`, already defined in {other}"),
        );
        return false;
    }
    defined.insert(name.to_string(), file);
    errs.define(field.to_string(), file, span.clone());
    if !valid_name(name) {
        errs.at(
            file,
            span,
            field,
            format!("found `{name}`, expected a name of letters, digits, `-`, `_` and `.`"),
        );
        return false;
    }
    true
}

/// Check that `name` is one of `defined` (a `what` such as "clusters"), reporting
/// `found `x`, expected one of the defined <what>: [a, b]` with a suggestion when one name is
/// close. Returns whether it was found.
pub fn lookup<V>(
    errs: &mut Errors,
    file: usize,
    value: &Spanned<String>,
    field: &str,
    what: &str,
    defined: &HashMap<String, V>,
) -> bool {
    let name = value.get_ref();
    if defined.contains_key(name) {
        return true;
    }
    let mut known: Vec<&str> = defined.keys().map(String::as_str).collect();
    known.sort_unstable();
    let mut message = format!(
        "found `{name}`, expected one of the defined {what}: [{}]",
        known.join(", ")
    );
    if let Some(close) = did_you_mean(name, &known) {
        message.push_str(&format!(" (did you mean `{close}`?)"));
    }
    errs.at(file, value.span(), field, message);
    false
}

/// The closest of `known` to `name`, when it is close enough to be a typo.
pub fn did_you_mean<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < k.len().max(name.len()) / 2 + 1)
        .min()
        .map(|(_, k)| k)
}

/// A section that at most one file may set (`[forwarding]`, `[access_log]`): reports every
/// further one with both places and returns the first.
pub fn at_most_one<'f, T>(
    errs: &mut Errors,
    files: &'f Files,
    section: &str,
    get: impl Fn(&'f PolicyFile) -> Option<&'f Spanned<T>>,
) -> Option<(usize, &'f Spanned<T>)> {
    let mut first: Option<(usize, &'f Spanned<T>)> = None;
    for (fi, f) in files {
        let Some(s) = get(f) else { continue };
        match first {
            Some((other, _)) => {
                let other = errs.path(other);
                errs.at(
                    *fi,
                    s.span(),
                    section,
                    format!("duplicate [{section}] section, already set in {other}"),
                );
            }
            None => first = Some((*fi, s)),
        }
    }
    first
}

/// A positive duration such as `500ms` or `2s`, or `default` when unset.
pub fn duration(
    errs: &mut Errors,
    file: usize,
    field: &str,
    v: &Option<Spanned<String>>,
    default: Duration,
) -> Option<Duration> {
    let Some(v) = v else { return Some(default) };
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() => Some(d),
        Ok(_) => {
            errs.at(
                file,
                v.span(),
                field,
                "found `0`, expected a positive duration".into(),
            );
            None
        }
        Err(e) => {
            errs.at(
                file,
                v.span(),
                field,
                format!(
                    "found `{}` ({e}), expected a duration like `500ms` or `2s`",
                    v.get_ref()
                ),
            );
            None
        }
    }
}

/// An IP address or CIDR block; a bare address is a /32 or /128.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = IpNet::from_str(s) {
        return Ok(net);
    }
    std::net::IpAddr::from_str(s)
        .map(IpNet::from)
        .map_err(|_| format!("found `{s}`, expected an IP address or CIDR block like 10.0.0.0/8"))
}

/// Names of clusters, routes, issuers: letters, digits, `-`, `_` and `.`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Parse every source; a syntax or type error stops only that file.
/// Why a TOML document did not deserialise: where, which field, and what was wrong.
pub struct TomlError {
    pub span: Range<usize>,
    /// Dotted path of the field (`route[2].cluster`), or `-` for the document.
    pub field: String,
    pub message: String,
}

/// Deserialise `text`, naming the field and place of the first problem. Shared by the policy
/// files and the policy test files (`gateway test`).
pub fn from_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, TomlError> {
    serde_path_to_error::deserialize::<_, T>(toml::Deserializer::new(text)).map_err(|e| {
        // Spanned<T> shows up as a private path segment; hide it from users.
        let path = e
            .path()
            .to_string()
            .split('.')
            .filter(|seg| !seg.starts_with("$__"))
            .collect::<Vec<_>>()
            .join(".");
        let inner = e.into_inner();
        // Some syntax errors carry no message of their own: say what is known.
        let message = match inner.message().trim() {
            "" => "invalid TOML syntax here (check quotes, brackets and `=`)".to_string(),
            m => m.to_string(),
        };
        TomlError {
            span: inner.span().unwrap_or(0..0),
            field: if path == "." { "-".to_string() } else { path },
            message,
        }
    })
}

pub fn parse(errs: &mut Errors, sources: &[Source]) -> Vec<(usize, PolicyFile)> {
    let mut files = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        match from_toml::<PolicyFile>(&src.text) {
            Ok(f) => files.push((i, f)),
            Err(e) => errs.at(i, e.span, &e.field, e.message),
        }
    }
    files
}

/// Validate parsed files into a snapshot, each capability in dependency order.
pub fn validate(
    files: &Files,
    attachments: &Attachments,
    base_dir: &Path,
    mut errs: Errors,
) -> Result<Snapshot, PolicyErrors> {
    let mut names = Names::default();
    define_sections(&mut errs, files);
    let clusters = upstream::validate(&mut errs, files, attachments, base_dir, &mut names);
    let forwarding = forwarding::validate(&mut errs, files);
    let access_log = access_log::policy::validate(&mut errs, files);
    let auth = auth::validate::validate(&mut errs, files, attachments, base_dir, &mut names);
    let limits = limit::validate(&mut errs, files, attachments, base_dir, &mut names);
    let cache = cache::validate::validate(&mut errs, files, &mut names);
    let shards = shard::validate(&mut errs, files, &mut names);
    let routes = route::validate(&mut errs, files, &names);
    let resilience = resilience::validate(&mut errs, files, &names);

    if !errs.out.is_empty() {
        return Err(PolicyErrors(errs.out));
    }
    let mut snapshot = Snapshot {
        version: Arc::from(""),
        routes,
        clusters,
        forwarding,
        access_log,
        auth,
        limits,
        cache,
        shards,
        warnings: errs.warnings,
        resilience,
        origins: errs.origins,
    };
    let lints = super::lint::lint(&snapshot);
    snapshot.warnings.extend(lints);
    Ok(snapshot)
}

/// Record where the single sections (`[forwarding]`, `[revocation]`...) and the
/// `[resilience.<cluster>]` tables are written, for messages about them made after validation
/// (`gateway diff`, lints).
fn define_sections(errs: &mut Errors, files: &Files) {
    for (fi, f) in files {
        let spans = [
            ("forwarding", f.forwarding.as_ref().map(|s| s.span())),
            ("access_log", f.access_log.as_ref().map(|s| s.span())),
            ("revocation", f.revocation.as_ref().map(|s| s.span())),
            ("rate_limits", f.rate_limits.as_ref().map(|s| s.span())),
            ("ip_access", f.ip_access.as_ref().map(|s| s.span())),
            ("load_shedding", f.load_shedding.as_ref().map(|s| s.span())),
        ];
        for (section, span) in spans {
            if let Some(span) = span {
                if !errs.origins.contains_key(section) {
                    errs.define(section.to_string(), *fi, span);
                }
            }
        }
        for cluster in f.resilience.keys() {
            errs.define(
                format!("resilience.{}", cluster.get_ref()),
                *fi,
                cluster.span(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_only_for_typos() {
        let known = ["api", "static", "users-a"];
        assert_eq!(did_you_mean("statc", &known), Some("static"));
        assert_eq!(did_you_mean("users_a", &known), Some("users-a"));
        assert_eq!(did_you_mean("nope", &known), None);
        assert_eq!(did_you_mean("ap", &known), Some("api"));
        assert_eq!(did_you_mean("x", &known), None);
    }
}
