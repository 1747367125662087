//! Route matching: host group first (exact, then longest `*.` suffix, then catch-all), then the
//! longest path prefix whose method set allows the request. Built once per policy snapshot;
//! matching allocates nothing for lower-case hosts.

use std::collections::HashMap;

use http::Method;

use crate::policy::{HostMatch, Route};

#[derive(Debug, Default)]
pub struct Router {
    exact: HashMap<String, Vec<usize>>,
    /// `(".example.com", routes)`, longest suffix first.
    suffix: Vec<(String, Vec<usize>)>,
    any: Vec<usize>,
}

impl Router {
    pub fn new(routes: &[Route]) -> Self {
        let mut r = Router::default();
        let mut suffix: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, route) in routes.iter().enumerate() {
            if route.hosts.is_empty() {
                r.any.push(i);
            }
            for h in &route.hosts {
                match h {
                    HostMatch::Exact(h) => r.exact.entry(h.clone()).or_default().push(i),
                    HostMatch::Suffix(s) => suffix.entry(s.clone()).or_default().push(i),
                }
            }
        }
        r.suffix = suffix.into_iter().collect();
        r.suffix
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        let by_prefix_len = |v: &mut Vec<usize>| {
            v.sort_by(|&a, &b| {
                routes[b]
                    .path_prefix
                    .len()
                    .cmp(&routes[a].path_prefix.len())
            })
        };
        r.exact.values_mut().for_each(by_prefix_len);
        r.suffix.iter_mut().for_each(|(_, v)| by_prefix_len(v));
        by_prefix_len(&mut r.any);
        r
    }

    /// Index of the matching route. `host` may carry a port and any case.
    pub fn find(&self, routes: &[Route], host: &str, path: &str, method: &Method) -> Option<usize> {
        let host = strip_port(host);
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
        group.iter().copied().find(|&i| {
            let r = &routes[i];
            path.starts_with(r.path_prefix.as_str())
                && r.methods.as_ref().is_none_or(|ms| ms.contains(method))
        })
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
            cluster: 0,
        }
    }

    #[test]
    fn precedence() {
        let routes = vec![
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
        ];
        let r = Router::new(&routes);
        let name =
            |h: &str, p: &str, m: Method| r.find(&routes, h, p, &m).map(|i| &*routes[i].name);
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
        let routes = vec![route("only", &["a.test"], "/api", None)];
        let r = Router::new(&routes);
        assert_eq!(r.find(&routes, "a.test", "/", &Method::GET), None);
        assert_eq!(r.find(&routes, "b.test", "/api", &Method::GET), None);
    }
}
