//! `gateway explain`: what the policy does with one request, and why, step by step, each step
//! naming the file and line of the rule it comes from.
//!
//! The verdicts come from [`Simulator::run`] (the proxy's own phases). This module only
//! describes them: the rules that applied, the routes that were considered and why they lost,
//! what a missing token would need, and what the upstream and the client would see.

use std::fmt::Write as _;
use std::sync::Arc;

use serde::Serialize;

use super::simulate::{Decision, Request, Simulator};
use crate::route::{HostGroup, HostMatch, Route};
use crate::shard::RouteTarget;
use edgeway_record::outcome::ErrorClass;

/// The whole explanation; `--format json` prints it as is.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub request: String,
    /// The peer address, and the client address the policy uses (after trusted proxies).
    pub peer: String,
    pub client_ip: Option<String>,
    pub policy_version: String,
    pub steps: Vec<Step>,
    pub result: Outcome,
    /// What the offline run does differently from a running gateway.
    pub caveats: Vec<String>,
}

/// One step of the request path.
#[derive(Debug, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub verdict: String,
    /// `file:line` of the rule.
    pub source: Option<String>,
    pub details: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub status: u16,
    /// `upstream` or `gateway`.
    pub answered_by: &'static str,
    pub error: Option<&'static str>,
    pub body: Option<String>,
    pub response_headers: Vec<(String, String)>,
    pub upstream: Option<Upstream>,
}

#[derive(Debug, Serialize)]
pub struct Upstream {
    pub cluster: Option<String>,
    pub endpoint: Option<String>,
    pub target: Option<String>,
    pub headers: Vec<(String, String)>,
    /// Client headers the upstream does not receive.
    pub stripped: Vec<String>,
    /// Client headers the upstream receives with another value (set by the gateway).
    pub replaced: Vec<String>,
}

impl Step {
    fn new(step: &'static str, verdict: impl Into<String>, source: Option<String>) -> Step {
        Step {
            step,
            verdict: verdict.into(),
            source,
            details: Vec::new(),
        }
    }

    fn detail(mut self, d: impl Into<String>) -> Step {
        self.details.push(d.into());
        self
    }
}

/// Explain `req` against the simulator's policy.
pub async fn explain(
    sim: &Simulator,
    req: &Request,
) -> Result<Explanation, super::simulate::BadRequest> {
    let d = sim.run(req).await?;
    let mut steps = Vec::new();
    steps.push(ip_access(sim, &d));
    steps.push(routing(sim, req, &d));
    if let Some(plan) = d.route.clone() {
        let spec = &plan.spec;
        if let Some(s) = auth(sim, spec, req, &d) {
            steps.push(s);
        }
        steps.push(limits(sim, spec, &d));
        steps.extend(shard(sim, spec, &d));
        steps.extend(cluster(sim, &d));
        if let Some(s) = cache(sim, spec, &d) {
            steps.push(s);
        }
    }
    let stripped = if d.forwarded {
        let mut gone: Vec<String> = req
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .filter(|n| !d.upstream_headers.iter().any(|(u, _)| u == n))
            .collect();
        if req.claims.is_some() && !d.upstream_headers.iter().any(|(u, _)| u == "authorization") {
            gone.push("authorization".into());
        }
        gone.sort();
        gone.dedup();
        gone
    } else {
        Vec::new()
    };
    let mut replaced: Vec<String> = req
        .headers
        .iter()
        .filter(|(n, v)| {
            let n = n.to_ascii_lowercase();
            let upstream: Vec<&str> = d
                .upstream_headers
                .iter()
                .filter(|(u, _)| *u == n)
                .map(|(_, v)| v.as_str())
                .collect();
            !upstream.is_empty() && !upstream.contains(&v.as_str())
        })
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    replaced.sort();
    replaced.dedup();
    Ok(Explanation {
        request: format!("{} {}", req.method, req.url),
        peer: req.client_ip.to_string(),
        client_ip: d.client_ip.map(|i| i.to_string()),
        policy_version: sim.policy.version.to_string(),
        steps,
        result: Outcome {
            status: d.status,
            answered_by: if d.forwarded { "upstream" } else { "gateway" },
            error: d.error.map(|e| e.as_str()),
            body: d.body.clone(),
            response_headers: d.response_headers.clone(),
            upstream: d.forwarded.then(|| Upstream {
                cluster: d.cluster.as_deref().map(str::to_string),
                endpoint: d.endpoint.clone(),
                target: d.upstream_target.clone(),
                headers: d.upstream_headers.clone(),
                stripped,
                replaced,
            }),
        },
        caveats: sim.caveats.clone(),
    })
}

fn ip_access(sim: &Simulator, d: &Decision) -> Step {
    let limits = &sim.policy.limits;
    let ip = d.client_ip;
    let listed = |names: &[Arc<str>]| -> Vec<String> {
        names
            .iter()
            .filter(|n| {
                limits
                    .ip_lists
                    .get(*n)
                    .is_some_and(|l| ip.is_some_and(|ip| l.contains(ip)))
            })
            .map(|n| n.to_string())
            .collect()
    };
    let denied_by = listed(&limits.deny);
    let allowed_by = listed(&limits.allow);
    let refused = d.error == Some(ErrorClass::Forbidden) && d.route.is_none();
    let (verdict, source) = if let Some(list) = denied_by.first() {
        (
            format!("denied: the client is in deny list `{list}`"),
            sim.origin(&format!("ip_list.{list}")),
        )
    } else if !limits.allow.is_empty() && allowed_by.is_empty() {
        ("denied: the client is in no allow list".to_string(), None)
    } else {
        ("allowed".to_string(), None)
    };
    let mut step = Step::new("ip_access", verdict, source);
    if !limits.deny.is_empty() {
        step = step.detail(format!("deny lists: {}", join(&limits.deny)));
    }
    if !limits.allow.is_empty() {
        step = step.detail(format!("allow lists: {}", join(&limits.allow)));
    }
    if refused {
        step = step.detail("the request stops here (403)");
    }
    step
}

fn routing(sim: &Simulator, req: &Request, d: &Decision) -> Step {
    let Some(host) = &d.host else {
        return Step::new(
            "route",
            "none: the host is not a valid DNS name or IP address (400)",
            None,
        );
    };
    let Some(path) = &d.path else {
        return Step::new(
            "route",
            "none: the path cannot be made canonical (400)",
            None,
        );
    };
    let rt = sim.runtime();
    let (group, kind) = rt.router.group(host);
    let chosen = d.route.as_ref().map(|p| p.name().to_string());
    let verdict = match (&chosen, d.error) {
        (Some(name), _) => name.clone(),
        (None, Some(ErrorClass::MethodNotAllowed)) => {
            format!("none: no route allows {} here (405)", req.method)
        }
        (None, Some(ErrorClass::NoRoute)) => "none: no route matches (404)".to_string(),
        (None, _) => {
            return Step::new(
                "route",
                "not reached: the request was answered before",
                None,
            );
        }
    };
    let source = chosen
        .as_ref()
        .and_then(|n| sim.origin(&format!("route.{n}")));
    let mut step = Step::new("route", verdict, source).detail(format!(
        "host {host} ({}), path {path}",
        match kind {
            HostGroup::Exact => "a route names it exactly".to_string(),
            HostGroup::Suffix(s) => format!("matches *{s}"),
            HostGroup::Any => "no route names it: routes without hosts".to_string(),
        }
    ));
    if let Some(c) = &d.canonical_path {
        step = step.detail(format!("the request path was made canonical: {c}"));
    }
    let longest = group
        .iter()
        .filter(|p| p.spec.matches_path(path))
        .map(|p| p.spec.path_prefix.len())
        .max();
    for route in &sim.policy.routes {
        if Some(route.name.to_string()) == chosen {
            continue;
        }
        let why = if !group.iter().any(|p| p.spec.name == route.name) {
            format!("host: {}", hosts(route))
        } else if !route.matches_path(path) {
            format!("prefix {} does not match", prefix(route))
        } else if longest.is_some_and(|l| route.path_prefix.len() < l) {
            format!(
                "prefix {} is shorter than the longest that matches",
                prefix(route)
            )
        } else {
            match &route.methods {
                Some(ms) => format!(
                    "method {} not in [{}]",
                    req.method,
                    ms.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
                ),
                None => "not chosen".to_string(),
            }
        };
        step = step.detail(format!("not {}: {why}", route.name));
    }
    step
}

fn hosts(r: &Route) -> String {
    if r.hosts.is_empty() {
        return "the route has no hosts; another host group was chosen".into();
    }
    let list: Vec<String> = r
        .hosts
        .iter()
        .map(|h| match h {
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Suffix(s) => format!("*{s}"),
        })
        .collect();
    format!("[{}] does not take it", list.join(", "))
}

fn prefix(r: &Route) -> String {
    match r.prefix_match {
        crate::route::PrefixMatch::Raw => format!("{} (raw)", r.path_prefix),
        crate::route::PrefixMatch::Segment => r.path_prefix.clone(),
    }
}

fn auth(sim: &Simulator, spec: &Route, req: &Request, d: &Decision) -> Option<Step> {
    let Some(name) = &spec.auth else {
        return Some(Step::new("auth", "none: the route has no auth rule", None));
    };
    let rule = sim.policy.auth.rules.iter().find(|r| r.name == *name)?;
    let result = d.auth.map_or("not reached", |r| r.as_str());
    let mut step = Step::new(
        "auth",
        format!("rule `{name}`: {result}"),
        sim.origin(&format!("auth.{name}")),
    )
    .detail(format!(
        "mode {}; issuers {}",
        format!("{:?}", rule.mode).to_ascii_lowercase(),
        join(&rule.issuers)
    ));
    for iname in &rule.issuers {
        if let Some(i) = sim.policy.auth.issuers.iter().find(|i| i.name == *iname) {
            let algs: Vec<String> = i.algorithms.iter().map(|a| format!("{a:?}")).collect();
            step = step.detail(format!(
                "issuer {iname} ({}): iss {}, audiences [{}], algorithms [{}]",
                sim.origin(&format!("issuer.{iname}")).unwrap_or_default(),
                i.iss,
                i.audiences.join(", "),
                algs.join(", ")
            ));
        }
    }
    if !rule.scopes.is_empty() {
        step = step.detail(format!(
            "scopes: {} of [{}]",
            format!("{:?}", rule.scopes_match).to_ascii_lowercase(),
            rule.scopes.join(", ")
        ));
    }
    for (claim, values) in &rule.claims {
        let vs: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        step = step.detail(format!("claim {claim} must be one of [{}]", vs.join(", ")));
    }
    for (claim, header) in &rule.forward_claims {
        step = step.detail(format!("claim {claim} is sent upstream as {header}"));
    }
    if let Some(id) = &d.identity {
        step = step.detail(format!(
            "verified: issuer {}, subject {}",
            id.issuer,
            id.subject.as_deref().unwrap_or("(none)")
        ));
    }
    if d.auth == Some(edgeway_record::outcome::AuthResult::Missing) && req.claims.is_none() {
        step = step.detail(
            "missing: a token from one of the issuers above (give --claims or --token to see the rest)",
        );
    }
    if let Some(reason) = d
        .body
        .as_deref()
        .filter(|_| d.route.is_some() && d.error.is_some_and(is_auth_error))
        .and_then(error_message)
    {
        step = step.detail(format!("refused: {reason}"));
    }
    Some(step)
}

fn is_auth_error(e: edgeway_record::outcome::ErrorClass) -> bool {
    use ErrorClass::*;
    matches!(e, Unauthorized | Forbidden | AuthUnavailable)
}

/// The `message` of a JSON error body.
fn error_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("message")?.as_str().map(str::to_string)
}

fn limits(sim: &Simulator, spec: &Route, d: &Decision) -> Step {
    let decision = match (d.rate_limit, d.limit_keys.is_empty()) {
        (Some(r), _) => r.as_str().to_string(),
        (None, true) => "none: the route has no limits".to_string(),
        (None, false) => "not reached: the request was answered before this step".to_string(),
    };
    let own = spec.protection.limits.is_some();
    let mut step = Step::new(
        "limits",
        decision,
        sim.origin(&format!("route.{}", spec.name)),
    )
    .detail(format!(
        "{}; priority {}, cost {}",
        if own {
            "the route's own limits"
        } else {
            "the [rate_limits] default limits"
        },
        spec.protection.priority,
        spec.protection.cost
    ));
    for (name, key) in &d.limit_keys {
        let Some(l) = sim.policy.limits.limits.iter().find(|l| l.name == *name) else {
            continue;
        };
        let key = match key {
            Some(k) => format!("key {} = {k:?}", l.key),
            None => format!("key {} is missing: the limit does not apply", l.key),
        };
        step = step.detail(format!(
            "{name} ({}): {} per {:?}, burst {}, {}, {}; {key}",
            sim.origin(&format!("limit.{name}")).unwrap_or_default(),
            l.base.rate,
            l.base.per,
            l.base.burst,
            format!("{:?}", l.mode).to_ascii_lowercase(),
            format!("{:?} scope", l.scope).to_ascii_lowercase(),
        ));
    }
    for list in &spec.protection.ip_deny {
        step = step.detail(format!("route deny list {list}"));
    }
    for list in &spec.protection.ip_allow {
        step = step.detail(format!("route allow list {list}"));
    }
    step
}

fn shard(sim: &Simulator, spec: &Route, d: &Decision) -> Vec<Step> {
    let mut steps = Vec::new();
    if let RouteTarget::Shard(rule) = &spec.target {
        let verdict = match (&d.shard, &d.cluster) {
            (Some(s), Some(c)) => format!("shard {s} → cluster {c}"),
            _ => "no shard chosen".to_string(),
        };
        steps.push(
            Step::new(
                "shard",
                verdict,
                sim.origin(&format!("shard_map.{}", rule.map)),
            )
            .detail(format!(
                "map {}, key {}, reads {}",
                rule.map,
                rule.key,
                if rule.read_split {
                    "to healthy replicas"
                } else {
                    "to the primary"
                }
            )),
        );
    }
    if let Some(c) = &spec.canary {
        let verdict = d
            .canary
            .map_or("not reached".to_string(), |a| a.as_str().to_string());
        let mut s = Step::new(
            "canary",
            verdict,
            sim.origin(&format!("route.{}", spec.name)),
        )
        .detail(format!(
            "{}.{:02}% of keys {} go to cluster {}",
            c.per_10k / 100,
            c.per_10k % 100,
            c.key,
            c.cluster
        ));
        if let Some(h) = &c.force_header {
            s = s.detail(format!("header {h} forces an arm"));
        }
        steps.push(s);
    }
    steps
}

fn cluster(sim: &Simulator, d: &Decision) -> Vec<Step> {
    let Some(name) = &d.cluster else {
        return Vec::new();
    };
    let Some(c) = sim.policy.clusters.iter().find(|c| c.name == *name) else {
        return Vec::new();
    };
    let verdict = match &d.endpoint {
        Some(e) => format!("{name}, endpoint {e}"),
        None => format!("{name} (not reached: the request was answered before)"),
    };
    let cluster =
        Step::new("cluster", verdict, sim.origin(&format!("cluster.{name}"))).detail(format!(
            "endpoints [{}]; connect timeout {:?}, read timeout {:?}",
            c.endpoints.join(", "),
            c.connect_timeout,
            c.read_timeout
        ));
    let mut res = Step::new(
        "resilience",
        match (d.breaker, d.endpoint.is_some()) {
            (Some(b), _) => format!("breaker {}", b.as_str()),
            (None, true) => "admitted".to_string(),
            (None, false) => "not reached".to_string(),
        },
        sim.origin(&format!("resilience.{name}")),
    );
    match sim.policy.resilience.get(name) {
        None => {
            res =
                res.detail("no [resilience] section: failed connects are retried once per endpoint")
        }
        Some(r) => {
            if let Some(b) = &r.breaker {
                res = res.detail(format!(
                    "breaker: {}{}over {:?} (at least {} requests), open for {:?}",
                    b.failure_percent
                        .map_or(String::new(), |p| format!("{p}% failures ")),
                    b.consecutive_failures
                        .map_or(String::new(), |n| format!("or {n} in a row ")),
                    b.window,
                    b.min_requests,
                    b.open_for
                ));
            }
            if r.outlier.is_some() {
                res = res.detail("outlier ejection per endpoint");
            }
            if let Some(b) = &r.bulkhead {
                res = res.detail(format!(
                    "bulkhead: {} concurrent, {} waiting up to {:?}",
                    b.max_concurrent, b.max_waiting, b.max_wait
                ));
            }
            let methods: Vec<&str> = r.retry.methods.iter().map(|m| m.as_str()).collect();
            res = res.detail(if r.retry.baseline {
                "retries: failed connects only, each endpoint once".to_string()
            } else {
                format!(
                    "retries: {} attempts, methods [{}], statuses {:?}",
                    r.retry.attempts,
                    methods.join(", "),
                    r.retry.statuses
                )
            });
            if let Some(t) = r.request_timeout {
                res = res.detail(format!("request deadline {t:?}"));
            }
        }
    }
    if d.retried_status {
        res = res.detail("this upstream status would be retried before the client sees it");
    }
    vec![cluster, res]
}

fn cache(sim: &Simulator, spec: &Route, d: &Decision) -> Option<Step> {
    let name = spec.cache.as_ref()?;
    let wanted = [
        "cache-control",
        "cdn-cache-control",
        "surrogate-control",
        "surrogate-key",
        "cache-tag",
        "vary",
        "cache-status",
    ];
    let shown: Vec<String> = d
        .response_headers
        .iter()
        .filter(|(n, _)| wanted.contains(&n.as_str()) || n.ends_with("-cache-control"))
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    let verdict = if d.forwarded {
        format!("policy `{name}`")
    } else {
        format!("policy `{name}` (not applied: the gateway answered)")
    };
    let mut step = Step::new("cache", verdict, sim.origin(&format!("cache.{name}")));
    for s in shown {
        step = step.detail(s);
    }
    Some(step)
}

fn join(names: &[Arc<str>]) -> String {
    format!(
        "[{}]",
        names.iter().map(|n| &**n).collect::<Vec<_>>().join(", ")
    )
}

/// The text form: one line per step, the source at the end of the line.
pub fn render_text(e: &Explanation) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} (from {})", e.request, e.peer);
    let _ = writeln!(
        out,
        "policy {}; client address {}",
        e.policy_version,
        e.client_ip.as_deref().unwrap_or("unknown")
    );
    for s in &e.steps {
        let src = s
            .source
            .as_deref()
            .map(|s| format!("  [{s}]"))
            .unwrap_or_default();
        let _ = writeln!(out, "{:<11} {}{src}", s.step, s.verdict);
        for d in &s.details {
            let _ = writeln!(out, "{:<11}   {d}", "");
        }
    }
    let r = &e.result;
    match &r.upstream {
        Some(u) => {
            let _ = writeln!(
                out,
                "result      {} from the upstream ({} {})",
                r.status,
                u.cluster.as_deref().unwrap_or("-"),
                u.endpoint.as_deref().unwrap_or("-")
            );
            if let Some(t) = &u.target {
                let _ = writeln!(out, "            upstream request target {t}");
            }
            for (n, v) in &u.headers {
                let _ = writeln!(out, "            upstream gets {n}: {}", shown_value(n, v));
            }
            if !u.stripped.is_empty() {
                let _ = writeln!(out, "            stripped: {}", u.stripped.join(", "));
            }
            if !u.replaced.is_empty() {
                let _ = writeln!(
                    out,
                    "            replaced by the gateway: {}",
                    u.replaced.join(", ")
                );
            }
        }
        None => {
            let _ = writeln!(
                out,
                "result      {} from the gateway ({})",
                r.status,
                r.error.unwrap_or("-")
            );
            if let Some(b) = &r.body {
                let _ = writeln!(out, "            body {b}");
            }
        }
    }
    for (n, v) in &r.response_headers {
        let _ = writeln!(out, "            client gets {n}: {v}");
    }
    for c in &e.caveats {
        let _ = writeln!(out, "offline     {c}");
    }
    out
}

/// Credentials are never printed, not even the offline placeholder.
fn shown_value<'a>(name: &str, value: &'a str) -> &'a str {
    if name.eq_ignore_ascii_case("authorization") || name.eq_ignore_ascii_case("cookie") {
        "(redacted)"
    } else {
        value
    }
}
