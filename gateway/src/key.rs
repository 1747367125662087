//! Request keys: "a value taken from the request", defined once for every capability that
//! buckets requests (rate limits today; shard routing and canary stickiness later).
//!
//! A key is written in the policy as one source or several joined with `+`:
//!
//! | source | value |
//! | --- | --- |
//! | `ip` | the client IP, after the trusted-proxy rule (`forwarding::client_ip`) |
//! | `ip/24` | the client's network: IPv4 /24, IPv6 /64 (the IPv6 default) |
//! | `ip/24/48` | the client's network with an explicit IPv6 prefix |
//! | `header:x-api-key` | a request header (several lines are joined with `,`) |
//! | `cookie:session` | a cookie |
//! | `query:api_key` | a query parameter, percent-decoded |
//! | `path:2` | the 2nd segment of the canonical path (`/v1/users/42`: `path:2` = `users`) |
//! | `claim:sub` | a claim of the verified token (dotted for nested claims: `org.id`) |
//! | `route` | the name of the route the request matched |
//! | `claim:sub + route` | a tuple: every part must be present |
//!
//! [`KeySpec::write`] appends the key's bytes to a caller-owned [`KeyBuf`] (reused across the
//! keys of one request, on the stack up to 96 bytes), so taking a key allocates nothing: IPs
//! are written as their octets, text values as they are. A request without one of the parts
//! (no such header, no token) has no key, and the caller decides what that means.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::header::{HeaderName, COOKIE};
use pingora::http::RequestHeader;

use crate::auth::Identity;

/// The most parts a tuple key may have.
pub const MAX_PARTS: usize = 8;

/// One source of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    ClientIp,
    /// The client's network: the address masked to `v4` / `v6` bits.
    ClientNet {
        v4: u8,
        v6: u8,
    },
    Header(HeaderName),
    Cookie(Box<str>),
    Query(Box<str>),
    /// 1-based segment of the canonical path.
    PathSegment(u16),
    Claim(Box<str>),
    Route,
}

/// A key: one or more sources, all of which must be present.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeySpec {
    parts: Box<[Source]>,
}

/// What a key is taken from. Borrowed from the request and its context; built once per
/// request by the caller.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub header: &'a RequestHeader,
    /// The canonical path (what the route matched).
    pub path: &'a str,
    pub client_ip: Option<IpAddr>,
    pub route: &'a str,
    pub identity: Option<&'a Identity>,
}

/// Key bytes kept inline up to this size (an address, a user id, most API keys); longer
/// keys move to the heap.
const INLINE: usize = 96;

/// A reusable buffer for key bytes: on the stack until a key outgrows [`INLINE`] bytes.
#[derive(Debug)]
pub struct KeyBuf {
    inline: [u8; INLINE],
    len: usize,
    heap: Vec<u8>,
    spilled: bool,
}

impl Default for KeyBuf {
    fn default() -> Self {
        KeyBuf::new()
    }
}

impl KeyBuf {
    pub fn new() -> KeyBuf {
        KeyBuf {
            inline: [0; INLINE],
            len: 0,
            heap: Vec::new(),
            spilled: false,
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.heap.clear();
        self.spilled = false;
    }

    pub fn as_bytes(&self) -> &[u8] {
        if self.spilled {
            &self.heap
        } else {
            &self.inline[..self.len]
        }
    }

    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn spill(&mut self) {
        if !self.spilled {
            self.heap.extend_from_slice(&self.inline[..self.len]);
            self.spilled = true;
        }
    }

    pub fn push(&mut self, b: u8) {
        self.extend_from_slice(&[b]);
    }

    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        if !self.spilled {
            if let Some(dst) = self.inline.get_mut(self.len..self.len + bytes.len()) {
                dst.copy_from_slice(bytes);
                self.len += bytes.len();
                return;
            }
            self.spill();
        }
        self.heap.extend_from_slice(bytes);
    }

    pub fn truncate(&mut self, len: usize) {
        if self.spilled {
            self.heap.truncate(len);
        } else {
            self.len = self.len.min(len);
        }
    }
}

/// Separates the parts of a tuple, so that `("ab", "c")` and `("a", "bc")` differ.
const SEP: u8 = 0x1f;

impl KeySpec {
    pub fn parts(&self) -> &[Source] {
        &self.parts
    }

    /// Whether the key reads the verified token (so needs the auth step to have run).
    pub fn uses_claims(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Source::Claim(_)))
    }

    /// Append this key's bytes for `req` to `out`. Returns `false` (and leaves `out` as it
    /// was) when a part is missing from the request.
    pub fn write(&self, req: &Request<'_>, out: &mut KeyBuf) -> bool {
        let start = out.len();
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                out.push(SEP);
            }
            if !part.write(req, out) {
                out.truncate(start);
                return false;
            }
        }
        true
    }

    /// The key for `req` as a person reads it (addresses and networks printed, parts
    /// joined by ` + `), for `gateway explain`. `None` when a part is missing.
    pub fn describe(&self, req: &Request<'_>) -> Option<String> {
        let mut parts = Vec::with_capacity(self.parts.len());
        let mut buf = KeyBuf::new();
        for part in self.parts.iter() {
            let text = match (part, req.client_ip) {
                (Source::ClientIp, Some(ip)) => ip.to_string(),
                (Source::ClientNet { v4, v6 }, Some(ip)) => {
                    let bits = if ip.is_ipv4() { *v4 } else { *v6 };
                    ipnet::IpNet::new(ip, bits)
                        .map(|n| n.trunc().to_string())
                        .unwrap_or_else(|_| ip.to_string())
                }
                _ => {
                    buf.clear();
                    if !part.write(req, &mut buf) {
                        return None;
                    }
                    String::from_utf8_lossy(buf.as_bytes()).into_owned()
                }
            };
            parts.push(text);
        }
        Some(parts.join(" + "))
    }

    /// The key as text, for a one-off use (tier lookup). `None` when a part is missing.
    pub fn text<'r>(&self, req: &Request<'r>, buf: &'r mut KeyBuf) -> Option<Cow<'r, str>> {
        buf.clear();
        if !self.write(req, buf) {
            return None;
        }
        Some(String::from_utf8_lossy(buf.as_bytes()))
    }
}

impl Source {
    fn write(&self, req: &Request<'_>, out: &mut KeyBuf) -> bool {
        match self {
            Source::ClientIp => match req.client_ip {
                Some(ip) => {
                    write_ip(ip, out);
                    true
                }
                None => false,
            },
            Source::ClientNet { v4, v6 } => match req.client_ip {
                Some(ip) => {
                    let net = match ip.to_canonical() {
                        IpAddr::V4(a) => {
                            let bits = u32::from(a) & mask32(*v4);
                            out.push(*v4);
                            IpAddr::V4(bits.into())
                        }
                        IpAddr::V6(a) => {
                            let bits = u128::from(a) & mask128(*v6);
                            out.push(*v6);
                            IpAddr::V6(bits.into())
                        }
                    };
                    write_ip(net, out);
                    true
                }
                None => false,
            },
            Source::Header(name) => {
                let mut lines = req.header.headers.get_all(name).iter();
                let Some(first) = lines.next() else {
                    return false;
                };
                out.extend_from_slice(first.as_bytes());
                for v in lines {
                    out.push(b',');
                    out.extend_from_slice(v.as_bytes());
                }
                true
            }
            Source::Cookie(name) => {
                for line in req.header.headers.get_all(COOKIE) {
                    if let Some(v) = cookie(line.as_bytes(), name.as_bytes()) {
                        out.extend_from_slice(v);
                        return true;
                    }
                }
                false
            }
            Source::Query(name) => req
                .header
                .uri
                .query()
                .and_then(|q| query_param(q.as_bytes(), name.as_bytes()))
                .is_some_and(|v| {
                    percent_decode_into(v, out);
                    true
                }),
            Source::PathSegment(n) => {
                match req
                    .path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .nth(usize::from(*n).saturating_sub(1))
                {
                    Some(seg) => {
                        out.extend_from_slice(seg.as_bytes());
                        true
                    }
                    None => false,
                }
            }
            Source::Claim(name) => match req.identity.and_then(|id| id.claim_text(name)) {
                Some(v) => {
                    out.extend_from_slice(v.as_bytes());
                    true
                }
                None => false,
            },
            Source::Route => {
                out.extend_from_slice(req.route.as_bytes());
                true
            }
        }
    }
}

fn write_ip(ip: IpAddr, out: &mut KeyBuf) {
    match ip.to_canonical() {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
}

fn mask32(bits: u8) -> u32 {
    if bits == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(bits.min(32)))
    }
}

fn mask128(bits: u8) -> u128 {
    if bits == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(bits.min(128)))
    }
}

/// The value of cookie `name` in one `Cookie` header line (`a=1; b=2`).
fn cookie<'v>(line: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    line.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| {
            let v = pair[eq + 1..].trim_ascii();
            v.strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v)
        })
    })
}

/// The raw value of the first parameter `name` in a query (`&` or `;` separated). The name
/// is compared after percent-decoding, so `api%5Fkey` is `api_key`.
fn query_param<'q>(query: &'q [u8], name: &[u8]) -> Option<&'q [u8]> {
    query.split(|&b| b == b'&' || b == b';').find_map(|pair| {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        decoded_eq(k, name).then_some(v)
    })
}

fn decoded_eq(encoded: &[u8], plain: &[u8]) -> bool {
    if !encoded.contains(&b'%') && !encoded.contains(&b'+') {
        return encoded == plain;
    }
    let mut buf = KeyBuf::new();
    percent_decode_into(encoded, &mut buf);
    buf.as_bytes() == plain
}

/// Percent-decode (and `+` → space) so that `a%62c` and `abc` are one key: otherwise each
/// spelling of a value would get a bucket of its own.
fn percent_decode_into(v: &[u8], out: &mut KeyBuf) {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut i = 0;
    while i < v.len() {
        let b = v[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                v.get(i + 1).copied().and_then(hex),
                v.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
}

/// Why a key could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(String);

const EXPECTED: &str = "expected `ip`, `ip/<v4 bits>[/<v6 bits>]`, `header:<name>`, `cookie:<name>`, `query:<name>`, `path:<segment number>`, `claim:<name>` or `route`, or several joined with `+`";

impl FromStr for KeySpec {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<KeySpec, KeyError> {
        let parts: Vec<Source> = s
            .split('+')
            .map(|p| p.trim().parse::<Source>())
            .collect::<Result<_, _>>()?;
        if parts.len() > MAX_PARTS {
            return Err(KeyError(format!(
                "found {} parts in `{s}`, expected at most {MAX_PARTS}",
                parts.len()
            )));
        }
        Ok(KeySpec {
            parts: parts.into(),
        })
    }
}

impl FromStr for Source {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Source, KeyError> {
        let err = |why: &str| KeyError(format!("found `{s}`{why}, {EXPECTED}"));
        if s == "ip" {
            return Ok(Source::ClientIp);
        }
        if s == "route" {
            return Ok(Source::Route);
        }
        if let Some(bits) = s.strip_prefix("ip/") {
            let mut it = bits.split('/');
            let v4 = it.next().and_then(|b| b.parse::<u8>().ok());
            let v6 = match it.next() {
                Some(b) => b.parse::<u8>().ok(),
                None => Some(64),
            };
            return match (v4, v6, it.next()) {
                (Some(v4), Some(v6), None) if (1..=32).contains(&v4) && (1..=128).contains(&v6) => {
                    Ok(Source::ClientNet { v4, v6 })
                }
                _ => Err(err(" (prefix lengths: IPv4 1-32, IPv6 1-128)")),
            };
        }
        let Some((kind, name)) = s.split_once(':') else {
            return Err(err(""));
        };
        let name = name.trim();
        if name.is_empty() {
            return Err(err(" (empty name)"));
        }
        match kind.trim() {
            "header" => HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map(Source::Header)
                .map_err(|_| err(" (not a valid header name)")),
            "cookie" => Ok(Source::Cookie(name.into())),
            "query" => Ok(Source::Query(name.into())),
            "claim" => Ok(Source::Claim(name.into())),
            "path" => match name.parse::<u16>() {
                Ok(n) if n >= 1 => Ok(Source::PathSegment(n)),
                _ => Err(err(" (path segments are numbered from 1)")),
            },
            _ => Err(err(" (unknown key source)")),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::ClientIp => f.write_str("ip"),
            Source::ClientNet { v4, v6 } => write!(f, "ip/{v4}/{v6}"),
            Source::Header(h) => write!(f, "header:{h}"),
            Source::Cookie(c) => write!(f, "cookie:{c}"),
            Source::Query(q) => write!(f, "query:{q}"),
            Source::PathSegment(n) => write!(f, "path:{n}"),
            Source::Claim(c) => write!(f, "claim:{c}"),
            Source::Route => f.write_str("route"),
        }
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(" + ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut h = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            h.append_header(k.to_string(), *v).unwrap();
        }
        h
    }

    fn key(spec: &str, r: &Request<'_>) -> Option<Vec<u8>> {
        let spec: KeySpec = spec.parse().unwrap();
        let mut buf = KeyBuf::new();
        spec.write(r, &mut buf).then(|| buf.as_bytes().to_vec())
    }

    #[test]
    fn every_source() {
        let h = req(
            "/v1/users/42?api_key=k%31&x=1",
            &[
                ("x-api-key", "abc"),
                ("cookie", "a=1; session=\"s9\""),
                ("x-multi", "a"),
                ("x-multi", "b"),
            ],
        );
        let claims = serde_json::json!({"sub": "alice", "plan": "pro", "org": {"id": 7}});
        let id = Identity {
            issuer: "main".into(),
            subject: Some("alice".into()),
            claims: claims.as_object().cloned().unwrap(),
        };
        let r = Request {
            header: &h,
            path: "/v1/users/42",
            client_ip: Some("198.51.100.7".parse().unwrap()),
            route: "users",
            identity: Some(&id),
        };
        assert_eq!(key("ip", &r).unwrap(), [198, 51, 100, 7]);
        assert_eq!(key("ip/24", &r).unwrap(), [24, 198, 51, 100, 0]);
        assert_eq!(key("header:X-Api-Key", &r).unwrap(), b"abc");
        assert_eq!(key("header:x-multi", &r).unwrap(), b"a,b");
        assert_eq!(key("cookie:session", &r).unwrap(), b"s9");
        assert_eq!(key("cookie:a", &r).unwrap(), b"1");
        assert_eq!(key("query:api_key", &r).unwrap(), b"k1");
        assert_eq!(key("path:1", &r).unwrap(), b"v1");
        assert_eq!(key("path:3", &r).unwrap(), b"42");
        assert_eq!(key("path:4", &r), None);
        assert_eq!(key("claim:plan", &r).unwrap(), b"pro");
        assert_eq!(key("claim:org.id", &r).unwrap(), b"7");
        assert_eq!(key("route", &r).unwrap(), b"users");
        assert_eq!(key("claim:sub + route", &r).unwrap(), b"alice\x1fusers");
        assert_eq!(key("header:nope", &r), None);
        assert_eq!(key("cookie:nope", &r), None);
        assert_eq!(key("query:nope", &r), None);
        // A missing part leaves no key, and the buffer as it was.
        let spec: KeySpec = "route + header:nope".parse().unwrap();
        let mut buf = KeyBuf::new();
        assert!(!spec.write(&r, &mut buf));
        assert!(buf.as_bytes().is_empty());
        // No token: no claim.
        let anon = Request {
            identity: None,
            ..r
        };
        assert_eq!(key("claim:sub", &anon), None);
    }

    #[test]
    fn long_keys_spill_to_the_heap_intact() {
        let long = "k".repeat(300);
        let h = req("/", &[("x-api-key", &long)]);
        let r = Request {
            header: &h,
            path: "/",
            client_ip: None,
            route: "route-name",
            identity: None,
        };
        let got = key("route + header:x-api-key", &r).unwrap();
        assert_eq!(got, format!("route-name\x1f{long}").into_bytes());
        let mut buf = KeyBuf::new();
        buf.extend_from_slice(&[1; INLINE]);
        buf.push(2);
        buf.truncate(INLINE - 1);
        assert_eq!(buf.len(), INLINE - 1);
        buf.clear();
        assert!(buf.is_empty());
    }

    #[test]
    fn networks_mask_the_address() {
        let h = req("/", &[]);
        let at = |ip: &str| Request {
            header: &h,
            path: "/",
            client_ip: Some(ip.parse().unwrap()),
            route: "r",
            identity: None,
        };
        assert_eq!(
            key("ip/24", &at("10.1.2.3")),
            key("ip/24", &at("10.1.2.200"))
        );
        assert_ne!(key("ip/24", &at("10.1.2.3")), key("ip/24", &at("10.1.3.3")));
        assert_eq!(
            key("ip/24", &at("2001:db8:1:2::1")),
            key("ip/24", &at("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            key("ip/24/48", &at("2001:db8:1:2::1")),
            key("ip/24/48", &at("2001:db8:2:2::1"))
        );
        // An IPv4-mapped IPv6 address is the IPv4 client.
        assert_eq!(
            key("ip", &at("::ffff:10.1.2.3")),
            key("ip", &at("10.1.2.3"))
        );
    }

    #[test]
    fn query_values_are_decoded_so_spellings_share_a_key() {
        let h1 = req("/?k=abc", &[]);
        let h2 = req("/?k=%61bc", &[]);
        let h3 = req("/?%6B=abc", &[]);
        let r = |h| Request {
            header: h,
            path: "/",
            client_ip: None,
            route: "r",
            identity: None,
        };
        assert_eq!(key("query:k", &r(&h1)), Some(b"abc".to_vec()));
        assert_eq!(key("query:k", &r(&h2)), Some(b"abc".to_vec()));
        assert_eq!(key("query:k", &r(&h3)), Some(b"abc".to_vec()));
        let mut out = KeyBuf::new();
        percent_decode_into(b"a%2", &mut out);
        assert_eq!(out.as_bytes(), b"a%2");
    }

    #[test]
    fn parse_errors_say_what_is_expected() {
        for bad in [
            "",
            "ip/33",
            "ip/24/129",
            "nope:x",
            "header:",
            "path:0",
            "ipv4",
        ] {
            let e = bad.parse::<KeySpec>().unwrap_err().to_string();
            assert!(e.contains("expected `ip`"), "{bad}: {e}");
        }
        let k: KeySpec = "claim:sub + ip/24".parse().unwrap();
        assert_eq!(k.to_string(), "claim:sub + ip/24/64");
        assert!(k.uses_claims());
    }
}
