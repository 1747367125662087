//! Resilience: one failing or slow upstream never takes the gateway down.
//!
//! Per cluster, from `[resilience.<cluster>]` (see `policies/resilience.toml`):
//! - a **circuit breaker** ([`breaker`]): closed → open on a failure percentage over a
//!   rolling window (with a minimum volume) or N consecutive failures; while open, requests
//!   are answered 503 `breaker_open` with `Retry-After` without touching the upstream; after
//!   the open interval a capped number of probes decide between closed and open again (with
//!   the interval doubled, up to a maximum);
//! - **outlier detection**: the same state machine per endpoint; an open endpoint is skipped
//!   by the balancer while others remain, with a cap on the share ejected at once;
//! - a **bulkhead**: a cap on concurrent upstream requests and on requests waiting for a slot;
//!   beyond it, 503 `overloaded` at once;
//! - **retries** ([`budget`]): connect failures for any method; after sending, only allowed
//!   idempotent methods whose body did not start, before any response byte; on the configured
//!   statuses; with exponential backoff and full jitter on the async runtime, to another
//!   endpoint when one exists, within a retry budget.
//!
//! Data enters as [`file::ResilienceFile`], becomes a [`ResilienceSpec`] in the snapshot
//! ([`validate()`]), and a [`Guard`] per cluster at runtime (kept across reloads while its
//! spec and the cluster's endpoints are unchanged, so breaker state survives an unrelated
//! reload). The proxy calls the guard from `upstream_peer` ([`Guard::before_attempt`],
//! [`Guard::select`]), `fail_to_connect` ([`Guard::connect_failed`]), `error_while_proxy`
//! ([`Guard::proxy_failed`]), `upstream_response_filter` ([`Guard::response`]) and `logging`
//! ([`Guard::finish`]). Time comes from the injected clock; only backoff sleeps use tokio time.

pub mod breaker;
pub mod budget;
pub mod file;
mod guard;
pub mod metrics;
mod validate;
mod window;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use http::Method;

pub use guard::{Guard, GuardSpec, RequestState, Sent};
pub use validate::validate;

use breaker::BreakerSpec;
use budget::BudgetSpec;

/// One cluster's validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResilienceSpec {
    pub cluster: Arc<str>,
    /// Statuses that count as failures (with connect errors, timeouts, broken connections).
    pub failure_statuses: Vec<u16>,
    /// Deadline over all attempts of one request.
    pub request_timeout: Option<Duration>,
    pub breaker: Option<BreakerSpec>,
    pub outlier: Option<OutlierSpec>,
    pub bulkhead: Option<BulkheadSpec>,
    pub retry: RetrySpec,
}

impl ResilienceSpec {
    /// A cluster without a `[resilience.<cluster>]` section.
    pub fn baseline(cluster: &Arc<str>) -> ResilienceSpec {
        ResilienceSpec {
            cluster: Arc::clone(cluster),
            failure_statuses: validate::DEFAULT_FAILURE_STATUSES.to_vec(),
            request_timeout: None,
            breaker: None,
            outlier: None,
            bulkhead: None,
            retry: RetrySpec::baseline(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierSpec {
    /// The per-endpoint breaker (one probe when half-open).
    pub breaker: BreakerSpec,
    pub max_ejected_percent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadSpec {
    pub max_concurrent: u32,
    pub max_waiting: u32,
    pub max_wait: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySpec {
    /// Tries per request, the first included.
    pub attempts: u32,
    /// Retried after sending; never a non-idempotent method (validation refuses it).
    pub methods: Vec<Method>,
    pub statuses: Vec<u16>,
    pub on_timeout: bool,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub budget: Option<BudgetSpec>,
    /// No `[retry]` section: failed connects only, each endpoint at most once, no backoff.
    pub baseline: bool,
}

impl RetrySpec {
    /// What a cluster without a `retry` section gets: a failed connect goes to another
    /// endpoint, up to 3 tries, nothing else is retried.
    pub fn baseline() -> RetrySpec {
        RetrySpec {
            attempts: 3,
            methods: Vec::new(),
            statuses: Vec::new(),
            on_timeout: false,
            backoff_base: Duration::ZERO,
            backoff_max: Duration::ZERO,
            budget: None,
            baseline: true,
        }
    }
}
