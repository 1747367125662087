//! Cluster-wide buckets in Redis, with a local fast path and a fallback.
//!
//! **In Redis** each (limit, tier, key) is one GCRA "theoretical arrival time" under
//! `edgeway:rl:{<limit>:<tier>:<digest>}` (a hash tag around the whole name, so a Redis
//! Cluster keeps it on one node; the digest is SHA-256 of the key bytes, so Redis never holds
//! client addresses or API keys). [`TAKE`] is one Lua script (sent with `EVALSHA`; the `redis`
//! crate loads it on the first `NOSCRIPT`) that reads the Redis server's `TIME` — never a
//! gateway's clock — and grants up to `want` tokens, at least `min` (the request's cost) or
//! none.
//!
//! **The fast path**: a grant of more than the request's cost is a lease kept in memory for
//! the key and spent by the next requests without a round trip ([`Leases`]: a key's lease
//! grows while it is hot, up to the limit's `lease`, so quiet keys take nothing they do not
//! use). A lease lasts as long as Redis needs to make its tokens again (`tokens × interval`,
//! at least [`MIN_LEASE`]); tokens unused by then are dropped, not returned. Every admitted
//! request spent a token Redis granted, so over any long period the fleet admits at most
//! what the limit allows; what a lease costs is timing: within one lease's life an instance
//! may spend up to `lease` tokens that Redis already counted, and may drop up to `lease`
//! unused ones.
//!
//! **Connections**: one multiplexed connection (`ConnectionManager`, which reconnects by
//! itself), or with `redis_cluster` a cluster connection that follows the slot map; `rediss://`
//! for TLS, AUTH in the URL.
//!
//! **Budget and outage**: a request waits at most `redis_budget` for Redis. A timeout or an
//! error marks Redis down (one warning in the log, `gateway_rate_limit_redis_up` 0) and the
//! request, like every request until Redis answers a `PING` again, is decided by
//! `on_redis_down`: `local` buckets at `rate / instances`, `allow` or `deny`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use dashmap::DashMap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use super::local::Verdict;
use super::{Rate, RedisSpec};
use crate::state::Part;

/// Prefix of every key the gateway writes to Redis.
pub const KEY_PREFIX: &str = "edgeway:rl:";
/// How often a down Redis is probed.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// How long a probe (connect + PING) may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// GCRA with partial grants, on the server's clock (microseconds).
/// KEYS[1] bucket; ARGV: interval µs, burst, want, min.
/// Returns {granted, retry_after µs, remaining after the grant, µs until full}.
pub const TAKE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local min = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local avail = math.floor((burst * interval - (tat - now)) / interval)
if avail < min then
  local retry = tat - (burst - min) * interval - now
  return {0, math.max(retry, 1), math.max(avail, 0), tat - now}
end
local take = math.min(want, avail)
tat = tat + take * interval
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
return {take, 0, avail - take, tat - now}
"#;

/// The Redis connection shared by every cluster limit; built from `[rate_limits]`.
pub struct RedisStore {
    spec: RedisSpec,
    client: Client,
    conn: ArcSwapOption<Conn>,
    up: AtomicBool,
    /// Whether the current outage (or the first failed connection) has been logged.
    announced_down: AtomicBool,
    script: redis::Script,
    started: AtomicBool,
    metrics: super::metrics::LimitMetrics,
}

impl Part for RedisStore {
    type Spec = RedisSpec;
    fn spec(&self) -> &RedisSpec {
        &self.spec
    }
}

/// A single Redis (or a replication group's primary), or a Redis Cluster found from a seed.
#[allow(
    clippy::large_enum_variant,
    reason = "one per Redis configuration, built on reload, never on the request path"
)]
enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// A multiplexed connection that reconnects by itself; cheap to clone per call.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    async fn query<T: redis::FromRedisValue>(
        &mut self,
        call: &redis::ScriptInvocation<'_>,
    ) -> redis::RedisResult<T> {
        match self {
            Conn::Single(c) => call.invoke_async(c).await,
            Conn::Cluster(c) => call.invoke_async(c).await,
        }
    }

    /// `SCRIPT LOAD` on every primary (connecting to each), so that the request path's
    /// `EVALSHA` neither meets `NOSCRIPT` nor opens a connection.
    async fn load_script(&mut self) -> redis::RedisResult<()> {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(TAKE);
        match self {
            Conn::Single(c) => load.query_async::<String>(c).await.map(drop),
            Conn::Cluster(c) => {
                let route = redis::cluster_routing::RoutingInfo::MultiNode((
                    redis::cluster_routing::MultipleNodeRoutingInfo::AllMasters,
                    Some(redis::cluster_routing::ResponsePolicy::AllSucceeded),
                ));
                c.route_command(load, route).await.map(drop)
            }
        }
    }

    async fn ping(&mut self) -> redis::RedisResult<String> {
        let ping = redis::cmd("PING");
        match self {
            Conn::Single(c) => ping.query_async(c).await,
            Conn::Cluster(c) => ping.query_async(c).await,
        }
    }
}

/// What Redis granted.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub granted: u32,
    pub retry_after: Duration,
    pub remaining: u32,
    pub reset: Duration,
}

impl RedisStore {
    pub fn build(
        spec: &RedisSpec,
        metrics: &super::metrics::LimitMetrics,
    ) -> Result<RedisStore, crate::state::BuildError> {
        let certs = spec.ca_pem.as_ref().map(|pem| redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem.clone()),
        });
        let client = if spec.cluster {
            let mut b = redis::cluster::ClusterClient::builder([spec.url.as_str()])
                .connection_timeout(PROBE_TIMEOUT)
                .response_timeout(PROBE_TIMEOUT);
            if let Some(certs) = certs {
                b = b.certs(certs);
            }
            b.build().map(Client::Cluster)
        } else {
            match certs {
                None => redis::Client::open(spec.url.as_str()),
                Some(certs) => redis::Client::build_with_tls(spec.url.as_str(), certs),
            }
            .map(Client::Single)
        }
        .map_err(|e| crate::state::BuildError {
            field: "rate_limits.redis_url".into(),
            message: format!("cannot use this Redis URL ({:?})", e.kind()),
        })?;
        metrics.redis_up.set(0);
        Ok(RedisStore {
            spec: spec.clone(),
            client,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            announced_down: AtomicBool::new(false),
            script: redis::Script::new(TAKE),
            started: AtomicBool::new(false),
            metrics: metrics.clone(),
        })
    }

    pub fn budget(&self) -> Duration {
        self.spec.budget
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn mark_down(&self, why: &str) {
        self.up.store(false, Ordering::Relaxed);
        if !self.announced_down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                reason = why,
                fallback = ?self.spec.on_down,
                "redis unreachable: cluster rate limits fall back until it answers again"
            );
            self.metrics.redis_up.set(0);
        }
    }

    fn mark_up(&self) {
        self.announced_down.store(false, Ordering::Relaxed);
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!("redis reachable: cluster rate limits use it again");
            self.metrics.redis_up.set(1);
        }
    }

    /// Take up to `want` tokens (at least `min`) of `key` within the budget. `None` when
    /// Redis did not answer in time or failed (it is then marked down).
    pub async fn take(&self, key: &str, rate: &Rate, want: u32, min: u32) -> Option<Grant> {
        let conn = self.conn.load_full()?;
        let mut conn = (*conn).clone();
        let mut call = self.script.key(key);
        call.arg(rate.interval.as_micros().max(1) as u64)
            .arg(rate.burst.get())
            .arg(want)
            .arg(min);
        let result: Result<redis::RedisResult<(i64, i64, i64, i64)>, _> =
            tokio::time::timeout(self.spec.budget, conn.query(&call)).await;
        match result {
            Ok(Ok((granted, retry, remaining, reset))) => Some(Grant {
                granted: u32::try_from(granted).unwrap_or(0),
                retry_after: Duration::from_micros(u64::try_from(retry).unwrap_or(0)),
                remaining: u32::try_from(remaining).unwrap_or(0),
                reset: Duration::from_micros(u64::try_from(reset).unwrap_or(0)),
            }),
            Ok(Err(e)) => {
                self.mark_down(&format!("{:?}", e.kind()));
                None
            }
            Err(_) => {
                self.mark_down("no answer within redis_budget");
                None
            }
        }
    }

    /// Connect and keep probing while Redis is down. Idempotent; the task ends when the
    /// store is dropped (a reload with other Redis settings).
    pub fn ensure_background(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak: Weak<RedisStore> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(store) = weak.upgrade() else { return };
                if !store.is_up() {
                    store.probe().await;
                }
                drop(store);
                tokio::time::sleep(PROBE_EVERY).await;
            }
        });
    }

    async fn probe(&self) {
        if self.conn.load().is_none() {
            let conn = match &self.client {
                Client::Single(client) => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(PROBE_TIMEOUT))
                        .set_response_timeout(Some(PROBE_TIMEOUT))
                        .set_number_of_retries(1);
                    ConnectionManager::new_lazy_with_config(client.clone(), config)
                        .map(Conn::Single)
                }
                // The cluster connection reads the slot map from the seed now.
                Client::Cluster(client) => {
                    match tokio::time::timeout(PROBE_TIMEOUT, client.get_async_connection()).await {
                        Ok(c) => c.map(Conn::Cluster),
                        Err(_) => {
                            self.mark_down("no answer from the cluster seed");
                            return;
                        }
                    }
                }
            };
            match conn {
                Ok(c) => self.conn.store(Some(Arc::new(c))),
                Err(e) => {
                    self.mark_down(&format!("{:?}", e.kind()));
                    return;
                }
            }
        }
        let Some(conn) = self.conn.load_full() else {
            return;
        };
        let mut conn = (*conn).clone();
        match tokio::time::timeout(PROBE_TIMEOUT, conn.ping()).await {
            Ok(Ok(_)) => {
                if let Ok(Err(e)) = tokio::time::timeout(PROBE_TIMEOUT, conn.load_script()).await {
                    tracing::debug!(error = ?e.kind(), "redis SCRIPT LOAD");
                }
                self.mark_up()
            }
            Ok(Err(e)) => self.mark_down(&format!("{:?}", e.kind())),
            Err(_) => self.mark_down("no answer to PING"),
        }
    }
}

/// The Redis name of one bucket.
pub fn redis_key(limit: &str, tier: &str, key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    let mut out = String::with_capacity(KEY_PREFIX.len() + limit.len() + tier.len() + 40);
    out.push_str(KEY_PREFIX);
    out.push('{');
    out.push_str(limit);
    out.push(':');
    out.push_str(tier);
    out.push(':');
    for b in &digest[..16] {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out.push('}');
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The shortest life of a lease: long enough for a hot key's next requests to use it.
pub const MIN_LEASE: Duration = Duration::from_millis(100);

/// Tokens leased from Redis for one key.
#[derive(Debug, Clone, Copy)]
struct Lease {
    tokens: u32,
    /// What the last grant was (the next one may double while the key stays hot).
    granted: u32,
    /// Monotonic time after which the tokens are dropped.
    expires: Duration,
    /// The cluster's remaining tokens when the lease was granted (for headers).
    remaining: u32,
    reset_at: Duration,
}

/// Leases by key hash, for one tier of one cluster limit.
///
/// Leases grow like TCP's slow start: a key's first Redis call asks only for the request's
/// cost; a key that spent its whole lease before it expired asks for twice as much next
/// time, up to the limit's `lease`; a key that let tokens expire goes back to its cost. So a
/// quiet key (one client's occasional requests) never takes tokens it will not use, and a
/// hot key reaches one round trip per `lease` tokens.
#[derive(Default)]
pub struct Leases {
    map: DashMap<u64, Lease>,
}

impl Leases {
    /// Spend `cost` from a live lease of `key`.
    pub fn spend(&self, key: u64, cost: u32, now: Duration) -> Option<Verdict> {
        let mut l = self.map.get_mut(&key)?;
        if l.expires <= now || l.tokens < cost {
            return None;
        }
        l.tokens -= cost;
        Some(Verdict {
            allowed: true,
            remaining: l.remaining + l.tokens,
            reset: l.reset_at.saturating_sub(now),
            retry_after: Duration::ZERO,
        })
    }

    /// How many tokens to ask Redis for (at least `cost`, at most `max`).
    pub fn want(&self, key: u64, cost: u32, max: u32, now: Duration) -> u32 {
        let want = match self.map.get(&key) {
            None => cost,
            // Spent in time: the key is hot.
            Some(l) if l.expires > now => l.granted.saturating_mul(2),
            // Spent, but over a longer time than the lease lasted: same size again.
            Some(l) if l.tokens < cost => l.granted,
            // Tokens expired unused: start over.
            Some(_) => cost,
        };
        want.clamp(cost, max.max(cost))
    }

    /// Keep what Redis granted beyond `cost`.
    pub fn store(&self, key: u64, g: &Grant, cost: u32, rate: &Rate, now: Duration) {
        let lease = Lease {
            tokens: g.granted.saturating_sub(cost),
            granted: g.granted,
            expires: now + (rate.interval * g.granted).max(MIN_LEASE),
            remaining: g.remaining,
            reset_at: now + g.reset,
        };
        if g.granted == 0 {
            return;
        }
        self.map
            .entry(key)
            .and_modify(|l| {
                if l.expires > now {
                    l.tokens += lease.tokens;
                    l.granted = lease.granted;
                    l.expires = l.expires.max(lease.expires);
                    l.remaining = lease.remaining;
                    l.reset_at = lease.reset_at;
                } else {
                    *l = lease;
                }
            })
            .or_insert(lease);
    }

    /// Drop expired leases (their sizes are forgotten too: the key starts over).
    pub fn sweep(&self, now: Duration) {
        self.map.retain(|_, l| l.expires > now);
        self.map.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn rate() -> Rate {
        Rate {
            rate: NonZeroU32::new(10).unwrap(),
            per: Duration::from_secs(1),
            burst: NonZeroU32::new(10).unwrap(),
            interval: Duration::from_millis(100),
        }
    }

    #[test]
    fn keys_hash_the_client_value_and_keep_one_slot() {
        let k = redis_key("per_ip", "-", &[10, 0, 0, 1]);
        assert!(k.starts_with("edgeway:rl:{per_ip:-:"), "{k}");
        assert!(k.ends_with('}'));
        assert_eq!(k.len(), "edgeway:rl:{per_ip:-:}".len() + 32);
        assert_ne!(k, redis_key("per_ip", "-", &[10, 0, 0, 2]));
    }

    #[test]
    fn leases_are_spent_then_expire() {
        let l = Leases::default();
        let now = Duration::from_secs(1);
        let g = Grant {
            granted: 4,
            retry_after: Duration::ZERO,
            remaining: 6,
            reset: Duration::from_millis(400),
        };
        l.store(9, &g, 1, &rate(), now);
        for left in (0..3).rev() {
            let v = l.spend(9, 1, now).unwrap();
            assert_eq!(v.remaining, 6 + left);
        }
        assert!(l.spend(9, 1, now).is_none(), "spent");
        // Spent in time: the key is hot and asks for twice as much, up to the maximum.
        assert_eq!(l.want(9, 1, 100, now), 8);
        assert_eq!(l.want(9, 1, 5, now), 5);
        assert_eq!(l.want(7, 2, 100, now), 2, "a new key asks for its cost");
        l.store(9, &g, 1, &rate(), now);
        // The lease lasts as long as Redis needs to make its 4 tokens again.
        assert!(l.spend(9, 1, now + Duration::from_millis(399)).is_some());
        assert!(l.spend(9, 1, now + Duration::from_millis(400)).is_none());
        // Expired with tokens left: the key went quiet, start over at the cost.
        assert_eq!(l.want(9, 1, 100, now + Duration::from_millis(400)), 1);
        l.sweep(now + Duration::from_secs(1));
        assert_eq!(l.len(), 0);
        // A fast rate still keeps a lease for MIN_LEASE.
        let mut fast = rate();
        fast.interval = Duration::from_micros(1);
        l.store(3, &g, 1, &fast, now);
        assert!(l
            .spend(3, 1, now + MIN_LEASE - Duration::from_millis(1))
            .is_some());
    }
}
