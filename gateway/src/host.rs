//! Host and authority helpers shared by routing and the access log.

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

/// A DNS host name: dot-separated labels of 1–63 letters, digits or `-`, at most 253 bytes.
pub fn valid_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::strip_port;

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
