//! Lint warnings: policies that are valid but probably not what their author meant, found by
//! looking across capabilities (routes with auth rules, limits, cache policies) once
//! validation has built the [`Snapshot`].
//!
//! Data enters as a validated snapshot and leaves as located [`PolicyError`]s that
//! [`super::validate::validate`] appends to `Snapshot.warnings`: `gateway check` prints them
//! (and fails on them with `--deny-warnings`), the gateway logs them at every load. Nothing
//! here changes what the gateway does.
//!
//! Questions about which route serves a request are answered by asking the real
//! [`Router`] (most specific host group first — exact host, longest `*.` suffix, then routes
//! without `hosts` — then the longest matching prefix, never falling back to a shorter one or
//! to a less specific host group), so a lint agrees with the proxy by construction.

use std::sync::Arc;

use http::Method;

use super::{PolicyError, Snapshot};
use crate::auth::spec::{AuthMode, RuleSpec};
use crate::cache::spec::{AuthenticatedMode, CachePolicy};
use crate::key::Source;
use crate::limit::{LimitSpec, Mode};
use crate::route::{methods_overlap, HostMatch, Match, Route, Router};

/// Every lint warning of `s`, in route order.
pub fn lint(s: &Snapshot) -> Vec<PolicyError> {
    let router = Router::new(&s.routes);
    let mut out = Vec::new();
    for r in &s.routes {
        never_matches(s, &router, r, &mut out);
        open_inside_authenticated(s, r, &mut out);
        broad_rule_not_applied(s, &router, r, &mut out);
        client_keyed_limits(s, r, &mut out);
    }
    public_cache_for_credentials(s, &mut out);
    out
}

/// A warning placed at the definition `key` (`route.account`) of `s`.
pub(crate) fn at(s: &Snapshot, key: &str, field: String, message: String) -> PolicyError {
    let origin = s.origins.get(key);
    PolicyError {
        file: origin.map(|o| o.file.clone()).unwrap_or_default(),
        line: origin.map_or(0, |o| o.line),
        column: origin.map_or(0, |o| o.column),
        field,
        message,
    }
}

/// A warning about route `r`'s `field` (empty: the route as a whole), at its name.
fn on_route(s: &Snapshot, r: &Route, field: &str, message: String) -> PolicyError {
    let key = format!("route.{}", r.name);
    let field = if field.is_empty() {
        key.clone()
    } else {
        format!("{key}.{field}")
    };
    at(s, &key, field, message)
}

/// `file:line` of the definition `key`, for messages that name a second place.
pub(crate) fn place(s: &Snapshot, key: &str) -> String {
    match s.origins.get(key) {
        Some(o) => format!("{}:{}", o.file.display(), o.line),
        None => key.to_string(),
    }
}

/// The host groups a route is in: one per host, or the group of routes without `hosts`.
pub(crate) fn groups(r: &Route) -> Vec<Option<HostMatch>> {
    if r.hosts.is_empty() {
        vec![None]
    } else {
        r.hosts.iter().cloned().map(Some).collect()
    }
}

/// A host name that the router puts in `group` and no more specific one.
pub(crate) fn probe_host(group: &Option<HostMatch>) -> String {
    match group {
        Some(HostMatch::Exact(h)) => h.clone(),
        Some(HostMatch::Suffix(s)) => format!("edgeway-lint-probe{s}"),
        None => "edgeway-lint-probe.invalid".into(),
    }
}

/// How a group is written in a policy: `api.example.com`, `*.example.com`, `any host`.
pub(crate) fn group_text(group: &Option<HostMatch>) -> String {
    match group {
        Some(HostMatch::Exact(h)) => h.clone(),
        Some(HostMatch::Suffix(s)) => format!("*{s}"),
        None => "any host".into(),
    }
}

/// The methods to try a route with: its own, or GET when it takes any. CONNECT never reaches
/// routing (the server answers it 405 first).
pub(crate) fn probe_methods(r: &Route) -> Vec<Method> {
    match &r.methods {
        None => vec![Method::GET],
        Some(ms) => ms
            .iter()
            .filter(|m| **m != Method::CONNECT)
            .cloned()
            .collect(),
    }
}

/// Where the router sends `host` `path` `method`: `route `x``, or the answer it gives.
pub(crate) fn outcome_text(router: &Router<Route>, host: &str, path: &str, m: &Method) -> String {
    match router.find(host, path, m) {
        Match::Found(r) => format!("route `{}`", r.name),
        Match::MethodNotAllowed(_) => "a 405".into(),
        Match::None => "a 404".into(),
    }
}

/// The auth rule a route names, in `s`.
pub(crate) fn rule<'s>(s: &'s Snapshot, r: &Route) -> Option<&'s Arc<RuleSpec>> {
    let name = r.auth.as_deref()?;
    s.auth.rules.iter().find(|x| &*x.name == name)
}

/// The route's auth rule name when the rule requires a token (an `optional` rule lets
/// anonymous requests through anyway, so routes around it open nothing).
fn required_rule<'s>(s: &'s Snapshot, r: &Route) -> Option<&'s str> {
    rule(s, r)
        .filter(|x| x.mode == AuthMode::Required)
        .map(|x| &*x.name)
}

/// The names of the limits that apply to a route: its own list, else `[rate_limits] default`.
pub(crate) fn route_limits<'s>(s: &'s Snapshot, r: &'s Route) -> &'s [Arc<str>] {
    r.protection
        .limits
        .as_deref()
        .unwrap_or(&s.limits.settings.default)
}

pub(crate) fn limit<'s>(s: &'s Snapshot, name: &str) -> Option<&'s Arc<LimitSpec>> {
    s.limits.limits.iter().find(|l| &*l.name == name)
}

/// A key made only of values the client picks freely (headers, cookies, query parameters,
/// path segments): a client that changes the value gets a fresh bucket.
pub(crate) fn client_chosen(l: &LimitSpec) -> bool {
    let parts = l.key.parts();
    parts.iter().any(|p| {
        matches!(
            p,
            Source::Header(_) | Source::Cookie(_) | Source::Query(_) | Source::PathSegment(_)
        )
    }) && !parts.iter().any(|p| {
        matches!(
            p,
            Source::ClientIp | Source::ClientNet { .. } | Source::Claim(_)
        )
    })
}

/// An enforcing limit keyed on the client's address (or network) alone.
fn ip_keyed(l: &LimitSpec) -> bool {
    let parts = l.key.parts();
    l.mode == Mode::Enforce
        && parts
            .iter()
            .any(|p| matches!(p, Source::ClientIp | Source::ClientNet { .. }))
        && parts.iter().all(|p| {
            matches!(
                p,
                Source::ClientIp | Source::ClientNet { .. } | Source::Route
            )
        })
}

/// A route no request can reach: for each of its host groups, the router sends a request
/// for its own prefix (the one path no longer prefix can take from it) elsewhere.
fn never_matches(s: &Snapshot, router: &Router<Route>, r: &Arc<Route>, out: &mut Vec<PolicyError>) {
    let methods = probe_methods(r);
    let groups = groups(r);
    let reachable = groups.iter().any(|g| {
        let host = probe_host(g);
        methods.iter().any(|m| {
            router
                .find(&host, &r.path_prefix, m)
                .found()
                .is_some_and(|x| Arc::ptr_eq(x, r))
        })
    });
    if reachable {
        return;
    }
    let why = match (methods.first(), groups.first()) {
        (Some(m), Some(g)) => format!(
            "a {m} request for `{}` on {} goes to {}",
            r.path_prefix,
            group_text(g),
            outcome_text(router, &probe_host(g), &r.path_prefix, m)
        ),
        _ => "its only method, CONNECT, is answered 405 by the server before routing".into(),
    };
    out.push(on_route(
        s,
        r,
        "",
        format!("route `{}` can never match: {why}", r.name),
    ));
}

/// A route without auth whose prefix lies inside an authenticated route's prefix on the same
/// host: a hole in the authenticated area (`/v1/users/export` open under `/v1/users`).
fn open_inside_authenticated(s: &Snapshot, r: &Route, out: &mut Vec<PolicyError>) {
    if r.auth.is_some() {
        return;
    }
    let mine = groups(r);
    for a in &s.routes {
        let Some(rule) = required_rule(s, a) else {
            continue;
        };
        let inside = a.matches_path(&r.path_prefix)
            && (a.path_prefix == r.path_prefix || methods_overlap(&a.methods, &r.methods));
        let Some(shared) = groups(a).into_iter().find(|g| mine.contains(g)) else {
            continue;
        };
        if !inside {
            continue;
        }
        out.push(on_route(
            s,
            r,
            "auth",
            format!(
                "route `{}` has no auth rule, but its path_prefix `{}` is inside authenticated route `{}` (`{}`, auth `{rule}`, {}) on {}: requests there skip authentication; give it an auth rule, or move it out of that prefix",
                r.name,
                r.path_prefix,
                a.name,
                a.path_prefix,
                place(s, &format!("route.{}", a.name)),
                group_text(&shared),
            ),
        ));
        return;
    }
}

/// An authenticated route for a wildcard host (or for any host) does not protect its prefix
/// on a more specific host that has routes of its own: the router picks the most specific
/// host group and never falls back, so there the prefix goes to another route, without auth.
fn broad_rule_not_applied(
    s: &Snapshot,
    router: &Router<Route>,
    r: &Arc<Route>,
    out: &mut Vec<PolicyError>,
) {
    let Some(rule) = required_rule(s, r) else {
        return;
    };
    let Some(method) = probe_methods(r).into_iter().next() else {
        return;
    };
    for g in groups(r) {
        let narrower = narrower_groups(s, &g);
        for n in narrower {
            let host = probe_host(&n);
            let Some(x) = router.find(&host, &r.path_prefix, &method).found() else {
                continue;
            };
            if Arc::ptr_eq(x, r) || x.auth.is_some() {
                continue;
            }
            out.push(on_route(
                s,
                r,
                "hosts",
                format!(
                    "authenticated route `{}` (`{}` on {}, auth `{rule}`) does not apply on {}, which has routes of its own: the most specific host group wins and never falls back, so `{}` there goes to route `{}` ({}) without authentication; add a route with the auth rule for that host",
                    r.name,
                    r.path_prefix,
                    group_text(&g),
                    group_text(&n),
                    r.path_prefix,
                    x.name,
                    place(s, &format!("route.{}", x.name)),
                ),
            ));
        }
    }
}

/// The host groups, defined by some route, that take requests `group` would otherwise get:
/// exact hosts and longer suffixes under a suffix; every host group for the catch-all group.
fn narrower_groups(s: &Snapshot, group: &Option<HostMatch>) -> Vec<Option<HostMatch>> {
    let mut out: Vec<Option<HostMatch>> = Vec::new();
    for r in &s.routes {
        for h in &r.hosts {
            let narrower = match (group, h) {
                (None, _) => true,
                (Some(HostMatch::Suffix(s)), HostMatch::Exact(e) | HostMatch::Suffix(e)) => {
                    e.len() > s.len() && e.ends_with(s.as_str())
                }
                (Some(HostMatch::Exact(_)), _) => false,
            };
            let h = Some(h.clone());
            if narrower && !out.contains(&h) {
                out.push(h);
            }
        }
    }
    out
}

/// A route whose limits are all keyed on values the client chooses, with no limit on the
/// client's address behind them: rotating the value resets the budget.
fn client_keyed_limits(s: &Snapshot, r: &Route, out: &mut Vec<PolicyError>) {
    let specs: Vec<&Arc<LimitSpec>> = route_limits(s, r)
        .iter()
        .filter_map(|n| limit(s, n))
        .collect();
    let chosen: Vec<String> = specs
        .iter()
        .filter(|l| client_chosen(l))
        .map(|l| format!("`{}` (key `{}`)", l.name, l.key))
        .collect();
    if chosen.is_empty() || specs.iter().any(|l| ip_keyed(l)) {
        return;
    }
    let whence = if r.protection.limits.is_some() {
        "its `limits`"
    } else {
        "`[rate_limits] default`"
    };
    out.push(on_route(
        s,
        r,
        "limits",
        format!(
            "route `{}` is limited by {} from {whence}, keyed on a value the client chooses (a new value is a fresh bucket), with no enforcing IP-keyed limit behind it; add one (`key = \"ip\"`) to the route's `limits`",
            r.name,
            chosen.join(", "),
        ),
    ));
}

/// `authenticated = "public"` on a cache policy: credentialed responses get its public
/// headers. One warning per policy, naming the authenticated routes that use it.
fn public_cache_for_credentials(s: &Snapshot, out: &mut Vec<PolicyError>) {
    for p in &s.cache.policies {
        if p.authenticated != AuthenticatedMode::Public {
            continue;
        }
        let routes = authenticated_users(s, p);
        let used = if routes.is_empty() {
            String::new()
        } else {
            format!(" (used by authenticated routes: {})", routes.join(", "))
        };
        let key = format!("cache.{}.authenticated", p.name);
        out.push(at(
            s,
            &key,
            key.clone(),
            format!("responses to requests with credentials (Authorization, credential cookies, routes with an auth rule) and responses setting cookies get this policy's public cache headers: a CDN may serve one user's response to another{used}"),
        ));
    }
}

/// Names of the routes with an auth rule that use cache policy `p`, each with its place.
pub(crate) fn authenticated_users(s: &Snapshot, p: &CachePolicy) -> Vec<String> {
    s.routes
        .iter()
        .filter(|r| r.auth.is_some() && r.cache.as_deref() == Some(&*p.name))
        .map(|r| format!("`{}`", r.name))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Write `files` to a temporary policy directory and load it.
    pub(crate) fn load(files: &[(&str, &str)]) -> Snapshot {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        match crate::policy::load_dir(dir.path()) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    pub(crate) const BASE: &str = "[cluster.api]\nendpoints = [\"127.0.0.1:9\"]\n[issuer.idp]\niss = \"https://idp.test\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]\njwks_url = \"https://idp.test/jwks\"\n[auth.users]\nissuers = [\"idp\"]\n";

    fn warnings(routes: &str) -> Vec<String> {
        load(&[("base.toml", BASE), ("routes.toml", routes)])
            .warnings
            .iter()
            .map(|w| format!("{}: {}: {}", w.line, w.field, w.message))
            .collect()
    }

    fn route(name: &str, extra: &str) -> String {
        format!("[[route]]\nname = \"{name}\"\ncluster = \"api\"\n{extra}\n")
    }

    #[test]
    fn open_route_inside_an_authenticated_prefix() {
        let users = route(
            "users",
            "hosts = [\"api.test\"]\npath_prefix = \"/v1/users\"\nauth = \"users\"",
        );
        let export = route(
            "export",
            "hosts = [\"api.test\"]\npath_prefix = \"/v1/users/export\"",
        );
        let w = warnings(&format!("{users}{export}"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].starts_with("8: route.export.auth: route `export` has no auth rule, but its path_prefix `/v1/users/export` is inside authenticated route `users`"), "{w:?}");
        // The usual shape (an open root, an authenticated API under it) is fine, and so is an
        // open route on another host.
        let root = route("root", "hosts = [\"api.test\"]");
        let other = export
            .replace("export", "other")
            .replace("api.test", "www.test");
        let w = warnings(&format!("{users}{root}{other}"));
        assert!(w.is_empty(), "{w:?}");
        // Under a rule that lets anonymous requests through, an open route opens nothing.
        let optional = BASE.replace("[auth.users]\n", "[auth.users]\nmode = \"optional\"\n");
        let routes = format!("{users}{export}");
        let w = load(&[("base.toml", &optional), ("routes.toml", &routes)]).warnings;
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn wildcard_rule_does_not_reach_an_exact_host() {
        let w = warnings(&format!(
            "{}{}",
            route(
                "admin",
                "hosts = [\"*.example.test\"]\npath_prefix = \"/admin\"\nauth = \"users\""
            ),
            route("api", "hosts = [\"api.example.test\"]"),
        ));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("route.admin.hosts: authenticated route `admin` (`/admin` on *.example.test, auth `users`) does not apply on api.example.test"), "{w:?}");
        assert!(w[0].contains("goes to route `api`"), "{w:?}");
        // With its own authenticated route on that host, nothing to say.
        let w = warnings(&format!(
            "{}{}{}",
            route(
                "admin",
                "hosts = [\"*.example.test\"]\npath_prefix = \"/admin\"\nauth = \"users\""
            ),
            route("api", "hosts = [\"api.example.test\"]"),
            route(
                "api-admin",
                "hosts = [\"api.example.test\"]\npath_prefix = \"/admin\"\nauth = \"users\""
            ),
        ));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn header_keyed_limit_without_an_ip_limit() {
        let limits = "[limit.by_key]\nkey = \"header:x-api-key\"\nrate = 10\nper = \"1s\"\n[limit.by_ip]\nkey = \"ip\"\nrate = 100\nper = \"1s\"\n";
        let w = warnings(&format!("{limits}{}", route("a", "limits = [\"by_key\"]")));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("route.a.limits: route `a` is limited by `by_key` (key `header:x-api-key`) from its `limits`"), "{w:?}");
        let w = warnings(&format!(
            "{limits}{}",
            route("a", "limits = [\"by_key\", \"by_ip\"]")
        ));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn connect_only_route_never_matches() {
        let w = warnings(&route("tunnel", "methods = [\"CONNECT\"]"));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("route `tunnel` can never match: its only method, CONNECT"),
            "{w:?}"
        );
    }

    #[test]
    fn public_cache_names_the_authenticated_routes() {
        let cache =
            "[cache.shared]\ncache_control = \"public, max-age=60\"\nauthenticated = \"public\"\n";
        let w = warnings(&format!(
            "{cache}{}",
            route("a", "cache = \"shared\"\nauth = \"users\"")
        ));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with(
                "3: cache.shared.authenticated: responses to requests with credentials"
            ),
            "{w:?}"
        );
        assert!(
            w[0].ends_with("(used by authenticated routes: `a`)"),
            "{w:?}"
        );
    }

    #[test]
    fn shipped_policies_have_no_warnings() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let s = crate::policy::load_dir(&dir).unwrap();
        let w: Vec<String> = s.warnings.iter().map(ToString::to_string).collect();
        assert!(w.is_empty(), "{w:#?}");
    }
}
