//! Time, injectable: the gateway's limiters, breakers and caches and the pipeline's roll and
//! lease decisions read it through [`Clock`], so their tests advance a [`ManualClock`] instead
//! of sleeping through real seconds.
//!
//! Two readings, because they answer different questions: [`Clock::now_ms`] is wall time (UTC
//! milliseconds, for records, file names and expiry claims such as JWT `exp`), and
//! [`Clock::monotonic`] only ever moves forward (for rates, windows and timeouts, where a
//! wall-clock step would corrupt the arithmetic).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub trait Clock: Send + Sync + 'static {
    /// UTC milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    /// Time since an arbitrary fixed origin; never goes backwards.
    fn monotonic(&self) -> Duration;
}

/// The system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place that reads the wall clock"
    )]
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }

    fn monotonic(&self) -> Duration {
        process_start().elapsed()
    }
}

/// A clock that moves only when told to. Clones share the same time.
#[derive(Debug, Default, Clone)]
pub struct ManualClock {
    wall_ms: Arc<AtomicI64>,
    mono_ns: Arc<AtomicU64>,
}

impl ManualClock {
    /// Wall time starts at `start_ms`, monotonic time at zero.
    pub fn new(start_ms: i64) -> Self {
        ManualClock {
            wall_ms: Arc::new(AtomicI64::new(start_ms)),
            mono_ns: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Move both readings forward.
    pub fn advance(&self, by: Duration) {
        self.wall_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        self.mono_ns
            .fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }

    pub fn advance_ms(&self, ms: i64) {
        self.advance(Duration::from_millis(ms.max(0) as u64));
    }

    /// Step the wall clock alone (an NTP correction); monotonic time does not move.
    pub fn set_wall_ms(&self, ms: i64) {
        self.wall_ms.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.wall_ms.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Duration {
        Duration::from_nanos(self.mono_ns.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        let shared = c.clone();
        assert_eq!((c.now_ms(), c.monotonic()), (1_000, Duration::ZERO));
        shared.advance(Duration::from_millis(1_500));
        assert_eq!(c.now_ms(), 2_500);
        assert_eq!(c.monotonic(), Duration::from_millis(1_500));
        c.set_wall_ms(0);
        assert_eq!(c.now_ms(), 0);
        assert_eq!(c.monotonic(), Duration::from_millis(1_500));
    }

    #[test]
    fn system_monotonic_never_goes_back() {
        let c = SystemClock;
        let a = c.monotonic();
        let b = c.monotonic();
        assert!(b >= a);
        assert!(c.now_ms() > 1_600_000_000_000);
    }
}
