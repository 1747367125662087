//! Request paths made canonical before they are matched, so that one resource has one
//! spelling: `/v1/../admin`, `/v1/%2e%2e/admin` and `/v1//admin/` cannot slip past a prefix
//! rule or reach an upstream in a form the policy did not see.
//!
//! The rule (RFC 3986 §6.2.2, as Envoy's `normalize_path` plus `merge_slashes`):
//! 1. percent-escapes of unreserved characters (`A–Z a–z 0–9 - . _ ~`) are decoded, and the
//!    hex digits of every other escape are upper-cased; a malformed escape is an error;
//! 2. repeated slashes are merged;
//! 3. dot segments are removed (`.` dropped, `..` removes the segment before it, never
//!    climbing above the root).
//!
//! An encoded slash (`%2F`) or backslash (`%5C`) is **kept encoded**: it is data inside a
//! segment, never a separator, so it cannot split a segment to dodge a prefix. Routes see and,
//! by default, upstreams receive the canonical path (`forward_path = "original"` on a route
//! keeps what the client sent).

use std::borrow::Cow;

/// Why a path cannot be made canonical.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path does not start with `/`")]
    NotAbsolute,
    #[error("malformed percent-escape at byte {0}")]
    BadEscape(usize),
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether `path` may need work; the common case (no `%`, no `//`, no dot segment) is
/// returned as it is, without allocating.
///
/// One pass over the bytes: any `%`, or a `/` followed by `/` or `.`, sends the path the
/// slow way (which returns it unchanged when it was canonical after all, as
/// `/.well-known/x` is).
fn is_plain(path: &str) -> bool {
    let mut after_slash = false;
    for &b in path.as_bytes() {
        if b == b'%' || (after_slash && (b == b'/' || b == b'.')) {
            return false;
        }
        after_slash = b == b'/';
    }
    true
}

/// The canonical form of an origin-form path (no query).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(path) {
        return Ok(Cow::Borrowed(path));
    }
    // 1. Escapes.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::BadEscape(i));
            };
            let v = h << 4 | l;
            if is_unreserved(v) {
                decoded.push(char::from(v));
            } else {
                decoded.push('%');
                decoded.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                decoded.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            }
            i += 3;
        } else {
            // Copy the run up to the next escape; `%` is ASCII, so this is a char boundary.
            let next = path[i..].find('%').map_or(path.len(), |p| i + p);
            decoded.push_str(&path[i..next]);
            i = next;
        }
    }
    // 2 and 3. Segments.
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut canonical = String::with_capacity(decoded.len());
    for seg in &out {
        canonical.push('/');
        canonical.push_str(seg);
    }
    if trailing || out.is_empty() {
        canonical.push('/');
    }
    if canonical == path {
        return Ok(Cow::Borrowed(path));
    }
    Ok(Cow::Owned(canonical))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        normalize(p).unwrap().into_owned()
    }

    #[test]
    fn canonical_forms() {
        assert!(matches!(normalize("/v1/users"), Ok(Cow::Borrowed(_))));
        // Canonical already, though it looks like a dot segment: not copied.
        assert!(matches!(normalize("/.well-known/x"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a.b/c."), Ok(Cow::Borrowed(_))));
        assert_eq!(n("/v1/../admin"), "/admin");
        assert_eq!(n("/v1/%2e%2e/admin"), "/admin");
        assert_eq!(n("/v1/%2E%2E/admin"), "/admin");
        assert_eq!(n("/v1/./users/"), "/v1/users/");
        assert_eq!(n("//v1///users"), "/v1/users");
        assert_eq!(n("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(n("/a/b/.."), "/a/");
        assert_eq!(n("/a/."), "/a/");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/%7Euser/%41"), "/~user/A");
        assert_eq!(
            n("/v1%2fadmin"),
            "/v1%2Fadmin",
            "encoded slash kept, hex upper-cased"
        );
        assert_eq!(n("/a%5c..%5cb"), "/a%5C..%5Cb", "backslashes are data");
        assert_eq!(n("/caf%C3%A9/é/"), "/caf%C3%A9/é/");
        assert_eq!(
            n("/a/..%2F"),
            "/a/..%2F",
            "`..%2F` is one segment, not a dot segment"
        );
    }

    #[test]
    fn malformed_input_is_refused() {
        assert_eq!(normalize("/a%zz"), Err(PathError::BadEscape(2)));
        assert_eq!(normalize("/a%2"), Err(PathError::BadEscape(2)));
        assert_eq!(normalize("a/b"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        for p in [
            "/v1/../admin",
            "//x/%2e/y/",
            "/a%2fb/../c",
            "/%41%42/./../%2E%2E%2f",
            "/é/../ü",
        ] {
            let once = n(p);
            assert_eq!(n(&once), once, "{p}");
        }
    }
}
