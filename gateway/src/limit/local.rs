//! Local buckets: governor's keyed GCRA limiters, one per tier, on the injected clock, with
//! bounded memory.
//!
//! Keys are 64-bit SipHash digests of the key bytes (random per process), so a bucket costs
//! the same whatever the key is (an IPv6 /64 or a 200-byte API key): 8 bytes of key and 8 of
//! GCRA state plus the map's overhead. Two keys collide with probability ~n²/2⁶⁵ (3·10⁻⁸ for
//! a million live keys); colliding keys would share a bucket.
//!
//! Idle keys (whose bucket has refilled, so forgetting them changes nothing) are swept by a
//! background task every [`SWEEP_EVERY`], and at once when a limiter holds more than its
//! `max_keys`.

use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::Quota;

use super::Rate;
use edgeway_record::clock::Clock;

/// How often idle keys are swept.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Check the key count every this many requests (a cheap counter; `len` visits every shard).
const COUNT_EVERY: u32 = 1024;

/// Our clock, as governor's: monotonic time as a `Duration` since an arbitrary origin.
#[derive(Clone)]
pub struct GovClock(pub Arc<dyn Clock>);

impl governor::clock::Clock for GovClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.monotonic()
    }
}

type Gov = governor::RateLimiter<u64, DashMapStateStore<u64>, GovClock, StateInformationMiddleware>;

/// What one bucket said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Tokens left after this request.
    pub remaining: u32,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// When denied: until the request's cost is available.
    pub retry_after: Duration,
}

/// One rate's buckets by key.
pub struct Buckets {
    rate: Rate,
    gov: Gov,
    clock: GovClock,
}

impl Buckets {
    pub fn new(rate: Rate, clock: GovClock) -> Buckets {
        // `interval` is at least 1µs (validated), so the quota always exists; the fallback
        // only keeps this free of a panic path.
        let quota = Quota::with_period(rate.interval)
            .unwrap_or_else(|| Quota::per_second(rate.rate))
            .allow_burst(rate.burst);
        let gov: Gov = governor::RateLimiter::<
            _,
            _,
            _,
            governor::middleware::NoOpMiddleware<Duration>,
        >::new(quota, DashMapStateStore::default(), clock.clone())
        .with_middleware::<StateInformationMiddleware>();
        Buckets { rate, gov, clock }
    }

    /// Spend `cost` tokens of `key`'s bucket if it holds them.
    pub fn check(&self, key: u64, cost: NonZeroU32) -> Verdict {
        let full = |remaining: u32| {
            self.rate.interval * (self.rate.burst.get() - remaining.min(self.rate.burst.get()))
        };
        match self.gov.check_key_n(&key, cost) {
            Ok(Ok(snapshot)) => {
                let remaining = snapshot.remaining_burst_capacity();
                Verdict {
                    allowed: true,
                    remaining,
                    reset: full(remaining),
                    retry_after: Duration::ZERO,
                }
            }
            Ok(Err(not_until)) => Verdict {
                allowed: false,
                remaining: 0,
                reset: full(0),
                retry_after: not_until.wait_time_from(governor::clock::Clock::now(&self.clock)),
            },
            // More than the bucket holds (a route's `limit_cost` times the method's cost): it
            // can never pass.
            Err(_) => Verdict {
                allowed: false,
                remaining: 0,
                reset: full(0),
                retry_after: self.rate.per,
            },
        }
    }

    pub fn sweep(&self) {
        self.gov.retain_recent();
        self.gov.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.gov.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gov.is_empty()
    }
}

/// Hashes key bytes for the maps, and notices when a limiter outgrows `max_keys`.
pub struct Keys {
    hasher: std::hash::RandomState,
    max_keys: usize,
    checks: AtomicU32,
    pub sweep_now: Arc<tokio::sync::Notify>,
}

impl Keys {
    pub fn new(max_keys: usize) -> Keys {
        Keys {
            hasher: std::hash::RandomState::new(),
            max_keys,
            checks: AtomicU32::new(0),
            sweep_now: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub fn hash(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }

    /// Every [`COUNT_EVERY`] requests, wake the sweeper when `len()` exceeds `max_keys`.
    pub fn count(&self, len: impl FnOnce() -> usize) {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(COUNT_EVERY)
            && len() > self.max_keys
        {
            self.sweep_now.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeway_record::clock::ManualClock;

    fn rate(rate: u32, per_ms: u64, burst: u32) -> Rate {
        let per = Duration::from_millis(per_ms);
        Rate {
            rate: NonZeroU32::new(rate).unwrap(),
            per,
            burst: NonZeroU32::new(burst).unwrap(),
            interval: per / rate,
        }
    }

    fn one() -> NonZeroU32 {
        NonZeroU32::new(1).unwrap()
    }

    #[test]
    fn burst_then_refill_on_the_injected_clock() {
        let clock = ManualClock::new(0);
        let b = Buckets::new(rate(10, 1000, 5), GovClock(Arc::new(clock.clone())));
        // A full bucket lets the burst through at once, counting down.
        for left in (0..5).rev() {
            let v = b.check(7, one());
            assert!(v.allowed);
            assert_eq!(v.remaining, left);
        }
        let v = b.check(7, one());
        assert!(!v.allowed);
        assert_eq!(v.retry_after, Duration::from_millis(100));
        assert_eq!(v.reset, Duration::from_millis(500));
        // Another key has its own bucket.
        assert!(b.check(8, one()).allowed);
        // One interval later exactly one more token.
        clock.advance(Duration::from_millis(100));
        assert!(b.check(7, one()).allowed);
        assert!(!b.check(7, one()).allowed);
        // Half a second refills the whole burst of 5, no more.
        clock.advance(Duration::from_millis(500));
        let passed = (0..10).filter(|_| b.check(7, one()).allowed).count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn cost_spends_several_tokens() {
        let clock = ManualClock::new(0);
        let b = Buckets::new(rate(1, 1000, 10), GovClock(Arc::new(clock.clone())));
        let five = NonZeroU32::new(5).unwrap();
        assert_eq!(b.check(1, five).remaining, 5);
        assert_eq!(b.check(1, five).remaining, 0);
        let v = b.check(1, five);
        assert!(!v.allowed);
        assert_eq!(v.retry_after, Duration::from_secs(5));
        // A cheaper request still fits once one token is back.
        clock.advance(Duration::from_secs(1));
        assert!(b.check(1, one()).allowed);
    }

    #[test]
    fn idle_keys_are_evicted_and_active_ones_kept() {
        let clock = ManualClock::new(0);
        let b = Buckets::new(rate(10, 1000, 10), GovClock(Arc::new(clock.clone())));
        for k in 0..10_000u64 {
            b.check(k, one());
        }
        assert_eq!(b.len(), 10_000);
        // Key 1 is drained: it must survive a sweep (forgetting it would refill it).
        for _ in 0..9 {
            b.check(1, one());
        }
        clock.advance(Duration::from_millis(200));
        b.sweep();
        assert_eq!(b.len(), 1, "only the drained key is still distinguishable");
        assert!(!b.check(1, NonZeroU32::new(5).unwrap()).allowed);
        clock.advance(Duration::from_secs(2));
        b.sweep();
        assert!(b.is_empty());
    }

    #[test]
    fn the_key_count_wakes_the_sweeper_past_max_keys() {
        let keys = Keys::new(10);
        let woken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        keys.count(|| 11);
        // notify_one stores a permit: the next wait returns at once.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let w = Arc::clone(&woken);
        rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(100), keys.sweep_now.notified())
                .await
                .unwrap();
            w.store(true, Ordering::SeqCst);
        });
        assert!(woken.load(Ordering::SeqCst));
        assert_ne!(keys.hash(b"a"), keys.hash(b"b"));
    }

    proptest::proptest! {
        /// Whatever the arrival pattern and costs, a bucket never admits more than its burst
        /// plus what the elapsed time refilled, and an idle bucket refills to its full burst.
        #[test]
        fn never_more_than_burst_plus_refill(
            burst in 1u32..20,
            interval_ms in 1u64..50,
            steps in proptest::collection::vec((0u64..120, 1u32..5), 1..200),
        ) {
            let clock = ManualClock::new(0);
            let interval = Duration::from_millis(interval_ms);
            let r = Rate {
                rate: NonZeroU32::new(1).unwrap(),
                per: interval,
                burst: NonZeroU32::new(burst).unwrap(),
                interval,
            };
            let b = Buckets::new(r, GovClock(Arc::new(clock.clone())));
            let mut admitted = 0u64;
            let mut elapsed = Duration::ZERO;
            for (advance_ms, cost) in steps {
                clock.advance(Duration::from_millis(advance_ms));
                elapsed += Duration::from_millis(advance_ms);
                let cost = cost.min(burst);
                let v = b.check(1, NonZeroU32::new(cost).unwrap());
                if v.allowed {
                    admitted += u64::from(cost);
                    proptest::prop_assert!(v.remaining < burst);
                } else {
                    proptest::prop_assert!(v.retry_after > Duration::ZERO);
                    proptest::prop_assert!(v.retry_after <= interval * cost);
                }
                let refilled = (elapsed.as_nanos() / interval.as_nanos()) as u64;
                proptest::prop_assert!(admitted <= u64::from(burst) + refilled);
            }
            clock.advance(interval * burst);
            let mut again = 0;
            while b.check(1, NonZeroU32::MIN).allowed {
                again += 1;
                proptest::prop_assert!(again <= burst);
            }
            proptest::prop_assert_eq!(again, burst);
        }
    }
}
