//! Forwarding: who the client is, and what the upstream is told about it.
//!
//! - file: `[forwarding]` ([`ForwardingFile`]), at most one per policy;
//! - [`validate()`]: pure; CIDR blocks;
//! - spec: [`Forwarding`] (the trusted proxy networks);
//! - phase steps: [`request_id`] and [`client_ip`] in `request_filter` (the request's id,
//!   kept or replaced by the policy, and the effective client, after the trusted-proxy rule) and [`rewrite_upstream_headers`] in `upstream_request_filter`
//!   (`X-Forwarded-*` and `Forwarded` replaced, and `X-Real-IP`, `True-Client-IP` and the
//!   like removed, unless the peer is a trusted proxy).
//!
//! No runtime state: the spec is all it needs.

use std::net::IpAddr;

use http::header::HeaderName;
use ipnet::IpNet;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::policy::validate::{at_most_one, parse_cidr, Errors, Files};

// Inserted by their written names: Pingora's `insert_header` takes a `&'static str` as the
// wire spelling as it is, where a `HeaderName` is copied and title-cased on every call.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Headers that name the client or the original request and that some upstreams trust.
/// From an untrusted peer they are removed: only the gateway may say who the client is.
static SPOOFABLE: [HeaderName; 6] = [
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
];

/// Every `X-Forwarded-For` line, in order, joined with `, ` (RFC 9110 §5.3: several lines
/// are one comma-separated list), so that a forged first line cannot stand alone.
#[inline(never)]
fn xff_joined(headers: &http::HeaderMap) -> Option<String> {
    let mut lines = headers.get_all(X_FORWARDED_FOR).iter();
    let first = lines.next()?;
    let mut joined = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for line in lines {
        joined.push_str(", ");
        joined.push_str(&String::from_utf8_lossy(line.as_bytes()));
    }
    Some(joined)
}

/// `[forwarding]`: trust in `X-Forwarded-*` headers sent by the client.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardingFile {
    /// CIDR blocks (e.g. `10.0.0.0/8`) of proxies in front of the gateway whose
    /// `X-Forwarded-For` is kept and appended to. From any other peer the header is replaced.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// What to do with a well-formed `X-Request-Id` sent by a peer that is not a trusted
    /// proxy: `keep` it (the default; the record's `request_id_from_client` says it came from
    /// the client) or `replace` it with a fresh id, so that one client cannot give its request
    /// another request's id. A trusted proxy's id is always kept.
    #[serde(default)]
    pub untrusted_request_id: UntrustedRequestId,
}

/// `[forwarding] untrusted_request_id`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UntrustedRequestId {
    #[default]
    Keep,
    Replace,
}

/// The validated `[forwarding]` section.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forwarding {
    pub trusted_proxies: Vec<IpNet>,
    pub untrusted_request_id: UntrustedRequestId,
}

impl Forwarding {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// `[forwarding]`, from at most one file.
pub fn validate(errs: &mut Errors, files: &Files) -> Forwarding {
    let mut forwarding = Forwarding::default();
    let Some((fi, fw)) = at_most_one(errs, files, "forwarding", |f| f.forwarding.as_ref()) else {
        return forwarding;
    };
    forwarding.untrusted_request_id = fw.get_ref().untrusted_request_id;
    for (k, cidr) in fw.get_ref().trusted_proxies.iter().enumerate() {
        match parse_cidr(cidr.get_ref()) {
            Ok(net) => forwarding.trusted_proxies.push(net),
            Err(msg) => errs.at(
                fi,
                cidr.span(),
                &format!("forwarding.trusted_proxies[{k}]"),
                msg,
            ),
        }
    }
    forwarding
}

/// The TCP peer's address.
pub fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// `request_filter` step: the request's id, and whether it is the one the client sent. A
/// well-formed incoming `X-Request-Id` is kept from a trusted proxy, and from other peers
/// unless the policy says `replace`; otherwise a new id is minted.
pub fn request_id(session: &Session, forwarding: &Forwarding) -> (String, bool) {
    let incoming = session
        .req_header()
        .headers
        .get(crate::request_id::X_REQUEST_ID)
        .map(|v| v.as_bytes());
    let keep = forwarding.untrusted_request_id == UntrustedRequestId::Keep
        || peer_ip(session).is_some_and(|ip| forwarding.is_trusted(ip));
    crate::request_id::accept_or_generate(incoming.filter(|_| keep))
}

/// `request_filter` step: the client is the TCP peer, or, when the peer is a trusted proxy,
/// the right-most `X-Forwarded-For` hop that is not itself trusted.
pub fn client_ip(session: &Session, forwarding: &Forwarding) -> Option<IpAddr> {
    let peer = peer_ip(session)?;
    if !forwarding.is_trusted(peer) {
        return Some(peer);
    }
    let Some(xff) = xff_joined(&session.req_header().headers) else {
        return Some(peer);
    };
    let mut last = peer;
    for hop in xff.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if forwarding.is_trusted(ip) => last = ip,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(last)
}

/// `upstream_request_filter` step: tell the upstream who the client is. From an untrusted
/// peer every client-sent forwarding header is replaced; a trusted proxy's are kept and
/// `X-Forwarded-For` is appended to.
pub fn rewrite_upstream_headers(
    session: &Session,
    forwarding: &Forwarding,
    upstream_request: &mut RequestHeader,
) -> pingora::Result<()> {
    let host = crate::route::request_host(session);
    let peer_ip = peer_ip(session);
    let trusted = peer_ip.is_some_and(|ip| forwarding.is_trusted(ip));
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());

    // A client's own lines are read only from a trusted proxy (else they are replaced).
    let prior = if trusted {
        xff_joined(&upstream_request.headers)
    } else {
        None
    };
    let xff = match (prior, peer_ip) {
        (Some(prior), Some(ip)) => Some(format!("{prior}, {ip}")),
        (None, Some(ip)) => Some(ip.to_string()),
        (_, None) => None,
    };
    match xff {
        Some(v) => upstream_request.insert_header("X-Forwarded-For", v)?,
        None => {
            upstream_request.remove_header(&X_FORWARDED_FOR);
        }
    }
    if !trusted || upstream_request.headers.get(X_FORWARDED_PROTO).is_none() {
        let proto = http::HeaderValue::from_static(if tls { "https" } else { "http" });
        upstream_request.insert_header("X-Forwarded-Proto", proto)?;
    }
    if !trusted || upstream_request.headers.get(X_FORWARDED_HOST).is_none() {
        if host.is_empty() {
            upstream_request.remove_header(&X_FORWARDED_HOST);
        } else {
            upstream_request.insert_header("X-Forwarded-Host", host)?;
        }
    }
    if !trusted {
        strip_spoofable(upstream_request);
    }
    Ok(())
}

/// Remove `Forwarded` and the headers in [`SPOOFABLE`] sent by an untrusted peer. Kept out
/// of line so that `bench/profile` can count its cost on its own.
#[inline(never)]
fn strip_spoofable(upstream_request: &mut RequestHeader) {
    // Usually none of them is there: one pass over the request's few names (a standard name
    // never equals these, a custom one is compared by length first) instead of a hash
    // lookup for each of the seven.
    let mut present = [false; 7];
    for name in upstream_request.headers.keys() {
        if *name == FORWARDED {
            present[6] = true;
        } else if let Some(i) = SPOOFABLE.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    for (i, h) in SPOOFABLE.iter().chain([&FORWARDED]).enumerate() {
        if present[i] {
            upstream_request.remove_header(h);
        }
    }
}
