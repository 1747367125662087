//! Resilience metrics. Labels are bounded: cluster names and endpoints come from the policy,
//! the rest are fixed enums. Handles are resolved once per [`super::Guard`], so the request
//! path does no label hashing.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::breaker::State;

/// The `endpoint` label of a cluster's own breaker.
pub const CLUSTER_SCOPE: &str = "*";

#[derive(Clone)]
pub struct ResilienceMetrics {
    pub breaker_state: IntGaugeVec,
    pub transitions: IntCounterVec,
    pub retries: IntCounterVec,
    pub ejections: IntCounterVec,
    pub bulkhead_rejected: IntCounterVec,
}

/// What became of a wanted retry.
#[derive(Debug, Clone, Copy)]
pub enum RetryOutcome {
    Retried = 0,
    BudgetExhausted = 1,
    AttemptsExhausted = 2,
}

const RETRY_OUTCOMES: [&str; 3] = ["retried", "budget_exhausted", "attempts_exhausted"];
const STATES: [State; 3] = [State::Closed, State::Open, State::HalfOpen];

impl ResilienceMetrics {
    #[allow(
        clippy::expect_used,
        reason = "static metric definitions, checked at start-up"
    )]
    pub fn register(registry: &Registry) -> ResilienceMetrics {
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "gateway_breaker_state",
                "Circuit breaker state: 0 closed, 1 open, 2 half-open. endpoint=\"*\" is the cluster's breaker, others are outlier detection per endpoint.",
            ),
            &["cluster", "endpoint"],
        )
        .expect("static metric");
        let transitions = IntCounterVec::new(
            Opts::new(
                "gateway_breaker_transitions_total",
                "Circuit breaker transitions by cluster, endpoint (\"*\": the cluster's) and new state.",
            ),
            &["cluster", "endpoint", "to"],
        )
        .expect("static metric");
        let retries = IntCounterVec::new(
            Opts::new(
                "gateway_upstream_retries_total",
                "Retries wanted after a failed attempt, by cluster and outcome (retried, budget_exhausted, attempts_exhausted).",
            ),
            &["cluster", "outcome"],
        )
        .expect("static metric");
        let ejections = IntCounterVec::new(
            Opts::new(
                "gateway_outlier_ejections_total",
                "Endpoints taken out of rotation by outlier detection.",
            ),
            &["cluster", "endpoint"],
        )
        .expect("static metric");
        let bulkhead_rejected = IntCounterVec::new(
            Opts::new(
                "gateway_bulkhead_rejected_total",
                "Requests answered 503 overloaded because the cluster's bulkhead was full.",
            ),
            &["cluster"],
        )
        .expect("static metric");
        registry
            .register(Box::new(breaker_state.clone()))
            .expect("unique metric");
        for c in [&transitions, &retries, &ejections, &bulkhead_rejected] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        ResilienceMetrics {
            breaker_state,
            transitions,
            retries,
            ejections,
            bulkhead_rejected,
        }
    }

    pub fn breaker(&self, cluster: &str, endpoint: &str) -> BreakerMetrics {
        let state = self.breaker_state.with_label_values(&[cluster, endpoint]);
        state.set(State::Closed.gauge());
        BreakerMetrics {
            state,
            transitions: STATES.map(|s| {
                self.transitions
                    .with_label_values(&[cluster, endpoint, s.as_str()])
            }),
        }
    }

    pub fn retries(&self, cluster: &str) -> [IntCounter; 3] {
        RETRY_OUTCOMES.map(|o| self.retries.with_label_values(&[cluster, o]))
    }
}

/// Handles of one breaker.
#[derive(Clone)]
pub struct BreakerMetrics {
    pub state: IntGauge,
    transitions: [IntCounter; 3],
}

impl BreakerMetrics {
    pub fn transition(&self, to: State) {
        self.state.set(to.gauge());
        self.transitions[to.gauge() as usize].inc();
    }
}
