//! One `[limit.<name>]` at run time: its tiers (local buckets, cluster leases), the key it
//! takes from the request, and the decision for one request.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::Method;
use prometheus::{IntCounter, IntGauge};

use super::headers::TierHeaders;
use super::local::{self, GovClock, Verdict, SWEEP_EVERY};
use super::metrics::LimitMetrics;
use super::{cluster, LimitSpec, Mode, OnRedisDown, Rate, RedisSpec, RedisStore, Scope};
use crate::key::{self, KeyBuf};
use crate::state::Part;
use edgeway_record::clock::Clock;

/// What a [`Limiter`] is built from.
#[derive(Debug, PartialEq, Eq)]
pub struct LimiterSpec {
    pub limit: Arc<LimitSpec>,
    pub redis: Option<RedisSpec>,
}

/// One tier of a limit: local buckets (for a cluster limit, the fallback buckets at
/// `rate / instances`) and, for a cluster limit, the leases taken from Redis.
struct Tier {
    name: Box<str>,
    rate: Rate,
    headers: Arc<TierHeaders>,
    local: local::Buckets,
    leases: cluster::Leases,
}

/// The runtime of one `[limit.<name>]`.
pub struct Limiter {
    spec: LimiterSpec,
    keys: local::Keys,
    tiers: Vec<Tier>,
    tier_index: HashMap<Box<[u8]>, usize>,
    clock: Arc<dyn Clock>,
    redis: Option<Arc<RedisStore>>,
    started: AtomicBool,
    keys_gauge: IntGauge,
    fallback: IntCounter,
}

impl Part for Limiter {
    type Spec = LimiterSpec;
    fn spec(&self) -> &LimiterSpec {
        &self.spec
    }
}

/// What one limit said about one request.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'l> {
    pub verdict: Verdict,
    pub rate: &'l Rate,
    pub headers: &'l Arc<TierHeaders>,
}

impl Limiter {
    pub(super) fn build(
        spec: LimiterSpec,
        redis: Option<Arc<RedisStore>>,
        clock: &Arc<dyn Clock>,
        m: &LimitMetrics,
    ) -> Limiter {
        let l = &spec.limit;
        let instances = spec.redis.as_ref().map_or(1, |r| r.instances.max(1));
        let tier = |name: &str, rate: &Rate| {
            let local_rate = match l.scope {
                Scope::Local => rate.clone(),
                // The fallback share of one instance.
                Scope::Cluster => Rate {
                    rate: rate.rate,
                    per: rate.per * instances,
                    burst: NonZeroU32::new(rate.burst.get() / instances).unwrap_or(NonZeroU32::MIN),
                    interval: rate.interval * instances,
                },
            };
            Tier {
                name: name.into(),
                headers: Arc::new(TierHeaders::new(&l.name, rate)),
                rate: rate.clone(),
                local: local::Buckets::new(local_rate, GovClock(Arc::clone(clock))),
                leases: cluster::Leases::default(),
            }
        };
        let mut tiers = vec![tier("-", &l.base)];
        let mut tier_index = HashMap::new();
        for (value, rate) in &l.tiers {
            tier_index.insert(Box::<[u8]>::from(value.as_bytes()), tiers.len());
            tiers.push(tier(value, rate));
        }
        Limiter {
            keys: local::Keys::new(l.max_keys),
            keys_gauge: m.keys.with_label_values(&[&l.name]),
            fallback: m.fallback.with_label_values(&[&l.name]),
            spec,
            tiers,
            tier_index,
            clock: Arc::clone(clock),
            redis,
            started: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.spec.limit.name
    }

    pub fn mode(&self) -> Mode {
        self.spec.limit.mode
    }

    /// Spend this request's tokens. `None` when the request has no key for this limit.
    pub async fn check(
        &self,
        req: &key::Request<'_>,
        buf: &mut KeyBuf,
        method: &Method,
        route_cost: NonZeroU32,
    ) -> Option<Checked<'_>> {
        let l = &self.spec.limit;
        let tier = match &l.tier_key {
            None => &self.tiers[0],
            Some(k) => {
                buf.clear();
                let i = if k.write(req, buf) {
                    self.tier_index.get(buf.as_bytes()).copied().unwrap_or(0)
                } else {
                    0
                };
                &self.tiers[i]
            }
        };
        buf.clear();
        if !l.key.write(req, buf) {
            return None;
        }
        let hash = self.keys.hash(buf.as_bytes());
        let cost = l.cost(method).saturating_mul(route_cost);
        self.keys.count(|| self.len());
        let verdict = match l.scope {
            Scope::Local => tier.local.check(hash, cost),
            Scope::Cluster => self.check_cluster(tier, hash, buf.as_bytes(), cost).await,
        };
        Some(Checked {
            verdict,
            rate: &tier.rate,
            headers: &tier.headers,
        })
    }

    async fn check_cluster(&self, tier: &Tier, hash: u64, key: &[u8], cost: NonZeroU32) -> Verdict {
        let now = self.clock.monotonic();
        if let Some(v) = tier.leases.spend(hash, cost.get(), now) {
            return v;
        }
        if let Some(redis) = self.redis.as_ref().filter(|r| r.is_up()) {
            let name = cluster::redis_key(&self.spec.limit.name, &tier.name, key);
            let want = tier
                .leases
                .want(hash, cost.get(), self.spec.limit.lease, now);
            if let Some(g) = redis.take(&name, &tier.rate, want, cost.get()).await {
                tier.leases.store(hash, &g, cost.get(), &tier.rate, now);
                let allowed = g.granted >= cost.get();
                return Verdict {
                    allowed,
                    remaining: if allowed {
                        g.remaining + g.granted - cost.get()
                    } else {
                        0
                    },
                    reset: g.reset,
                    retry_after: g.retry_after,
                };
            }
        }
        self.fallback.inc();
        let on_down = self
            .spec
            .redis
            .as_ref()
            .map_or(OnRedisDown::Local, |r| r.on_down);
        match on_down {
            OnRedisDown::Local => tier.local.check(hash, cost),
            OnRedisDown::Allow => Verdict {
                allowed: true,
                remaining: tier.rate.burst.get(),
                reset: Duration::ZERO,
                retry_after: Duration::ZERO,
            },
            OnRedisDown::Deny => Verdict {
                allowed: false,
                remaining: 0,
                reset: tier.rate.per,
                retry_after: tier.rate.interval * cost.get(),
            },
        }
    }

    /// Keys held (buckets and leases).
    pub fn len(&self) -> usize {
        self.tiers
            .iter()
            .map(|t| t.local.len() + t.leases.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget idle keys.
    pub fn sweep(&self) {
        let now = self.clock.monotonic();
        for t in &self.tiers {
            t.local.sweep();
            t.leases.sweep(now);
        }
        self.keys_gauge
            .set(i64::try_from(self.len()).unwrap_or(i64::MAX));
    }

    /// Sweep every [`SWEEP_EVERY`] and when the key count passes `max_keys`. Idempotent;
    /// the task ends when a reload drops the limiter.
    pub(super) fn ensure_background(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<Limiter> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(l) = weak.upgrade() else { return };
                l.sweep();
                // Wait without holding the limiter, so a reload can drop it.
                let wake = Arc::clone(&l.keys.sweep_now);
                drop(l);
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(SWEEP_EVERY) => {}
                }
            }
        });
    }
}
