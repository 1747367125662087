//! A rolling window of two counters (requests and failures, or requests and retries), kept
//! in ten buckets so that old events leave it a tenth of the window at a time. Time comes from
//! the caller (an injected clock), so tests step it by hand.

use std::time::Duration;

const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    a: u64,
    b: u64,
}

#[derive(Debug, Clone)]
pub struct Window {
    width_ns: u64,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    pub fn new(length: Duration) -> Window {
        let width_ns = (length.as_nanos() / BUCKETS as u128).clamp(1, u64::MAX as u128) as u64;
        Window {
            width_ns,
            buckets: [Bucket {
                epoch: u64::MAX,
                a: 0,
                b: 0,
            }; BUCKETS],
        }
    }

    fn epoch(&self, now: Duration) -> u64 {
        (now.as_nanos() / u128::from(self.width_ns)).min(u128::from(u64::MAX - 1)) as u64
    }

    /// Add to the counters at `now`.
    pub fn add(&mut self, now: Duration, a: u64, b: u64) {
        let epoch = self.epoch(now);
        let bucket = &mut self.buckets[(epoch % BUCKETS as u64) as usize];
        if bucket.epoch != epoch {
            *bucket = Bucket { epoch, a: 0, b: 0 };
        }
        bucket.a += a;
        bucket.b += b;
    }

    /// Totals over the window ending at `now`.
    pub fn totals(&self, now: Duration) -> (u64, u64) {
        let epoch = self.epoch(now);
        self.buckets
            .iter()
            .filter(|b| b.epoch <= epoch && epoch - b.epoch < BUCKETS as u64)
            .fold((0, 0), |(a, b), k| (a + k.a, b + k.b))
    }

    pub fn clear(&mut self) {
        for b in &mut self.buckets {
            *b = Bucket {
                epoch: u64::MAX,
                a: 0,
                b: 0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_leave_the_window_a_bucket_at_a_time() {
        let mut w = Window::new(Duration::from_secs(10));
        let s = Duration::from_secs;
        w.add(s(0), 1, 1);
        w.add(s(5), 2, 0);
        assert_eq!(w.totals(s(5)), (3, 1));
        assert_eq!(w.totals(s(9)), (3, 1));
        // The bucket of t=0 has left at t=10.
        assert_eq!(w.totals(s(10)), (2, 0));
        assert_eq!(w.totals(s(15)), (0, 0));
        // A bucket slot reused after a lap starts from zero.
        w.add(s(20), 1, 0);
        assert_eq!(w.totals(s(20)), (1, 0));
        w.clear();
        assert_eq!(w.totals(s(20)), (0, 0));
    }
}
