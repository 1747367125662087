//! Prometheus metrics. Label sets are bounded: route and cluster names come from the policy,
//! status is a class (`2xx`...), error kinds are a fixed enum. No path, token or user id is
//! ever a label. Per-route handles are resolved once per policy snapshot ([`RouteMetrics`]) so
//! the request path does no label hashing.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pub upstream_errors: IntCounterVec,
    policy_info: IntGaugeVec,
    reloads: IntCounterVec,
    pub upstream_healthy: IntGaugeVec,
    pub auth: crate::auth::metrics::AuthMetrics,
    /// Rate limits, IP lists and load shedding (`limit::metrics`).
    pub limits: crate::limit::metrics::LimitMetrics,
    pub resilience: crate::resilience::metrics::ResilienceMetrics,
    /// Requests by shard and by canary arm (`shard::metrics`).
    pub shard: crate::shard::metrics::ShardMetrics,
}

/// Latency buckets in seconds, 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

impl Metrics {
    #[allow(
        clippy::expect_used,
        reason = "static metric definitions, checked at start-up"
    )]
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gateway_requests_total",
                "Requests by route and status class.",
            ),
            &["route", "status"],
        )
        .expect("static metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Time from request header to end of response, by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("static metric");
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "gateway_upstream_errors_total",
                "Failed upstream attempts by cluster and kind (connect, timeout, tls, protocol, no_healthy).",
            ),
            &["cluster", "kind"],
        )
        .expect("static metric");
        let policy_info = IntGaugeVec::new(
            Opts::new(
                "gateway_policy_info",
                "The serving policy version (value is 1).",
            ),
            &["version"],
        )
        .expect("static metric");
        let reloads = IntCounterVec::new(
            Opts::new(
                "gateway_policy_reloads_total",
                "Policy reload attempts by result.",
            ),
            &["result"],
        )
        .expect("static metric");
        let upstream_healthy = IntGaugeVec::new(
            Opts::new(
                "gateway_upstream_endpoint_healthy",
                "1 when the endpoint passes its health check.",
            ),
            &["cluster", "endpoint"],
        )
        .expect("static metric");
        for c in [&requests, &upstream_errors, &reloads] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(latency.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(policy_info.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(upstream_healthy.clone()))
            .expect("unique metric");
        for r in ["success", "failure"] {
            reloads.with_label_values(&[r]);
        }
        let limits = crate::limit::metrics::LimitMetrics::register(&registry);
        let resilience = crate::resilience::metrics::ResilienceMetrics::register(&registry);
        Metrics {
            shard: crate::shard::metrics::ShardMetrics::register(&registry),
            auth: crate::auth::metrics::AuthMetrics::new(&registry),
            limits,
            resilience,
            registry,
            requests,
            latency,
            upstream_errors,
            policy_info,
            reloads,
            upstream_healthy,
        }
    }

    pub fn route(&self, name: &str) -> RouteMetrics {
        RouteMetrics {
            by_status: STATUS_CLASSES.map(|c| self.requests.with_label_values(&[name, c])),
            latency: self.latency.with_label_values(&[name]),
        }
    }

    pub fn set_policy_version(&self, version: &str) {
        self.policy_info.reset();
        self.policy_info.with_label_values(&[version]).set(1);
    }

    pub fn reload(&self, ok: bool) {
        let r = if ok { "success" } else { "failure" };
        self.reloads.with_label_values(&[r]).inc();
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8 * 1024);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Pre-resolved handles for one route (or for "no route").
#[derive(Clone)]
pub struct RouteMetrics {
    by_status: [IntCounter; 6],
    latency: Histogram,
}

impl RouteMetrics {
    pub fn observe(&self, status: u16, seconds: f64) {
        let class = match status {
            100..=199 => 0,
            200..=299 => 1,
            300..=399 => 2,
            400..=499 => 3,
            500..=599 => 4,
            _ => 5,
        };
        self.by_status[class].inc();
        self.latency.observe(seconds);
    }
}
