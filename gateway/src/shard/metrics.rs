//! Shard and canary metrics. Labels are policy names (route, shard map, shard) and the arm
//! (`stable`, `canary`); never a key or user id.

use std::collections::HashSet;

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

    /// After a reload: drop the label sets of (route, map, shard) and canary routes the new
    /// runtime no longer has, so dashboards do not show them forever.
    pub fn forget_removed(&self, before: &crate::state::Runtime, after: &crate::state::Runtime) {
        let shards = |rt: &crate::state::Runtime| -> HashSet<[String; 3]> {
            rt.routes
                .iter()
                .filter_map(|p| p.shard.as_ref().map(|s| (p.name(), s)))
                .flat_map(|(route, s)| {
                    s.map.shards.iter().map(move |sh| {
                        [
                            route.to_string(),
                            s.map.spec.name.to_string(),
                            sh.name.to_string(),
                        ]
                    })
                })
                .collect()
        };
        for [route, map, shard] in shards(before).difference(&shards(after)) {
            let _ = self.by_shard.remove_label_values(&[route, map, shard]);
        }
        let canaries = |rt: &crate::state::Runtime| -> HashSet<String> {
            rt.routes
                .iter()
                .filter(|p| p.canary.is_some())
                .map(|p| p.name().to_string())
                .collect()
        };
        for route in canaries(before).difference(&canaries(after)) {
            for arm in Arm::ALL {
                let _ = self.by_arm.remove_label_values(&[route, arm.as_str()]);
            }
        }
    }
}
