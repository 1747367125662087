//! `[access_log]`: what the per-request record may keep. The access-log capability's
//! policy part (file type, pure validation, spec); the sink itself is process settings.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::policy::validate::{at_most_one, Errors, Files};

/// `[access_log]`: what the per-request record may contain.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFile {
    /// Query parameter names whose values are recorded (`query` column). Every other
    /// parameter is dropped, so tokens and personal data in URLs never reach the lake.
    /// Default: none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub query_params: Vec<Spanned<String>>,
    /// Path patterns whose `{name}` segments are masked in the recorded path, for ids and
    /// tokens that travel in the path: `"/reset/{token}"` records `/reset/abc123/confirm` as
    /// `/reset/{token}/confirm`. A pattern matches the leading segments of a path; the first
    /// pattern that matches applies. Default: none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub mask_paths: Vec<Spanned<String>>,
}

/// The validated `[access_log]` section.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AccessLogPolicy {
    /// Allow-listed query parameter names (exact, case-sensitive).
    pub query_params: Vec<String>,
    pub mask_paths: Vec<PathMask>,
}

/// One `mask_paths` pattern: per segment, a literal or a placeholder to mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathMask {
    /// `Ok(literal)` or `Err(placeholder)` (written back as `{name}`).
    pub segments: Vec<Result<String, String>>,
}

impl PathMask {
    /// The pattern `/reset/{token}`, or why it is not one.
    pub fn parse(pattern: &str) -> Result<PathMask, String> {
        let bad = |why: &str| format!("found `{pattern}`, expected {why}");
        let rest = pattern
            .strip_prefix('/')
            .ok_or_else(|| bad("a path pattern starting with `/`"))?;
        let mut segments = Vec::new();
        for seg in rest.split('/') {
            if seg.is_empty() {
                return Err(bad("no empty segments"));
            }
            match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if !name.is_empty() && !name.contains(['{', '}']) => {
                    segments.push(Err(name.to_string()))
                }
                Some(_) => return Err(bad("placeholders like `{token}`")),
                None if seg.contains(['{', '}']) => {
                    return Err(bad(
                        "placeholders that fill a whole segment, like `/{token}/`",
                    ))
                }
                None => segments.push(Ok(seg.to_string())),
            }
        }
        if !segments.iter().any(Result::is_err) {
            return Err(bad("at least one `{name}` segment to mask"));
        }
        Ok(PathMask { segments })
    }

    /// `path` with this pattern's placeholders written over the matching segments, or `None`
    /// when the pattern does not match.
    pub fn apply(&self, path: &str) -> Option<String> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() < self.segments.len() {
            return None;
        }
        let mut out = String::with_capacity(path.len());
        for (i, part) in parts.iter().enumerate() {
            out.push('/');
            match self.segments.get(i) {
                Some(Ok(lit)) if lit == part => out.push_str(part),
                Some(Ok(_)) => return None,
                Some(Err(_)) if part.is_empty() => return None,
                Some(Err(name)) => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
                None => out.push_str(part),
            }
        }
        Some(out)
    }
}

/// `[access_log]`, from at most one file.
pub fn validate(errs: &mut Errors, files: &Files) -> AccessLogPolicy {
    let mut access_log = AccessLogPolicy::default();
    let Some((fi, al)) = at_most_one(errs, files, "access_log", |f| f.access_log.as_ref()) else {
        return access_log;
    };
    for (k, p) in al.get_ref().query_params.iter().enumerate() {
        let name = p.get_ref();
        if name.is_empty() || name.contains(['&', '=', ' ']) {
            errs.at(
                fi,
                p.span(),
                &format!("access_log.query_params[{k}]"),
                format!("found `{name}`, expected a query parameter name"),
            );
        } else if !access_log.query_params.contains(name) {
            access_log.query_params.push(name.clone());
        }
    }
    for (k, p) in al.get_ref().mask_paths.iter().enumerate() {
        match PathMask::parse(p.get_ref()) {
            Ok(m) => access_log.mask_paths.push(m),
            Err(msg) => errs.at(fi, p.span(), &format!("access_log.mask_paths[{k}]"), msg),
        }
    }
    access_log
}

#[cfg(test)]
mod tests {
    use super::PathMask;

    #[test]
    fn masks_apply_to_leading_segments() {
        let m = PathMask::parse("/reset/{token}").unwrap();
        assert_eq!(m.apply("/reset/abc123").as_deref(), Some("/reset/{token}"));
        assert_eq!(
            m.apply("/reset/abc123/confirm").as_deref(),
            Some("/reset/{token}/confirm")
        );
        assert_eq!(m.apply("/reset"), None);
        assert_eq!(m.apply("/reset/"), None);
        assert_eq!(m.apply("/other/abc"), None);
        let m = PathMask::parse("/users/{id}/sessions/{sid}").unwrap();
        assert_eq!(
            m.apply("/users/42/sessions/s-9").as_deref(),
            Some("/users/{id}/sessions/{sid}")
        );
        for bad in [
            "reset/{t}",
            "/reset",
            "/reset/{}",
            "/a//{t}",
            "/x{t}",
            "/{t}}",
        ] {
            assert!(PathMask::parse(bad).is_err(), "{bad}");
        }
    }
}
