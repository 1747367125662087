//! Host and authority helpers shared by routing, policy validation and the access log.

use std::net::Ipv6Addr;

/// The host part of an authority (`host`, `host:port`, `[v6]`, `[v6]:port`, or a bare IPv6
/// literal, which has no port).
pub fn strip_port(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address, not `host:port`.
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// A DNS host name: dot-separated labels of 1–63 letters, digits or inner `-`, at most 253
/// bytes.
pub fn valid_hostname(h: &str) -> bool {
    // One pass over the bytes (this runs on every request).
    if h.is_empty() || h.len() > 253 {
        return false;
    }
    let mut label = 0usize;
    let mut prev = b'.';
    for &b in h.as_bytes() {
        if b == b'.' {
            if label == 0 || prev == b'-' {
                return false;
            }
            label = 0;
        } else if b.is_ascii_alphanumeric() || b == b'-' {
            if label == 0 && b == b'-' {
                return false;
            }
            label += 1;
            if label > 63 {
                return false;
            }
        } else {
            return false;
        }
        prev = b;
    }
    label > 0 && prev != b'-'
}

/// The host of a request authority (`Host`, `:authority` or an absolute-form target), checked
/// before it is matched or forwarded: a DNS name, an IPv4 literal or a bracketed IPv6
/// literal, optionally with a port. Returns the host without port and without a trailing
/// dot, or `None` when the authority is not acceptable (`evil.example/.api.test`,
/// `user@host`, spaces, overlong labels, a bad port). An empty authority is `Some("")`.
pub fn checked_host(authority: &str) -> Option<&str> {
    if authority.is_empty() {
        return Some("");
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        v6.parse::<Ipv6Addr>().ok()?;
        return match after {
            "" => Some(v6),
            p => valid_port(p.strip_prefix(':')?).then_some(v6),
        };
    }
    let host = match authority.rsplit_once(':') {
        Some((h, p)) => {
            if !valid_port(p) {
                return None;
            }
            h
        }
        None => authority,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    // An IPv4 literal is also a valid host name by these rules: one check covers both.
    valid_hostname(host).then_some(host)
}

fn valid_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {

    /// The one-pass `valid_hostname` against the definition it replaced (split on dots).
    #[test]
    fn one_pass_hostname_check_matches_the_definition() {
        fn by_labels(h: &str) -> bool {
            h.len() <= 253
                && h.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
        }
        use proptest::prelude::*;
        proptest!(ProptestConfig::with_cases(3000), |(h in "[a-c0-9.\\-_ ]{0,70}|[a-z]{60,70}(\\.[a-z]{1,3})?")| {
            prop_assert_eq!(super::valid_hostname(&h), by_labels(&h), "{:?}", h);
        });
        for h in [
            "",
            ".",
            "a.",
            ".a",
            "a-",
            "-a",
            "a--b",
            "a.b-",
            &"a".repeat(63),
            &"a".repeat(64),
            &"a.".repeat(126),
        ] {
            assert_eq!(super::valid_hostname(h), by_labels(h), "{h:?}");
        }
    }
    use super::{checked_host, strip_port};

    #[test]
    fn hosts_are_checked_before_matching() {
        assert_eq!(checked_host("api.example.com"), Some("api.example.com"));
        assert_eq!(
            checked_host("API.example.com:8443"),
            Some("API.example.com")
        );
        assert_eq!(checked_host("api.example.com."), Some("api.example.com"));
        assert_eq!(checked_host("10.0.0.1:80"), Some("10.0.0.1"));
        assert_eq!(checked_host("[::1]:8080"), Some("::1"));
        assert_eq!(checked_host("[2001:db8::1]"), Some("2001:db8::1"));
        assert_eq!(checked_host(""), Some(""));
        for bad in [
            "evil.example/.api.test",
            "user@api.test",
            "api.test#x",
            "api.test?",
            "a b",
            "api.test:99999",
            "api.test:",
            "api.test:8x",
            "[::1",
            "[nope]",
            "[::1]x",
            "::1",
            "a..b",
            ".api.test",
            "-",
            &format!("{}.test", "a".repeat(64)),
            &"a.".repeat(130),
            "*.api.test",
            "api_test.example",
        ] {
            assert_eq!(checked_host(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ports_are_stripped_and_ipv6_kept_whole() {
        assert_eq!(strip_port("api.example.com"), "api.example.com");
        assert_eq!(strip_port("api.example.com:8443"), "api.example.com");
        assert_eq!(strip_port("10.0.0.1:80"), "10.0.0.1");
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("2001:db8::80"), "2001:db8::80");
        assert_eq!(strip_port("host:"), "host");
        assert_eq!(strip_port(""), "");
    }
}
