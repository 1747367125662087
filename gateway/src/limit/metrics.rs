//! The protection metrics. Labels are policy names (route, limit) and fixed values
//! (decision); never a key, address or user id.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Handles shared by every part of the module (cheap clones of the same series).
#[derive(Clone)]
pub struct LimitMetrics {
    /// Rate-limit decisions by route, limit and decision (allowed, limited, shadow).
    pub decisions: IntCounterVec,
    /// Decisions of cluster limits taken without Redis (by `on_redis_down`), by limit.
    pub fallback: IntCounterVec,
    /// 1 while Redis answers (only meaningful when cluster limits are configured).
    pub redis_up: IntGauge,
    /// Keys held in memory, by limit.
    pub keys: IntGaugeVec,
    /// Requests refused by IP lists, by route (`-` for `[ip_access]`).
    pub ip_denied: IntCounterVec,
    /// Requests shed, by route.
    pub shed: IntCounterVec,
    /// Requests in flight through the proxy (when `[load_shedding]` is set).
    pub in_flight: IntGauge,
}

impl LimitMetrics {
    #[allow(
        clippy::expect_used,
        reason = "static metric definitions, checked at start-up"
    )]
    pub fn register(registry: &Registry) -> LimitMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let decisions = counter(
            "gateway_rate_limit_decisions_total",
            "Rate-limit decisions by route, limit and decision (allowed, limited, shadow).",
            &["route", "limit", "decision"],
        );
        let fallback = counter(
            "gateway_rate_limit_redis_fallback_total",
            "Cluster rate-limit decisions taken without Redis (on_redis_down), by limit.",
            &["limit"],
        );
        let ip_denied = counter(
            "gateway_ip_denied_total",
            "Requests refused (403) by an IP list, by route (- for [ip_access]).",
            &["route"],
        );
        let shed = counter(
            "gateway_shed_total",
            "Requests shed (503 overloaded) by load shedding, by route.",
            &["route"],
        );
        let redis_up = IntGauge::new(
            "gateway_rate_limit_redis_up",
            "1 while the Redis of cluster rate limits answers, else 0.",
        )
        .expect("static metric");
        let in_flight = IntGauge::new(
            "gateway_in_flight_requests",
            "Requests in flight through the proxy listeners (with [load_shedding]).",
        )
        .expect("static metric");
        let keys = IntGaugeVec::new(
            Opts::new(
                "gateway_rate_limit_keys",
                "Keys (buckets and leases) held in memory, by limit.",
            ),
            &["limit"],
        )
        .expect("static metric");
        for g in [&redis_up, &in_flight] {
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(keys.clone()))
            .expect("unique metric");
        LimitMetrics {
            decisions,
            fallback,
            redis_up,
            keys,
            ip_denied,
            shed,
            in_flight,
        }
    }
}

/// Pre-resolved decision counters of one (route, limit).
#[derive(Clone)]
pub struct DecisionCounters {
    pub allowed: IntCounter,
    pub limited: IntCounter,
    pub shadow: IntCounter,
}

impl DecisionCounters {
    pub fn new(m: &LimitMetrics, route: &str, limit: &str) -> DecisionCounters {
        let c = |d: &str| m.decisions.with_label_values(&[route, limit, d]);
        DecisionCounters {
            allowed: c("allowed"),
            limited: c("limited"),
            shadow: c("shadow"),
        }
    }
}
