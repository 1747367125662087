//! Load shedding: one counter of requests in flight; a request of a route with priority `p`
//! (percent) is admitted while fewer than `p`% of `max_in_flight` are in flight. Under a
//! rising load `bulk` routes (50%) are shed first, then `normal` (80%), and `critical` (100%)
//! only at the cap. The admin listener is another service and is never counted or shed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use prometheus::IntGauge;

use super::Shedding;
use crate::state::Part;

pub struct Shedder {
    spec: Shedding,
    in_flight: AtomicU32,
    gauge: IntGauge,
}

impl Part for Shedder {
    type Spec = Shedding;
    fn spec(&self) -> &Shedding {
        &self.spec
    }
}

/// One admitted request; leaving (the request's context dropped) frees its place.
pub struct InFlight(Arc<Shedder>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}

impl Shedder {
    pub fn new(spec: &Shedding, gauge: IntGauge) -> Shedder {
        Shedder {
            spec: spec.clone(),
            in_flight: AtomicU32::new(0),
            gauge,
        }
    }

    /// The in-flight count at which a route of `priority` percent is shed.
    pub fn threshold(&self, priority: u8) -> u32 {
        let t = u64::from(self.spec.max_in_flight) * u64::from(priority) / 100;
        u32::try_from(t).unwrap_or(u32::MAX).max(1)
    }

    /// Admit a request of `priority`, or `None`: shed it.
    pub fn admit(self: &Arc<Self>, priority: u8) -> Option<InFlight> {
        let limit = self.threshold(priority);
        let admitted = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        if !admitted {
            return None;
        }
        self.gauge.inc();
        Some(InFlight(Arc::clone(self)))
    }

    pub fn retry_after(&self) -> std::time::Duration {
        self.spec.retry_after
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{PRIORITY_BULK, PRIORITY_CRITICAL, PRIORITY_NORMAL};
    use super::*;

    #[test]
    fn the_lowest_priority_is_shed_first() {
        let s = Arc::new(Shedder::new(
            &Shedding {
                max_in_flight: 10,
                retry_after: std::time::Duration::from_secs(1),
            },
            IntGauge::new("t", "t").unwrap(),
        ));
        let mut held = Vec::new();
        // Bulk fills half the cap, then is shed.
        while let Some(g) = s.admit(PRIORITY_BULK) {
            held.push(g);
        }
        assert_eq!(s.in_flight(), 5);
        // Normal goes on to 8, critical to 10.
        while let Some(g) = s.admit(PRIORITY_NORMAL) {
            held.push(g);
        }
        assert_eq!(s.in_flight(), 8);
        assert!(s.admit(PRIORITY_BULK).is_none());
        while let Some(g) = s.admit(PRIORITY_CRITICAL) {
            held.push(g);
        }
        assert_eq!(s.in_flight(), 10);
        // Finished requests free their places.
        held.truncate(4);
        assert_eq!(s.in_flight(), 4);
        assert!(s.admit(PRIORITY_BULK).is_some());
        assert_eq!(s.threshold(1), 1, "a tiny share still admits one");
    }
}
