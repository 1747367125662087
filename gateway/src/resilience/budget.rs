//! Retry budget (as Linkerd and Envoy have it) and backoff with full jitter.
//!
//! The budget stops retry storms: over a rolling window, retries may add at most
//! `percent`% of the requests, plus `min_per_second` × window so that a quiet cluster can
//! still retry. When a cluster fails outright, every request wants retries, and the budget
//! caps the extra load at `1 + percent/100` instead of multiplying it by the attempt count.

use std::sync::Mutex;
use std::time::Duration;

use super::window::Window;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetSpec {
    pub percent: u32,
    pub min_per_second: u32,
    pub window: Duration,
}

#[derive(Debug)]
pub struct Budget {
    spec: BudgetSpec,
    /// (requests, retries)
    window: Mutex<Window>,
}

impl Budget {
    pub fn new(spec: BudgetSpec) -> Budget {
        Budget {
            window: Mutex::new(Window::new(spec.window)),
            spec,
        }
    }

    /// A new request (first attempt) arrived.
    pub fn deposit(&self, now: Duration) {
        self.lock().add(now, 1, 0);
    }

    /// Take one retry from the budget; false when it is spent.
    pub fn withdraw(&self, now: Duration) -> bool {
        let mut w = self.lock();
        let (requests, retries) = w.totals(now);
        if retries + 1 > self.allowed(requests) {
            return false;
        }
        w.add(now, 0, 1);
        true
    }

    /// Retries allowed in a window holding `requests` first attempts.
    pub fn allowed(&self, requests: u64) -> u64 {
        let floor =
            u64::from(self.spec.min_per_second) * self.spec.window.as_millis() as u64 / 1000;
        floor + requests * u64::from(self.spec.percent) / 100
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Backoff before retry `retry` (1 for the first retry): uniform in
/// `[0, min(max, base × 2^(retry-1))]`, with `unit` a uniform sample of `[0, 1)`.
pub fn backoff(base: Duration, max: Duration, retry: u32, unit: f64) -> Duration {
    let exp = retry.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1 << exp).min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(percent: u32, min_per_second: u32) -> Budget {
        Budget::new(BudgetSpec {
            percent,
            min_per_second,
            window: Duration::from_secs(10),
        })
    }

    #[test]
    fn retries_are_capped_at_a_share_of_requests_plus_a_floor() {
        let b = budget(20, 0);
        let t = Duration::from_secs(1);
        for _ in 0..100 {
            b.deposit(t);
        }
        // 20% of 100 requests.
        assert_eq!((0..50).filter(|_| b.withdraw(t)).count(), 20);
        // More requests refill it.
        for _ in 0..10 {
            b.deposit(t);
        }
        assert_eq!((0..50).filter(|_| b.withdraw(t)).count(), 2);
        // Once the window has passed, old requests and retries are gone.
        let later = t + Duration::from_secs(11);
        assert!(!b.withdraw(later), "no requests and no floor: no retries");

        // The floor: 1/s over a 10 s window is 10 retries with no traffic.
        let b = budget(20, 1);
        assert_eq!((0..50).filter(|_| b.withdraw(t)).count(), 10);
        assert_eq!(b.allowed(100), 30);
        // 0% with no floor turns retries off; 100% allows one retry per request.
        assert_eq!(budget(0, 0).allowed(1000), 0);
        assert_eq!(budget(100, 0).allowed(7), 7);
    }

    #[test]
    fn backoff_is_full_jitter_under_an_exponential_cap() {
        let base = Duration::from_millis(25);
        let max = Duration::from_millis(250);
        // The ceiling doubles per retry, then stays at max.
        let ceilings: Vec<u128> = (1..=6)
            .map(|n| backoff(base, max, n, 1.0).as_millis())
            .collect();
        assert_eq!(ceilings, [25, 50, 100, 200, 250, 250]);
        assert_eq!(backoff(base, max, 3, 0.0), Duration::ZERO);
        assert_eq!(backoff(base, max, 3, 0.5), Duration::from_millis(50));
        // Random samples stay within [0, ceiling].
        for n in 1..=8 {
            for _ in 0..200 {
                let d = backoff(base, max, n, fastrand::f64());
                assert!(d <= backoff(base, max, n, 1.0), "retry {n}: {d:?}");
            }
        }
        // Huge retry numbers do not overflow.
        assert_eq!(backoff(base, max, u32::MAX, 1.0), max);
    }
}
