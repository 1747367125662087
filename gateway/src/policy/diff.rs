//! `gateway diff`: what changes between two validated policies, for a reviewer, and whether
//! each change weakens security.
//!
//! Data enters as two [`Snapshot`]s (the policy before and after an edit, both loaded and
//! validated by [`super::load_dir`]) and leaves as a list of [`Change`]s: one per definition
//! added or removed, and one per field changed, each placed at its definition's file and line
//! (in the new directory, or the old one for what was removed) and classified as
//! [`Effect::Weakens`], [`Effect::Strengthens`] or [`Effect::Neutral`]. Pure: no I/O.
//!
//! Comparisons are semantic: two spellings of one policy (comments, order, `"1s"` against
//! `"1000ms"`, a list file whose networks merge to the same ranges) compare equal. A change
//! that loosens in one way and tightens in another counts as weakening: a reviewer should see
//! it. Where a definition's change affects routes (an auth rule, a cache policy, an IP list),
//! the message names the routes.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::lint::{
    client_chosen, group_text, groups, outcome_text, probe_host, probe_methods, route_limits, rule,
};
use super::Snapshot;
use crate::auth::spec::{AuthMode, IssuerSpec, JwksSource, OnRedisError, RuleSpec, ScopesMatch};
use crate::cache::spec::{AuthenticatedMode, CachePolicy, Directed};
use crate::limit::{CidrSet, LimitSpec, Mode, OnRedisDown, Rate, Scope};
use crate::route::{HostMatch, Route, Router};
use crate::shard::RouteTarget;

/// What a change does to security.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Lets through something the old policy refused, or checks less.
    Weakens,
    /// Refuses or checks more.
    Strengthens,
    /// Neither (routing, timeouts, clusters...), or not a security setting.
    Neutral,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Effect::Weakens => "weakens",
            Effect::Strengthens => "strengthens",
            Effect::Neutral => "neutral",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Added,
    Removed,
    Changed,
}

/// One difference between two policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub effect: Effect,
    pub kind: Kind,
    /// The definition, as the policy names it: `route.account`, `limit.per_ip`, `forwarding`.
    pub subject: String,
    /// The field that changed (`auth`, `limits`, `rate`); empty for a whole definition.
    pub field: String,
    /// Where the definition is written: in the new directory, or the old one when removed.
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// What it was, what it is, and why that matters.
    pub message: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() {
            String::new()
        } else {
            format!(".{}", self.field)
        };
        write!(
            f,
            "{:<11} {}:{}:{}: {}{field}: {}",
            self.effect,
            self.file.display(),
            self.line,
            self.column,
            self.subject,
            self.message
        )
    }
}

/// Every difference from `old` to `new`: routes, auth (issuers, rules, revocation), limits,
/// IP lists and access, forwarding, cache policies, then the neutral rest (clusters, shard
/// maps, resilience, access log, shedding).
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Change> {
    let mut d = Diff {
        old,
        new,
        out: Vec::new(),
    };
    d.routes();
    d.issuers();
    d.rules();
    d.revocation();
    d.limits();
    d.ip();
    d.forwarding();
    d.cache();
    d.rest();
    d.out
}

/// Which snapshot a change is placed in.
#[derive(Clone, Copy)]
enum Side {
    Old,
    New,
}

struct Diff<'a> {
    old: &'a Snapshot,
    new: &'a Snapshot,
    out: Vec<Change>,
}

/// Pairs of definitions by name, in the new order, then the removed ones in the old order.
fn pairs<'a, T>(
    old: &'a [Arc<T>],
    new: &'a [Arc<T>],
    name: impl Fn(&T) -> &str,
) -> Vec<(String, Option<&'a T>, Option<&'a T>)> {
    let find = |list: &'a [Arc<T>], n: &str| list.iter().find(|x| name(x) == n).map(|x| &**x);
    let mut out: Vec<_> = new
        .iter()
        .map(|n| (name(n).to_string(), find(old, name(n)), Some(&**n)))
        .collect();
    out.extend(
        old.iter()
            .filter(|o| find(new, name(o)).is_none())
            .map(|o| (name(o).to_string(), Some(&**o), None)),
    );
    out
}

/// `a`, `b` as a list of code spans; `none` when empty.
fn list<T: fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|x| format!("`{x}`")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// What `new` adds to `old` and what it drops, by value.
fn delta<T: PartialEq + Clone>(old: &[T], new: &[T]) -> (Vec<T>, Vec<T>) {
    let added = new.iter().filter(|x| !old.contains(x)).cloned().collect();
    let removed = old.iter().filter(|x| !new.contains(x)).cloned().collect();
    (added, removed)
}

/// Weakens when any reason loosens, else strengthens when any tightens, else neutral.
fn effect_of(looser: &[String], tighter: &[String]) -> Effect {
    if !looser.is_empty() {
        Effect::Weakens
    } else if !tighter.is_empty() {
        Effect::Strengthens
    } else {
        Effect::Neutral
    }
}

/// Reasons, loosening ones first.
fn reasons(looser: &[String], tighter: &[String], other: &[String]) -> String {
    looser
        .iter()
        .chain(tighter)
        .chain(other)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ")
}

impl Diff<'_> {
    fn snap(&self, side: Side) -> &Snapshot {
        match side {
            Side::Old => self.old,
            Side::New => self.new,
        }
    }

    fn push(
        &mut self,
        effect: Effect,
        kind: Kind,
        subject: &str,
        field: &str,
        side: Side,
        message: String,
    ) {
        let origin = self.snap(side).origins.get(subject);
        self.out.push(Change {
            effect,
            kind,
            subject: subject.to_string(),
            field: field.to_string(),
            file: origin.map(|o| o.file.clone()).unwrap_or_default(),
            line: origin.map_or(0, |o| o.line),
            column: origin.map_or(0, |o| o.column),
            message,
        });
    }

    /// A field that changed with no bearing on security.
    fn neutral(&mut self, subject: &str, field: &str, was: String, is: String) {
        self.push(
            Effect::Neutral,
            Kind::Changed,
            subject,
            field,
            Side::New,
            format!("{was} → {is}"),
        );
    }

    // ---- routes ----

    fn routes(&mut self) {
        for (name, o, n) in pairs(&self.old.routes, &self.new.routes, |r| &r.name) {
            let subject = format!("route.{name}");
            match (o, n) {
                (None, Some(n)) => self.route_added(&subject, n),
                (Some(o), None) => self.route_removed(&subject, o),
                (Some(o), Some(n)) => self.route_changed(&subject, o, n),
                (None, None) => {}
            }
        }
    }

    fn route_added(&mut self, subject: &str, n: &Route) {
        let what = format!(
            "{} `{}` → {}",
            hosts_text(&n.hosts),
            n.path_prefix,
            target_text(&n.target)
        );
        match &n.auth {
            None => self.push(
                Effect::Weakens,
                Kind::Added,
                subject,
                "",
                Side::New,
                format!("new route without an auth rule: {what} is open"),
            ),
            Some(a) => self.push(
                Effect::Neutral,
                Kind::Added,
                subject,
                "",
                Side::New,
                format!("new route: {what}, auth `{a}`"),
            ),
        }
    }

    /// A removed route's requests go to whatever the new router picks for them: weakening
    /// when that route has no auth rule and the removed one had.
    fn route_removed(&mut self, subject: &str, o: &Route) {
        let (opened, now) = self.moved(o);
        let effect = if opened {
            Effect::Weakens
        } else {
            Effect::Neutral
        };
        self.push(
            effect,
            Kind::Removed,
            subject,
            "",
            Side::Old,
            format!("route removed: {}", now.join("; ")),
        );
    }

    /// Where the new router sends the requests old route `o` took (its prefix on each of its
    /// host groups), and whether one of them now reaches another route without an auth rule
    /// while `o` had one.
    fn moved(&self, o: &Route) -> (bool, Vec<String>) {
        let router = Router::new(&self.new.routes);
        let method = probe_methods(o)
            .into_iter()
            .next()
            .unwrap_or(http::Method::GET);
        let mut now = Vec::new();
        let mut opened = false;
        for g in groups(o) {
            let host = probe_host(&g);
            let to = router.find(&host, &o.path_prefix, &method).found().cloned();
            let open = o.auth.is_some()
                && to
                    .as_ref()
                    .is_some_and(|r| r.auth.is_none() && r.name != o.name);
            opened |= open;
            now.push(format!(
                "on {} `{}` now goes to {}{}",
                group_text(&g),
                o.path_prefix,
                outcome_text(&router, &host, &o.path_prefix, &method),
                if open { " (no auth rule)" } else { "" }
            ));
        }
        (opened, now)
    }

    fn route_changed(&mut self, subject: &str, o: &Route, n: &Route) {
        if o.hosts != n.hosts {
            self.neutral(subject, "hosts", hosts_text(&o.hosts), hosts_text(&n.hosts));
        }
        if o.path_prefix != n.path_prefix || o.prefix_match != n.prefix_match {
            self.neutral(
                subject,
                "path_prefix",
                format!("`{}` ({:?})", o.path_prefix, o.prefix_match).to_lowercase(),
                format!("`{}` ({:?})", n.path_prefix, n.prefix_match).to_lowercase(),
            );
        }
        if o.methods != n.methods {
            self.neutral(
                subject,
                "methods",
                methods_text(&o.methods),
                methods_text(&n.methods),
            );
        }
        let rematched = o.hosts != n.hosts
            || o.path_prefix != n.path_prefix
            || o.prefix_match != n.prefix_match
            || o.methods != n.methods;
        if rematched && o.auth.is_some() {
            let (opened, now) = self.moved(o);
            if opened {
                self.push(
                    Effect::Weakens,
                    Kind::Changed,
                    subject,
                    "match",
                    Side::New,
                    format!("requests it authenticated {}", now.join("; ")),
                );
            }
        }
        if o.target != n.target {
            self.neutral(
                subject,
                "target",
                target_text(&o.target),
                target_text(&n.target),
            );
        }
        if o.canary != n.canary {
            let text = |c: &Option<crate::shard::CanarySpec>| match c {
                None => "none".to_string(),
                Some(c) => format!(
                    "`{}` at {}.{:02}% by `{}`",
                    c.cluster,
                    c.per_10k / 100,
                    c.per_10k % 100,
                    c.key
                ),
            };
            self.neutral(subject, "canary", text(&o.canary), text(&n.canary));
        }
        if o.forward_path != n.forward_path {
            self.neutral(
                subject,
                "forward_path",
                format!("{:?}", o.forward_path).to_lowercase(),
                format!("{:?}", n.forward_path).to_lowercase(),
            );
        }
        self.route_auth(subject, o, n);
        self.route_limits(subject, o, n);
        let (op, np) = (&o.protection, &n.protection);
        self.ip_rules(
            subject,
            "ip_allow",
            "ip_deny",
            (&op.ip_allow, &op.ip_deny),
            (&np.ip_allow, &np.ip_deny),
            Side::New,
        );
        if op.cost != np.cost {
            let effect = if np.cost < op.cost {
                Effect::Weakens
            } else {
                Effect::Strengthens
            };
            let why = if np.cost < op.cost {
                "each request spends fewer tokens: more requests pass"
            } else {
                "each request spends more tokens"
            };
            self.push(
                effect,
                Kind::Changed,
                subject,
                "limit_cost",
                Side::New,
                format!("{} → {}: {why}", op.cost, np.cost),
            );
        }
        if op.priority != np.priority {
            self.neutral(
                subject,
                "priority",
                op.priority.to_string(),
                np.priority.to_string(),
            );
        }
        if op.headers != np.headers {
            self.neutral(
                subject,
                "rate_limit_headers",
                op.headers.to_string(),
                np.headers.to_string(),
            );
        }
        self.route_cache(subject, o, n);
        if o.timeout != n.timeout {
            let t = |t: Option<Duration>| {
                t.map_or("the cluster's".into(), |d| {
                    humantime::format_duration(d).to_string()
                })
            };
            self.neutral(subject, "timeout", t(o.timeout), t(n.timeout));
        }
        if o.retry_idempotent_writes != n.retry_idempotent_writes {
            self.neutral(
                subject,
                "retry_idempotent_writes",
                o.retry_idempotent_writes.to_string(),
                n.retry_idempotent_writes.to_string(),
            );
        }
    }

    /// A route's auth rule replaced, added or dropped. (A rule whose definition changed
    /// under the same name is reported once, at the rule, with the routes using it.)
    fn route_auth(&mut self, subject: &str, o: &Route, n: &Route) {
        if o.auth == n.auth {
            return;
        }
        let (effect, message) = match (rule(self.old, o), rule(self.new, n)) {
            (Some(_), None) => (
                Effect::Weakens,
                format!(
                    "`{}` → none: the route no longer authenticates requests",
                    o.auth.as_deref().unwrap_or("")
                ),
            ),
            (None, Some(r)) => (Effect::Strengthens, format!("none → `{}`", r.name)),
            (Some(a), Some(b)) => {
                let (looser, tighter, other) = compare_rules(a, b);
                (
                    effect_of(&looser, &tighter),
                    format!(
                        "`{}` → `{}`: {}",
                        a.name,
                        b.name,
                        reasons(&looser, &tighter, &other)
                    ),
                )
            }
            (None, None) => return,
        };
        self.push(effect, Kind::Changed, subject, "auth", Side::New, message);
    }

    /// The limits that apply to a route (its own or the default set), by name.
    fn route_limits(&mut self, subject: &str, o: &Route, n: &Route) {
        let was = route_limits(self.old, o);
        let is = route_limits(self.new, n);
        let (added, removed) = delta(was, is);
        if added.is_empty() && removed.is_empty() {
            return;
        }
        let mut looser = Vec::new();
        let mut tighter = Vec::new();
        if !removed.is_empty() {
            looser.push(format!("no longer limited by {}", list(&removed)));
        }
        if !added.is_empty() {
            tighter.push(format!("now also limited by {}", list(&added)));
        }
        self.push(
            effect_of(&looser, &tighter),
            Kind::Changed,
            subject,
            "limits",
            Side::New,
            format!(
                "{} → {}: {}",
                list(was),
                list(is),
                reasons(&looser, &tighter, &[])
            ),
        );
    }

    /// Allow and deny list names of a route or of `[ip_access]`. A deny list dropped, or an
    /// allow list added to a non-empty set (or the set emptied: everyone) widens access.
    #[allow(clippy::too_many_arguments)]
    fn ip_rules(
        &mut self,
        subject: &str,
        allow_field: &str,
        deny_field: &str,
        (old_allow, old_deny): (&[Arc<str>], &[Arc<str>]),
        (new_allow, new_deny): (&[Arc<str>], &[Arc<str>]),
        side: Side,
    ) {
        if old_allow != new_allow {
            let (added, removed) = delta(old_allow, new_allow);
            let (effect, why) = if new_allow.is_empty() {
                (
                    Effect::Weakens,
                    "no allow list left: every address not denied is let in".to_string(),
                )
            } else if old_allow.is_empty() {
                (
                    Effect::Strengthens,
                    "only the listed addresses are let in now".to_string(),
                )
            } else if !added.is_empty() {
                (
                    Effect::Weakens,
                    format!("addresses in {} are let in too", list(&added)),
                )
            } else {
                (
                    Effect::Strengthens,
                    format!("addresses only in {} are refused now", list(&removed)),
                )
            };
            self.push(
                effect,
                Kind::Changed,
                subject,
                allow_field,
                side,
                format!("{} → {}: {why}", list(old_allow), list(new_allow)),
            );
        }
        if old_deny != new_deny {
            let (added, removed) = delta(old_deny, new_deny);
            let (effect, why) = if !removed.is_empty() {
                (
                    Effect::Weakens,
                    format!("addresses in {} are no longer refused", list(&removed)),
                )
            } else {
                (
                    Effect::Strengthens,
                    format!("addresses in {} are refused now", list(&added)),
                )
            };
            self.push(
                effect,
                Kind::Changed,
                subject,
                deny_field,
                side,
                format!("{} → {}: {why}", list(old_deny), list(new_deny)),
            );
        }
    }

    /// A route's cache policy replaced, added or dropped: weakening when the route's
    /// responses become shareable in a way they were not (see [`exposure`]).
    fn route_cache(&mut self, subject: &str, o: &Route, n: &Route) {
        if o.cache == n.cache {
            return;
        }
        let was = exposure(self.old, o);
        let is = exposure(self.new, n);
        let gained: Vec<&str> = is.iter().filter(|x| !was.contains(x)).copied().collect();
        let lost: Vec<&str> = was.iter().filter(|x| !is.contains(x)).copied().collect();
        let name = |c: &Option<Arc<str>>| {
            c.as_deref()
                .map_or("none".to_string(), |c| format!("`{c}`"))
        };
        let mut message = format!("{} → {}", name(&o.cache), name(&n.cache));
        if !gained.is_empty() {
            message.push_str(&format!(": now {}", gained.join(", ")));
        }
        if !lost.is_empty() {
            message.push_str(&format!(": no longer {}", lost.join(", ")));
        }
        let effect = if !gained.is_empty() {
            Effect::Weakens
        } else if !lost.is_empty() {
            Effect::Strengthens
        } else {
            Effect::Neutral
        };
        self.push(effect, Kind::Changed, subject, "cache", Side::New, message);
    }

    /// Routes of `side` whose auth rule is `name`.
    fn routes_with(&self, side: Side, pick: impl Fn(&Route) -> bool) -> String {
        let names: Vec<String> = self
            .snap(side)
            .routes
            .iter()
            .filter(|r| pick(r))
            .map(|r| format!("`{}`", r.name))
            .collect();
        if names.is_empty() {
            "no route".into()
        } else {
            format!("routes {}", names.join(", "))
        }
    }

    // ---- auth ----

    fn issuers(&mut self) {
        for (name, o, n) in pairs(&self.old.auth.issuers, &self.new.auth.issuers, |i| &i.name) {
            let subject = format!("issuer.{name}");
            match (o, n) {
                (None, Some(_)) => self.push(
                    Effect::Neutral,
                    Kind::Added,
                    &subject,
                    "",
                    Side::New,
                    "new issuer (trusted by the rules that name it)".into(),
                ),
                (Some(_), None) => self.push(
                    Effect::Neutral,
                    Kind::Removed,
                    &subject,
                    "",
                    Side::Old,
                    "issuer removed".into(),
                ),
                (Some(o), Some(n)) => {
                    let (looser, tighter, other) = compare_issuers(o, n);
                    let effect = effect_of(&looser, &tighter);
                    if !(looser.is_empty() && tighter.is_empty() && other.is_empty()) {
                        let used = self.rules_using_issuer(&name);
                        self.push(
                            effect,
                            Kind::Changed,
                            &subject,
                            "",
                            Side::New,
                            format!("{} (used by {used})", reasons(&looser, &tighter, &other)),
                        );
                    }
                }
                (None, None) => {}
            }
        }
    }

    fn rules_using_issuer(&self, issuer: &str) -> String {
        let names: Vec<String> = self
            .new
            .auth
            .rules
            .iter()
            .filter(|r| r.issuers.iter().any(|i| &**i == issuer))
            .map(|r| format!("`{}`", r.name))
            .collect();
        if names.is_empty() {
            "no auth rule".into()
        } else {
            format!("auth rules {}", names.join(", "))
        }
    }

    fn rules(&mut self) {
        for (name, o, n) in pairs(&self.old.auth.rules, &self.new.auth.rules, |r| &r.name) {
            let subject = format!("auth.{name}");
            match (o, n) {
                (None, Some(_)) => self.push(
                    Effect::Neutral,
                    Kind::Added,
                    &subject,
                    "",
                    Side::New,
                    "new auth rule".into(),
                ),
                (Some(_), None) => self.push(
                    Effect::Neutral,
                    Kind::Removed,
                    &subject,
                    "",
                    Side::Old,
                    "auth rule removed".into(),
                ),
                (Some(o), Some(n)) => {
                    let (looser, tighter, other) = compare_rules(o, n);
                    if looser.is_empty() && tighter.is_empty() && other.is_empty() {
                        continue;
                    }
                    let used = self.routes_with(Side::New, |r| r.auth.as_deref() == Some(&*name));
                    let effect = effect_of(&looser, &tighter);
                    let verb = match effect {
                        Effect::Weakens => "weakens",
                        Effect::Strengthens => "strengthens",
                        Effect::Neutral => "applies to",
                    };
                    self.push(
                        effect,
                        Kind::Changed,
                        &subject,
                        "",
                        Side::New,
                        format!("{} ({verb} {used})", reasons(&looser, &tighter, &other)),
                    );
                }
                (None, None) => {}
            }
        }
    }

    fn revocation(&mut self) {
        let (o, n) = (&self.old.auth.revocation, &self.new.auth.revocation);
        if o == n {
            return;
        }
        let mut looser = Vec::new();
        let mut tighter = Vec::new();
        let mut other = Vec::new();
        for (what, was, is) in [("jti", &o.jti, &n.jti), ("sub", &o.sub, &n.sub)] {
            let removed = was.difference(is).count();
            let added = is.difference(was).count();
            if removed > 0 {
                looser.push(format!(
                    "{removed} revoked `{what}` value(s) removed: those tokens pass again"
                ));
            }
            if added > 0 {
                tighter.push(format!("{added} `{what}` value(s) revoked"));
            }
        }
        match (&o.redis, &n.redis) {
            (Some(_), None) => looser.push("the Redis revocation list removed".into()),
            (None, Some(_)) => tighter.push("a Redis revocation list added".into()),
            (Some(a), Some(b)) => {
                if a.on_error != b.on_error {
                    let line = format!("on_redis_error {:?} → {:?}", a.on_error, b.on_error)
                        .to_lowercase();
                    if b.on_error == OnRedisError::KeepLast {
                        looser.push(line);
                    } else {
                        tighter.push(line);
                    }
                }
                if a.max_stale != b.max_stale {
                    let line = format!(
                        "max_stale {} → {}",
                        humantime::format_duration(a.max_stale),
                        humantime::format_duration(b.max_stale)
                    );
                    if b.max_stale > a.max_stale {
                        looser.push(line)
                    } else {
                        tighter.push(line)
                    }
                }
                if a.url != b.url || a.key != b.key || a.refresh != b.refresh {
                    other.push("Redis list location or refresh changed".into());
                }
            }
            (None, None) => {}
        }
        let side = if n.is_empty() { Side::Old } else { Side::New };
        self.push(
            effect_of(&looser, &tighter),
            Kind::Changed,
            "revocation",
            "",
            side,
            reasons(&looser, &tighter, &other),
        );
    }

    // ---- limits ----

    fn limits(&mut self) {
        for (name, o, n) in pairs(&self.old.limits.limits, &self.new.limits.limits, |l| {
            &l.name
        }) {
            let subject = format!("limit.{name}");
            match (o, n) {
                (None, Some(n)) => self.push(
                    Effect::Neutral,
                    Kind::Added,
                    &subject,
                    "",
                    Side::New,
                    format!(
                        "new limit: {} by `{}` (applies where routes name it)",
                        rate_text(&n.base),
                        n.key
                    ),
                ),
                (Some(_), None) => self.push(
                    Effect::Neutral,
                    Kind::Removed,
                    &subject,
                    "",
                    Side::Old,
                    "limit removed (the routes it applied to say so)".into(),
                ),
                (Some(o), Some(n)) => {
                    let (looser, tighter, other) = compare_limits(o, n);
                    if looser.is_empty() && tighter.is_empty() && other.is_empty() {
                        continue;
                    }
                    let used = self.routes_with(Side::New, |r| {
                        route_limits(self.new, r).iter().any(|l| **l == *name)
                    });
                    self.push(
                        effect_of(&looser, &tighter),
                        Kind::Changed,
                        &subject,
                        "",
                        Side::New,
                        format!("{} (applies to {used})", reasons(&looser, &tighter, &other)),
                    );
                }
                (None, None) => {}
            }
        }
        let (o, n) = (&self.old.limits.settings, &self.new.limits.settings);
        if o.default != n.default {
            let (added, removed) = delta(&o.default, &n.default);
            let mut looser = Vec::new();
            let mut tighter = Vec::new();
            if !removed.is_empty() {
                looser.push(format!(
                    "routes without `limits` are no longer limited by {}",
                    list(&removed)
                ));
            }
            if !added.is_empty() {
                tighter.push(format!(
                    "routes without `limits` are now also limited by {}",
                    list(&added)
                ));
            }
            self.push(
                effect_of(&looser, &tighter),
                Kind::Changed,
                "rate_limits",
                "default",
                Side::New,
                format!(
                    "{} → {}: {}",
                    list(&o.default),
                    list(&n.default),
                    reasons(&looser, &tighter, &[])
                ),
            );
        }
        let on_down = |r: &Option<crate::limit::RedisSpec>| r.as_ref().map(|r| r.on_down);
        let (a, b) = (on_down(&o.redis), on_down(&n.redis));
        if let (Some(a), Some(b)) = (a, b) {
            if a != b {
                let strictness = |m: OnRedisDown| match m {
                    OnRedisDown::Allow => 0,
                    OnRedisDown::Local => 1,
                    OnRedisDown::Deny => 2,
                };
                let effect = if strictness(b) < strictness(a) {
                    Effect::Weakens
                } else {
                    Effect::Strengthens
                };
                self.push(
                    effect,
                    Kind::Changed,
                    "rate_limits",
                    "on_redis_down",
                    Side::New,
                    format!("{a:?} → {b:?}").to_lowercase(),
                );
            }
        }
        let (a, b) = (&self.old.limits.shedding, &self.new.limits.shedding);
        if a != b {
            let t = |s: &Option<crate::limit::Shedding>| {
                s.as_ref().map_or("off".into(), |s| {
                    format!("max_in_flight {}", s.max_in_flight)
                })
            };
            let side = if b.is_some() { Side::New } else { Side::Old };
            self.push(
                Effect::Neutral,
                Kind::Changed,
                "load_shedding",
                "",
                side,
                format!("{} → {}", t(a), t(b)),
            );
        }
    }

    // ---- IP lists and access ----

    fn ip(&mut self) {
        let (o, n) = (&self.old.limits, &self.new.limits);
        self.ip_rules(
            "ip_access",
            "allow",
            "deny",
            (&o.allow, &o.deny),
            (&n.allow, &n.deny),
            if n.allow.is_empty() && n.deny.is_empty() {
                Side::Old
            } else {
                Side::New
            },
        );
        let mut names: BTreeSet<&Arc<str>> = o.ip_lists.keys().collect();
        names.extend(n.ip_lists.keys());
        for name in names {
            let subject = format!("ip_list.{name}");
            match (o.ip_lists.get(name), n.ip_lists.get(name)) {
                (None, Some(_)) => self.push(
                    Effect::Neutral,
                    Kind::Added,
                    &subject,
                    "",
                    Side::New,
                    "new IP list (applies where `[ip_access]` or routes name it)".into(),
                ),
                (Some(_), None) => self.push(
                    Effect::Neutral,
                    Kind::Removed,
                    &subject,
                    "",
                    Side::Old,
                    "IP list removed".into(),
                ),
                (Some(a), Some(b)) => self.ip_list(&subject, name, a, b),
                (None, None) => {}
            }
        }
    }

    /// A list's addresses changed (inline or in its files): weakening when a deny list lost
    /// addresses or an allow list gained some.
    fn ip_list(&mut self, subject: &str, name: &str, a: &CidrSet, b: &CidrSet) {
        let grew = !b.is_subset_of(a);
        let shrank = !a.is_subset_of(b);
        if !grew && !shrank {
            return;
        }
        let in_deny = self.list_used(name, true);
        let in_allow = self.list_used(name, false);
        let (old_ranges, new_ranges) = (a.ranges(), b.ranges());
        let (added, removed) = delta(&old_ranges, &new_ranges);
        let mut looser = Vec::new();
        let mut tighter = Vec::new();
        let mut other = Vec::new();
        let show = |v: &[String]| {
            let mut s = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 5 {
                s.push_str(&format!(" and {} more", v.len() - 5));
            }
            s
        };
        if grew {
            let line = format!("now matches more addresses (ranges now: {})", show(&added));
            match (&in_allow, &in_deny) {
                (Some(u), _) => looser.push(format!("{line}; allowed by {u}")),
                (None, Some(u)) => tighter.push(format!("{line}; denied by {u}")),
                (None, None) => other.push(format!("{line}; not used")),
            }
        }
        if shrank {
            let line = format!(
                "no longer matches some addresses (ranges before: {})",
                show(&removed)
            );
            match (&in_deny, &in_allow) {
                (Some(u), _) => looser.push(format!("{line}; denied by {u}, so they pass now")),
                (None, Some(u)) => tighter.push(format!("{line}; allowed by {u}")),
                (None, None) => other.push(format!("{line}; not used")),
            }
        }
        self.push(
            effect_of(&looser, &tighter),
            Kind::Changed,
            subject,
            "",
            Side::New,
            reasons(&looser, &tighter, &other),
        );
    }

    /// Who uses list `name` to deny (or allow) in the new policy: `[ip_access]`, routes.
    fn list_used(&self, name: &str, deny: bool) -> Option<String> {
        let l = &self.new.limits;
        let global = if deny { &l.deny } else { &l.allow };
        let mut users: Vec<String> = Vec::new();
        if global.iter().any(|x| &**x == name) {
            users.push("`[ip_access]`".into());
        }
        for r in &self.new.routes {
            let lists = if deny {
                &r.protection.ip_deny
            } else {
                &r.protection.ip_allow
            };
            if lists.iter().any(|x| &**x == name) {
                users.push(format!("route `{}`", r.name));
            }
        }
        (!users.is_empty()).then(|| users.join(", "))
    }

    fn forwarding(&mut self) {
        let (a, b) = (
            &self.old.forwarding.trusted_proxies,
            &self.new.forwarding.trusted_proxies,
        );
        let (sa, sb) = (
            CidrSet::new(a.iter().copied()),
            CidrSet::new(b.iter().copied()),
        );
        if sa == sb {
            return;
        }
        let (effect, why) = if !sb.is_subset_of(&sa) {
            (Effect::Weakens, "X-Forwarded-For is now believed from more peers: a client there can choose its own address for IP lists and limits")
        } else {
            (Effect::Strengthens, "fewer peers are trusted")
        };
        let side = if b.is_empty() { Side::Old } else { Side::New };
        self.push(
            effect,
            Kind::Changed,
            "forwarding",
            "trusted_proxies",
            side,
            format!("{} → {}: {why}", list(a), list(b)),
        );
    }

    // ---- cache ----

    fn cache(&mut self) {
        for (name, o, n) in pairs(&self.old.cache.policies, &self.new.cache.policies, |p| {
            &p.name
        }) {
            let subject = format!("cache.{name}");
            match (o, n) {
                (None, Some(_)) => self.push(
                    Effect::Neutral,
                    Kind::Added,
                    &subject,
                    "",
                    Side::New,
                    "new cache policy".into(),
                ),
                (Some(_), None) => self.push(
                    Effect::Neutral,
                    Kind::Removed,
                    &subject,
                    "",
                    Side::Old,
                    "cache policy removed".into(),
                ),
                (Some(o), Some(n)) if o != n => self.cache_policy(&subject, o, n),
                _ => {}
            }
        }
    }

    fn cache_policy(&mut self, subject: &str, o: &CachePolicy, n: &CachePolicy) {
        let authenticated = self.routes_with(Side::New, |r| {
            r.auth.is_some() && r.cache.as_deref() == Some(&*n.name)
        });
        let used_by_auth = authenticated != "no route";
        let mut looser = Vec::new();
        let mut tighter = Vec::new();
        let mut other = Vec::new();
        match (public(o), public(n)) {
            (false, true) => looser
                .push("responses become public (shared caches and CDNs may store them)".into()),
            (true, false) => tighter.push("responses are no longer public".into()),
            _ => {}
        }
        if o.authenticated != n.authenticated {
            if n.authenticated == AuthenticatedMode::Public {
                looser.push("`authenticated = \"public\"`: responses to credentialed requests get the public headers".into());
            } else {
                tighter.push("responses to credentialed requests are made private".into());
            }
        }
        let (_, lost_cookies) = delta(&o.credential_cookies, &n.credential_cookies);
        if !lost_cookies.is_empty() {
            looser.push(format!(
                "cookies {} no longer count as credentials",
                list(&lost_cookies)
            ));
        }
        let serves_auth = |p: &CachePolicy| p.micro.as_ref().is_some_and(|m| m.per_subject);
        match (&o.micro, &n.micro) {
            (None, Some(_)) if used_by_auth => looser.push(format!(
                "a micro-cache is enabled on authenticated {authenticated}"
            )),
            (None, Some(_)) => other.push("a micro-cache is enabled".into()),
            (Some(_), None) => other.push("the micro-cache is removed".into()),
            (Some(a), Some(b)) if a != b => other.push("micro-cache settings changed".into()),
            _ => {}
        }
        if !serves_auth(o) && serves_auth(n) && o.micro.is_some() && used_by_auth {
            looser
                .push("the micro-cache now stores authenticated responses (`per_subject`)".into());
        }
        if o.directed != n.directed || o.rules != n.rules {
            other.push(format!(
                "Cache-Control {} → {}",
                directed_text(&o.directed),
                directed_text(&n.directed)
            ));
        }
        let fields: [(&str, bool); 6] = [
            ("cdn_header", o.cdn_header != n.cdn_header),
            ("origin", o.origin != n.origin),
            ("vary", o.vary != n.vary),
            ("statuses", o.statuses != n.statuses),
            ("tags", o.tags != n.tags),
            ("rules", o.rules != n.rules),
        ];
        let changed: Vec<&str> = fields.iter().filter(|(_, c)| *c).map(|(f, _)| *f).collect();
        if !changed.is_empty() {
            other.push(format!("changed: {}", changed.join(", ")));
        }
        let used = self.routes_with(Side::New, |r| r.cache.as_deref() == Some(&*n.name));
        self.push(
            effect_of(&looser, &tighter),
            Kind::Changed,
            subject,
            "",
            Side::New,
            format!("{} (used by {used})", reasons(&looser, &tighter, &other)),
        );
    }

    // ---- the rest: neutral ----

    fn rest(&mut self) {
        let (o, n) = (self.old, self.new);
        let oc: Vec<Arc<crate::upstream::ClusterSpec>> =
            o.clusters.iter().cloned().map(Arc::new).collect();
        let nc: Vec<Arc<crate::upstream::ClusterSpec>> =
            n.clusters.iter().cloned().map(Arc::new).collect();
        for (name, a, b) in pairs(&oc, &nc, |c| &c.name) {
            let subject = format!("cluster.{name}");
            match (a, b) {
                (None, Some(b)) => self.push(
                    Effect::Neutral,
                    Kind::Added,
                    &subject,
                    "",
                    Side::New,
                    format!("new cluster: {}", list(&b.endpoints)),
                ),
                (Some(_), None) => self.push(
                    Effect::Neutral,
                    Kind::Removed,
                    &subject,
                    "",
                    Side::Old,
                    "cluster removed".into(),
                ),
                (Some(a), Some(b)) if a != b => {
                    let mut what = Vec::new();
                    if a.endpoints != b.endpoints {
                        what.push(format!(
                            "endpoints {} → {}",
                            list(&a.endpoints),
                            list(&b.endpoints)
                        ));
                    }
                    if a.connect_timeout != b.connect_timeout || a.read_timeout != b.read_timeout {
                        what.push("timeouts changed".into());
                    }
                    if a.tls != b.tls {
                        what.push("upstream TLS changed".into());
                    }
                    if a.health_check != b.health_check {
                        what.push("health check changed".into());
                    }
                    self.push(
                        Effect::Neutral,
                        Kind::Changed,
                        &subject,
                        "",
                        Side::New,
                        what.join("; "),
                    );
                }
                _ => {}
            }
        }
        for (name, a, b) in pairs(&o.shards.maps, &n.shards.maps, |m| &m.name) {
            let subject = format!("shard_map.{name}");
            match (a, b) {
                (None, Some(_)) => self.push(
                    Effect::Neutral,
                    Kind::Added,
                    &subject,
                    "",
                    Side::New,
                    "new shard map".into(),
                ),
                (Some(_), None) => self.push(
                    Effect::Neutral,
                    Kind::Removed,
                    &subject,
                    "",
                    Side::Old,
                    "shard map removed".into(),
                ),
                (Some(a), Some(b)) if a != b => self.push(
                    Effect::Neutral,
                    Kind::Changed,
                    &subject,
                    "",
                    Side::New,
                    "shards, ranges or pins changed (requests may move to other clusters)".into(),
                ),
                _ => {}
            }
        }
        let mut clusters: BTreeSet<&Arc<str>> = o.resilience.keys().collect();
        clusters.extend(n.resilience.keys());
        for c in clusters {
            let (a, b) = (o.resilience.get(c), n.resilience.get(c));
            if a != b {
                let kind = match (a, b) {
                    (None, _) => Kind::Added,
                    (_, None) => Kind::Removed,
                    _ => Kind::Changed,
                };
                let side = if b.is_some() { Side::New } else { Side::Old };
                self.push(
                    Effect::Neutral,
                    kind,
                    &format!("resilience.{c}"),
                    "",
                    side,
                    "breaker, ejection, bulkhead or retry settings changed".into(),
                );
            }
        }
        if o.access_log != n.access_log {
            self.push(
                Effect::Neutral,
                Kind::Changed,
                "access_log",
                "",
                Side::New,
                "what access-log records keep changed".into(),
            );
        }
    }
}

/// Whether a policy may make responses shareable: `public` or `s-maxage` in any header it
/// sets, at the top level or in a rule.
fn public(p: &CachePolicy) -> bool {
    std::iter::once(&p.directed)
        .chain(p.rules.iter().map(|r| &r.directed))
        .flat_map(|d| [&d.cache_control, &d.cdn_cache_control])
        .flatten()
        .any(|r| r.directives.public || r.directives.s_maxage.is_some())
}

/// How a route's responses may be shared, given its cache policy and auth rule.
fn exposure(s: &Snapshot, r: &Route) -> Vec<&'static str> {
    let Some(p) = r.cache.as_deref().and_then(|c| s.cache.get(c)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if public(p) {
        out.push("public");
    }
    if r.auth.is_some() {
        if p.authenticated == AuthenticatedMode::Public {
            out.push("public for credentialed requests");
        }
        if p.micro.is_some() {
            out.push("micro-cached while authenticated");
        }
    }
    out
}

fn directed_text(d: &Directed) -> String {
    d.cache_control
        .as_ref()
        .map_or("none".into(), |r| format!("`{}`", r.directives.render()))
}

fn hosts_text(hosts: &[HostMatch]) -> String {
    if hosts.is_empty() {
        return "any host".into();
    }
    list(hosts.iter().map(|h| group_text(&Some(h.clone()))))
}

fn methods_text(m: &Option<Vec<http::Method>>) -> String {
    m.as_ref().map_or("any method".into(), |ms| list(ms.iter()))
}

fn target_text(t: &RouteTarget) -> String {
    match t {
        RouteTarget::Cluster(c) => format!("cluster `{c}`"),
        RouteTarget::Shard(s) => format!("shard map `{}` by `{}`", s.map, s.key),
    }
}

fn rate_text(r: &Rate) -> String {
    format!(
        "{}/{} (burst {})",
        r.rate,
        humantime::format_duration(r.per),
        r.burst
    )
}

/// `a` lets more requests through per unit of time than `b`.
fn faster(a: &Rate, b: &Rate) -> bool {
    u128::from(a.rate.get()) * b.per.as_nanos() > u128::from(b.rate.get()) * a.per.as_nanos()
}

/// Looser, tighter and neutral differences of one rate (`what` names it in messages).
fn compare_rates(
    what: &str,
    a: &Rate,
    b: &Rate,
    looser: &mut Vec<String>,
    tighter: &mut Vec<String>,
) {
    let line = format!("{what} {} → {}", rate_text(a), rate_text(b));
    let (up, down) = (
        faster(b, a) || b.burst > a.burst,
        faster(a, b) || a.burst > b.burst,
    );
    if up {
        looser.push(format!("{line}: raised"));
    } else if down {
        tighter.push(format!("{line}: lowered"));
    }
}

/// Looser, tighter and neutral differences of two auth rules.
fn compare_rules(a: &RuleSpec, b: &RuleSpec) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut looser = Vec::new();
    let mut tighter = Vec::new();
    let mut other = Vec::new();
    if a.mode != b.mode {
        if b.mode == AuthMode::Optional {
            looser
                .push("mode required → optional: requests without a token pass anonymously".into());
        } else {
            tighter.push("mode optional → required".into());
        }
    }
    let (ra, rb) = (Scopes::of(a), Scopes::of(b));
    if ra != rb {
        let line = format!("scopes {} → {}", ra, rb);
        match (rb.implies(&ra), ra.implies(&rb)) {
            (true, false) => tighter.push(line),
            (false, _) => looser.push(format!("{line}: tokens with fewer scopes pass")),
            (true, true) => other.push(line),
        }
    }
    for (claim, values) in &a.claims {
        match b.claims.iter().find(|(c, _)| c == claim) {
            None => looser.push(format!("claim `{claim}` no longer required")),
            Some((_, nv)) => {
                let (added, removed) = delta(values, nv);
                if !added.is_empty() {
                    looser.push(format!("claim `{claim}` accepts {} too", list(&added)));
                }
                if !removed.is_empty() {
                    tighter.push(format!(
                        "claim `{claim}` no longer accepts {}",
                        list(&removed)
                    ));
                }
            }
        }
    }
    for (claim, _) in &b.claims {
        if !a.claims.iter().any(|(c, _)| c == claim) {
            tighter.push(format!("claim `{claim}` now required"));
        }
    }
    let (added, removed) = delta(&a.issuers, &b.issuers);
    if !added.is_empty() {
        looser.push(format!("accepts tokens from {} too", list(&added)));
    }
    if !removed.is_empty() {
        tighter.push(format!("no longer accepts tokens from {}", list(&removed)));
    }
    if a.forward_claims != b.forward_claims {
        other.push("forward_claims changed".into());
    }
    if a.forward_authorization != b.forward_authorization {
        other.push(format!(
            "forward_authorization {} → {}",
            a.forward_authorization, b.forward_authorization
        ));
    }
    if a.realm != b.realm {
        other.push(format!("realm `{}` → `{}`", a.realm, b.realm));
    }
    (looser, tighter, other)
}

/// A rule's scope requirement, normalised: one scope is the same under `all` and `any`.
#[derive(PartialEq, Eq)]
enum Scopes {
    None,
    All(BTreeSet<String>),
    Any(BTreeSet<String>),
}

impl Scopes {
    fn of(r: &RuleSpec) -> Scopes {
        let set: BTreeSet<String> = r.scopes.iter().cloned().collect();
        match (set.len(), r.scopes_match) {
            (0, _) => Scopes::None,
            (1, _) | (_, ScopesMatch::All) => Scopes::All(set),
            (_, ScopesMatch::Any) => Scopes::Any(set),
        }
    }

    /// Every token that meets `self` also meets `other`.
    fn implies(&self, other: &Scopes) -> bool {
        match (self, other) {
            (_, Scopes::None) => true,
            (Scopes::None, _) => false,
            (Scopes::All(a), Scopes::All(b)) => b.is_subset(a),
            (Scopes::All(a), Scopes::Any(b)) => !a.is_disjoint(b),
            (Scopes::Any(_), Scopes::All(_)) => false,
            (Scopes::Any(a), Scopes::Any(b)) => a.is_subset(b),
        }
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scopes::None => f.write_str("none"),
            Scopes::All(s) => write!(f, "all of {}", list(s)),
            Scopes::Any(s) => write!(f, "any of {}", list(s)),
        }
    }
}

/// Looser, tighter and neutral differences of two issuers.
fn compare_issuers(a: &IssuerSpec, b: &IssuerSpec) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut looser = Vec::new();
    let mut tighter = Vec::new();
    let mut other = Vec::new();
    if a.iss != b.iss {
        looser.push(format!(
            "iss `{}` → `{}`: tokens of another issuer are accepted",
            a.iss, b.iss
        ));
    }
    let (added, removed) = delta(&a.audiences, &b.audiences);
    if !added.is_empty() {
        looser.push(format!("audiences {} accepted too", list(&added)));
    }
    if !removed.is_empty() {
        tighter.push(format!("audiences {} no longer accepted", list(&removed)));
    }
    let (added, removed) = delta(&a.algorithms, &b.algorithms);
    if !added.is_empty() {
        looser.push(format!(
            "algorithms {} accepted too",
            list(added.iter().map(|x| format!("{x:?}")))
        ));
    }
    if !removed.is_empty() {
        tighter.push(format!(
            "algorithms {} no longer accepted",
            list(removed.iter().map(|x| format!("{x:?}")))
        ));
    }
    let d = |x: Duration| humantime::format_duration(x).to_string();
    if a.leeway != b.leeway {
        let line = format!("leeway {} → {}", d(a.leeway), d(b.leeway));
        if b.leeway > a.leeway {
            looser.push(line)
        } else {
            tighter.push(line)
        }
    }
    if a.max_lifetime != b.max_lifetime {
        let t = |x: Option<Duration>| x.map_or("unlimited".into(), d);
        let line = format!("max_lifetime {} → {}", t(a.max_lifetime), t(b.max_lifetime));
        let longer = match (a.max_lifetime, b.max_lifetime) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => y > x,
        };
        if longer {
            looser.push(line)
        } else {
            tighter.push(line)
        }
    }
    let (added, removed) = delta(&a.required_claims, &b.required_claims);
    if !removed.is_empty() {
        looser.push(format!("claims {} no longer required", list(&removed)));
    }
    if !added.is_empty() {
        tighter.push(format!("claims {} now required", list(&added)));
    }
    match (&a.jwks, &b.jwks) {
        (Some(JwksSource::Url(x)), Some(JwksSource::Url(y))) if x.url != y.url => {
            looser.push(format!(
                "keys fetched from `{}` instead of `{}`",
                y.url, x.url
            ));
        }
        (Some(JwksSource::Url(x)), Some(JwksSource::Url(y))) if x != y => {
            other.push("JWKS refresh settings changed".into())
        }
        (
            Some(JwksSource::File { path: p, bytes: x }),
            Some(JwksSource::File { path: q, bytes: y }),
        ) if p != q || x != y => {
            other.push(format!("key set `{p}` → `{q}` changed: review the keys"));
        }
        (x, y) if x != y => looser.push("keys come from another source: review the keys".into()),
        _ => {}
    }
    if a.secret != b.secret {
        other.push("HMAC secret changed".into());
    }
    if a.token != b.token {
        other.push(format!("token taken from {:?} → {:?}", a.token, b.token));
    }
    if a.max_token_bytes != b.max_token_bytes || a.cache_tokens != b.cache_tokens {
        other.push("token size or caching changed".into());
    }
    (looser, tighter, other)
}

/// Looser, tighter and neutral differences of two limits.
fn compare_limits(a: &LimitSpec, b: &LimitSpec) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut looser = Vec::new();
    let mut tighter = Vec::new();
    let mut other = Vec::new();
    compare_rates("rate", &a.base, &b.base, &mut looser, &mut tighter);
    for (tier, rb) in &b.tiers {
        // A new tier replaces the base rate for its requests.
        let ra = a
            .tiers
            .iter()
            .find(|(t, _)| t == tier)
            .map_or(&a.base, |(_, r)| r);
        compare_rates(&format!("tier `{tier}`"), ra, rb, &mut looser, &mut tighter);
    }
    for (tier, ra) in &a.tiers {
        if !b.tiers.iter().any(|(t, _)| t == tier) {
            compare_rates(
                &format!("tier `{tier}` (removed: base rate)"),
                ra,
                &b.base,
                &mut looser,
                &mut tighter,
            );
        }
    }
    if a.mode != b.mode {
        if b.mode == Mode::Shadow {
            looser.push(
                "shadow mode switched on: requests over the limit pass (only recorded)".into(),
            );
        } else {
            tighter.push("enforced (was shadow)".into());
        }
    }
    if a.scope != b.scope {
        if b.scope == Scope::Local {
            looser.push(
                "scope cluster → local: each instance counts on its own (the rate is per instance)"
                    .into(),
            );
        } else {
            tighter.push("scope local → cluster: one budget shared by every instance".into());
        }
    }
    for (m, cb) in &b.cost {
        let ca = a
            .cost
            .iter()
            .find(|(x, _)| x == m)
            .map_or(1, |(_, c)| c.get());
        if cb.get() < ca {
            looser.push(format!("cost of {m} {ca} → {cb}"));
        } else if cb.get() > ca {
            tighter.push(format!("cost of {m} {ca} → {cb}"));
        }
    }
    for (m, ca) in &a.cost {
        if ca.get() > 1 && !b.cost.iter().any(|(x, _)| x == m) {
            looser.push(format!("cost of {m} {ca} → 1"));
        }
    }
    if a.key != b.key {
        let line = format!("key `{}` → `{}`", a.key, b.key);
        if client_chosen(b) && !client_chosen(a) {
            looser.push(format!(
                "{line}: a value the client chooses (a new value is a fresh bucket)"
            ));
        } else {
            other.push(line);
        }
    }
    if a.tier_key != b.tier_key {
        other.push("tier key changed".into());
    }
    if a.lease != b.lease || a.max_keys != b.max_keys {
        other.push("lease or max_keys changed".into());
    }
    (looser, tighter, other)
}

/// Text for `gateway diff`: one line per change, then a summary.
pub fn render_text(changes: &[Change]) -> String {
    let mut out = String::new();
    for c in changes {
        out.push_str(&c.to_string());
        out.push('\n');
    }
    let count = |e: Effect| changes.iter().filter(|c| c.effect == e).count();
    if changes.is_empty() {
        out.push_str("no semantic changes\n");
    } else {
        out.push_str(&format!(
            "{} change(s): {} weaken security, {} strengthen, {} neutral\n",
            changes.len(),
            count(Effect::Weakens),
            count(Effect::Strengthens),
            count(Effect::Neutral)
        ));
    }
    out
}

/// JSON for `gateway diff --format json`: `{"weakens": n, "changes": [...]}`.
pub fn render_json(changes: &[Change]) -> String {
    #[derive(Serialize)]
    struct Report<'a> {
        weakens: usize,
        strengthens: usize,
        neutral: usize,
        changes: &'a [Change],
    }
    let count = |e: Effect| changes.iter().filter(|c| c.effect == e).count();
    serde_json::to_string_pretty(&Report {
        weakens: count(Effect::Weakens),
        strengthens: count(Effect::Strengthens),
        neutral: count(Effect::Neutral),
        changes,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::lint::tests::{load, BASE};

    const ROUTES: &str = "[[route]]\nname = \"account\"\nhosts = [\"api.test\"]\npath_prefix = \"/v1/account\"\ncluster = \"api\"\nauth = \"users\"\nlimits = [\"per_ip\"]\ncache = \"personal\"\n[[route]]\nname = \"root\"\nhosts = [\"api.test\"]\ncluster = \"api\"\n";
    const LIMITS: &str = "[limit.per_ip]\nkey = \"ip\"\nrate = 100\nper = \"1s\"\nburst = 200\n[ip_list.blocked]\ncidrs = [\"192.0.2.0/24\", \"198.51.100.7\"]\n[ip_access]\ndeny = [\"blocked\"]\n[forwarding]\ntrusted_proxies = [\"10.0.0.0/8\"]\n[cache.personal]\ncache_control = \"private, max-age=60\"\n";

    /// Diff the base policy against one with `edit(file) ` applied to its texts.
    fn changes(edit: impl Fn(&str) -> String) -> Vec<Change> {
        let files = [
            ("base.toml", BASE),
            ("routes.toml", ROUTES),
            ("limits.toml", LIMITS),
        ];
        let old = load(&files);
        let edited: Vec<(&str, String)> = files.iter().map(|(n, t)| (*n, edit(t))).collect();
        let edited: Vec<(&str, &str)> = edited.iter().map(|(n, t)| (*n, t.as_str())).collect();
        let new = load(&edited);
        diff(&old, &new)
    }

    fn weakening(c: &[Change]) -> Vec<String> {
        c.iter()
            .filter(|c| c.effect == Effect::Weakens)
            .map(|c| format!("{}.{}: {}", c.subject, c.field, c.message))
            .collect()
    }

    #[test]
    fn identical_policies_have_no_changes() {
        let c =
            changes(|t| format!("# a comment\n{t}").replace("per = \"1s\"", "per = \"1000ms\""));
        assert!(c.is_empty(), "{c:#?}");
    }

    #[test]
    fn auth_removed_from_a_route_weakens() {
        let c = changes(|t| t.replace("auth = \"users\"\n", ""));
        let w = weakening(&c);
        assert!(
            w.iter()
                .any(|l| l.starts_with("route.account.auth: `users` → none")),
            "{w:#?}"
        );
        let line = c.iter().find(|c| c.subject == "route.account").unwrap();
        assert!(
            line.file.ends_with("routes.toml") && line.line == 2,
            "{line:?}"
        );
    }

    #[test]
    fn removing_an_authenticated_route_opens_its_paths() {
        let c = changes(|t| {
            t.replace(
                "name = \"account\"",
                "name = \"gone\"\nhosts = [\"x.test\"]",
            )
            .replace(
                "hosts = [\"api.test\"]\npath_prefix = \"/v1/account\"",
                "path_prefix = \"/v1/account\"",
            )
        });
        let w = weakening(&c);
        assert!(w.iter().any(|l| l.starts_with("route.account.: route removed: on api.test `/v1/account` now goes to route `root` (no auth rule)")), "{w:#?}");
    }

    #[test]
    fn auth_rule_weakening() {
        let c = changes(|t| t.replace("[auth.users]\n", "[auth.users]\nmode = \"optional\"\n"));
        let w = weakening(&c);
        assert!(
            w.iter()
                .any(|l| l.starts_with("auth.users.: mode required → optional")
                    && l.ends_with("(weakens routes `account`)")),
            "{w:#?}"
        );
        let scoped = |s: &str| {
            let s = s.to_string();
            move |t: &str| t.replace("[auth.users]\n", &format!("[auth.users]\n{s}"))
        };
        let files = [
            ("base.toml", BASE),
            ("routes.toml", ROUTES),
            ("limits.toml", LIMITS),
        ];
        let edit = |f: &dyn Fn(&str) -> String| {
            let e: Vec<(&str, String)> = files.iter().map(|(n, t)| (*n, f(t))).collect();
            let e: Vec<(&str, &str)> = e.iter().map(|(n, t)| (*n, t.as_str())).collect();
            load(&e)
        };
        let all = edit(&scoped("scopes = [\"a\", \"b\"]\n"));
        let any = edit(&scoped("scopes = [\"a\", \"b\"]\nscopes_match = \"any\"\n"));
        let one = edit(&scoped("scopes = [\"a\"]\n"));
        let eff = |a: &Snapshot, b: &Snapshot| {
            diff(a, b)
                .iter()
                .find(|c| c.subject == "auth.users")
                .map(|c| c.effect)
        };
        assert_eq!(eff(&all, &any), Some(Effect::Weakens));
        assert_eq!(eff(&all, &one), Some(Effect::Weakens));
        assert_eq!(eff(&one, &all), Some(Effect::Strengthens));
        assert_eq!(eff(&any, &all), Some(Effect::Strengthens));
    }

    #[test]
    fn issuer_weakening() {
        let c = changes(|t| {
            t.replace("audiences = [\"api\"]", "audiences = [\"api\", \"other\"]")
                .replace(
                    "algorithms = [\"RS256\"]",
                    "algorithms = [\"RS256\", \"ES256\"]",
                )
        });
        let w = weakening(&c);
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(
            w[0].contains("audiences `other` accepted too; algorithms `ES256` accepted too"),
            "{w:#?}"
        );
    }

    #[test]
    fn limits_raised_shadowed_or_dropped() {
        let w = weakening(&changes(|t| t.replace("rate = 100", "rate = 1000")));
        assert!(
            w.iter().any(|l| l.starts_with(
                "limit.per_ip.: rate 100/1s (burst 200) → 1000/1s (burst 200): raised"
            )),
            "{w:#?}"
        );
        let w = weakening(&changes(|t| {
            t.replace("burst = 200\n", "burst = 200\nmode = \"shadow\"\n")
        }));
        assert!(
            w.iter().any(|l| l.contains("shadow mode switched on")),
            "{w:#?}"
        );
        let w = weakening(&changes(|t| {
            t.replace("limits = [\"per_ip\"]", "limits = []")
        }));
        assert!(
            w.iter().any(|l| l.starts_with(
                "route.account.limits: `per_ip` → none: no longer limited by `per_ip`"
            )),
            "{w:#?}"
        );
        let c = changes(|t| t.replace("rate = 100", "rate = 50"));
        assert!(
            weakening(&c).is_empty() && c[0].effect == Effect::Strengthens,
            "{c:#?}"
        );
    }

    #[test]
    fn ip_lists_and_proxies() {
        let w = weakening(&changes(|t| t.replace(", \"198.51.100.7\"", "")));
        assert!(w.iter().any(|l| l.starts_with("ip_list.blocked.: no longer matches some addresses (ranges before: 198.51.100.7/32); denied by `[ip_access]`")), "{w:#?}");
        let w = weakening(&changes(|t| t.replace("deny = [\"blocked\"]", "")));
        assert!(
            w.iter()
                .any(|l| l.starts_with("ip_access.deny: `blocked` → none")),
            "{w:#?}"
        );
        let w = weakening(&changes(|t| t.replace("\"10.0.0.0/8\"", "\"0.0.0.0/0\"")));
        assert!(
            w.iter()
                .any(|l| l.starts_with("forwarding.trusted_proxies: `10.0.0.0/8` → `0.0.0.0/0`")),
            "{w:#?}"
        );
        let c = changes(|t| t.replace("\"198.51.100.7\"", "\"198.51.100.7\", \"203.0.113.0/24\""));
        assert_eq!(c.len(), 1, "{c:#?}");
        assert_eq!(c[0].effect, Effect::Strengthens);
    }

    #[test]
    fn cache_made_public() {
        let w = weakening(&changes(|t| {
            t.replace("private, max-age=60", "public, max-age=60")
        }));
        assert!(
            w.iter()
                .any(|l| l.starts_with("cache.personal.: responses become public")),
            "{w:#?}"
        );
        let w = weakening(&changes(|t| {
            t.replace(
                "\"private, max-age=60\"\n",
                "\"private, max-age=60\"\n[cache.personal.micro_cache]\nmax_bytes = \"1MiB\"\n",
            )
        }));
        assert!(
            w.iter()
                .any(|l| l.contains("a micro-cache is enabled on authenticated routes `account`")),
            "{w:#?}"
        );
    }

    #[test]
    fn new_open_route_weakens() {
        let c = changes(|t| {
            t.replace("name = \"root\"\nhosts = [\"api.test\"]\ncluster = \"api\"\n", "name = \"root\"\nhosts = [\"api.test\"]\ncluster = \"api\"\n[[route]]\nname = \"debug\"\nhosts = [\"api.test\"]\npath_prefix = \"/debug\"\ncluster = \"api\"\n")
        });
        let w = weakening(&c);
        assert_eq!(w, ["route.debug.: new route without an auth rule: `api.test` `/debug` → cluster `api` is open"], "{c:#?}");
    }
}
