//! Route matching: host group first (exact, then longest `*.` suffix, then catch-all), then the
//! longest path prefix whose method set allows the request. Built once per policy snapshot;
//! matching allocates nothing for lower-case hosts.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

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

    /// The matching route. `host` is without port (see [`crate::host::strip_port`]), any case.
    pub fn find(&self, host: &str, path: &str, method: &Method) -> Option<&Arc<T>> {
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        let group = self
            .exact
            .get(host)
            .or_else(|| {
                self.suffix
                    .iter()
                    .find(|(s, _)| host.len() > s.len() && host.ends_with(s.as_str()))
                    .map(|(_, v)| v)
            })
            .unwrap_or(&self.any);
        group.iter().find(|item| {
            let r = item.route();
            path.starts_with(r.path_prefix.as_str())
                && r.methods.as_ref().is_none_or(|ms| ms.contains(method))
        })
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
            cluster: Arc::from("c"),
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
            r.find(crate::host::strip_port(h), p, &m).map(|r| &*r.name)
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
        assert_eq!(
            name("api.example.com", "/v1/write", Method::GET),
            Some("exact-v1")
        );
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
        assert!(r.find("a.test", "/", &Method::GET).is_none());
        assert!(r.find("b.test", "/api", &Method::GET).is_none());
    }
}
