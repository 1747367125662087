//! `[resilience.<cluster>]` as written in the policy files. The doc comments are the reference
//! documentation and end up in the generated JSON Schema (`gateway schema`).
//!
//! Every table is optional. A cluster without a `[resilience.<cluster>]` section keeps the
//! gateway's baseline: a failed connect is retried on another endpoint (up to 3 tries), and
//! nothing else.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// `[resilience.<cluster>]`: how the gateway protects itself and the cluster when its
/// endpoints fail or slow down. `<cluster>` names a `[cluster.<name>]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResilienceFile {
    /// Upstream response statuses that count as failures for the breaker and the outlier
    /// detector (400–599). Default `[502, 503, 504]`. Connect errors, timeouts and broken
    /// connections always count.
    #[serde(default)]
    #[schemars(with = "Option<Vec<u16>>")]
    pub failure_statuses: Option<Vec<Spanned<u16>>>,
    /// Deadline of the whole upstream exchange, all attempts and backoffs included, e.g. `5s`.
    /// Each attempt's connect and read timeouts are cut to what is left; with nothing left
    /// there is no further retry, and an attempt that cannot start answers 504. Default: none
    /// (each attempt has the cluster's `connect_timeout` and `read_timeout`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub request_timeout: Option<Spanned<String>>,
    /// The cluster's circuit breaker: fail fast with 503 `breaker_open` while the cluster fails.
    #[serde(default)]
    pub breaker: Option<BreakerFile>,
    /// Passive outlier detection: a failing endpoint leaves the rotation on real traffic.
    #[serde(default)]
    pub outlier: Option<OutlierFile>,
    /// A cap on concurrent upstream requests to this cluster (and on requests waiting for one).
    #[serde(default)]
    pub bulkhead: Option<BulkheadFile>,
    /// Retries, with exponential backoff, full jitter and a budget.
    #[serde(default)]
    pub retry: Option<RetryFile>,
}

/// `[resilience.<cluster>.breaker]`: closed → open → half-open → closed.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerFile {
    /// Open when at least this percentage (1–100) of the requests in `window` failed, once the
    /// window holds `min_requests`. Default 50.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub failure_percent: Option<Spanned<u32>>,
    /// Requests the window must hold before `failure_percent` applies (1–1000000). Default 20.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub min_requests: Option<Spanned<u32>>,
    /// Length of the rolling window, e.g. `10s` (at least `100ms`). Default `10s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub window: Option<Spanned<String>>,
    /// Also open after this many failures in a row (0–1000; 0 turns it off). Default 5.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub consecutive_failures: Option<Spanned<u32>>,
    /// How long the breaker stays open before admitting probes, e.g. `5s`. Default `5s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub open_for: Option<Spanned<String>>,
    /// Each failed probe doubles the open interval, up to this (at least `open_for`); a
    /// success resets it. Default `60s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_open_for: Option<Spanned<String>>,
    /// Probe requests admitted while half-open (1–100); that many successes close the
    /// breaker, one failure reopens it. Default 3.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub half_open_probes: Option<Spanned<u32>>,
}

/// `[resilience.<cluster>.outlier]`: a per-endpoint breaker. An ejected endpoint is skipped
/// by the balancer; after `ejection_time` it gets one probe request, which puts it back or
/// ejects it again for twice as long.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutlierFile {
    /// Eject after this many failures in a row (1–1000). Default 5.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub consecutive_failures: Option<Spanned<u32>>,
    /// Also eject when this percentage (1–100) of the endpoint's requests in `window` failed,
    /// once it holds `min_requests`. Default: off.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub failure_percent: Option<Spanned<u32>>,
    /// Requests an endpoint's window must hold before `failure_percent` applies. Default 20.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub min_requests: Option<Spanned<u32>>,
    /// Rolling window of `failure_percent`. Default `10s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub window: Option<Spanned<String>>,
    /// First ejection time, doubled on each failed probe. Default `10s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ejection_time: Option<Spanned<String>>,
    /// Longest ejection time (at least `ejection_time`). Default `300s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_ejection_time: Option<Spanned<String>>,
    /// At most this percentage (0–100) of the cluster's endpoints is ejected at once (at least
    /// one endpoint of a cluster of two or more), so a cluster-wide outage stays visible
    /// instead of ejecting everything. Default 50.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_ejected_percent: Option<Spanned<u32>>,
}

/// `[resilience.<cluster>.bulkhead]`: one slow cluster cannot hold every connection.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkheadFile {
    /// Upstream requests in flight to this cluster at once (1–1000000). Required.
    #[schemars(with = "u32")]
    pub max_concurrent: Spanned<u32>,
    /// Requests that may wait for a slot (0–1000000); above it, 503 `overloaded` at once.
    /// Default 0.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_waiting: Option<Spanned<u32>>,
    /// Longest wait for a slot before 503 `overloaded`. Default `1s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_wait: Option<Spanned<String>>,
}

/// `[resilience.<cluster>.retry]`: which failed attempts are tried again, and how often.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryFile {
    /// Tries per request, the first included (1–10; 1 turns retries off). Default 3.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub attempts: Option<Spanned<u32>>,
    /// Methods retried after the request was sent: `GET`, `HEAD`, `OPTIONS`, `TRACE`, and
    /// `PUT`/`DELETE` when the upstream makes them idempotent. `POST`, `PATCH` are refused.
    /// A failed connect is retried for any method (nothing was sent). A request whose body
    /// started to go upstream is never retried. Default `["GET", "HEAD", "OPTIONS"]`.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub methods: Option<Vec<Spanned<String>>>,
    /// Upstream statuses that are retried (500–599). Default `[502, 503, 504]`.
    #[serde(default)]
    #[schemars(with = "Option<Vec<u16>>")]
    pub statuses: Option<Vec<Spanned<u16>>>,
    /// Also retry when the upstream did not answer within `read_timeout`. Default false: a
    /// slow upstream asked again is usually slower.
    #[serde(default)]
    pub on_timeout: Option<bool>,
    /// Backoff before retry n is a random time between 0 and
    /// `min(backoff_max, backoff_base × 2^(n-1))` ("full jitter"). Default `25ms`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub backoff_base: Option<Spanned<String>>,
    /// Cap of the backoff (at least `backoff_base`). Default `250ms`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub backoff_max: Option<Spanned<String>>,
    /// Retry budget: retries may add at most this percentage (0–100) of the requests in
    /// `budget_window`, plus `budget_min_per_second`. Default 20.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub budget_percent: Option<Spanned<u32>>,
    /// Retries per second allowed on top of `budget_percent`, so a quiet cluster can still
    /// retry (0–100000). Default 10.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub budget_min_per_second: Option<Spanned<u32>>,
    /// The window the budget counts over. Default `10s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub budget_window: Option<Spanned<String>>,
}
