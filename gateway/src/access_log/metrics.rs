//! Access-log telemetry. Labels are fixed enums (drop reasons), never record content.

use std::sync::atomic::{AtomicU64, Ordering};

use edgeway_record::clock::Clock;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub struct LogMetrics {
    /// Records produced by the logging phase.
    pub emitted: IntCounter,
    /// Records written to the segment log (durable locally).
    pub written: IntCounter,
    /// Records acknowledged by Kinesis.
    pub sent: IntCounter,
    /// Records re-sent after a partial failure or a failed call.
    pub retried: IntCounter,
    /// Records shipped from the backlog after an outage or restart.
    pub replayed: IntCounter,
    /// Records dropped, by reason (`queue_full`, `log_full`, `too_large`, `io`, `shutdown`).
    pub(super) dropped: IntCounterVec,
    /// Records in the memory queue.
    pub queued: IntGauge,
    /// Bytes of the segment log on disk (the spool when Kinesis lags).
    pub log_bytes: IntGauge,
    /// Bytes written but not yet acknowledged by Kinesis.
    pub backlog_bytes: IntGauge,
    /// Bytes of segments deleted once Kinesis (or the local pipeline) made them durable.
    pub released_bytes: IntCounter,
    /// Kinesis records (aggregates) and user records per aggregate.
    pub aggregates: IntCounter,
    pub aggregate_bytes: IntCounter,
    /// PutRecords round trips.
    pub put_latency: Histogram,
    /// Entries rejected with ProvisionedThroughputExceeded, and whole calls throttled.
    pub throttled: IntCounter,
    /// PutRecords calls that failed as a whole (network, 5xx).
    pub put_errors: IntCounter,
    last_drop_log: AtomicU64,
}

impl LogMetrics {
    #[allow(
        clippy::expect_used,
        reason = "static metric definitions, checked at start-up"
    )]
    pub fn new(registry: &Registry) -> Self {
        let c = |name: &str, help: &str| {
            let m = IntCounter::new(name, help).expect("static metric");
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
            m
        };
        let g = |name: &str, help: &str| {
            let m = IntGauge::new(name, help).expect("static metric");
            registry
                .register(Box::new(m.clone()))
                .expect("unique metric");
            m
        };
        let dropped = IntCounterVec::new(
            Opts::new(
                "accesslog_records_dropped_total",
                "Access-log records dropped, by reason.",
            ),
            &["reason"],
        )
        .expect("static metric");
        registry
            .register(Box::new(dropped.clone()))
            .expect("unique metric");
        for r in ["queue_full", "log_full", "too_large", "io", "shutdown"] {
            dropped.with_label_values(&[r]);
        }
        let put_latency = Histogram::with_opts(
            HistogramOpts::new(
                "accesslog_kinesis_put_seconds",
                "PutRecords round-trip time.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("static metric");
        registry
            .register(Box::new(put_latency.clone()))
            .expect("unique metric");
        LogMetrics {
            emitted: c(
                "accesslog_records_emitted_total",
                "Access-log records produced by requests.",
            ),
            written: c(
                "accesslog_records_written_total",
                "Records written to the local segment log.",
            ),
            sent: c(
                "accesslog_records_sent_total",
                "Records acknowledged by Kinesis.",
            ),
            retried: c(
                "accesslog_records_retried_total",
                "Records re-sent to Kinesis after a failure.",
            ),
            replayed: c(
                "accesslog_records_replayed_total",
                "Records shipped from the backlog after an outage or restart.",
            ),
            dropped,
            queued: g("accesslog_queue_records", "Records waiting in memory."),
            log_bytes: g(
                "accesslog_log_bytes",
                "Bytes of the local segment log (spool).",
            ),
            backlog_bytes: g(
                "accesslog_backlog_bytes",
                "Bytes written locally and not yet acknowledged by Kinesis.",
            ),
            released_bytes: c(
                "accesslog_released_bytes_total",
                "Bytes of log segments deleted after Kinesis or the local pipeline made them durable.",
            ),
            aggregates: c(
                "accesslog_kinesis_records_total",
                "Aggregated Kinesis records produced.",
            ),
            aggregate_bytes: c(
                "accesslog_kinesis_record_bytes_total",
                "Bytes of aggregated Kinesis records produced.",
            ),
            put_latency,
            throttled: c(
                "accesslog_kinesis_throttled_total",
                "Kinesis throttling responses (entries or calls).",
            ),
            put_errors: c(
                "accesslog_kinesis_put_errors_total",
                "PutRecords calls that failed as a whole.",
            ),
            last_drop_log: AtomicU64::new(0),
        }
    }

    /// Count dropped records and say why in the log, at most once a second (a full disk or
    /// an overload must not also flood the log).
    pub fn dropped(&self, reason: &str, n: u64, detail: &dyn std::fmt::Display) {
        self.dropped.with_label_values(&[reason]).inc_by(n);
        let now = (edgeway_record::clock::SystemClock.now_ms() / 1000) as u64;
        let last = self.last_drop_log.load(Ordering::Relaxed);
        if now > last
            && self
                .last_drop_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(reason, records = n, %detail, "access-log records dropped");
        }
    }
}
