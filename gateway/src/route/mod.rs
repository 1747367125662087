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
//! - phase step: [`resolve`] in `request_filter`.

pub mod file;
mod router;
mod validate;

use std::sync::Arc;

use http::Method;
use pingora::proxy::Session;

pub use router::{Matchable, Router};
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
    /// Name of the cluster that serves it (validated to exist).
    pub cluster: Arc<str>,
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
    pub cluster: Arc<Cluster>,
    pub metrics: RouteMetrics,
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

/// The host a request is for: the authority of an absolute-form target, else `Host`.
pub fn request_host(session: &Session) -> &str {
    let req = session.req_header();
    req.uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
}

/// `request_filter` step: the plan of the route that matches host, path and method.
pub fn resolve(router: &Router<RoutePlan>, session: &Session) -> Result<Arc<RoutePlan>, Reject> {
    let req = session.req_header();
    router
        .find(
            host::strip_port(request_host(session)),
            req.uri.path(),
            &req.method,
        )
        .cloned()
        .ok_or_else(|| Reject::new(ErrorClass::NoRoute))
}
