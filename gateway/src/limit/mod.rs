//! Protection: IP allow/deny lists, load shedding by priority, and token-bucket rate limits,
//! local (governor's GCRA) or cluster-wide (GCRA in Redis).
//!
//! - [`file`]: `[limit.<name>]`, `[rate_limits]`, `[ip_list.<name>]`, `[ip_access]`,
//!   `[load_shedding]`, and the routes' `limits`, `priority`, `ip_allow`, `ip_deny`,
//!   `rate_limit_headers`;
//! - [`validate()`] / [`route_rules`]: pure; every error located (list files arrive as
//!   attachments);
//! - specs: [`LimitPolicy`] in the snapshot, [`RouteRules`] on each route;
//! - runtime: [`Runtime`] (`runtime.rs`: one [`Limiter`] per limit, kept with its buckets
//!   while its spec is unchanged; the Redis connection; the in-flight counter) and
//!   [`RouteLimits`] on each `RoutePlan`; a limiter (`limiter.rs`) holds local GCRA buckets
//!   (`local.rs`) or Redis leases (`cluster.rs`) per tier; IP lists are `cidr.rs`, shedding
//!   `shed.rs`, the response headers `headers.rs`;
//! - phase steps, in `request_filter` order: [`ip_access`] before routing (403), [`admit`]
//!   after routing (the route's IP lists, then shedding: 503 `overloaded`), [`check`] after
//!   authentication (claims feed keys: 429 with `Retry-After` and the `RateLimit` headers),
//!   and [`response_headers`] in `response_filter`.
//!
//! Which limits apply: a route's own `limits` list, or, when it has none, `[rate_limits]
//! default`; `limits = []` opts a route out. Every applicable limit is checked (each spends
//! its own tokens) and the strictest decides: any enforcing limit over its rate answers 429
//! with the longest wait; a `shadow` limit over its rate only records `shadow`. The headers
//! describe the enforcing limit with the fewest tokens left.

pub mod cidr;
mod cluster;
pub mod file;
mod headers;
mod limiter;
mod local;
pub mod metrics;
mod runtime;
mod shed;
mod validate;

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use http::header::RETRY_AFTER;
use http::Method;

pub use cidr::CidrSet;
pub use cluster::{RedisStore, KEY_PREFIX, TAKE};
pub use file::{Mode, OnRedisDown, Scope};
pub use headers::{
    header_values, response_headers, HeaderInfo, TierHeaders, RATELIMIT, RATELIMIT_POLICY,
    X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
pub use limiter::{Checked, Limiter, LimiterSpec};
pub use local::{Buckets, GovClock, Verdict, SWEEP_EVERY};
pub use runtime::{forget_removed, RouteLimits, Runtime};
pub use shed::{InFlight, Shedder};
pub use validate::{referenced_files, route_rules, validate};

use crate::key::{self, KeyBuf, KeySpec};
use crate::reject::Reject;
use edgeway_record::outcome::{ErrorClass, RateLimitDecision};
use headers::whole_secs;

/// Route priorities, in percent of `max_in_flight` a route may fill.
pub const PRIORITY_CRITICAL: u8 = 100;
pub const PRIORITY_NORMAL: u8 = 80;
pub const PRIORITY_BULK: u8 = 50;

/// A bucket's size and refill: `rate` tokens every `per`, at most `burst` held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    pub rate: NonZeroU32,
    pub per: Duration,
    pub burst: NonZeroU32,
    /// `per / rate`: the time one token takes to come back.
    pub interval: Duration,
}

/// A validated `[limit.<name>]`.
#[derive(Debug, PartialEq, Eq)]
pub struct LimitSpec {
    pub name: Arc<str>,
    pub key: KeySpec,
    pub base: Rate,
    pub tier_key: Option<KeySpec>,
    pub tiers: Vec<(Box<str>, Rate)>,
    pub cost: Vec<(Method, NonZeroU32)>,
    pub mode: Mode,
    pub scope: Scope,
    pub lease: u32,
    pub max_keys: usize,
}

impl LimitSpec {
    pub fn cost(&self, method: &Method) -> NonZeroU32 {
        self.cost
            .iter()
            .find(|(m, _)| m == method)
            .map_or(NonZeroU32::MIN, |(_, c)| *c)
    }
}

/// `[rate_limits]` Redis settings.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSpec {
    /// May hold a password: never printed.
    pub url: String,
    /// PEM CA certificates for `rediss://` (else the system's roots).
    pub ca_pem: Option<Vec<u8>>,
    /// The URL is a seed node of a Redis Cluster.
    pub cluster: bool,
    pub budget: Duration,
    pub on_down: OnRedisDown,
    pub instances: u32,
}

impl std::fmt::Debug for RedisSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSpec")
            .field("url", &"<redacted>")
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("cluster", &self.cluster)
            .field("budget", &self.budget)
            .field("on_down", &self.on_down)
            .field("instances", &self.instances)
            .finish()
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settings {
    pub default: Vec<Arc<str>>,
    pub redis: Option<RedisSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shedding {
    pub max_in_flight: u32,
    pub retry_after: Duration,
}

/// The validated protection policy.
#[derive(Debug, Default)]
pub struct LimitPolicy {
    pub limits: Vec<Arc<LimitSpec>>,
    pub settings: Settings,
    pub ip_lists: HashMap<Arc<str>, Arc<CidrSet>>,
    /// `[ip_access]`, by list name.
    pub allow: Vec<Arc<str>>,
    pub deny: Vec<Arc<str>>,
    pub shedding: Option<Shedding>,
}

/// A route's protection fields, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRules {
    /// `None`: `[rate_limits] default`.
    pub limits: Option<Vec<Arc<str>>>,
    pub headers: bool,
    pub priority: u8,
    pub ip_allow: Vec<Arc<str>>,
    pub ip_deny: Vec<Arc<str>>,
    /// Tokens a request on this route spends, times the limit's cost for its method.
    pub cost: NonZeroU32,
}

impl Default for RouteRules {
    fn default() -> Self {
        RouteRules {
            limits: None,
            headers: true,
            priority: PRIORITY_NORMAL,
            ip_allow: Vec::new(),
            ip_deny: Vec::new(),
            cost: NonZeroU32::MIN,
        }
    }
}

/// What the protection steps keep for the rest of the request.
#[derive(Debug, Default)]
pub struct RequestState {
    /// The `RateLimit` headers to send with the response.
    pub headers: Option<HeaderInfo>,
    /// This request's place among those in flight (released when the context drops).
    pub in_flight: Option<InFlight>,
}

/// A refusal, with what the record's `rate_limit` says about it.
#[derive(Debug)]
pub struct Denied {
    pub decision: Option<RateLimitDecision>,
    pub reject: Reject,
}

fn listed(lists: &[Arc<CidrSet>], ip: Option<IpAddr>) -> bool {
    ip.is_some_and(|ip| lists.iter().any(|l| l.contains(ip)))
}

/// Deny wins; with allow lists, an address in none of them (or no address) is refused.
fn refused(allow: &[Arc<CidrSet>], deny: &[Arc<CidrSet>], ip: Option<IpAddr>) -> bool {
    listed(deny, ip) || (!allow.is_empty() && !listed(allow, ip))
}

fn forbidden() -> Reject {
    Reject::new(ErrorClass::Forbidden).message("access from this address is not allowed")
}

/// `request_filter` step, before routing: `[ip_access]`.
pub fn ip_access(rt: &Runtime, ip: Option<IpAddr>) -> Result<(), Reject> {
    if refused(&rt.allow, &rt.deny, ip) {
        rt.global_denied.inc();
        return Err(forbidden());
    }
    Ok(())
}

/// `request_filter` step, after routing and before authentication: the route's IP lists,
/// then load shedding.
pub fn admit(
    plan: &RouteLimits,
    ip: Option<IpAddr>,
    state: &mut RequestState,
) -> Result<(), Denied> {
    if refused(&plan.allow, &plan.deny, ip) {
        plan.ip_denied.inc();
        return Err(Denied {
            decision: None,
            reject: forbidden(),
        });
    }
    if let Some(shedder) = &plan.shedder {
        match shedder.admit(plan.priority) {
            Some(guard) => state.in_flight = Some(guard),
            None => {
                plan.shed.inc();
                return Err(Denied {
                    decision: Some(RateLimitDecision::Shed),
                    reject: Reject::new(ErrorClass::Overloaded)
                        .header(RETRY_AFTER, whole_secs(shedder.retry_after()).max(1)),
                });
            }
        }
    }
    Ok(())
}

/// `request_filter` step, after authentication: every applicable limit. `Ok(None)` when no
/// limit applied to this request.
pub async fn check(
    plan: &RouteLimits,
    req: &key::Request<'_>,
    method: &Method,
    state: &mut RequestState,
) -> Result<Option<RateLimitDecision>, Denied> {
    if plan.limits.is_empty() {
        return Ok(None);
    }
    let mut buf = KeyBuf::new();
    let mut decision = None;
    // The enforcing denial with the longest wait, and the tightest enforcing verdict.
    let mut denied: Option<(&Limiter, Verdict, Checked<'_>)> = None;
    let mut tightest: Option<(&Limiter, Verdict, Checked<'_>)> = None;
    for (limiter, counters) in &plan.limits {
        let Some(c) = limiter.check(req, &mut buf, method, plan.cost).await else {
            continue;
        };
        let v = c.verdict;
        match (v.allowed, limiter.mode()) {
            (true, _) => {
                counters.allowed.inc();
                decision = decision.or(Some(RateLimitDecision::Allowed));
            }
            (false, Mode::Shadow) => {
                counters.shadow.inc();
                decision = Some(RateLimitDecision::Shadow);
                continue;
            }
            (false, Mode::Enforce) => {
                counters.limited.inc();
                if denied.is_none_or(|(_, d, _)| v.retry_after > d.retry_after) {
                    denied = Some((limiter, v, c));
                }
            }
        }
        if limiter.mode() == Mode::Enforce
            && tightest.is_none_or(|(_, t, _)| v.remaining < t.remaining)
        {
            tightest = Some((limiter, v, c));
        }
    }
    let info = |(_, v, c): (&Limiter, Verdict, Checked<'_>)| HeaderInfo {
        tier: Arc::clone(c.headers),
        remaining: v.remaining,
        reset_secs: whole_secs(v.reset),
    };
    if let Some((l, v, c)) = denied {
        let r = c.rate;
        let mut reject = Reject::new(ErrorClass::RateLimited)
            .message(format!(
                "rate limit exceeded: {} per {} ({})",
                r.rate,
                humantime::format_duration(r.per),
                l.name()
            ))
            .header(RETRY_AFTER, whole_secs(v.retry_after).max(1));
        if plan.headers {
            for (name, value) in header_values(&info((l, v, c))) {
                reject = reject.header(name, value);
            }
        }
        return Err(Denied {
            decision: Some(RateLimitDecision::Limited),
            reject,
        });
    }
    if plan.headers {
        state.headers = tightest.map(info);
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::BuildEnv;
    use edgeway_record::clock::Clock;
    use edgeway_record::clock::ManualClock;
    use pingora::http::RequestHeader;

    fn spec(text: &str) -> LimitPolicy {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("p.toml"),
            format!("[cluster.api]\nendpoints = [\"127.0.0.1:9\"]\n{text}"),
        )
        .unwrap();
        crate::policy::load_dir(dir.path()).unwrap().limits
    }

    async fn runtime(policy: &LimitPolicy, clock: &ManualClock) -> Runtime {
        let metrics = crate::metrics::Metrics::new();
        let clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let env = BuildEnv {
            metrics: &metrics,
            clock: &clock,
        };
        Runtime::build(policy, None, &env).await.unwrap()
    }

    fn request<'a>(
        h: &'a RequestHeader,
        ip: &str,
        id: Option<&'a crate::auth::Identity>,
    ) -> key::Request<'a> {
        key::Request {
            header: h,
            path: "/",
            client_ip: Some(ip.parse().unwrap()),
            route: "r",
            identity: id,
        }
    }

    #[tokio::test]
    async fn strictest_limit_decides_and_headers_describe_it() {
        let policy = spec(
            r#"
[limit.fast]
key = "ip"
rate = 10
burst = 3
[limit.slow]
key = "ip"
rate = 100
per = "1m"
burst = 5
[limit.trial]
key = "ip"
rate = 1
burst = 1
mode = "shadow"
"#,
        );
        let clock = ManualClock::new(0);
        let rt = runtime(&policy, &clock).await;
        let rules = RouteRules {
            limits: Some(vec!["fast".into(), "slow".into(), "trial".into()]),
            ..RouteRules::default()
        };
        let plan = rt.plan("r", &rules);
        let h = RequestHeader::build("GET", b"/", None).unwrap();
        let r = request(&h, "10.0.0.1", None);
        let mut st = RequestState::default();
        // First request: all allow; the tightest is `fast` (2 left).
        assert_eq!(
            check(&plan, &r, &Method::GET, &mut st).await.unwrap(),
            Some(RateLimitDecision::Allowed)
        );
        let hi = st.headers.clone().unwrap();
        assert_eq!(
            (
                &*hi.tier.policy,
                hi.tier.quota,
                hi.tier.window_secs,
                hi.remaining
            ),
            ("fast", 10, 1, 2)
        );
        // Second: the shadow limit is over but lets it through.
        let mut st = RequestState::default();
        assert_eq!(
            check(&plan, &r, &Method::GET, &mut st).await.unwrap(),
            Some(RateLimitDecision::Shadow)
        );
        check(&plan, &r, &Method::GET, &mut st).await.unwrap();
        // Fourth: `fast` is empty: 429, retry after its interval (100ms → 1s).
        let denied = check(&plan, &r, &Method::GET, &mut st).await.unwrap_err();
        assert_eq!(denied.decision, Some(RateLimitDecision::Limited));
        assert_eq!(denied.reject.status, 429);
        let headers: HashMap<String, String> = denied
            .reject
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(headers["retry-after"], "1");
        assert_eq!(headers["ratelimit-policy"], "\"fast\";q=10;w=1");
        assert_eq!(headers["ratelimit"], "\"fast\";r=0;t=1");
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        assert!(
            denied.reject.message.contains("10 per 1s (fast)"),
            "{}",
            denied.reject.message
        );
        // After 5 × 100ms `fast` has refilled beyond need; `slow` (5 per burst) is now empty.
        clock.advance(Duration::from_millis(500));
        let mut st = RequestState::default();
        check(&plan, &r, &Method::GET, &mut st).await.unwrap();
        let denied = check(&plan, &r, &Method::GET, &mut st).await.unwrap_err();
        let retry = denied
            .reject
            .headers
            .iter()
            .find(|(k, _)| k == RETRY_AFTER)
            .unwrap();
        // `slow` refills one token every 600ms.
        assert_eq!(retry.1, "1");
        // Another client is unaffected.
        let other = request(&h, "10.0.0.2", None);
        assert!(check(&plan, &other, &Method::GET, &mut st).await.is_ok());
    }

    #[tokio::test]
    async fn tiers_pick_the_rate_by_claim_and_unknown_gets_the_default() {
        let policy = spec(
            r#"
[limit.per_user]
key = "claim:sub"
rate = 1
burst = 2
tier = "claim:plan"
cost = { POST = 2 }
[limit.per_user.tiers.pro]
rate = 10
burst = 4
"#,
        );
        let clock = ManualClock::new(0);
        let rt = runtime(&policy, &clock).await;
        let plan = rt.plan(
            "r",
            &RouteRules {
                limits: Some(vec!["per_user".into()]),
                ..RouteRules::default()
            },
        );
        let id = |sub: &str, plan: &str| crate::auth::Identity {
            issuer: "i".into(),
            subject: Some(sub.into()),
            claims: serde_json::json!({"sub": sub, "plan": plan})
                .as_object()
                .cloned()
                .unwrap(),
        };
        let h = RequestHeader::build("GET", b"/", None).unwrap();
        let passes = |who: crate::auth::Identity, method: Method| {
            let plan = &plan;
            let h = &h;
            async move {
                let mut n = 0;
                for _ in 0..10 {
                    let r = request(h, "10.0.0.1", Some(&who));
                    if check(plan, &r, &method, &mut RequestState::default())
                        .await
                        .is_ok()
                    {
                        n += 1;
                    }
                }
                n
            }
        };
        assert_eq!(passes(id("a", "pro"), Method::GET).await, 4);
        assert_eq!(passes(id("b", "free"), Method::GET).await, 2);
        assert_eq!(
            passes(id("c", "gold"), Method::GET).await,
            2,
            "unknown tier: default"
        );
        // Cost: POST spends 2 of the pro burst of 4.
        assert_eq!(passes(id("d", "pro"), Method::POST).await, 2);
        // A route's cost multiplies the method's: 2 × 2 of the pro burst of 4.
        let costly = rt.plan(
            "r",
            &RouteRules {
                limits: Some(vec!["per_user".into()]),
                cost: NonZeroU32::new(2).unwrap(),
                ..RouteRules::default()
            },
        );
        let who = id("e", "pro");
        let r = request(&h, "10.0.0.1", Some(&who));
        let mut st = RequestState::default();
        assert!(check(&costly, &r, &Method::POST, &mut st).await.is_ok());
        assert!(check(&costly, &r, &Method::POST, &mut st).await.is_err());
        // No token: no key, the limit does not apply.
        let r = request(&h, "10.0.0.1", None);
        assert_eq!(
            check(&plan, &r, &Method::GET, &mut RequestState::default())
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_reload_keeps_the_buckets_of_unchanged_limits() {
        let text = "[limit.a]\nkey = \"ip\"\nrate = 1\nper = \"1h\"\n[limit.b]\nkey = \"ip\"\nrate = 5\n[load_shedding]\nmax_in_flight = 9\n";
        let clock = ManualClock::new(0);
        let metrics = crate::metrics::Metrics::new();
        let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let env = BuildEnv {
            metrics: &metrics,
            clock: &dyn_clock,
        };
        let first = Runtime::build(&spec(text), None, &env).await.unwrap();
        let plan = first.plan(
            "r",
            &RouteRules {
                limits: Some(vec!["a".into()]),
                ..RouteRules::default()
            },
        );
        let h = RequestHeader::build("GET", b"/", None).unwrap();
        let r = request(&h, "10.0.0.1", None);
        check(&plan, &r, &Method::GET, &mut RequestState::default())
            .await
            .unwrap();
        // `b` changes; `a` and the shedder are kept, with their state.
        let second = Runtime::build(
            &spec(&text.replace("rate = 5", "rate = 6")),
            Some(&first),
            &env,
        )
        .await
        .unwrap();
        assert!(Arc::ptr_eq(
            first.limiter("a").unwrap(),
            second.limiter("a").unwrap()
        ));
        assert!(!Arc::ptr_eq(
            first.limiter("b").unwrap(),
            second.limiter("b").unwrap()
        ));
        assert!(Arc::ptr_eq(
            first.shedder.as_ref().unwrap(),
            second.shedder.as_ref().unwrap()
        ));
        let plan = second.plan(
            "r",
            &RouteRules {
                limits: Some(vec!["a".into()]),
                ..RouteRules::default()
            },
        );
        let denied = check(&plan, &r, &Method::GET, &mut RequestState::default()).await;
        assert!(
            denied.is_err(),
            "the spent token stayed spent across the reload"
        );
    }

    #[tokio::test]
    async fn a_reload_forgets_the_metrics_of_removed_limits_and_routes() {
        let dir = tempfile::tempdir().unwrap();
        let write = |text: &str| {
            std::fs::write(
                dir.path().join("p.toml"),
                format!("[cluster.api]\nendpoints = [\"127.0.0.1:9\"]\n{text}"),
            )
            .unwrap()
        };
        let limits = "[limit.a]\nkey = \"ip\"\nrate = 1\n[limit.b]\nkey = \"ip\"\nrate = 1\n";
        write(&format!(
            "{limits}[[route]]\nname = \"r1\"\ncluster = \"api\"\nlimits = [\"a\", \"b\"]\n[[route]]\nname = \"r2\"\npath_prefix = \"/2\"\ncluster = \"api\"\nlimits = [\"a\"]\n"
        ));
        let shared = crate::state::Shared::load(dir.path(), Arc::new(ManualClock::new(0)))
            .await
            .unwrap();
        let text = || String::from_utf8(shared.metrics.encode()).unwrap();
        assert!(text().contains(r#"limit="b",route="r1""#), "{}", text());
        assert!(text().contains(r#"route="r2""#));
        // `b` and route r2 go away.
        write("[limit.a]\nkey = \"ip\"\nrate = 1\n[[route]]\nname = \"r1\"\ncluster = \"api\"\nlimits = [\"a\"]\n");
        shared.reload().await.unwrap();
        let t = text();
        assert!(!t.contains(r#"limit="b""#), "{t}");
        assert!(!t.contains(r#"limit="a",route="r2""#), "{t}");
        assert!(t.contains(r#"limit="a",route="r1""#), "{t}");
    }

    #[tokio::test]
    async fn ip_lists_deny_wins_and_route_lists_apply() {
        let policy = spec(
            r#"
[ip_list.office]
cidrs = ["10.0.0.0/8"]
[ip_list.bad]
cidrs = ["10.6.6.0/24"]
[ip_access]
allow = ["office"]
deny = ["bad"]
"#,
        );
        let clock = ManualClock::new(0);
        let rt = runtime(&policy, &clock).await;
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert!(ip_access(&rt, ip("10.1.2.3")).is_ok());
        assert_eq!(
            ip_access(&rt, ip("10.6.6.1")).unwrap_err().status,
            403,
            "deny wins"
        );
        assert!(
            ip_access(&rt, ip("192.0.2.1")).is_err(),
            "not in the allow list"
        );
        assert!(ip_access(&rt, None).is_err());
        let plan = rt.plan(
            "r",
            &RouteRules {
                ip_deny: vec!["office".into()],
                ..RouteRules::default()
            },
        );
        let mut st = RequestState::default();
        assert!(admit(&plan, ip("10.1.2.3"), &mut st).is_err());
        assert!(admit(&plan, ip("192.0.2.1"), &mut st).is_ok());
    }
}
