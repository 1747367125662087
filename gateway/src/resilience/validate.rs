//! `[resilience.<cluster>]` → [`ResilienceSpec`]: pure; every bad value is reported with its
//! file, line and field, and the cluster name is checked against the defined clusters.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use toml::Spanned;

use super::breaker::BreakerSpec;
use super::budget::BudgetSpec;
use super::file::{BreakerFile, BulkheadFile, OutlierFile, ResilienceFile, RetryFile};
use super::{BulkheadSpec, OutlierSpec, ResilienceSpec, RetrySpec};
use crate::policy::validate::{duration, lookup, Errors, Files, Names};

pub const DEFAULT_FAILURE_STATUSES: [u16; 3] = [502, 503, 504];
const DEFAULT_RETRY_METHODS: [Method; 3] = [Method::GET, Method::HEAD, Method::OPTIONS];
/// Methods a cluster may retry after sending: safe by RFC 9110 §9.2.1. PUT and DELETE are
/// idempotent by definition but not always by implementation: a route opts in with
/// `retry_idempotent_writes`.
const RETRYABLE_METHODS: [&str; 4] = ["GET", "HEAD", "OPTIONS", "TRACE"];
/// The shortest rolling window: ten buckets of 10 ms.
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// Every `[resilience.<cluster>]` across files, by cluster name.
pub fn validate(
    errs: &mut Errors,
    files: &Files,
    names: &Names,
) -> HashMap<Arc<str>, ResilienceSpec> {
    let mut out = HashMap::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (fi, f) in files {
        for (name, r) in &f.resilience {
            let field = format!("resilience.{}", name.get_ref());
            if !lookup(errs, *fi, name, &field, "clusters", &names.clusters) {
                continue;
            }
            if let Some(other) = seen.get(name.get_ref()) {
                let other = errs.path(*other);
                errs.at(
                    *fi,
                    name.span(),
                    &field,
                    format!(
                        "duplicate [resilience.{}] section, already set in {other}",
                        name.get_ref()
                    ),
                );
                continue;
            }
            seen.insert(name.get_ref().clone(), *fi);
            let mut v = V {
                errs: &mut *errs,
                fi: *fi,
                field: &field,
            };
            if let Some(spec) = v.section(name.get_ref(), r) {
                out.insert(Arc::from(name.get_ref().as_str()), spec);
            }
        }
    }
    out
}

struct V<'e, 'a, 'f> {
    errs: &'e mut Errors<'a>,
    fi: usize,
    field: &'f str,
}

impl V<'_, '_, '_> {
    fn at(&mut self, span: std::ops::Range<usize>, sub: &str, message: String) {
        self.errs
            .at(self.fi, span, &format!("{}.{sub}", self.field), message);
    }

    /// An integer in `lo..=hi`, or `default` when unset.
    fn int(&mut self, sub: &str, v: &Option<Spanned<u32>>, lo: u32, hi: u32, default: u32) -> u32 {
        match v {
            None => default,
            Some(x) if (lo..=hi).contains(x.get_ref()) => *x.get_ref(),
            Some(x) => {
                self.at(
                    x.span(),
                    sub,
                    format!("found {}, expected {lo} to {hi}", x.get_ref()),
                );
                default
            }
        }
    }

    fn dur(&mut self, sub: &str, v: &Option<Spanned<String>>, default: Duration) -> Duration {
        let field = format!("{}.{sub}", self.field);
        duration(self.errs, self.fi, &field, v, default).unwrap_or(default)
    }

    fn window(&mut self, sub: &str, v: &Option<Spanned<String>>, default: Duration) -> Duration {
        let d = self.dur(sub, v, default);
        if d < MIN_WINDOW {
            if let Some(v) = v {
                self.at(
                    v.span(),
                    sub,
                    format!("found `{}`, expected at least `100ms`", v.get_ref()),
                );
            }
        }
        d
    }

    /// `max` must not be below `min`.
    fn ordered(
        &mut self,
        sub: &str,
        v: &Option<Spanned<String>>,
        min: Duration,
        max: Duration,
        min_name: &str,
    ) {
        if let (Some(v), true) = (v, max < min) {
            self.at(
                v.span(),
                sub,
                format!(
                    "found `{}`, expected at least {min_name} ({})",
                    v.get_ref(),
                    humantime::format_duration(min)
                ),
            );
        }
    }

    fn statuses(
        &mut self,
        sub: &str,
        v: &Option<Vec<Spanned<u16>>>,
        lo: u16,
        hi: u16,
        default: &[u16],
    ) -> Vec<u16> {
        let Some(list) = v else {
            return default.to_vec();
        };
        let mut out = Vec::new();
        for (k, s) in list.iter().enumerate() {
            if (lo..=hi).contains(s.get_ref()) {
                out.push(*s.get_ref());
            } else {
                self.at(
                    s.span(),
                    &format!("{sub}[{k}]"),
                    format!("found {}, expected a status from {lo} to {hi}", s.get_ref()),
                );
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    fn section(&mut self, cluster: &str, r: &ResilienceFile) -> Option<ResilienceSpec> {
        let before = self.errs.count();
        let failure_statuses = self.statuses(
            "failure_statuses",
            &r.failure_statuses,
            400,
            599,
            &DEFAULT_FAILURE_STATUSES,
        );
        let request_timeout = r.request_timeout.as_ref().map(|_| {
            self.dur(
                "request_timeout",
                &r.request_timeout,
                Duration::from_secs(30),
            )
        });
        let breaker = r.breaker.as_ref().map(|b| self.breaker(b));
        let outlier = r.outlier.as_ref().map(|o| self.outlier(o));
        let bulkhead = r.bulkhead.as_ref().map(|b| self.bulkhead(b));
        let retry = match &r.retry {
            Some(x) => self.retry(x),
            None => RetrySpec::baseline(),
        };
        (self.errs.count() == before).then(|| ResilienceSpec {
            cluster: Arc::from(cluster),
            failure_statuses,
            request_timeout,
            breaker,
            outlier,
            bulkhead,
            retry,
        })
    }

    fn breaker(&mut self, b: &BreakerFile) -> BreakerSpec {
        let failure_percent = self.int("breaker.failure_percent", &b.failure_percent, 1, 100, 50);
        let min_requests = self.int("breaker.min_requests", &b.min_requests, 1, 1_000_000, 20);
        let window = self.window("breaker.window", &b.window, Duration::from_secs(10));
        let consecutive = self.int(
            "breaker.consecutive_failures",
            &b.consecutive_failures,
            0,
            1000,
            5,
        );
        let open_for = self.dur("breaker.open_for", &b.open_for, Duration::from_secs(5));
        let max_open_for = self.dur(
            "breaker.max_open_for",
            &b.max_open_for,
            Duration::from_secs(60).max(open_for),
        );
        self.ordered(
            "breaker.max_open_for",
            &b.max_open_for,
            open_for,
            max_open_for,
            "`open_for`",
        );
        let half_open_probes = self.int("breaker.half_open_probes", &b.half_open_probes, 1, 100, 3);
        BreakerSpec {
            failure_percent: Some(failure_percent),
            min_requests,
            window,
            consecutive_failures: (consecutive > 0).then_some(consecutive),
            open_for,
            max_open_for,
            half_open_probes,
        }
    }

    fn outlier(&mut self, o: &OutlierFile) -> OutlierSpec {
        let consecutive = self.int(
            "outlier.consecutive_failures",
            &o.consecutive_failures,
            1,
            1000,
            5,
        );
        let failure_percent = o
            .failure_percent
            .as_ref()
            .map(|_| self.int("outlier.failure_percent", &o.failure_percent, 1, 100, 50));
        let min_requests = self.int("outlier.min_requests", &o.min_requests, 1, 1_000_000, 20);
        let window = self.window("outlier.window", &o.window, Duration::from_secs(10));
        let ejection_time = self.dur(
            "outlier.ejection_time",
            &o.ejection_time,
            Duration::from_secs(10),
        );
        let max_ejection_time = self.dur(
            "outlier.max_ejection_time",
            &o.max_ejection_time,
            Duration::from_secs(300).max(ejection_time),
        );
        self.ordered(
            "outlier.max_ejection_time",
            &o.max_ejection_time,
            ejection_time,
            max_ejection_time,
            "`ejection_time`",
        );
        let max_ejected_percent = self.int(
            "outlier.max_ejected_percent",
            &o.max_ejected_percent,
            0,
            100,
            50,
        );
        OutlierSpec {
            breaker: BreakerSpec {
                failure_percent,
                min_requests,
                window,
                consecutive_failures: Some(consecutive),
                open_for: ejection_time,
                max_open_for: max_ejection_time,
                half_open_probes: 1,
            },
            max_ejected_percent,
        }
    }

    fn bulkhead(&mut self, b: &BulkheadFile) -> BulkheadSpec {
        let max_concurrent = self.int(
            "bulkhead.max_concurrent",
            &Some(b.max_concurrent.clone()),
            1,
            1_000_000,
            1,
        );
        BulkheadSpec {
            max_concurrent,
            max_waiting: self.int("bulkhead.max_waiting", &b.max_waiting, 0, 1_000_000, 0),
            max_wait: self.dur("bulkhead.max_wait", &b.max_wait, Duration::from_secs(1)),
        }
    }

    fn retry(&mut self, r: &RetryFile) -> RetrySpec {
        let attempts = self.int("retry.attempts", &r.attempts, 1, 10, 3);
        let methods = match &r.methods {
            None => DEFAULT_RETRY_METHODS.to_vec(),
            Some(list) => {
                let mut out = Vec::new();
                for (k, m) in list.iter().enumerate() {
                    let upper = m.get_ref().to_ascii_uppercase();
                    match Method::from_bytes(upper.as_bytes()) {
                        Ok(method) if RETRYABLE_METHODS.contains(&upper.as_str()) => {
                            if !out.contains(&method) {
                                out.push(method);
                            }
                        }
                        _ if upper == "PUT" || upper == "DELETE" => self.at(
                            m.span(),
                            &format!("retry.methods[{k}]"),
                            format!(
                                "found `{upper}`, expected one of {}: PUT and DELETE are retried only on routes that set `retry_idempotent_writes = true`",
                                RETRYABLE_METHODS.join(", ")
                            ),
                        ),
                        _ => self.at(
                            m.span(),
                            &format!("retry.methods[{k}]"),
                            format!(
                                "found `{}`, expected an idempotent method ({}): a request that is not idempotent may have been applied before the failure, and a retry would apply it twice",
                                m.get_ref(),
                                RETRYABLE_METHODS.join(", ")
                            ),
                        ),
                    }
                }
                out
            }
        };
        let statuses = self.statuses(
            "retry.statuses",
            &r.statuses,
            500,
            599,
            &DEFAULT_FAILURE_STATUSES,
        );
        let backoff_base = self.dur(
            "retry.backoff_base",
            &r.backoff_base,
            Duration::from_millis(25),
        );
        let backoff_max = self.dur(
            "retry.backoff_max",
            &r.backoff_max,
            Duration::from_millis(250).max(backoff_base),
        );
        self.ordered(
            "retry.backoff_max",
            &r.backoff_max,
            backoff_base,
            backoff_max,
            "`backoff_base`",
        );
        let budget = BudgetSpec {
            percent: self.int("retry.budget_percent", &r.budget_percent, 0, 100, 20),
            min_per_second: self.int(
                "retry.budget_min_per_second",
                &r.budget_min_per_second,
                0,
                100_000,
                10,
            ),
            window: self.window(
                "retry.budget_window",
                &r.budget_window,
                Duration::from_secs(10),
            ),
        };
        RetrySpec {
            attempts,
            methods,
            statuses,
            on_timeout: r.on_timeout.unwrap_or(false),
            backoff_base,
            backoff_max,
            budget: Some(budget),
            baseline: false,
        }
    }
}
