//! Route matching: host group first (exact, then longest `*.` suffix, then catch-all), then the
//! longest path prefix whose method set allows the request. Built once per policy snapshot;
//! matching allocates nothing for lower-case hosts.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use super::file::PrefixMatch;
use super::{HostMatch, Route};

/// Anything the router can hold: a route spec, or a plan compiled from one.
pub trait Matchable {
    fn route(&self) -> &Route;
}

pub struct Router<T> {
    exact: HashMap<String, Vec<Arc<T>>>,
    /// `(".example.com", routes)`, longest suffix first.
    suffix: Vec<(String, Vec<Arc<T>>)>,
    any: Vec<Arc<T>>,
}

impl<T: Matchable> Router<T> {
    pub fn new(routes: &[Arc<T>]) -> Self {
        let mut exact: HashMap<String, Vec<Arc<T>>> = HashMap::new();
        let mut suffix: HashMap<String, Vec<Arc<T>>> = HashMap::new();
        let mut any = Vec::new();
        for item in routes {
            let route = item.route();
            if route.hosts.is_empty() {
                any.push(Arc::clone(item));
            }
            for h in &route.hosts {
                match h {
                    HostMatch::Exact(h) => exact.entry(h.clone()).or_default(),
                    HostMatch::Suffix(s) => suffix.entry(s.clone()).or_default(),
                }
                .push(Arc::clone(item));
            }
        }
        let mut suffix: Vec<_> = suffix.into_iter().collect();
        suffix.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        // Stable: among equal prefixes the file order decides (validation forbids overlaps).
        let by_prefix_len = |v: &mut Vec<Arc<T>>| {
            v.sort_by(|a, b| {
                b.route()
                    .path_prefix
                    .len()
                    .cmp(&a.route().path_prefix.len())
            })
        };
        exact.values_mut().for_each(by_prefix_len);
        suffix.iter_mut().for_each(|(_, v)| by_prefix_len(v));
        by_prefix_len(&mut any);
        Router { exact, suffix, any }
    }

    /// The matching route. `host` is checked and without port (see
    /// [`crate::host::checked_host`]), any case; `path` is canonical (see [`super::path`]).
    pub fn find(&self, host: &str, path: &str, method: &Method) -> Match<'_, T> {
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let (group, _) = self.group(host);
        // The group is sorted by prefix length, longest first. The longest matching prefix
        // decides; its routes (validation keeps their method sets disjoint) either allow the
        // method or the answer is 405 — a shorter prefix is never tried.
        let mut longest: Option<usize> = None;
        let mut allow: Vec<&Method> = Vec::new();
        for item in group {
            let r = item.route();
            if longest.is_some_and(|len| r.path_prefix.len() < len) {
                break;
            }
            if !r.matches_path(path) {
                continue;
            }
            longest = Some(r.path_prefix.len());
            match &r.methods {
                None => return Match::Found(item),
                Some(ms) if ms.contains(method) => return Match::Found(item),
                Some(ms) => allow.extend(ms),
            }
        }
        if longest.is_none() {
            return Match::None;
        }
        let mut allow: Vec<Method> = allow.into_iter().cloned().collect();
        allow.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        allow.dedup();
        Match::MethodNotAllowed(allow)
    }
}

/// The result of [`Router::find`].
impl<T> Router<T> {
    /// The routes a (lower-case) host is matched against, longest prefix first: those of
    /// its exact host, else of the longest `*.suffix` it ends with, else the routes without
    /// hosts. The group is chosen by host alone; the path and method are then matched
    /// only within it.
    pub fn group(&self, host: &str) -> (&[Arc<T>], HostGroup<'_>) {
        let host = host.strip_suffix('.').unwrap_or(host);
        if let Some(g) = self.exact.get(host) {
            return (g, HostGroup::Exact);
        }
        match self
            .suffix
            .iter()
            .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
        {
            Some((s, g)) => (g, HostGroup::Suffix(s)),
            None => (&self.any, HostGroup::Any),
        }
    }
}

/// Which host group a request fell in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostGroup<'a> {
    Exact,
    /// `*.example.com`, stored as `.example.com`.
    Suffix(&'a str),
    /// No route names the host: the routes without hosts.
    Any,
}

#[derive(Debug)]
pub enum Match<'a, T> {
    Found(&'a Arc<T>),
    /// Host and path match, the method does not: these methods would.
    MethodNotAllowed(Vec<Method>),
    None,
}

impl<'a, T> Match<'a, T> {
    pub fn found(self) -> Option<&'a Arc<T>> {
        match self {
            Match::Found(t) => Some(t),
            _ => None,
        }
    }
}

impl Route {
    /// Whether `path` (canonical) is under this route's prefix.
    pub fn matches_path(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix(self.path_prefix.as_str()) else {
            return false;
        };
        match self.prefix_match {
            PrefixMatch::Raw => true,
            PrefixMatch::Segment => {
                rest.is_empty() || rest.starts_with('/') || self.path_prefix.ends_with('/')
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, hosts: &[&str], prefix: &str, methods: Option<Vec<Method>>) -> Route {
        Route {
            name: Arc::from(name),
            hosts: hosts
                .iter()
                .map(|h| match h.strip_prefix("*") {
                    Some(s) => HostMatch::Suffix(s.to_string()),
                    None => HostMatch::Exact(h.to_string()),
                })
                .collect(),
            path_prefix: prefix.into(),
            methods,
            target: crate::shard::RouteTarget::Cluster(Arc::from("c")),
            canary: None,
            prefix_match: PrefixMatch::Segment,
            forward_path: Default::default(),
            auth: None,
            protection: Default::default(),
            cache: None,
            timeout: None,
            retry_idempotent_writes: false,
        }
    }

    #[test]
    fn precedence() {
        let routes: Vec<Arc<Route>> = [
            route("any-root", &[], "/", None),
            route("exact-root", &["api.example.com"], "/", None),
            route("exact-v1", &["api.example.com"], "/v1/", None),
            route("wild", &["*.example.com"], "/", None),
            route("wild-deep", &["*.eu.example.com"], "/", None),
            route(
                "post-only",
                &["api.example.com"],
                "/v1/write",
                Some(vec![Method::POST]),
            ),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let r = Router::new(&routes);
        let name = |h: &str, p: &str, m: Method| -> Option<&str> {
            r.find(crate::host::strip_port(h), p, &m)
                .found()
                .map(|r| &*r.name)
        };
        assert_eq!(
            name("api.example.com", "/v1/x", Method::GET),
            Some("exact-v1")
        );
        assert_eq!(
            name("API.Example.com:8443", "/other", Method::GET),
            Some("exact-root")
        );
        assert_eq!(
            name("api.example.com", "/v1/write", Method::POST),
            Some("post-only")
        );
        // The longest prefix decides: its route does not allow GET, so no fall-through.
        assert!(matches!(
            r.find("api.example.com", "/v1/write", &Method::GET),
            Match::MethodNotAllowed(ref allow) if allow == &[Method::POST]
        ));
        assert_eq!(name("x.example.com", "/", Method::GET), Some("wild"));
        assert_eq!(
            name("a.b.eu.example.com", "/", Method::GET),
            Some("wild-deep")
        );
        assert_eq!(name("example.com", "/", Method::GET), Some("any-root"));
        assert_eq!(name("[::1]:80", "/", Method::GET), Some("any-root"));
    }

    #[test]
    fn no_catch_all_means_none() {
        let routes = vec![Arc::new(route("only", &["a.test"], "/api", None))];
        let r = Router::new(&routes);
        assert!(matches!(r.find("a.test", "/", &Method::GET), Match::None));
        assert!(matches!(
            r.find("b.test", "/api", &Method::GET),
            Match::None
        ));
    }

    #[test]
    fn prefixes_match_on_segment_boundaries_unless_raw() {
        let mut raw = route("raw", &[], "/raw", None);
        raw.prefix_match = PrefixMatch::Raw;
        let routes: Vec<Arc<Route>> = [
            route("root", &[], "/", None),
            route("api", &[], "/api", None),
            route("dir", &[], "/dir/", None),
            raw,
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let r = Router::new(&routes);
        let name = |p: &str| {
            r.find("x.test", p, &Method::GET)
                .found()
                .map(|r| r.name.to_string())
        };
        assert_eq!(name("/api").as_deref(), Some("api"));
        assert_eq!(name("/api/v1").as_deref(), Some("api"));
        assert_eq!(name("/apix").as_deref(), Some("root"));
        assert_eq!(name("/dir/x").as_deref(), Some("dir"));
        assert_eq!(name("/dir").as_deref(), Some("root"));
        assert_eq!(name("/rawx").as_deref(), Some("raw"));
    }
}
