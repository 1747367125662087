//! The runtime of one cluster's resilience settings: its breaker, one breaker per endpoint
//! (outlier ejection), its bulkhead and its retry budget, plus the per-request steps the
//! proxy phases call. Built from a [`GuardSpec`]; kept across reloads while that spec is
//! unchanged, with all its state.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use pingora::lb::Backend;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorSource, ErrorType};
use prometheus::IntCounter;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::breaker::{Admission, Breaker, Outcome, State, Ticket, Transition};
use super::budget::{backoff, Budget};
use super::metrics::{BreakerMetrics, ResilienceMetrics, RetryOutcome, CLUSTER_SCOPE};
use super::{BulkheadSpec, ResilienceSpec};
use crate::reject::Reject;
use crate::state::{BuildError, Part};
use crate::upstream::{Cluster, NO_HEALTHY_UPSTREAM};
use edgeway_record::clock::Clock;
use edgeway_record::outcome::{BreakerState, ErrorClass};

/// What a guard is built from: the cluster's settings and its endpoints (a changed endpoint
/// list rebuilds the per-endpoint state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardSpec {
    pub resilience: ResilienceSpec,
    pub endpoints: Vec<String>,
}

struct Endpoint {
    breaker: Breaker,
    metrics: BreakerMetrics,
    ejections: IntCounter,
    label: String,
}

struct Bulkhead {
    spec: BulkheadSpec,
    slots: Arc<Semaphore>,
    waiting: AtomicU32,
}

pub struct Guard {
    spec: GuardSpec,
    clock: Arc<dyn Clock>,
    breaker: Option<(Breaker, BreakerMetrics)>,
    endpoints: HashMap<SocketAddr, Endpoint>,
    /// Endpoints whose breaker is not closed, and how many may be at once.
    ejected: AtomicUsize,
    max_ejected: usize,
    bulkhead: Option<Bulkhead>,
    budget: Option<Budget>,
    retries: [IntCounter; 3],
    bulkhead_rejected: IntCounter,
}

impl Part for Guard {
    type Spec = GuardSpec;

    fn spec(&self) -> &GuardSpec {
        &self.spec
    }
}

/// Per-request state, in `Ctx`.
#[derive(Default)]
pub struct RequestState {
    /// Attempts started (peers selected).
    pub attempts: u32,
    permit: Option<OwnedSemaphorePermit>,
    /// The current attempt's tickets; `pending` until its outcome is recorded.
    cluster_ticket: Option<Ticket>,
    endpoint: Option<(SocketAddr, Option<Ticket>)>,
    pending: bool,
    tried: Vec<SocketAddr>,
    /// `upstream_response_filter` turned this status into a retry.
    retry_status: Option<u16>,
    /// A response header arrived: nothing is retried after that.
    responded: bool,
    stale_retries: u32,
    /// `request_timeout` ends at this monotonic time.
    deadline: Option<Duration>,
}

/// Facts about the request that decide whether an attempt that was sent may be repeated.
pub struct Sent<'a> {
    pub method: &'a Method,
    /// Request body bytes read from the client (and so possibly sent upstream).
    pub body_bytes: usize,
    pub response_written: bool,
    pub client_reused: bool,
    /// The route lets PUT and DELETE be retried (`retry_idempotent_writes`).
    pub idempotent_writes: bool,
}

impl Sent<'_> {
    /// Whether the cluster's retry settings allow repeating this method once sent.
    fn method_retryable(&self, methods: &[Method]) -> bool {
        if methods.is_empty() {
            // No retry section: nothing is retried once sent.
            return false;
        }
        methods.contains(self.method)
            || (self.idempotent_writes && matches!(*self.method, Method::PUT | Method::DELETE))
    }
}

/// Keeps the waiting count right when a waiting request is dropped (client gone).
struct Waiting<'a>(&'a AtomicU32);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Guard {
    pub fn build(
        spec: GuardSpec,
        cluster: &Cluster,
        metrics: &ResilienceMetrics,
        clock: Arc<dyn Clock>,
    ) -> Result<Guard, BuildError> {
        let r = &spec.resilience;
        let name = &*r.cluster;
        let breaker = r.breaker.as_ref().map(|b| {
            (
                Breaker::new(b.clone()),
                metrics.breaker(name, CLUSTER_SCOPE),
            )
        });
        let mut endpoints = HashMap::new();
        let mut max_ejected = 0;
        if let Some(o) = &r.outlier {
            let backends = cluster.backends();
            for b in &backends {
                let label = b.addr.to_string();
                endpoints.insert(
                    b.addr.clone(),
                    Endpoint {
                        breaker: Breaker::new(o.breaker.clone()),
                        metrics: metrics.breaker(name, &label),
                        ejections: metrics.ejections.with_label_values(&[name, &label]),
                        label,
                    },
                );
            }
            let n = backends.len();
            max_ejected = n * o.max_ejected_percent as usize / 100;
            if n > 1 && o.max_ejected_percent > 0 {
                max_ejected = max_ejected.max(1);
            }
        }
        let bulkhead = r.bulkhead.as_ref().map(|b| Bulkhead {
            spec: b.clone(),
            slots: Arc::new(Semaphore::new(b.max_concurrent as usize)),
            waiting: AtomicU32::new(0),
        });
        let budget = r.retry.budget.clone().map(Budget::new);
        Ok(Guard {
            clock,
            breaker,
            endpoints,
            ejected: AtomicUsize::new(0),
            max_ejected,
            bulkhead,
            budget,
            retries: metrics.retries(name),
            bulkhead_rejected: metrics.bulkhead_rejected.with_label_values(&[name]),
            spec,
        })
    }

    /// (cluster, endpoint) label pairs of this guard's breaker-state gauges.
    pub fn gauge_labels(&self) -> Vec<(String, String)> {
        let name = self.name().to_string();
        let cluster = self
            .breaker
            .as_ref()
            .map(|_| (name.clone(), CLUSTER_SCOPE.to_string()));
        cluster
            .into_iter()
            .chain(
                self.endpoints
                    .values()
                    .map(|e| (name.clone(), e.label.clone())),
            )
            .collect()
    }

    fn name(&self) -> &str {
        &self.spec.resilience.cluster
    }

    fn now(&self) -> Duration {
        self.clock.monotonic()
    }

    /// `request_filter`, once the route is known: fail fast while the cluster's breaker is
    /// open or its probe slots are all taken (without taking one), take a bulkhead slot, count the request for the
    /// retry budget, start the deadline (the shorter of the cluster's `request_timeout` and
    /// the route's `timeout`). Sets the record's `breaker_state` when the cluster has a breaker.
    pub async fn admit_request(
        &self,
        st: &mut RequestState,
        route_timeout: Option<Duration>,
        breaker_state: &mut Option<BreakerState>,
    ) -> Result<(), Reject> {
        if let Some((breaker, _)) = &self.breaker {
            if let Some(retry_after) = breaker.rejects(self.now()) {
                *breaker_state = Some(BreakerState::Open);
                return Err(self.breaker_open(retry_after));
            }
        }
        if let Some(b) = &self.bulkhead {
            match self.acquire(b).await {
                Some(p) => st.permit = Some(p),
                None => {
                    self.bulkhead_rejected.inc();
                    return Err(Reject::new(ErrorClass::Overloaded)
                        .message(format!(
                            "cluster {} is at its limit of {} concurrent requests",
                            self.name(),
                            b.spec.max_concurrent
                        ))
                        .header(http::header::RETRY_AFTER, "1")
                        .keep_alive());
                }
            }
        }
        if let Some(budget) = &self.budget {
            budget.deposit(self.now());
        }
        let timeout = match (self.spec.resilience.request_timeout, route_timeout) {
            (Some(c), Some(r)) => Some(c.min(r)),
            (c, r) => c.or(r),
        };
        st.deadline = timeout.map(|t| self.now() + t);
        Ok(())
    }

    fn breaker_open(&self, retry_after: Duration) -> Reject {
        let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        Reject::new(ErrorClass::BreakerOpen)
            .message(format!(
                "cluster {} is failing; its circuit breaker is open",
                self.name()
            ))
            .header(http::header::RETRY_AFTER, secs.max(1).to_string())
            .keep_alive()
    }

    /// `upstream_peer`, before choosing an endpoint: the backoff (retries), then the cluster
    /// breaker's admission (which may take a half-open probe slot).
    pub async fn before_attempt(
        &self,
        st: &mut RequestState,
        breaker_state: &mut Option<BreakerState>,
    ) -> Result<(), Reject> {
        if st.attempts > 0 {
            let r = &self.spec.resilience.retry;
            let wait = backoff(r.backoff_base, r.backoff_max, st.attempts, fastrand::f64());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        let Some((breaker, metrics)) = &self.breaker else {
            return Ok(());
        };
        let (admission, transition) = breaker.admit(self.now());
        if let Some(t) = transition {
            self.transitioned(CLUSTER_SCOPE, metrics, t);
        }
        match admission {
            Admission::Admitted(ticket) => {
                *breaker_state = Some(if ticket.probe() {
                    BreakerState::HalfOpen
                } else {
                    BreakerState::Closed
                });
                st.cluster_ticket = Some(ticket);
                Ok(())
            }
            Admission::Rejected { retry_after } => {
                *breaker_state = Some(BreakerState::Open);
                Err(self.breaker_open(retry_after))
            }
        }
    }

    async fn acquire(&self, b: &Bulkhead) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = Arc::clone(&b.slots).try_acquire_owned() {
            return Some(p);
        }
        if b.waiting.fetch_add(1, Ordering::AcqRel) >= b.spec.max_waiting {
            b.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let _waiting = Waiting(&b.waiting);
        tokio::time::timeout(b.spec.max_wait, Arc::clone(&b.slots).acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// `upstream_peer`: the next endpoint, skipping ejected ones while others remain and, on
    /// a retry, the endpoints already tried while others remain.
    pub fn select(
        &self,
        cluster: &Cluster,
        st: &mut RequestState,
    ) -> pingora::Result<(Backend, HttpPeer)> {
        let now = self.now();
        let admitted = std::cell::Cell::new(None);
        let admit = |b: &Backend| match self.endpoints.get(&b.addr) {
            None => true,
            Some(ep) => {
                let (a, t) = ep.breaker.admit(now);
                if let Some(t) = t {
                    self.endpoint_transitioned(ep, t);
                }
                match a {
                    Admission::Admitted(ticket) => {
                        admitted.set(Some(ticket));
                        true
                    }
                    Admission::Rejected { .. } => false,
                }
            }
        };
        let fresh = |b: &Backend| !st.tried.contains(&b.addr);
        let chosen = cluster
            .select_with(|b, healthy| healthy && fresh(b) && admit(b))
            .or_else(|| cluster.select_with(|b, healthy| healthy && admit(b)))
            // Every healthy endpoint is ejected: do not hide the cluster behind its breakers.
            .or_else(|| cluster.select_with(|_, healthy| healthy));
        let Some(backend) = chosen else {
            self.release_cluster_ticket(st);
            return Err(Error::explain(
                NO_HEALTHY_UPSTREAM,
                format!(
                    "cluster {}: every endpoint failed its health check",
                    self.name()
                ),
            ));
        };
        let mut peer = cluster.peer(&backend);
        if let Some(deadline) = st.deadline {
            let left = deadline.saturating_sub(now);
            if left.is_zero() {
                // Give back what was admitted (a probe slot) without an outcome.
                st.endpoint = Some((backend.addr.clone(), admitted.get()));
                st.pending = true;
                self.record(st, Outcome::Neutral);
                return Err(Error::explain(
                    ErrorType::ReadTimedout,
                    format!("cluster {}: request_timeout passed", self.name()),
                )
                .into_up());
            }
            let o = &mut peer.options;
            o.connection_timeout = o.connection_timeout.map(|t| t.min(left));
            o.total_connection_timeout = Some(left);
            o.read_timeout = o.read_timeout.map(|t| t.min(left));
            o.write_timeout = Some(o.write_timeout.map_or(left, |t| t.min(left)));
        }
        st.attempts += 1;
        st.tried.push(backend.addr.clone());
        st.endpoint = Some((backend.addr.clone(), admitted.get()));
        st.pending = true;
        st.responded = false;
        Ok((backend, peer))
    }

    fn release_cluster_ticket(&self, st: &mut RequestState) {
        if let (Some(ticket), Some((breaker, m))) = (st.cluster_ticket.take(), &self.breaker) {
            if let Some(t) = breaker.record(ticket, Outcome::Neutral, self.now(), || true) {
                self.transitioned(CLUSTER_SCOPE, m, t);
            }
        }
    }

    /// Record the current attempt's outcome once, in the cluster's and the endpoint's breaker.
    fn record(&self, st: &mut RequestState, outcome: Outcome) {
        if !std::mem::take(&mut st.pending) {
            return;
        }
        let now = self.now();
        if let (Some(ticket), Some((breaker, m))) = (st.cluster_ticket.take(), &self.breaker) {
            if let Some(t) = breaker.record(ticket, outcome, now, || true) {
                self.transitioned(CLUSTER_SCOPE, m, t);
            }
        }
        if let Some((addr, Some(ticket))) = st.endpoint.take() {
            if let Some(ep) = self.endpoints.get(&addr) {
                let may_eject = || {
                    let ok = self
                        .ejected
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                            (n < self.max_ejected).then_some(n + 1)
                        })
                        .is_ok();
                    if !ok {
                        tracing::warn!(cluster = %self.name(), endpoint = %ep.label, max = self.max_ejected, "endpoint failing, but the ejection cap is reached; it stays in rotation");
                    }
                    ok
                };
                if let Some(t) = ep.breaker.record(ticket, outcome, now, may_eject) {
                    self.endpoint_transitioned(ep, t);
                }
            }
        }
    }

    fn transitioned(&self, endpoint: &str, m: &BreakerMetrics, t: Transition) {
        m.transition(t.to);
        match t.to {
            State::Open => tracing::warn!(
                cluster = %self.name(), endpoint, from = t.from.as_str(),
                open_for_ms = t.open_for.map_or(0, |d| d.as_millis() as u64),
                "circuit breaker opened"
            ),
            to => {
                tracing::info!(cluster = %self.name(), endpoint, from = t.from.as_str(), to = to.as_str(), "circuit breaker transition")
            }
        }
    }

    fn endpoint_transitioned(&self, ep: &Endpoint, t: Transition) {
        if t.from == State::Closed && t.to == State::Open {
            ep.ejections.inc();
        }
        if t.to == State::Closed {
            let _ = self
                .ejected
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
        self.transitioned(&ep.label, &ep.metrics, t);
    }

    /// Whether another attempt may start: attempts left (and, without a retry section, an
    /// endpoint not yet tried), then the budget. Counts the outcome.
    fn may_retry(&self, st: &RequestState, cluster_size: usize) -> bool {
        let r = &self.spec.resilience.retry;
        let late = st.deadline.is_some_and(|d| self.now() >= d);
        if late || st.attempts >= r.attempts || (r.baseline && st.tried.len() >= cluster_size) {
            self.retries[RetryOutcome::AttemptsExhausted as usize].inc();
            return false;
        }
        if let Some(b) = &self.budget {
            if !b.withdraw(self.now()) {
                self.retries[RetryOutcome::BudgetExhausted as usize].inc();
                return false;
            }
        }
        self.retries[RetryOutcome::Retried as usize].inc();
        true
    }

    /// `fail_to_connect`: count the failure; retry (any method: nothing was sent)?
    pub fn connect_failed(&self, st: &mut RequestState) -> bool {
        self.record(st, Outcome::Failure);
        self.may_retry(st, self.spec.endpoints.len())
    }

    /// `error_while_proxy`: count the failure (not when the client went away); retry only an
    /// allowed method whose body did not start, before any response.
    pub fn proxy_failed(&self, st: &mut RequestState, e: &Error, sent: &Sent<'_>) -> bool {
        if st.retry_status.take().is_some() {
            // Our own error from `response`: counted and decided there.
            return true;
        }
        if *e.esource() == ErrorSource::Downstream {
            self.record(st, Outcome::Neutral);
            return false;
        }
        let untouched = sent.body_bytes == 0 && !sent.response_written && !st.responded;
        let idempotent = sent.method.is_idempotent();
        // The upstream closed a pooled connection as we reused it (the keep-alive race): not
        // the endpoint's fault; retry as Pingora does, a bounded number of times.
        let mut stale = e.retry;
        stale.decide_reuse(sent.client_reused);
        if sent.client_reused && stale.retry() && untouched && idempotent && st.stale_retries < 2 {
            st.stale_retries += 1;
            self.record(st, Outcome::Neutral);
            return true;
        }
        self.record(st, Outcome::Failure);
        let r = &self.spec.resilience.retry;
        let timeout = matches!(
            e.etype(),
            ErrorType::ReadTimedout | ErrorType::WriteTimedout
        );
        untouched
            && sent.method_retryable(&r.methods)
            && (!timeout || r.on_timeout)
            && self.may_retry(st, self.spec.endpoints.len())
    }

    /// `upstream_response_filter`: count the status; `true` when it is to be retried (the
    /// caller then fails the attempt so Pingora asks `upstream_peer` again).
    pub fn response(&self, st: &mut RequestState, status: u16, sent: &Sent<'_>) -> bool {
        if status < 200 {
            return false;
        }
        let r = &self.spec.resilience;
        let failed = r.failure_statuses.contains(&status) || r.retry.statuses.contains(&status);
        self.record(
            st,
            if failed {
                Outcome::Failure
            } else {
                Outcome::Success
            },
        );
        st.responded = true;
        let retry = r.retry.statuses.contains(&status)
            && sent.body_bytes == 0
            && !sent.response_written
            && sent.method_retryable(&r.retry.methods)
            && self.may_retry(st, self.spec.endpoints.len());
        if retry {
            st.retry_status = Some(status);
        }
        retry
    }

    /// `logging`: an attempt still without an outcome ends now (an upstream error counts, a
    /// client that went away does not); the bulkhead slot is freed.
    pub fn finish(&self, st: &mut RequestState, e: Option<&Error>) {
        let outcome = match e {
            Some(e) if *e.esource() == ErrorSource::Upstream => Outcome::Failure,
            _ => Outcome::Neutral,
        };
        self.record(st, outcome);
        self.release_cluster_ticket(st);
        st.permit = None;
    }
}
