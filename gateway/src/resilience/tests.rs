//! The breaker state machine on a manual clock, ejection caps, and validation errors.

use std::time::Duration;

use edgeway_record::clock::{Clock, ManualClock};

use super::breaker::{Admission, Breaker, BreakerSpec, Outcome, State, Ticket};

fn spec() -> BreakerSpec {
    BreakerSpec {
        failure_percent: Some(50),
        min_requests: 10,
        window: Duration::from_secs(10),
        consecutive_failures: Some(5),
        open_for: Duration::from_secs(5),
        max_open_for: Duration::from_secs(30),
        half_open_probes: 2,
    }
}

fn admit(b: &Breaker, clock: &ManualClock) -> Option<Ticket> {
    match b.admit(clock.monotonic()).0 {
        Admission::Admitted(t) => Some(t),
        Admission::Rejected { .. } => None,
    }
}

fn run(b: &Breaker, clock: &ManualClock, outcome: Outcome) -> Option<Ticket> {
    let t = admit(b, clock)?;
    b.record(t, outcome, clock.monotonic(), || true);
    Some(t)
}

#[test]
fn consecutive_failures_open_and_the_open_breaker_rejects_with_retry_after() {
    let clock = ManualClock::new(0);
    let b = Breaker::new(spec());
    for _ in 0..4 {
        run(&b, &clock, Outcome::Failure).unwrap();
    }
    // A success resets the run.
    run(&b, &clock, Outcome::Success).unwrap();
    for _ in 0..4 {
        run(&b, &clock, Outcome::Failure).unwrap();
    }
    assert_eq!(b.state(clock.monotonic()), State::Closed);
    run(&b, &clock, Outcome::Failure).unwrap();
    assert_eq!(b.state(clock.monotonic()), State::Open);
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        b.admit(clock.monotonic()).0,
        Admission::Rejected {
            retry_after: Duration::from_secs(3)
        }
    );
}

#[test]
fn failure_ratio_opens_only_with_the_minimum_volume() {
    let clock = ManualClock::new(0);
    let b = Breaker::new(BreakerSpec {
        consecutive_failures: None,
        ..spec()
    });
    // Alternating failures: 50%, but below min_requests until the 10th request.
    for i in 0u32..9 {
        let outcome = if i.is_multiple_of(2) {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        run(&b, &clock, outcome).unwrap();
    }
    assert_eq!(b.state(clock.monotonic()), State::Closed, "9 requests");
    run(&b, &clock, Outcome::Success).unwrap();
    assert_eq!(b.state(clock.monotonic()), State::Closed, "4 of 10 failed");
    run(&b, &clock, Outcome::Failure).unwrap();
    assert_eq!(b.state(clock.monotonic()), State::Open, "6 of 11 failed");

    // Old failures leave the window: the same ratio spread over time does not trip.
    let b = Breaker::new(BreakerSpec {
        consecutive_failures: None,
        ..spec()
    });
    for i in 0..40 {
        let outcome = if i % 4 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        run(&b, &clock, outcome).unwrap();
        clock.advance(Duration::from_millis(500));
    }
    assert_eq!(b.state(clock.monotonic()), State::Closed, "25% < 50%");
}

#[test]
fn half_open_probes_close_it_or_reopen_with_a_doubled_interval() {
    let clock = ManualClock::new(0);
    let b = Breaker::new(spec());
    for _ in 0..5 {
        run(&b, &clock, Outcome::Failure).unwrap();
    }
    assert_eq!(b.state(clock.monotonic()), State::Open);
    clock.advance(Duration::from_secs(4));
    assert_eq!(b.rejects(clock.monotonic()), Some(Duration::from_secs(1)));
    clock.advance(Duration::from_secs(1));
    assert_eq!(b.rejects(clock.monotonic()), None, "probes are due");
    // Two probes admitted, a third refused while they are in flight.
    let p1 = admit(&b, &clock).unwrap();
    let p2 = admit(&b, &clock).unwrap();
    assert!(p1.probe() && p2.probe());
    assert_eq!(b.rejects(clock.monotonic()), Some(Duration::from_secs(1)));
    assert!(admit(&b, &clock).is_none());
    // A client that went away frees its slot without deciding anything.
    b.record(p2, Outcome::Neutral, clock.monotonic(), || true);
    let p2 = admit(&b, &clock).unwrap();
    // One probe fails: open again, for 10 s now.
    b.record(p1, Outcome::Failure, clock.monotonic(), || true);
    assert_eq!(b.state(clock.monotonic()), State::Open);
    // The other probe's late answer belongs to the old half-open: ignored.
    assert!(b
        .record(p2, Outcome::Success, clock.monotonic(), || true)
        .is_none());
    clock.advance(Duration::from_secs(9));
    assert!(
        admit(&b, &clock).is_none(),
        "open for 10 s after a failed probe"
    );
    clock.advance(Duration::from_secs(1));
    // Failed probes keep doubling, up to max_open_for (30 s).
    let p = admit(&b, &clock).unwrap();
    b.record(p, Outcome::Failure, clock.monotonic(), || true);
    clock.advance(Duration::from_secs(20));
    let p = admit(&b, &clock).unwrap();
    b.record(p, Outcome::Failure, clock.monotonic(), || true);
    clock.advance(Duration::from_secs(29));
    assert!(admit(&b, &clock).is_none(), "capped at 30 s");
    clock.advance(Duration::from_secs(1));
    // Enough successes close it, and the interval is back to 5 s.
    let p1 = admit(&b, &clock).unwrap();
    let p2 = admit(&b, &clock).unwrap();
    b.record(p1, Outcome::Success, clock.monotonic(), || true);
    assert_eq!(b.state(clock.monotonic()), State::HalfOpen);
    let t = b.record(p2, Outcome::Success, clock.monotonic(), || true);
    assert_eq!(t.map(|t| t.to), Some(State::Closed));
    let ticket = admit(&b, &clock).unwrap();
    assert!(!ticket.probe());
    for _ in 0..5 {
        run(&b, &clock, Outcome::Failure).unwrap();
    }
    clock.advance(Duration::from_secs(5));
    assert!(admit(&b, &clock).is_some(), "reset to the base interval");
}

#[test]
fn outcomes_from_before_the_breaker_opened_do_not_count() {
    let clock = ManualClock::new(0);
    let b = Breaker::new(spec());
    let slow = admit(&b, &clock).unwrap();
    for _ in 0..5 {
        run(&b, &clock, Outcome::Failure).unwrap();
    }
    clock.advance(Duration::from_secs(5));
    let probe = admit(&b, &clock).unwrap();
    // A request admitted while closed fails late: it is not a probe, so no reopen.
    assert!(b
        .record(slow, Outcome::Failure, clock.monotonic(), || true)
        .is_none());
    assert_eq!(b.state(clock.monotonic()), State::HalfOpen);
    b.record(probe, Outcome::Success, clock.monotonic(), || true);
}

#[test]
fn a_failing_every_other_request_endpoint_cannot_flap_faster_than_the_interval() {
    let clock = ManualClock::new(0);
    let b = Breaker::new(spec());
    let mut opened = 0;
    let mut i = 0u32;
    // 60 s of traffic every 100 ms, failing every other request.
    for _ in 0..600 {
        if let Some(t) = admit(&b, &clock) {
            let outcome = if i.is_multiple_of(2) {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            i += 1;
            if let Some(tr) = b.record(t, outcome, clock.monotonic(), || true) {
                if tr.to == State::Open {
                    opened += 1;
                }
            }
        }
        clock.advance(Duration::from_millis(100));
    }
    // Opens at most once per open interval (5, 10, 20, 30 s…): far fewer than the failures.
    assert!((1..=4).contains(&opened), "opened {opened} times");
}

#[test]
fn the_ejection_cap_keeps_the_breaker_closed() {
    let clock = ManualClock::new(0);
    let b = Breaker::new(spec());
    for _ in 0..10 {
        let t = admit(&b, &clock).unwrap();
        b.record(t, Outcome::Failure, clock.monotonic(), || false);
    }
    assert_eq!(b.state(clock.monotonic()), State::Closed);
    // Once allowed, the next failure opens it.
    let t = admit(&b, &clock).unwrap();
    b.record(t, Outcome::Failure, clock.monotonic(), || true);
    assert_eq!(b.state(clock.monotonic()), State::Open);
}

mod validation {
    use crate::policy::{self, PolicyError};

    const CLUSTERS: &str = "[cluster.api]\nendpoints = [\"127.0.0.1:9001\", \"127.0.0.1:9002\"]\n";

    fn load(resilience: &str) -> Result<policy::Snapshot, Vec<PolicyError>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("clusters.toml"), CLUSTERS).unwrap();
        std::fs::write(dir.path().join("resilience.toml"), resilience).unwrap();
        policy::load_dir(dir.path()).map_err(|e| e.0)
    }

    fn errors(resilience: &str) -> Vec<String> {
        load(resilience)
            .unwrap_err()
            .iter()
            .map(|e| {
                format!(
                    "{}:{}:{}: {}: {}",
                    e.file.file_name().unwrap().to_string_lossy(),
                    e.line,
                    e.column,
                    e.field,
                    e.message
                )
            })
            .collect()
    }

    #[test]
    fn the_example_file_is_valid_and_a_bare_section_gets_defaults() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let snap = policy::load_dir(&dir).unwrap();
        let api = &snap.resilience["api"];
        assert!(api.breaker.is_some() && api.outlier.is_some() && api.bulkhead.is_some());
        let snap = load("[resilience.api.breaker]\n").unwrap();
        let b = snap.resilience["api"].breaker.clone().unwrap();
        assert_eq!(
            (
                b.failure_percent,
                b.min_requests,
                b.consecutive_failures,
                b.half_open_probes
            ),
            (Some(50), 20, Some(5), 3)
        );
        assert!(snap.resilience["api"].retry.baseline);
    }

    #[test]
    fn unknown_cluster_gets_a_suggestion() {
        let errs = errors("[resilience.apo.breaker]\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("resilience.toml:1:13: resilience.apo: found `apo`, expected one of the defined clusters: [api] (did you mean `api`?)"),
            "{errs:?}"
        );
    }

    #[test]
    fn out_of_range_settings_are_located() {
        let text = "[resilience.api]\nfailure_statuses = [200]\n\n[resilience.api.breaker]\nfailure_percent = 150\nhalf_open_probes = 0\nopen_for = \"10s\"\nmax_open_for = \"1s\"\nwindow = \"10ms\"\n\n[resilience.api.retry]\nmethods = [\"GET\", \"POST\", \"PUT\"]\nbudget_percent = 101\nattempts = 0\nstatuses = [404]\n\n[resilience.api.outlier]\nmax_ejected_percent = 120\nconsecutive_failures = 0\n\n[resilience.api.bulkhead]\nmax_concurrent = 0\n";
        let errs = errors(text);
        let expect = [
            "resilience.toml:2:21: resilience.api.failure_statuses[0]: found 200, expected a status from 400 to 599",
            "resilience.toml:5:19: resilience.api.breaker.failure_percent: found 150, expected 1 to 100",
            "resilience.toml:6:20: resilience.api.breaker.half_open_probes: found 0, expected 1 to 100",
            "resilience.toml:8:16: resilience.api.breaker.max_open_for: found `1s`, expected at least `open_for` (10s)",
            "resilience.toml:9:10: resilience.api.breaker.window: found `10ms`, expected at least `100ms`",
            "resilience.toml:12:19: resilience.api.retry.methods[1]: found `POST`, expected an idempotent method",
            "resilience.toml:12:27: resilience.api.retry.methods[2]: found `PUT`, expected one of GET, HEAD, OPTIONS, TRACE: PUT and DELETE are retried only on routes that set `retry_idempotent_writes = true`",
            "resilience.toml:13:18: resilience.api.retry.budget_percent: found 101, expected 0 to 100",
            "resilience.toml:14:12: resilience.api.retry.attempts: found 0, expected 1 to 10",
            "resilience.toml:15:13: resilience.api.retry.statuses[0]: found 404, expected a status from 500 to 599",
            "resilience.toml:18:23: resilience.api.outlier.max_ejected_percent: found 120, expected 0 to 100",
            "resilience.toml:19:24: resilience.api.outlier.consecutive_failures: found 0, expected 1 to 1000",
            "resilience.toml:22:18: resilience.api.bulkhead.max_concurrent: found 0, expected 1 to 1000000",
        ];
        for e in expect {
            assert!(
                errs.iter().any(|x| x.starts_with(e)),
                "missing {e}\nin {errs:#?}"
            );
        }
        assert_eq!(errs.len(), expect.len(), "{errs:#?}");
    }

    #[test]
    fn a_section_set_twice_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.toml"), CLUSTERS).unwrap();
        std::fs::write(dir.path().join("b.toml"), "[resilience.api.breaker]\n").unwrap();
        std::fs::write(dir.path().join("c.toml"), "[resilience.api.retry]\n").unwrap();
        let errs = policy::load_dir(dir.path()).unwrap_err().0;
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].file.ends_with("c.toml"));
        assert!(errs[0]
            .message
            .contains("duplicate [resilience.api] section"));
    }
}

/// The guard's per-request decisions, on real (unconnected) clusters and a manual clock.
mod guard {
    use std::sync::Arc;
    use std::time::Duration;

    use edgeway_record::clock::ManualClock;
    use edgeway_record::outcome::{BreakerState, ErrorClass};
    use http::Method;
    use pingora::{Error, ErrorType};

    use crate::metrics::Metrics;
    use crate::resilience::budget::BudgetSpec;
    use crate::resilience::{
        BulkheadSpec, Guard, GuardSpec, RequestState, ResilienceSpec, RetrySpec, Sent,
    };
    use crate::upstream::{Cluster, ClusterSpec};

    struct Fixture {
        guard: Guard,
        cluster: Cluster,
        clock: ManualClock,
        metrics: Metrics,
    }

    async fn fixture(endpoints: usize, edit: impl FnOnce(&mut ResilienceSpec)) -> Fixture {
        let spec = ClusterSpec {
            name: Arc::from("api"),
            endpoints: (0..endpoints)
                .map(|i| format!("127.0.0.1:{}", 9001 + i))
                .collect(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            tls: None,
            health_check: None,
        };
        let metrics = Metrics::new();
        let cluster = Cluster::build(&spec, &metrics.upstream_healthy)
            .await
            .unwrap();
        let mut r = ResilienceSpec::baseline(&spec.name);
        r.retry = RetrySpec {
            attempts: 3,
            methods: vec![Method::GET, Method::HEAD],
            statuses: vec![502, 503, 504],
            on_timeout: false,
            backoff_base: Duration::ZERO,
            backoff_max: Duration::ZERO,
            budget: None,
            baseline: false,
        };
        edit(&mut r);
        let clock = ManualClock::new(0);
        let guard = Guard::build(
            GuardSpec {
                resilience: r,
                endpoints: spec.endpoints.clone(),
            },
            &cluster,
            &metrics.resilience,
            Arc::new(clock.clone()),
        )
        .unwrap();
        Fixture {
            guard,
            cluster,
            clock,
            metrics,
        }
    }

    fn sent(method: &Method) -> Sent<'_> {
        Sent {
            method,
            body_bytes: 0,
            response_written: false,
            client_reused: false,
            idempotent_writes: false,
        }
    }

    /// Admit the request and start one attempt.
    async fn attempt(f: &Fixture, st: &mut RequestState) -> String {
        let mut state = None;
        if st.attempts == 0 {
            f.guard.admit_request(st, None, &mut state).await.unwrap();
        }
        f.guard.before_attempt(st, &mut state).await.unwrap();
        let (backend, _) = f.guard.select(&f.cluster, st).unwrap();
        backend.addr.to_string()
    }

    fn reset() -> Box<Error> {
        Error::new_up(ErrorType::ConnectionClosed)
    }

    #[tokio::test]
    async fn only_allowed_idempotent_methods_without_a_body_sent_are_retried_after_sending() {
        let f = fixture(2, |_| {}).await;
        let get = Method::GET;
        let mut st = RequestState::default();
        let first = attempt(&f, &mut st).await;
        assert!(f.guard.proxy_failed(&mut st, &reset(), &sent(&get)));
        // The retry goes to the other endpoint.
        assert_ne!(attempt(&f, &mut st).await, first);

        let post = Method::POST;
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        assert!(!f.guard.proxy_failed(&mut st, &reset(), &sent(&post)));
        // …but a failed connect is retried for any method: nothing was sent.
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        assert!(f.guard.connect_failed(&mut st));

        // PUT only where the route says its upstream makes it idempotent.
        let put = Method::PUT;
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        assert!(!f.guard.proxy_failed(&mut st, &reset(), &sent(&put)));
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        let route_says_so = Sent {
            idempotent_writes: true,
            ..sent(&put)
        };
        assert!(f.guard.proxy_failed(&mut st, &reset(), &route_says_so));
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        let post_anyway = Sent {
            idempotent_writes: true,
            ..sent(&post)
        };
        assert!(!f.guard.proxy_failed(&mut st, &reset(), &post_anyway));

        // A body byte read (and maybe sent), or a response already written: never.
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        let with_body = Sent {
            body_bytes: 1,
            ..sent(&get)
        };
        assert!(!f.guard.proxy_failed(&mut st, &reset(), &with_body));
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        let answered = Sent {
            response_written: true,
            ..sent(&get)
        };
        assert!(!f.guard.proxy_failed(&mut st, &reset(), &answered));

        // Timeouts only with on_timeout.
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        let timeout = Error::new_up(ErrorType::ReadTimedout);
        assert!(!f.guard.proxy_failed(&mut st, &timeout, &sent(&get)));

        // A client that went away is neither retried nor counted.
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        let gone = Error::new_down(ErrorType::ConnectionClosed);
        assert!(!f.guard.proxy_failed(&mut st, &gone, &sent(&get)));
    }

    #[tokio::test]
    async fn statuses_are_retried_until_the_attempts_run_out() {
        let f = fixture(2, |_| {}).await;
        let get = Method::GET;
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        assert!(f.guard.response(&mut st, 503, &sent(&get)));
        // The error raised for it is accepted by error_while_proxy as decided.
        assert!(f.guard.proxy_failed(&mut st, &reset(), &sent(&get)));
        attempt(&f, &mut st).await;
        assert!(f.guard.response(&mut st, 502, &sent(&get)));
        assert!(f.guard.proxy_failed(&mut st, &reset(), &sent(&get)));
        attempt(&f, &mut st).await;
        assert!(!f.guard.response(&mut st, 503, &sent(&get)), "3 attempts");
        // 500 is not retried; 200 of course not.
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        assert!(!f.guard.response(&mut st, 500, &sent(&get)));
        let labels = |o| {
            f.metrics
                .resilience
                .retries
                .with_label_values(&["api", o])
                .get()
        };
        assert_eq!(labels("retried"), 2);
        assert_eq!(labels("attempts_exhausted"), 1);
    }

    #[tokio::test]
    async fn the_budget_refuses_retries_beyond_its_share() {
        let f = fixture(2, |r| {
            r.retry.budget = Some(BudgetSpec {
                percent: 50,
                min_per_second: 0,
                window: Duration::from_secs(10),
            })
        })
        .await;
        let mut retried = 0;
        for _ in 0..10 {
            let mut st = RequestState::default();
            attempt(&f, &mut st).await;
            if f.guard.connect_failed(&mut st) {
                retried += 1;
            }
        }
        assert_eq!(retried, 5, "50% of 10 requests");
        // The window passes: the budget is empty again, with no requests in it.
        f.clock.advance(Duration::from_secs(11));
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        assert!(
            !f.guard.connect_failed(&mut st),
            "1 request × 50% rounds down to 0"
        );
    }

    #[tokio::test]
    async fn the_baseline_retries_failed_connects_once_per_endpoint() {
        let f = fixture(2, |r| r.retry = RetrySpec::baseline()).await;
        let get = Method::GET;
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        assert!(f.guard.connect_failed(&mut st));
        attempt(&f, &mut st).await;
        assert!(!f.guard.connect_failed(&mut st), "both endpoints tried");
        // Nothing is retried once sent.
        let mut st = RequestState::default();
        attempt(&f, &mut st).await;
        assert!(!f.guard.response(&mut st, 503, &sent(&get)));
    }

    #[tokio::test]
    async fn a_full_bulkhead_rejects_and_a_finished_request_frees_its_slot() {
        let f = fixture(1, |r| {
            r.bulkhead = Some(BulkheadSpec {
                max_concurrent: 1,
                max_waiting: 0,
                max_wait: Duration::from_millis(10),
            })
        })
        .await;
        let mut first = RequestState::default();
        let mut state = None;
        f.guard
            .admit_request(&mut first, None, &mut state)
            .await
            .unwrap();
        let mut second = RequestState::default();
        let reject = f
            .guard
            .admit_request(&mut second, None, &mut state)
            .await
            .unwrap_err();
        assert_eq!(reject.class, ErrorClass::Overloaded);
        f.guard.finish(&mut first, None);
        let mut third = RequestState::default();
        f.guard
            .admit_request(&mut third, None, &mut state)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_open_breaker_rejects_in_request_filter_with_retry_after() {
        let f = fixture(1, |r| {
            r.breaker = Some(super::spec());
        })
        .await;
        for _ in 0..5 {
            let mut st = RequestState::default();
            attempt(&f, &mut st).await;
            f.guard.connect_failed(&mut st);
            f.guard.finish(&mut st, None);
        }
        let mut st = RequestState::default();
        let mut state = None;
        f.clock.advance(Duration::from_millis(1500));
        let reject = f
            .guard
            .admit_request(&mut st, None, &mut state)
            .await
            .unwrap_err();
        assert_eq!(reject.class, ErrorClass::BreakerOpen);
        assert_eq!(state, Some(BreakerState::Open));
        let retry_after = reject
            .headers
            .iter()
            .find(|(n, _)| n == http::header::RETRY_AFTER)
            .map(|(_, v)| v.to_str().unwrap().to_string());
        assert_eq!(retry_after.as_deref(), Some("4"), "3.5 s rounded up");
        assert!(reject.keep_alive);
    }
}
