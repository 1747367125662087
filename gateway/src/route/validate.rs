//! `[[route]]` → [`Route`]: pure; checks names, hosts, prefixes, methods, the cluster each
//! route names, and that no two routes claim the same match.

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

use super::file::RouteFile;
use super::{HostMatch, Route};
use crate::host::valid_hostname;
use crate::policy::validate::{duration, lookup, valid_name, Errors, Files, Names};

/// Every `[[route]]` across files, in file order.
pub fn validate(errs: &mut Errors, files: &Files, names: &Names) -> Vec<Arc<Route>> {
    let mut routes: Vec<Arc<Route>> = Vec::new();
    let mut route_names: HashMap<String, usize> = HashMap::new();
    // (host key, prefix) → (methods, route name) already claimed, for duplicate detection.
    type Claims = Vec<(Option<Vec<Method>>, String)>;
    let mut claimed: HashMap<(Option<HostMatch>, String), Claims> = HashMap::new();
    for (fi, f) in files {
        for (ri, r) in f.routes.iter().enumerate() {
            let Some(route) = route(errs, *fi, ri, r.get_ref(), names) else {
                continue;
            };
            let rf = r.get_ref();
            let name = rf.name.get_ref().clone();
            if let Some(other) = route_names.get(&name) {
                let other = errs.path(*other);
                errs.at(
                    *fi,
                    rf.name.span(),
                    &format!("route[{ri}].name"),
                    format!("duplicate route name `{name}`, already used in {other}"),
                );
                continue;
            }
            route_names.insert(name.clone(), *fi);
            let host_keys: Vec<Option<HostMatch>> = if route.hosts.is_empty() {
                vec![None]
            } else {
                route.hosts.iter().cloned().map(Some).collect()
            };
            let mut dup = None;
            for hk in &host_keys {
                let entry = claimed
                    .entry((hk.clone(), route.path_prefix.clone()))
                    .or_default();
                if let Some((_, other)) = entry
                    .iter()
                    .find(|(m, _)| methods_overlap(m, &route.methods))
                {
                    dup = Some(other.clone());
                    break;
                }
            }
            if let Some(other) = dup {
                errs.at(
                    *fi,
                    rf.name.span(),
                    &format!("route[{ri}]"),
                    format!(
                        "duplicate route: same hosts, path_prefix `{}` and methods as route `{other}`, expected each match to be unique",
                        route.path_prefix
                    ),
                );
                continue;
            }
            for hk in host_keys {
                claimed
                    .entry((hk, route.path_prefix.clone()))
                    .or_default()
                    .push((route.methods.clone(), name.clone()));
            }
            errs.define(format!("route.{name}"), *fi, rf.name.span());
            routes.push(Arc::new(route));
        }
    }

    routes
}

/// Whether two method sets (`None`: any method) share a method.
pub(crate) fn methods_overlap(a: &Option<Vec<Method>>, b: &Option<Vec<Method>>) -> bool {
    match (a, b) {
        (None, _) | (_, None) => true,
        (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
    }
}

fn route(errs: &mut Errors, fi: usize, ri: usize, r: &RouteFile, names: &Names) -> Option<Route> {
    let before = errs.count();
    let f = format!("route[{ri}]");
    let name = r.name.get_ref();
    if !valid_name(name) {
        errs.at(
            fi,
            r.name.span(),
            &format!("{f}.name"),
            format!("found `{name}`, expected letters, digits, `-`, `_` or `.`"),
        );
    }
    let mut hosts = Vec::new();
    for (k, h) in r.hosts.iter().enumerate() {
        let raw = h.get_ref().trim().to_ascii_lowercase();
        let m = if let Some(suffix) = raw.strip_prefix("*.") {
            valid_hostname(suffix).then(|| HostMatch::Suffix(format!(".{suffix}")))
        } else {
            valid_hostname(&raw).then(|| HostMatch::Exact(raw.clone()))
        };
        match m {
            Some(m) if hosts.contains(&m) => errs.at(
                fi,
                h.span(),
                &format!("{f}.hosts[{k}]"),
                format!("duplicate host `{raw}`"),
            ),
            Some(m) => hosts.push(m),
            None => errs.at(
                fi,
                h.span(),
                &format!("{f}.hosts[{k}]"),
                format!(
                    "found `{}`, expected a host name like `api.example.com` or `*.example.com`",
                    h.get_ref()
                ),
            ),
        }
    }
    let path_prefix = match &r.path_prefix {
        None => "/".to_string(),
        Some(p) if p.get_ref().starts_with('/') && !p.get_ref().contains(['?', '#', ' ']) => {
            // Requests are matched in canonical form, so a prefix in another form could
            // never match.
            match super::path::normalize(p.get_ref()) {
                Ok(c) if c == p.get_ref().as_str() => p.get_ref().clone(),
                Ok(c) => {
                    errs.at(
                        fi,
                        p.span(),
                        &format!("{f}.path_prefix"),
                        format!(
                            "found `{}`, expected its canonical form `{c}` (requests are matched after dot segments, repeated slashes and escapes of unreserved characters are normalised)",
                            p.get_ref()
                        ),
                    );
                    String::new()
                }
                Err(e) => {
                    errs.at(
                        fi,
                        p.span(),
                        &format!("{f}.path_prefix"),
                        format!("found `{}`: {e}", p.get_ref()),
                    );
                    String::new()
                }
            }
        }
        Some(p) => {
            errs.at(
                fi,
                p.span(),
                &format!("{f}.path_prefix"),
                format!(
                    "found `{}`, expected a path starting with `/` without `?` or `#`",
                    p.get_ref()
                ),
            );
            String::new()
        }
    };
    let mut methods = Vec::new();
    for (k, m) in r.methods.iter().enumerate() {
        let upper = m.get_ref().to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(me) if upper.bytes().all(|b| b.is_ascii_uppercase()) => methods.push(me),
            _ => errs.at(
                fi,
                m.span(),
                &format!("{f}.methods[{k}]"),
                format!(
                    "found `{}`, expected an HTTP method like `GET`",
                    m.get_ref()
                ),
            ),
        }
    }
    let timeout = r.timeout.as_ref().and_then(|_| {
        duration(
            errs,
            fi,
            &format!("{f}.timeout"),
            &r.timeout,
            std::time::Duration::ZERO,
        )
    });
    let (target, canary) = crate::shard::route_rules(errs, fi, ri, r, names);
    let known_auth = r.auth.as_ref().is_none_or(|a| {
        lookup(
            errs,
            fi,
            a,
            &format!("{f}.auth"),
            "auth rules",
            &names.auth_rules,
        )
    });
    let protection = crate::limit::route_rules(errs, fi, ri, r, names);
    let known_cache = r.cache.as_ref().is_none_or(|c| {
        lookup(
            errs,
            fi,
            c,
            &format!("{f}.cache"),
            "cache policies",
            &names.cache_policies,
        )
    });
    if errs.count() > before || target.is_none() || !known_auth || !known_cache {
        return None;
    }
    Some(Route {
        name: Arc::from(name.as_str()),
        hosts,
        path_prefix,
        methods: (!methods.is_empty()).then_some(methods),
        target: target?,
        canary,
        prefix_match: r.prefix_match,
        forward_path: r.forward_path,
        auth: r.auth.as_ref().map(|a| Arc::from(a.get_ref().as_str())),
        protection,
        cache: r.cache.as_ref().map(|c| Arc::from(c.get_ref().as_str())),
        timeout,
        retry_idempotent_writes: r.retry_idempotent_writes,
    })
}
