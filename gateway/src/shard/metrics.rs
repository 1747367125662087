//! Shard and canary metrics. Labels are policy names (route, shard map, shard) and the arm
//! (`stable`, `canary`); never a key or user id.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use super::Arm;

#[derive(Clone)]
pub struct ShardMetrics {
    /// Requests routed by shard: route, shard map, shard.
    pub by_shard: IntCounterVec,
    /// Requests by canary arm: route, arm.
    pub by_arm: IntCounterVec,
}

impl ShardMetrics {
    #[allow(
        clippy::expect_used,
        reason = "static metric definitions, checked at start-up"
    )]
    pub fn register(registry: &Registry) -> ShardMetrics {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        ShardMetrics {
            by_shard: counter(
                "gateway_shard_requests_total",
                "Requests routed by a shard map, by route, shard map and shard.",
                &["route", "shard_map", "shard"],
            ),
            by_arm: counter(
                "gateway_canary_requests_total",
                "Requests on a route with a canary, by route and arm (stable, canary).",
                &["route", "arm"],
            ),
        }
    }

    pub fn requests(&self, route: &str, map: &str, shard: &str) -> IntCounter {
        self.by_shard.with_label_values(&[route, map, shard])
    }

    pub fn canary(&self, route: &str, arm: Arm) -> IntCounter {
        self.by_arm.with_label_values(&[route, arm.as_str()])
    }
}
