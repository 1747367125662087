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
//! it. Where a definition's change affects routes (an auth rule, a limit, an IP list, a cache
//! policy), the message names them.

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
    /// The field that changed (`auth`, `limits`, `default`); empty for a whole definition.
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
/// maps, resilience, access log).
pub fn diff(old: &Snapshot, new: &Snapshot) -> Vec<Change> {
    let mut d = Diff {
        old,
        new,
        out: Vec::new(),
    };
    d.routes();
    d.auth();
    d.limits();
    d.ip();
    d.forwarding();
    d.cache();
    d.rest();
    d.out
}

/// Text for `gateway diff`: one line per change, then a summary.
pub fn render_text(changes: &[Change]) -> String {
    let mut out: String = changes.iter().map(|c| format!("{c}\n")).collect();
    if changes.is_empty() {
        out.push_str("no semantic changes\n");
    } else {
        let [w, s, n] = counts(changes);
        out.push_str(&format!(
            "{} change(s): {w} weaken security, {s} strengthen, {n} neutral\n",
            changes.len()
        ));
    }
    out
}

/// JSON for `gateway diff --format json`: the counts by effect and the changes.
pub fn render_json(changes: &[Change]) -> String {
    #[derive(Serialize)]
    struct Report<'a> {
        weakens: usize,
        strengthens: usize,
        neutral: usize,
        changes: &'a [Change],
    }
    let [weakens, strengthens, neutral] = counts(changes);
    serde_json::to_string_pretty(&Report {
        weakens,
        strengthens,
        neutral,
        changes,
    })
    .unwrap_or_default()
}

fn counts(changes: &[Change]) -> [usize; 3] {
    let count = |e: Effect| changes.iter().filter(|c| c.effect == e).count();
    [
        count(Effect::Weakens),
        count(Effect::Strengthens),
        count(Effect::Neutral),
    ]
}

/// What comparing one definition found: loosening, tightening and neutral differences.
#[derive(Default)]
struct Found {
    looser: Vec<String>,
    tighter: Vec<String>,
    other: Vec<String>,
}

impl Found {
    fn looser(&mut self, s: impl Into<String>) {
        self.looser.push(s.into());
    }

    fn tighter(&mut self, s: impl Into<String>) {
        self.tighter.push(s.into());
    }

    fn other(&mut self, s: impl Into<String>) {
        self.other.push(s.into());
    }

    /// A difference that loosens when `looser`, else tightens.
    fn either(&mut self, looser: bool, s: impl Into<String>) {
        if looser {
            self.looser(s)
        } else {
            self.tighter(s)
        }
    }

    /// `old` → `new` for a set where more values let more through: the values added loosen
    /// (`more`, with `{}` standing for them), the values dropped tighten (`fewer`).
    fn wider<T: PartialEq + Clone + fmt::Display>(
        &mut self,
        old: &[T],
        new: &[T],
        more: &str,
        fewer: &str,
    ) {
        let (added, removed) = delta(old, new);
        if !added.is_empty() {
            self.looser(more.replace("{}", &list(&added)));
        }
        if !removed.is_empty() {
            self.tighter(fewer.replace("{}", &list(&removed)));
        }
    }

    fn is_empty(&self) -> bool {
        self.looser.is_empty() && self.tighter.is_empty() && self.other.is_empty()
    }

    /// Weakens when anything loosens, else strengthens when anything tightens.
    fn effect(&self) -> Effect {
        if !self.looser.is_empty() {
            Effect::Weakens
        } else if !self.tighter.is_empty() {
            Effect::Strengthens
        } else {
            Effect::Neutral
        }
    }

    /// The differences, loosening ones first.
    fn text(&self) -> String {
        let all: Vec<&str> = self
            .looser
            .iter()
            .chain(&self.tighter)
            .chain(&self.other)
            .map(String::as_str)
            .collect();
        all.join("; ")
    }
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

/// `what a, b` for names, or `none` when there are none: "routes `a`, `b`".
fn named(what: &str, names: Vec<String>) -> String {
    if names.is_empty() {
        format!("no {what}")
    } else {
        format!("{what}s {}", names.join(", "))
    }
}

/// The routes of `s` that `pick` selects, as code spans.
fn routes_where(s: &Snapshot, pick: impl Fn(&Route) -> bool) -> Vec<String> {
    s.routes
        .iter()
        .filter(|r| pick(r))
        .map(|r| format!("`{}`", r.name))
        .collect()
}

/// What `new` adds to `old` and what it drops, by value.
fn delta<T: PartialEq + Clone>(old: &[T], new: &[T]) -> (Vec<T>, Vec<T>) {
    let added = new.iter().filter(|x| !old.contains(x)).cloned().collect();
    let removed = old.iter().filter(|x| !new.contains(x)).cloned().collect();
    (added, removed)
}

fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// How a named kind of definition is compared.
struct Defs<'f, T> {
    /// `issuer`, `auth`, `limit`...: the subject is `<kind>.<name>`.
    kind: &'static str,
    name: fn(&T) -> &str,
    added: &'f dyn Fn(&T) -> String,
    removed: &'static str,
    /// The differences of a definition kept under its name, and who uses it.
    changed: &'f dyn Fn(&T, &T) -> (Found, String),
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
        (subject, field): (&str, &str),
        side: Side,
        message: String,
    ) {
        let other = match side {
            Side::Old => Side::New,
            Side::New => Side::Old,
        };
        // A section only one side has (`[ip_access]` added or dropped) is placed in that one.
        let origin = self
            .snap(side)
            .origins
            .get(subject)
            .or_else(|| self.snap(other).origins.get(subject));
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

    /// A field changed: the differences found, with `was → is` in front.
    fn changed(&mut self, at: (&str, &str), was: String, is: String, found: &Found) {
        let mut message = format!("{was} → {is}");
        if !found.is_empty() {
            message = format!("{message}: {}", found.text());
        }
        self.push(found.effect(), Kind::Changed, at, Side::New, message);
    }

    /// A field changed with no bearing on security.
    fn neutral(&mut self, at: (&str, &str), was: String, is: String) {
        self.changed(at, was, is, &Found::default());
    }

    /// Added, removed and changed definitions of one kind; additions and removals are
    /// neutral (their effect shows where routes start or stop using them).
    fn defs<T>(&mut self, old: &[Arc<T>], new: &[Arc<T>], d: Defs<'_, T>) {
        for (name, o, n) in pairs(old, new, d.name) {
            let subject = format!("{}.{name}", d.kind);
            let at = (subject.as_str(), "");
            match (o, n) {
                (None, Some(n)) => {
                    self.push(Effect::Neutral, Kind::Added, at, Side::New, (d.added)(n))
                }
                (Some(_), None) => self.push(
                    Effect::Neutral,
                    Kind::Removed,
                    at,
                    Side::Old,
                    d.removed.into(),
                ),
                (Some(o), Some(n)) => {
                    let (found, used) = (d.changed)(o, n);
                    if !found.is_empty() {
                        let message = format!("{} ({used})", found.text());
                        self.push(found.effect(), Kind::Changed, at, Side::New, message);
                    }
                }
                (None, None) => {}
            }
        }
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
        let (effect, message) = match &n.auth {
            None => (
                Effect::Weakens,
                format!("new route without an auth rule: {what} is open"),
            ),
            Some(a) => (Effect::Neutral, format!("new route: {what}, auth `{a}`")),
        };
        self.push(effect, Kind::Added, (subject, ""), Side::New, message);
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
        let message = format!("route removed: {}", now.join("; "));
        self.push(effect, Kind::Removed, (subject, ""), Side::Old, message);
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
        let at = |field| (subject, field);
        if o.hosts != n.hosts {
            self.neutral(at("hosts"), hosts_text(&o.hosts), hosts_text(&n.hosts));
        }
        if o.path_prefix != n.path_prefix || o.prefix_match != n.prefix_match {
            let text = |r: &Route| format!("`{}` ({:?})", r.path_prefix, r.prefix_match);
            self.neutral(at("path_prefix"), text(o), text(n));
        }
        if o.methods != n.methods {
            self.neutral(at("methods"), methods_text(o), methods_text(n));
        }
        let rematched = o.hosts != n.hosts
            || o.path_prefix != n.path_prefix
            || o.prefix_match != n.prefix_match
            || o.methods != n.methods;
        if rematched && o.auth.is_some() {
            let (opened, now) = self.moved(o);
            if opened {
                let message = format!("requests it authenticated {}", now.join("; "));
                self.push(
                    Effect::Weakens,
                    Kind::Changed,
                    at("match"),
                    Side::New,
                    message,
                );
            }
        }
        if o.target != n.target {
            self.neutral(at("target"), target_text(&o.target), target_text(&n.target));
        }
        if o.canary != n.canary {
            self.neutral(at("canary"), canary_text(o), canary_text(n));
        }
        if o.forward_path != n.forward_path {
            let text = |r: &Route| format!("{:?}", r.forward_path).to_lowercase();
            self.neutral(at("forward_path"), text(o), text(n));
        }
        self.route_auth(subject, o, n);
        self.route_limits(subject, o, n);
        let (op, np) = (&o.protection, &n.protection);
        self.ip_rules(
            (subject, "ip_allow", "ip_deny"),
            (&op.ip_allow, &op.ip_deny),
            (&np.ip_allow, &np.ip_deny),
        );
        if op.cost != np.cost {
            let mut found = Found::default();
            found.either(
                np.cost < op.cost,
                "the cost of a request changed: fewer tokens mean more requests pass",
            );
            self.changed(
                at("limit_cost"),
                op.cost.to_string(),
                np.cost.to_string(),
                &found,
            );
        }
        if op.priority != np.priority {
            self.neutral(
                at("priority"),
                op.priority.to_string(),
                np.priority.to_string(),
            );
        }
        if op.headers != np.headers {
            self.neutral(
                at("rate_limit_headers"),
                op.headers.to_string(),
                np.headers.to_string(),
            );
        }
        self.route_cache(subject, o, n);
        if o.timeout != n.timeout {
            let t = |r: &Route| r.timeout.map_or("the cluster's".into(), dur);
            self.neutral(at("timeout"), t(o), t(n));
        }
        if o.retry_idempotent_writes != n.retry_idempotent_writes {
            self.neutral(
                at("retry_idempotent_writes"),
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
        let name = |r: &Route| {
            r.auth
                .as_deref()
                .map_or("none".into(), |a| format!("`{a}`"))
        };
        let mut found = Found::default();
        match (rule(self.old, o), rule(self.new, n)) {
            (Some(_), None) => found.looser("the route no longer authenticates requests"),
            (None, Some(_)) => found.tighter("requests are authenticated now"),
            (Some(a), Some(b)) => found = compare_rules(a, b),
            (None, None) => {}
        }
        self.changed((subject, "auth"), name(o), name(n), &found);
    }

    /// The limits that apply to a route (its own or the default set), by name.
    fn route_limits(&mut self, subject: &str, o: &Route, n: &Route) {
        let (was, is) = (route_limits(self.old, o), route_limits(self.new, n));
        if was == is {
            return;
        }
        let mut found = Found::default();
        found.wider(is, was, "no longer limited by {}", "now also limited by {}");
        self.changed((subject, "limits"), list(was), list(is), &found);
    }

    /// Allow and deny list names of a route or of `[ip_access]`. A deny list dropped, or an
    /// allow list added to a non-empty set (or the set emptied: everyone) widens access.
    fn ip_rules(
        &mut self,
        (subject, allow_field, deny_field): (&str, &str, &str),
        (old_allow, old_deny): (&[Arc<str>], &[Arc<str>]),
        (new_allow, new_deny): (&[Arc<str>], &[Arc<str>]),
    ) {
        if old_allow != new_allow {
            let (added, removed) = delta(old_allow, new_allow);
            let mut found = Found::default();
            if new_allow.is_empty() {
                found.looser("no allow list left: every address not denied is let in");
            } else if old_allow.is_empty() {
                found.tighter("only the listed addresses are let in now");
            } else if !added.is_empty() {
                found.looser(format!("addresses in {} are let in too", list(&added)));
            } else {
                found.tighter(format!(
                    "addresses only in {} are refused now",
                    list(&removed)
                ));
            }
            self.changed(
                (subject, allow_field),
                list(old_allow),
                list(new_allow),
                &found,
            );
        }
        if old_deny != new_deny {
            let (added, removed) = delta(old_deny, new_deny);
            let mut found = Found::default();
            if !removed.is_empty() {
                found.looser(format!(
                    "addresses in {} are no longer refused",
                    list(&removed)
                ));
            } else {
                found.tighter(format!("addresses in {} are refused now", list(&added)));
            }
            self.changed(
                (subject, deny_field),
                list(old_deny),
                list(new_deny),
                &found,
            );
        }
    }

    /// A route's cache policy replaced, added or dropped: weakening when the route's
    /// responses become shareable in a way they were not (see [`exposure`]).
    fn route_cache(&mut self, subject: &str, o: &Route, n: &Route) {
        if o.cache == n.cache {
            return;
        }
        let (was, is) = (exposure(self.old, o), exposure(self.new, n));
        let (gained, lost) = delta(&was, &is);
        let mut found = Found::default();
        if !gained.is_empty() {
            found.looser(format!("now {}", gained.join(", ")));
        }
        if !lost.is_empty() {
            found.tighter(format!("no longer {}", lost.join(", ")));
        }
        let name = |r: &Route| {
            r.cache
                .as_deref()
                .map_or("none".into(), |c| format!("`{c}`"))
        };
        self.changed((subject, "cache"), name(o), name(n), &found);
    }

    // ---- auth ----

    fn auth(&mut self) {
        let (old, new) = (self.old, self.new);
        let rules_using = |issuer: &str| {
            let names = new
                .auth
                .rules
                .iter()
                .filter(|r| r.issuers.iter().any(|i| &**i == issuer))
                .map(|r| format!("`{}`", r.name))
                .collect();
            format!("used by {}", named("auth rule", names))
        };
        self.defs(
            &old.auth.issuers,
            &new.auth.issuers,
            Defs {
                kind: "issuer",
                name: |i: &IssuerSpec| &i.name,
                added: &|_| "new issuer (trusted by the rules that name it)".into(),
                removed: "issuer removed",
                changed: &|o, n| (compare_issuers(o, n), rules_using(&n.name)),
            },
        );
        self.defs(
            &old.auth.rules,
            &new.auth.rules,
            Defs {
                kind: "auth",
                name: |r: &RuleSpec| &r.name,
                added: &|_| "new auth rule".into(),
                removed: "auth rule removed",
                changed: &|o, n| {
                    let found = compare_rules(o, n);
                    let verb = match found.effect() {
                        Effect::Weakens => "weakens",
                        Effect::Strengthens => "strengthens",
                        Effect::Neutral => "applies to",
                    };
                    let names = routes_where(new, |r| r.auth.as_deref() == Some(&*n.name));
                    (found, format!("{verb} {}", named("route", names)))
                },
            },
        );
        self.revocation();
    }

    fn revocation(&mut self) {
        let (o, n) = (&self.old.auth.revocation, &self.new.auth.revocation);
        if o == n {
            return;
        }
        let mut found = Found::default();
        for (what, was, is) in [("jti", &o.jti, &n.jti), ("sub", &o.sub, &n.sub)] {
            let removed = was.difference(is).count();
            let added = is.difference(was).count();
            if removed > 0 {
                found.looser(format!(
                    "{removed} revoked `{what}` value(s) removed: those tokens pass again"
                ));
            }
            if added > 0 {
                found.tighter(format!("{added} `{what}` value(s) revoked"));
            }
        }
        match (&o.redis, &n.redis) {
            (Some(_), None) => found.looser("the Redis revocation list removed"),
            (None, Some(_)) => found.tighter("a Redis revocation list added"),
            (Some(a), Some(b)) => {
                if a.on_error != b.on_error {
                    found.either(
                        b.on_error == OnRedisError::KeepLast,
                        format!("on_redis_error {:?} → {:?}", a.on_error, b.on_error),
                    );
                }
                if a.max_stale != b.max_stale {
                    found.either(
                        b.max_stale > a.max_stale,
                        format!("max_stale {} → {}", dur(a.max_stale), dur(b.max_stale)),
                    );
                }
                if a.url != b.url || a.key != b.key || a.refresh != b.refresh {
                    found.other("Redis list location or refresh changed");
                }
            }
            (None, None) => {}
        }
        let message = found.text();
        self.push(
            found.effect(),
            Kind::Changed,
            ("revocation", ""),
            Side::New,
            message,
        );
    }

    // ---- limits ----

    fn limits(&mut self) {
        let snap = self.new;
        let (old, new) = (&self.old.limits, &snap.limits);
        let routes_using = |name: &str| {
            let names = routes_where(snap, |r| route_limits(snap, r).iter().any(|l| &**l == name));
            format!("applies to {}", named("route", names))
        };
        self.defs(
            &old.limits,
            &new.limits,
            Defs {
                kind: "limit",
                name: |l: &LimitSpec| &l.name,
                added: &|n| {
                    format!(
                        "new limit: {} by `{}` (applies where routes name it)",
                        rate_text(&n.base),
                        n.key
                    )
                },
                removed: "limit removed (the routes it applied to say so)",
                changed: &|o, n| (compare_limits(o, n), routes_using(&n.name)),
            },
        );
        let (o, n) = (&old.settings, &new.settings);
        if o.default != n.default {
            let mut found = Found::default();
            found.wider(
                &n.default,
                &o.default,
                "routes without `limits` are no longer limited by {}",
                "routes without `limits` are now also limited by {}",
            );
            self.changed(
                ("rate_limits", "default"),
                list(&o.default),
                list(&n.default),
                &found,
            );
        }
        if let (Some(a), Some(b)) = (&o.redis, &n.redis) {
            if a.on_down != b.on_down {
                let strictness = |m: OnRedisDown| match m {
                    OnRedisDown::Allow => 0,
                    OnRedisDown::Local => 1,
                    OnRedisDown::Deny => 2,
                };
                let mut found = Found::default();
                found.either(
                    strictness(b.on_down) < strictness(a.on_down),
                    "what happens to requests while Redis is down",
                );
                let (was, is) = (format!("{:?}", a.on_down), format!("{:?}", b.on_down));
                self.changed(("rate_limits", "on_redis_down"), was, is, &found);
            }
        }
        let (a, b) = (&old.shedding, &new.shedding);
        if a != b {
            let t = |s: &Option<crate::limit::Shedding>| {
                s.as_ref().map_or("off".into(), |s| {
                    format!("max_in_flight {}", s.max_in_flight)
                })
            };
            let message = format!("{} → {}", t(a), t(b));
            self.push(
                Effect::Neutral,
                Kind::Changed,
                ("load_shedding", ""),
                Side::New,
                message,
            );
        }
    }

    // ---- IP lists and access ----

    fn ip(&mut self) {
        let (o, n) = (&self.old.limits, &self.new.limits);
        self.ip_rules(
            ("ip_access", "allow", "deny"),
            (&o.allow, &o.deny),
            (&n.allow, &n.deny),
        );
        let mut names: BTreeSet<&Arc<str>> = o.ip_lists.keys().collect();
        names.extend(n.ip_lists.keys());
        for name in names {
            let subject = format!("ip_list.{name}");
            let at = (subject.as_str(), "");
            match (o.ip_lists.get(name), n.ip_lists.get(name)) {
                (None, Some(_)) => self.push(
                    Effect::Neutral,
                    Kind::Added,
                    at,
                    Side::New,
                    "new IP list (applies where `[ip_access]` or routes name it)".into(),
                ),
                (Some(_), None) => self.push(
                    Effect::Neutral,
                    Kind::Removed,
                    at,
                    Side::Old,
                    "IP list removed".into(),
                ),
                (Some(a), Some(b)) => {
                    let found = self.ip_list(name, a, b);
                    if !found.is_empty() {
                        let message = found.text();
                        self.push(found.effect(), Kind::Changed, at, Side::New, message);
                    }
                }
                (None, None) => {}
            }
        }
    }

    /// A list's addresses changed (inline or in its files): weakening when a deny list lost
    /// addresses or an allow list gained some.
    fn ip_list(&self, name: &str, a: &CidrSet, b: &CidrSet) -> Found {
        let mut found = Found::default();
        let (grew, shrank) = (!b.is_subset_of(a), !a.is_subset_of(b));
        let (in_deny, in_allow) = (self.list_used(name, true), self.list_used(name, false));
        let (added, removed) = delta(&a.ranges(), &b.ranges());
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
                (Some(u), _) => found.looser(format!("{line}; allowed by {u}")),
                (None, Some(u)) => found.tighter(format!("{line}; denied by {u}")),
                (None, None) => found.other(format!("{line}; not used")),
            }
        }
        if shrank {
            let line = format!(
                "no longer matches some addresses (ranges before: {})",
                show(&removed)
            );
            match (&in_deny, &in_allow) {
                (Some(u), _) => found.looser(format!("{line}; denied by {u}, so they pass now")),
                (None, Some(u)) => found.tighter(format!("{line}; allowed by {u}")),
                (None, None) => found.other(format!("{line}; not used")),
            }
        }
        found
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
            let p = &r.protection;
            let lists = if deny { &p.ip_deny } else { &p.ip_allow };
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
        let mut found = Found::default();
        if !sb.is_subset_of(&sa) {
            found.looser("X-Forwarded-For is now believed from more peers: a client there can choose its own address for IP lists and limits");
        } else {
            found.tighter("fewer peers are trusted");
        }
        self.changed(("forwarding", "trusted_proxies"), list(a), list(b), &found);
    }

    // ---- cache ----

    fn cache(&mut self) {
        let snap = self.new;
        let authenticated = |p: &CachePolicy| {
            routes_where(snap, |r| {
                r.auth.is_some() && r.cache.as_deref() == Some(&*p.name)
            })
        };
        let used = |p: &CachePolicy| {
            let names = routes_where(snap, |r| r.cache.as_deref() == Some(&*p.name));
            format!("used by {}", named("route", names))
        };
        let (old, new) = (&self.old.cache.policies, &self.new.cache.policies);
        self.defs(
            old,
            new,
            Defs {
                kind: "cache",
                name: |p: &CachePolicy| &p.name,
                added: &|_| "new cache policy".into(),
                removed: "cache policy removed",
                changed: &|o, n| (compare_cache(o, n, &authenticated(n)), used(n)),
            },
        );
    }

    // ---- the rest: neutral ----

    fn rest(&mut self) {
        let (o, n) = (self.old, self.new);
        let arcs = |v: &[crate::upstream::ClusterSpec]| -> Vec<Arc<crate::upstream::ClusterSpec>> {
            v.iter().cloned().map(Arc::new).collect()
        };
        self.defs(
            &arcs(&o.clusters),
            &arcs(&n.clusters),
            Defs {
                kind: "cluster",
                name: |c: &crate::upstream::ClusterSpec| &c.name,
                added: &|c| format!("new cluster: {}", list(&c.endpoints)),
                removed: "cluster removed",
                changed: &|a, b| {
                    let mut found = Found::default();
                    if a.endpoints != b.endpoints {
                        found.other(format!(
                            "endpoints {} → {}",
                            list(&a.endpoints),
                            list(&b.endpoints)
                        ));
                    }
                    if (a.connect_timeout, a.read_timeout) != (b.connect_timeout, b.read_timeout) {
                        found.other("timeouts changed");
                    }
                    if a.tls != b.tls {
                        found.other("upstream TLS changed");
                    }
                    if a.health_check != b.health_check {
                        found.other("health check changed");
                    }
                    (found, "routing".into())
                },
            },
        );
        self.defs(
            &o.shards.maps,
            &n.shards.maps,
            Defs {
                kind: "shard_map",
                name: |m: &crate::shard::ShardMapSpec| &m.name,
                added: &|_| "new shard map".into(),
                removed: "shard map removed",
                changed: &|a, b| {
                    let mut found = Found::default();
                    if a != b {
                        found.other("shards, ranges or pins changed");
                    }
                    (found, "requests may move to other clusters".into())
                },
            },
        );
        let mut clusters: BTreeSet<&Arc<str>> = o.resilience.keys().collect();
        clusters.extend(n.resilience.keys());
        for c in clusters {
            let (a, b) = (o.resilience.get(c), n.resilience.get(c));
            let (kind, side) = match (a, b) {
                (a, b) if a == b => continue,
                (None, _) => (Kind::Added, Side::New),
                (_, None) => (Kind::Removed, Side::Old),
                _ => (Kind::Changed, Side::New),
            };
            let subject = format!("resilience.{c}");
            let message = "breaker, ejection, bulkhead or retry settings".into();
            self.push(Effect::Neutral, kind, (&subject, ""), side, message);
        }
        if o.access_log != n.access_log {
            let message = "what access-log records keep changed".into();
            self.push(
                Effect::Neutral,
                Kind::Changed,
                ("access_log", ""),
                Side::New,
                message,
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

/// Differences of two cache policies; `authenticated` names the routes with an auth rule
/// that use the new one.
fn compare_cache(o: &CachePolicy, n: &CachePolicy, authenticated: &[String]) -> Found {
    let mut found = Found::default();
    if public(o) != public(n) {
        found.either(
            public(n),
            if public(n) {
                "responses become public (shared caches and CDNs may store them)"
            } else {
                "responses are no longer public"
            },
        );
    }
    if o.authenticated != n.authenticated {
        let public = n.authenticated == AuthenticatedMode::Public;
        found.either(
            public,
            if public {
                "`authenticated = \"public\"`: responses to credentialed requests get the public headers"
            } else {
                "responses to credentialed requests are made private"
            },
        );
    }
    let (_, lost_cookies) = delta(&o.credential_cookies, &n.credential_cookies);
    if !lost_cookies.is_empty() {
        found.looser(format!(
            "cookies {} no longer count as credentials",
            list(&lost_cookies)
        ));
    }
    let on_auth = format!(
        "on authenticated {}",
        named("route", authenticated.to_vec())
    );
    match (&o.micro, &n.micro) {
        (None, Some(_)) if !authenticated.is_empty() => {
            found.looser(format!("a micro-cache is enabled {on_auth}"))
        }
        (None, Some(_)) => found.other("a micro-cache is enabled"),
        (Some(_), None) => found.other("the micro-cache is removed"),
        (Some(a), Some(b)) if !a.per_subject && b.per_subject && !authenticated.is_empty() => found
            .looser(format!(
                "the micro-cache now stores authenticated responses (`per_subject`) {on_auth}"
            )),
        (Some(a), Some(b)) if a != b => found.other("micro-cache settings changed"),
        _ => {}
    }
    if o.directed != n.directed {
        found.other(format!(
            "Cache-Control {} → {}",
            directed_text(&o.directed),
            directed_text(&n.directed)
        ));
    }
    let fields = [
        ("cdn_header", o.cdn_header != n.cdn_header),
        ("origin", o.origin != n.origin),
        ("vary", o.vary != n.vary),
        ("statuses", o.statuses != n.statuses),
        ("tags", o.tags != n.tags),
        ("rules", o.rules != n.rules),
    ];
    let changed: Vec<&str> = fields.iter().filter(|(_, c)| *c).map(|(f, _)| *f).collect();
    if !changed.is_empty() {
        found.other(format!("changed: {}", changed.join(", ")));
    }
    found
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

fn methods_text(r: &Route) -> String {
    r.methods
        .as_ref()
        .map_or("any method".into(), |ms| list(ms.iter()))
}

fn target_text(t: &RouteTarget) -> String {
    match t {
        RouteTarget::Cluster(c) => format!("cluster `{c}`"),
        RouteTarget::Shard(s) => format!("shard map `{}` by `{}`", s.map, s.key),
    }
}

fn canary_text(r: &Route) -> String {
    match &r.canary {
        None => "none".into(),
        Some(c) => format!(
            "`{}` at {}.{:02}% by `{}`",
            c.cluster,
            c.per_10k / 100,
            c.per_10k % 100,
            c.key
        ),
    }
}

fn rate_text(r: &Rate) -> String {
    format!("{}/{} (burst {})", r.rate, dur(r.per), r.burst)
}

/// `a` lets more requests through per unit of time than `b`.
fn faster(a: &Rate, b: &Rate) -> bool {
    u128::from(a.rate.get()) * b.per.as_nanos() > u128::from(b.rate.get()) * a.per.as_nanos()
}

/// A rate raised (faster, or a larger burst) or lowered.
fn compare_rates(found: &mut Found, what: &str, a: &Rate, b: &Rate) {
    let line = format!("{what} {} → {}", rate_text(a), rate_text(b));
    if faster(b, a) || b.burst > a.burst {
        found.looser(format!("{line}: raised"));
    } else if faster(a, b) || a.burst > b.burst {
        found.tighter(format!("{line}: lowered"));
    }
}

/// Differences of two auth rules.
fn compare_rules(a: &RuleSpec, b: &RuleSpec) -> Found {
    let mut found = Found::default();
    if a.mode != b.mode {
        found.either(
            b.mode == AuthMode::Optional,
            if b.mode == AuthMode::Optional {
                "mode required → optional: requests without a token pass anonymously"
            } else {
                "mode optional → required"
            },
        );
    }
    let (sa, sb) = (Scopes::of(a), Scopes::of(b));
    if sa != sb {
        let line = format!("scopes {sa} → {sb}");
        match (sb.implies(&sa), sa.implies(&sb)) {
            (true, false) => found.tighter(line),
            (false, _) => found.looser(format!("{line}: tokens with fewer scopes pass")),
            (true, true) => found.other(line),
        }
    }
    for (claim, values) in &a.claims {
        match b.claims.iter().find(|(c, _)| c == claim) {
            None => found.looser(format!("claim `{claim}` no longer required")),
            Some((_, nv)) => found.wider(
                values,
                nv,
                &format!("claim `{claim}` accepts {{}} too"),
                &format!("claim `{claim}` no longer accepts {{}}"),
            ),
        }
    }
    for (claim, _) in &b.claims {
        if !a.claims.iter().any(|(c, _)| c == claim) {
            found.tighter(format!("claim `{claim}` now required"));
        }
    }
    found.wider(
        &a.issuers,
        &b.issuers,
        "accepts tokens from {} too",
        "no longer accepts tokens from {}",
    );
    if a.forward_claims != b.forward_claims {
        found.other("forward_claims changed");
    }
    if a.forward_authorization != b.forward_authorization {
        found.other(format!(
            "forward_authorization {} → {}",
            a.forward_authorization, b.forward_authorization
        ));
    }
    if a.realm != b.realm {
        found.other(format!("realm `{}` → `{}`", a.realm, b.realm));
    }
    found
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

/// Differences of two issuers.
fn compare_issuers(a: &IssuerSpec, b: &IssuerSpec) -> Found {
    let mut found = Found::default();
    if a.iss != b.iss {
        found.looser(format!(
            "iss `{}` → `{}`: tokens of another issuer are accepted",
            a.iss, b.iss
        ));
    }
    found.wider(
        &a.audiences,
        &b.audiences,
        "audiences {} accepted too",
        "audiences {} no longer accepted",
    );
    let algs = |v: &[jsonwebtoken::Algorithm]| -> Vec<String> {
        v.iter().map(|x| format!("{x:?}")).collect()
    };
    found.wider(
        &algs(&a.algorithms),
        &algs(&b.algorithms),
        "algorithms {} accepted too",
        "algorithms {} no longer accepted",
    );
    if a.leeway != b.leeway {
        found.either(
            b.leeway > a.leeway,
            format!("leeway {} → {}", dur(a.leeway), dur(b.leeway)),
        );
    }
    if a.max_lifetime != b.max_lifetime {
        let t = |x: Option<Duration>| x.map_or("unlimited".into(), dur);
        let longer = match (a.max_lifetime, b.max_lifetime) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => y > x,
        };
        found.either(
            longer,
            format!("max_lifetime {} → {}", t(a.max_lifetime), t(b.max_lifetime)),
        );
    }
    // Fewer required claims let more tokens through.
    found.wider(
        &b.required_claims,
        &a.required_claims,
        "claims {} no longer required",
        "claims {} now required",
    );
    match (&a.jwks, &b.jwks) {
        (Some(JwksSource::Url(x)), Some(JwksSource::Url(y))) if x.url != y.url => found.looser(
            format!("keys fetched from `{}` instead of `{}`", y.url, x.url),
        ),
        (Some(JwksSource::Url(x)), Some(JwksSource::Url(y))) if x != y => {
            found.other("JWKS refresh settings changed")
        }
        (Some(JwksSource::File { path: p, .. }), Some(JwksSource::File { path: q, .. }))
            if a.jwks != b.jwks =>
        {
            found.other(format!("key set `{p}` → `{q}` changed: review the keys"))
        }
        (x, y) if x != y => found.looser("keys come from another source: review the keys"),
        _ => {}
    }
    if a.secret != b.secret {
        found.other("HMAC secret changed");
    }
    if a.token != b.token {
        found.other(format!("token taken from {:?} → {:?}", a.token, b.token));
    }
    if (a.max_token_bytes, a.cache_tokens) != (b.max_token_bytes, b.cache_tokens) {
        found.other("token size or caching changed");
    }
    found
}

/// Differences of two limits.
fn compare_limits(a: &LimitSpec, b: &LimitSpec) -> Found {
    let mut found = Found::default();
    compare_rates(&mut found, "rate", &a.base, &b.base);
    for (tier, rb) in &b.tiers {
        // A new tier replaces the base rate for its requests.
        let ra = a
            .tiers
            .iter()
            .find(|(t, _)| t == tier)
            .map_or(&a.base, |(_, r)| r);
        compare_rates(&mut found, &format!("tier `{tier}`"), ra, rb);
    }
    for (tier, ra) in &a.tiers {
        if !b.tiers.iter().any(|(t, _)| t == tier) {
            let what = format!("tier `{tier}` (removed: base rate)");
            compare_rates(&mut found, &what, ra, &b.base);
        }
    }
    if a.mode != b.mode {
        found.either(
            b.mode == Mode::Shadow,
            if b.mode == Mode::Shadow {
                "shadow mode switched on: requests over the limit pass (only recorded)"
            } else {
                "enforced (was shadow)"
            },
        );
    }
    if a.scope != b.scope {
        found.either(
            b.scope == Scope::Local,
            if b.scope == Scope::Local {
                "scope cluster → local: each instance counts on its own (the rate is per instance)"
            } else {
                "scope local → cluster: one budget shared by every instance"
            },
        );
    }
    let cost = |l: &LimitSpec, m: &http::Method| l.cost(m).get();
    let methods: BTreeSet<&str> = a
        .cost
        .iter()
        .chain(&b.cost)
        .map(|(m, _)| m.as_str())
        .collect();
    for m in methods {
        let Ok(m) = http::Method::from_bytes(m.as_bytes()) else {
            continue;
        };
        let (ca, cb) = (cost(a, &m), cost(b, &m));
        if ca != cb {
            found.either(cb < ca, format!("cost of {m} {ca} → {cb}"));
        }
    }
    if a.key != b.key {
        let line = format!("key `{}` → `{}`", a.key, b.key);
        if client_chosen(b) && !client_chosen(a) {
            found.looser(format!(
                "{line}: a value the client chooses (a new value is a fresh bucket)"
            ));
        } else {
            found.other(line);
        }
    }
    if a.tier_key != b.tier_key {
        found.other("tier key changed");
    }
    if (a.lease, a.max_keys) != (b.lease, b.max_keys) {
        found.other("lease or max_keys changed");
    }
    found
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
