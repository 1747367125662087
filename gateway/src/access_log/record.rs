//! Turning request facts into a record: redaction and normalisation rules, kept pure so they
//! are unit-tested without a proxy.

use std::borrow::Cow;

use http::Version;

/// Longest user agent or referer kept, in bytes.
pub const MAX_HEADER_VALUE: usize = 512;

/// Stamps records with the instance id; the proxy fills in the per-request facts.
#[derive(Debug, Clone)]
pub struct RecordBuilder {
    pub instance: String,
}

/// Keep only allow-listed query parameters, in request order: `a=1&b=2`. `None` when nothing
/// is kept. Names are compared before percent-decoding, exactly as written in the policy.
pub fn filter_query(query: Option<&str>, allow: &[String]) -> Option<String> {
    let q = query?;
    if allow.is_empty() {
        return None;
    }
    // `;` separates parameters too (HTML 4 forms, Java servlets): a token must not hide
    // behind it (`page=1;token=x`).
    let kept: Vec<&str> = q
        .split(['&', ';'])
        .filter(|kv| {
            let name = kv.split('=').next().unwrap_or("");
            allow.iter().any(|a| a == name)
        })
        .collect();
    (!kept.is_empty()).then(|| truncate(&kept.join("&"), MAX_HEADER_VALUE).to_string())
}

/// Truncate at a char boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A header value for the record: valid UTF-8 only, truncated.
pub fn header_text(v: Option<&http::HeaderValue>) -> Option<&str> {
    let s = v?.to_str().ok()?;
    (!s.is_empty()).then(|| truncate(s, MAX_HEADER_VALUE))
}

/// Referer without user-info, query string or fragment (they carry credentials and tokens
/// as often as URLs do).
pub fn referer(v: Option<&http::HeaderValue>) -> Option<Cow<'_, str>> {
    let s = header_text(v)?;
    let end = s.find(['?', '#']).unwrap_or(s.len());
    let s = &s[..end];
    // `scheme://user:pass@host/…` → `scheme://host/…`
    if let Some(scheme_end) = s.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = s[auth_start..]
            .find('/')
            .map_or(s.len(), |i| auth_start + i);
        if let Some(at) = s[auth_start..auth_end].rfind('@') {
            return Some(Cow::Owned(format!(
                "{}{}",
                &s[..auth_start],
                &s[auth_start + at + 1..]
            )));
        }
    }
    Some(Cow::Borrowed(s))
}

/// The path as recorded: without path parameters (`/app;jsessionid=x/y` → `/app/y`, they
/// carry session ids), then with the first matching `mask_paths` pattern applied.
pub fn redact_path<'a>(path: &'a str, masks: &[super::policy::PathMask]) -> Cow<'a, str> {
    let path: Cow<'a, str> = if path.contains(';') {
        Cow::Owned(
            path.split('/')
                .map(|seg| seg.split(';').next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("/"),
        )
    } else {
        Cow::Borrowed(path)
    };
    for m in masks {
        if let Some(masked) = m.apply(&path) {
            return Cow::Owned(masked);
        }
    }
    path
}

/// Lower-case, borrowing when there is nothing to change.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// `Display` into a stack buffer, for addresses on the request path (no allocation). Output
/// that does not fit is cut at the buffer's end (never for IP addresses and ports).
pub fn display(buf: &mut [u8; 64], v: impl std::fmt::Display) -> &str {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cur, "{v}");
    let n = cur.position() as usize;
    let s = &buf[..n];
    match std::str::from_utf8(s) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&s[..e.valid_up_to()]).unwrap_or(""),
    }
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_id(v: Option<&http::HeaderValue>) -> Option<Cow<'_, str>> {
    let s = v?.to_str().ok()?;
    let mut parts = s.split('-');
    let (_ver, trace) = (parts.next()?, parts.next()?);
    (trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) && trace != "0".repeat(32))
        .then(|| lower(trace))
}

pub fn http_version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// Host without port, lower-case.
pub fn host_only(host: &str) -> Cow<'_, str> {
    lower(truncate(crate::host::strip_port(host), 255))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn query_is_allow_listed() {
        let allow = vec!["page".to_string(), "limit".to_string()];
        assert_eq!(
            filter_query(Some("token=abc&page=2&api_key=x&limit=5"), &allow).as_deref(),
            Some("page=2&limit=5")
        );
        assert_eq!(filter_query(Some("token=abc"), &allow), None);
        assert_eq!(filter_query(Some("page=1"), &[]), None);
        assert_eq!(filter_query(None, &allow), None);
        // A parameter whose name merely starts with an allowed one is not kept.
        assert_eq!(filter_query(Some("pagetoken=s3cr3t"), &allow), None);
        // `;` separates parameters too: a token cannot ride along behind an allowed one.
        assert_eq!(
            filter_query(Some("page=1;token=abc&limit=5"), &allow).as_deref(),
            Some("page=1&limit=5")
        );
    }

    #[test]
    fn recorded_paths_lose_path_parameters_and_masked_segments() {
        use crate::access_log::policy::PathMask;
        let masks = [PathMask::parse("/reset/{token}").unwrap()];
        assert_eq!(redact_path("/a/b", &masks), "/a/b");
        assert!(matches!(redact_path("/a/b", &masks), Cow::Borrowed(_)));
        assert_eq!(
            redact_path("/app;jsessionid=ABC123/cart;v=2", &masks),
            "/app/cart"
        );
        assert_eq!(redact_path("/reset/s3cr3t", &masks), "/reset/{token}");
        assert_eq!(
            redact_path("/reset/s3cr3t;jsessionid=x/confirm", &masks),
            "/reset/{token}/confirm"
        );
    }

    #[test]
    fn referer_loses_its_query_and_values_are_bounded() {
        let r = HeaderValue::from_static("https://a.example/cb?code=secret#frag");
        assert_eq!(referer(Some(&r)).as_deref(), Some("https://a.example/cb"));
        let r = HeaderValue::from_static("https://alice:hunter2@a.example/x?y");
        assert_eq!(referer(Some(&r)).as_deref(), Some("https://a.example/x"));
        let r = HeaderValue::from_static("https://a.example/p@th");
        assert_eq!(referer(Some(&r)).as_deref(), Some("https://a.example/p@th"));
        let long = HeaderValue::from_str(&"é".repeat(400)).unwrap_or(HeaderValue::from_static("x"));
        assert!(header_text(Some(&long)).map_or(0, |s| s.len()) <= MAX_HEADER_VALUE);
        assert_eq!(truncate("ééé", 3), "é");
    }

    #[test]
    fn traceparent_and_hosts() {
        let tp =
            HeaderValue::from_static("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01");
        assert_eq!(
            trace_id(Some(&tp)).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id(Some(&HeaderValue::from_static("garbage"))), None);
        assert_eq!(host_only("API.Example.com:8443"), "api.example.com");
        assert_eq!(host_only("[::1]:80"), "::1");
        let mut b = [0u8; 64];
        let a: std::net::SocketAddr = "[2001:db8::1]:8443".parse().unwrap();
        assert_eq!(display(&mut b, a), "[2001:db8::1]:8443");
        assert_eq!(display(&mut b, "x".repeat(100)).len(), 64);
    }
}
