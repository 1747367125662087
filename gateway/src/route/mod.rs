//! Routing: which route, and so which plan, serves a request.
//!
//! - [`file`]: `[[route]]` as written (name, hosts, path prefix, methods, cluster);
//! - [`validate()`]: pure checks, including duplicate matches and the cluster each route
//!   names (against the names the upstream module recorded);
//! - [`Route`]: the immutable spec in the snapshot;
//! - [`RoutePlan`]: the runtime of one route — everything the request path needs for it
//!   (its cluster, its metrics handles, and, as capabilities land, its verifier, limiters,
//!   breaker and cache policy), shared by `Arc` so the proxy holds one pointer per request
//!   instead of indices into vectors kept in step;
//! - [`Router`]: the compiled matcher over plans, rebuilt with every runtime;
//! - phase steps: [`resolve`] in `request_filter` (canonical host and path, then the
//!   match: 400 for a bad host or path, 404, 405 with `Allow`), and
//!   [`rewrite_upstream_target`] in `upstream_request_filter` (the canonical path, and the
//!   absolute-form authority as `Host`).

pub mod file;
pub mod path;
mod router;
mod validate;

use std::sync::Arc;

use http::Method;
use pingora::proxy::Session;

pub use file::{ForwardPath, PrefixMatch};
pub use router::{HostGroup, Match, Matchable, Router};
pub(crate) use validate::methods_overlap;
pub use validate::validate;

use crate::host;
use crate::metrics::RouteMetrics;
use crate::reject::Reject;
use crate::upstream::Cluster;
use edgeway_record::outcome::ErrorClass;

/// A validated route.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    pub name: Arc<str>,
    pub hosts: Vec<HostMatch>,
    pub path_prefix: String,
    /// `None` accepts any method.
    pub methods: Option<Vec<Method>>,
    /// The cluster that serves it, or the shard map that picks one (names validated).
    pub target: crate::shard::RouteTarget,
    /// A sticky share of requests for a canary cluster.
    pub canary: Option<crate::shard::CanarySpec>,
    pub prefix_match: PrefixMatch,
    pub forward_path: ForwardPath,
    /// Name of the auth rule (validated to exist).
    pub auth: Option<Arc<str>>,
    /// Rate limits, IP lists and shedding priority.
    pub protection: crate::limit::RouteRules,
    /// Name of the cache policy (validated to exist).
    pub cache: Option<Arc<str>>,
    /// Deadline over all upstream attempts, when shorter than the cluster's.
    pub timeout: Option<std::time::Duration>,
    /// PUT and DELETE may be retried like GET.
    pub retry_idempotent_writes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// Lower-case host without port.
    Exact(String),
    /// `*.example.com` is stored as the suffix `.example.com`.
    Suffix(String),
}

impl Matchable for Route {
    fn route(&self) -> &Route {
        self
    }
}

/// One route compiled for the request path.
pub struct RoutePlan {
    pub spec: Arc<Route>,
    /// The route's cluster; `None` on a sharded route (the shard step picks one per request).
    pub cluster: Option<Arc<Cluster>>,
    /// That cluster's breaker, outlier ejection, bulkhead and retry budget; `None` on a
    /// sharded route (the guard of the cluster the shard step picks is used).
    pub guard: Option<Arc<crate::resilience::Guard>>,
    /// The shard map and key, on a sharded route.
    pub shard: Option<crate::shard::RouteShard>,
    pub canary: Option<crate::shard::RouteCanary>,
    pub metrics: RouteMetrics,
    /// The route's authentication, when it has an auth rule.
    pub auth: Option<Arc<crate::auth::RouteAuth>>,
    pub limits: crate::limit::RouteLimits,
    /// The route's cache policy and micro-cache, when it names one.
    pub cache: Option<crate::cache::RouteCache>,
}

impl Matchable for RoutePlan {
    fn route(&self) -> &Route {
        &self.spec
    }
}

impl RoutePlan {
    pub fn name(&self) -> &str {
        &self.spec.name
    }
}

/// The authority a request is for, before any check: the `:authority` of HTTP/2, the
/// authority of an HTTP/1 absolute-form target (`GET http://host/x`: RFC 9112 §3.2.2 says the
/// `Host` header is then ignored, and Pingora forwards the target's authority), else `Host`.
pub fn request_host(session: &Session) -> &str {
    let req = session.req_header();
    if let Some(a) = req.uri.authority() {
        return a.as_str();
    }
    if let Some(a) = absolute_form_authority(req.raw_path()) {
        // Not UTF-8: cannot be a valid host, and `checked_host` refuses the replacement.
        return std::str::from_utf8(a).unwrap_or("\u{fffd}");
    }
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
}

/// The authority of an absolute-form target (`http://host:port/path` → `host:port`).
fn absolute_form_authority(target: &[u8]) -> Option<&[u8]> {
    // Origin-form (`/path`), the form of nearly every request: nothing to scan.
    if target.first() == Some(&b'/') {
        return None;
    }
    let scheme_end = target.windows(3).position(|w| w == b"://")?;
    let scheme = &target[..scheme_end];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return None;
    }
    let rest = &target[scheme_end + 3..];
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// What routing decided for a request.
pub struct Resolved {
    pub plan: Arc<RoutePlan>,
    /// The canonical path, when it differs from the one the client sent.
    pub canonical_path: Option<String>,
}

/// `request_filter` step: make host and path canonical, then find the plan of the route that
/// matches host, path and method. 400 for a host or path that cannot be made canonical, 404
/// when nothing matches, 405 with `Allow` when the longest matching prefix does not allow
/// the method.
pub fn resolve(router: &Router<RoutePlan>, session: &Session) -> Result<Resolved, Reject> {
    let req = session.req_header();
    let host = host::checked_host(request_host(session))
        .ok_or_else(|| Reject::new(ErrorClass::InvalidHost))?;
    let path = path::normalize(req.uri.path()).map_err(|e| {
        Reject::new(ErrorClass::BadRequest).message(format!("malformed request path: {e}"))
    })?;
    match router.find(host, &path, &req.method) {
        Match::Found(plan) => Ok(Resolved {
            plan: Arc::clone(plan),
            canonical_path: match path {
                std::borrow::Cow::Owned(p) => Some(p),
                std::borrow::Cow::Borrowed(_) => None,
            },
        }),
        Match::MethodNotAllowed(allow) => {
            let allow: Vec<&str> = allow.iter().map(Method::as_str).collect();
            Err(Reject::new(ErrorClass::MethodNotAllowed)
                .header(http::header::ALLOW, allow.join(", ")))
        }
        Match::None => Err(Reject::new(ErrorClass::NoRoute)),
    }
}

/// `upstream_request_filter` step: send the upstream an origin-form target (with the
/// canonical path unless the route forwards the original) and, for an absolute-form request,
/// the target's authority as `Host` — the authority the request was routed by.
pub fn rewrite_upstream_target(
    session: &Session,
    plan: &RoutePlan,
    canonical_path: Option<&str>,
    upstream_request: &mut pingora::http::RequestHeader,
) -> pingora::Result<()> {
    let req = session.req_header();
    let absolute =
        req.uri.authority().is_none() && absolute_form_authority(req.raw_path()).is_some();
    let path = match (plan.spec.forward_path, canonical_path) {
        (ForwardPath::Normalized, Some(p)) => Some(p),
        _ if absolute => Some(req.uri.path()),
        _ => None,
    };
    if let Some(path) = path {
        let target = match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let uri = target.parse::<http::Uri>().map_err(|e| {
            pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "upstream target", e)
        })?;
        upstream_request.set_uri(uri);
    }
    if absolute {
        upstream_request.insert_header(http::header::HOST, request_host(session).to_string())?;
    }
    Ok(())
}
