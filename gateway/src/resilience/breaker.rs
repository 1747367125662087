//! The circuit breaker state machine, used for a cluster and for each endpoint (outlier
//! ejection is an endpoint's breaker being open).
//!
//! ```text
//!            failure % over the window ≥ threshold (with min requests),
//!            or N consecutive failures
//!   Closed ─────────────────────────────────────────────▶ Open ◀──────────┐
//!     ▲                                                   │  open_for     │ a probe fails:
//!     │ `half_open_probes` successes                      ▼  elapsed      │ open_for × 2
//!     └─────────────────────────────────────────────── HalfOpen ─────────┘ (≤ max_open_for)
//! ```
//!
//! Every admitted request carries a [`Ticket`]; only outcomes of tickets issued in the
//! current state count (a slow request admitted while closed that fails after the breaker
//! opened says nothing new), and in half-open only the probes count. The breaker's own
//! rejections are never recorded, and [`Outcome::Neutral`] (the client went away) only frees
//! a probe slot. Time is passed in (monotonic, from the injected clock).

use std::sync::Mutex;
use std::time::Duration;

use super::window::Window;

/// Settings of one breaker (validated).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BreakerSpec {
    /// Open at this failure percentage over the window (1–100); `None`: ratio off.
    pub failure_percent: Option<u32>,
    pub min_requests: u32,
    pub window: Duration,
    /// Open after this many failures in a row; `None`: off.
    pub consecutive_failures: Option<u32>,
    pub open_for: Duration,
    pub max_open_for: Duration,
    pub half_open_probes: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }

    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub const fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

/// Proof of admission; hand it back with the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    generation: u64,
    probe: bool,
}

impl Ticket {
    pub fn probe(&self) -> bool {
        self.probe
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted(Ticket),
    /// Open (or half-open with every probe slot taken): try again after this long.
    Rejected {
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Neither (the client went away, the request was abandoned): frees a probe slot.
    Neutral,
}

/// A state change, for the caller to log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    /// When it went to open: for how long.
    pub open_for: Option<Duration>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Bumped on every transition; tickets of older generations are ignored.
    generation: u64,
    window: Window,
    consecutive: u32,
    /// Open interval the next opening uses (doubles on failed probes, reset on close).
    next_open_for: Duration,
    open_until: Duration,
    probes_in_flight: u32,
    probe_successes: u32,
}

#[derive(Debug)]
pub struct Breaker {
    spec: BreakerSpec,
    inner: Mutex<Inner>,
}

impl Breaker {
    pub fn new(spec: BreakerSpec) -> Breaker {
        let inner = Inner {
            state: State::Closed,
            generation: 0,
            window: Window::new(spec.window),
            consecutive: 0,
            next_open_for: spec.open_for,
            open_until: Duration::ZERO,
            probes_in_flight: 0,
            probe_successes: 0,
        };
        Breaker {
            spec,
            inner: Mutex::new(inner),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic cannot happen while the lock is held (plain arithmetic), but never
        // propagate a poison to the request path.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state as of `now`, without admitting anything (an open breaker whose interval has
    /// passed reads half-open).
    pub fn state(&self, now: Duration) -> State {
        let g = self.lock();
        match g.state {
            State::Open if now >= g.open_until => State::HalfOpen,
            s => s,
        }
    }

    /// When a request at `now` would surely be rejected (open, probes not yet due; or
    /// half-open with every probe slot taken): after how long to try again. Takes nothing.
    pub fn rejects(&self, now: Duration) -> Option<Duration> {
        let g = self.lock();
        match g.state {
            State::Open if now < g.open_until => Some(g.open_until - now),
            State::HalfOpen
                if g.probes_in_flight + g.probe_successes >= self.spec.half_open_probes =>
            {
                Some(Duration::from_secs(1))
            }
            _ => None,
        }
    }

    /// Ask to send a request at `now`.
    pub fn admit(&self, now: Duration) -> (Admission, Option<Transition>) {
        let mut g = self.lock();
        let mut transition = None;
        if g.state == State::Open {
            if now < g.open_until {
                return (
                    Admission::Rejected {
                        retry_after: g.open_until - now,
                    },
                    None,
                );
            }
            transition = Some(g.enter(State::HalfOpen, now));
        }
        match g.state {
            State::Closed => (
                Admission::Admitted(Ticket {
                    generation: g.generation,
                    probe: false,
                }),
                transition,
            ),
            State::HalfOpen
                if g.probes_in_flight + g.probe_successes < self.spec.half_open_probes =>
            {
                g.probes_in_flight += 1;
                (
                    Admission::Admitted(Ticket {
                        generation: g.generation,
                        probe: true,
                    }),
                    transition,
                )
            }
            // Every probe slot is taken: the answer comes within a request's time.
            _ => (
                Admission::Rejected {
                    retry_after: Duration::from_secs(1),
                },
                transition,
            ),
        }
    }

    /// Record the outcome of an admitted request. `may_open` is asked before closed → open
    /// (the outlier ejection cap); when it says no, the breaker stays closed.
    pub fn record(
        &self,
        ticket: Ticket,
        outcome: Outcome,
        now: Duration,
        may_open: impl FnOnce() -> bool,
    ) -> Option<Transition> {
        let mut g = self.lock();
        if ticket.generation != g.generation {
            return None;
        }
        match g.state {
            State::Closed => {
                let failed = match outcome {
                    Outcome::Neutral => return None,
                    Outcome::Failure => true,
                    Outcome::Success => false,
                };
                g.window.add(now, 1, u64::from(failed));
                g.consecutive = if failed { g.consecutive + 1 } else { 0 };
                if failed && self.trips(&g, now) && may_open() {
                    return Some(g.enter(State::Open, now));
                }
                None
            }
            State::HalfOpen if ticket.probe => {
                g.probes_in_flight = g.probes_in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Neutral => None,
                    Outcome::Success => {
                        g.probe_successes += 1;
                        if g.probe_successes < self.spec.half_open_probes {
                            return None;
                        }
                        // Recovered: the next opening starts from the base interval.
                        g.next_open_for = self.spec.open_for;
                        Some(g.enter(State::Closed, now))
                    }
                    Outcome::Failure => {
                        g.next_open_for = (g.next_open_for * 2).min(self.spec.max_open_for);
                        Some(g.enter(State::Open, now))
                    }
                }
            }
            _ => None,
        }
    }

    fn trips(&self, g: &Inner, now: Duration) -> bool {
        if self
            .spec
            .consecutive_failures
            .is_some_and(|n| g.consecutive >= n)
        {
            return true;
        }
        let Some(percent) = self.spec.failure_percent else {
            return false;
        };
        let (total, failed) = g.window.totals(now);
        total >= u64::from(self.spec.min_requests) && failed * 100 >= total * u64::from(percent)
    }
}

impl Inner {
    fn enter(&mut self, to: State, now: Duration) -> Transition {
        let from = self.state;
        self.state = to;
        self.generation += 1;
        self.probes_in_flight = 0;
        self.probe_successes = 0;
        let mut open_for = None;
        match to {
            State::Open => {
                self.open_until = now + self.next_open_for;
                open_for = Some(self.next_open_for);
            }
            State::Closed => {
                self.window.clear();
                self.consecutive = 0;
            }
            State::HalfOpen => {}
        }
        Transition { from, to, open_for }
    }
}
