//! The validated cache policy: typed, immutable, with the header values that do not depend on
//! the request rendered once here, so the response step mostly clones `HeaderValue`s (a
//! reference count) instead of formatting strings.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use super::directives::Directives;
pub use super::file::{AuthenticatedMode, OriginMode};

/// Statuses the top-level directives apply to when `statuses` is not set: the heuristically
/// cacheable ones of RFC 9110 §15.1 that a gateway sees, without 206 (ranges) and 405/414/501
/// (which an edge would rather not pin).
pub const DEFAULT_STATUSES: &[u16] = &[200, 203, 204, 300, 301, 308, 404, 410];

/// Directives with their rendered header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub directives: Directives,
    pub value: HeaderValue,
}

impl Rendered {
    pub fn new(directives: Directives) -> Rendered {
        let value = HeaderValue::from_str(&directives.render())
            .unwrap_or_else(|_| HeaderValue::from_static("no-store"));
        Rendered { directives, value }
    }
}

/// `Cache-Control` and `CDN-Cache-Control` for one kind of response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directed {
    pub cache_control: Option<Rendered>,
    pub cdn_cache_control: Option<Rendered>,
}

/// A path pattern: `*` within a segment, `**` across segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(pub String);

impl PathPattern {
    pub fn matches(&self, path: &str) -> bool {
        glob(self.0.as_bytes(), path.as_bytes())
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') if p.get(1) == Some(&b'*') => {
            let rest = &p[2..];
            (0..=s.len()).any(|i| glob(rest, &s[i..]))
        }
        Some(b'*') => {
            let rest = &p[1..];
            let seg_end = s.iter().position(|&b| b == b'/').unwrap_or(s.len());
            (0..=seg_end).any(|i| glob(rest, &s[i..]))
        }
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

/// A media range: `image/png` or `image/*`, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRange(pub String);

impl MediaRange {
    /// Against a `Content-Type` value (parameters ignored, case-insensitive).
    pub fn matches(&self, content_type: &[u8]) -> bool {
        let end = content_type
            .iter()
            .position(|&b| b == b';')
            .unwrap_or(content_type.len());
        let ct = content_type[..end].trim_ascii();
        match self.0.strip_suffix("/*") {
            Some(top) => {
                ct.len() > top.len()
                    && ct[..top.len()].eq_ignore_ascii_case(top.as_bytes())
                    && ct[top.len()] == b'/'
            }
            None => ct.eq_ignore_ascii_case(self.0.as_bytes()),
        }
    }
}

/// `[[cache.<name>.rule]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `None`: the policy's statuses.
    pub statuses: Option<Vec<u16>>,
    pub paths: Vec<PathPattern>,
    pub content_types: Vec<MediaRange>,
    pub directed: Directed,
}

/// Which tag headers to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagHeaders {
    pub surrogate_key: bool,
    pub cache_tag: bool,
}

/// `[cache.<name>.tags]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tags {
    pub headers: TagHeaders,
    pub route: bool,
    pub path_segments: u8,
    pub fixed: Vec<String>,
}

/// `[cache.<name>.micro_cache]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicroSpec {
    /// The policy's name: one micro-cache per policy.
    pub name: Arc<str>,
    pub max_bytes: usize,
    pub max_object_bytes: usize,
    pub ttl: Duration,
    pub stale_while_revalidate: Duration,
    pub stale_if_error: Duration,
    pub lock_timeout: Duration,
    pub query_params: Vec<String>,
    pub per_subject: bool,
    /// Request headers that select a variant (the policy's `vary`).
    pub vary: Vec<HeaderName>,
}

/// `[cache.<name>]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePolicy {
    pub name: Arc<str>,
    pub directed: Directed,
    pub cdn_header: Option<HeaderName>,
    pub origin: OriginMode,
    pub vary: Vec<HeaderName>,
    /// The configured `Vary` list as one value, for responses without their own `Vary`.
    pub vary_value: Option<HeaderValue>,
    pub statuses: Vec<u16>,
    pub credential_cookies: Vec<String>,
    pub authenticated: AuthenticatedMode,
    pub tags: Option<Tags>,
    pub rules: Vec<Rule>,
    pub micro: Option<MicroSpec>,
}

/// Every `[cache.<name>]`, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachePolicies {
    pub policies: Vec<Arc<CachePolicy>>,
}

impl CachePolicies {
    pub fn get(&self, name: &str) -> Option<&Arc<CachePolicy>> {
        self.policies.iter().find(|p| &*p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns() {
        let js = PathPattern("/static/*.js".into());
        assert!(js.matches("/static/app.3f9a.js"));
        assert!(!js.matches("/static/sub/app.js"));
        assert!(!js.matches("/static/app.css"));
        let all = PathPattern("/assets/**".into());
        assert!(all.matches("/assets/a/b/c.png"));
        assert!(!all.matches("/other/a"));
        let exact = PathPattern("/favicon.ico".into());
        assert!(exact.matches("/favicon.ico"));
        assert!(!exact.matches("/favicon.icon"));
    }

    #[test]
    fn media_ranges() {
        assert!(MediaRange("image/*".into()).matches(b"image/png"));
        assert!(MediaRange("text/css".into()).matches(b"Text/CSS; charset=utf-8"));
        assert!(!MediaRange("image/*".into()).matches(b"imagex/png"));
        assert!(!MediaRange("text/css".into()).matches(b"text/csv"));
    }
}
