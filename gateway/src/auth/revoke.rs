//! Revocation: `jti` and `sub` values refused even with a valid signature, from the policy
//! file and, fleet-wide, from two Redis sets copied locally in the background. The request
//! path reads only the local copy; it never waits on Redis.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::identity::Identity;
use super::metrics::AuthMetrics;
use super::spec::{OnRedisError, RedisRevocation, RevocationSpec};
use crate::state::{BuildError, Part};
use edgeway_record::clock::Clock;

/// The Redis copy of the deny-list.
#[derive(Debug, Default)]
struct Denied {
    jti: HashSet<String>,
    sub: HashSet<String>,
}

/// What revocation says about a verified identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Pass,
    Revoked,
    /// Redis has been unreachable longer than `max_stale` and the policy fails closed.
    Unavailable,
}

pub struct Revocation {
    spec: RevocationSpec,
    remote: ArcSwap<Denied>,
    /// When Redis last answered (clock ms); 0 = never.
    last_ok_ms: AtomicI64,
    reachable: AtomicBool,
    loop_started: AtomicBool,
    clock: Arc<dyn Clock>,
    metrics: AuthMetrics,
}

impl Part for Revocation {
    type Spec = RevocationSpec;
    fn spec(&self) -> &RevocationSpec {
        &self.spec
    }
}

/// How long one Redis round trip may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

impl Revocation {
    /// Build it, and load the Redis copy once (bounded by a short timeout) so that a fresh
    /// gateway starts with the fleet's list when Redis is up.
    pub async fn build(
        spec: &RevocationSpec,
        clock: Arc<dyn Clock>,
        metrics: AuthMetrics,
    ) -> Result<Revocation, BuildError> {
        let r = Revocation {
            spec: spec.clone(),
            remote: ArcSwap::from_pointee(Denied::default()),
            last_ok_ms: AtomicI64::new(0),
            reachable: AtomicBool::new(true),
            loop_started: AtomicBool::new(false),
            clock,
            metrics,
        };
        for (kind, set) in [("jti", &spec.jti), ("sub", &spec.sub)] {
            r.metrics
                .revocation_entries
                .with_label_values(&["file", kind])
                .set(set.len() as i64);
        }
        if let Some(redis) = &spec.redis {
            redis::Client::open(redis.url.as_str()).map_err(|e| BuildError {
                field: "revocation.redis_url".into(),
                message: format!("invalid Redis URL: {e}"),
            })?;
            let mut conn = None;
            r.refresh(redis, &mut conn).await;
        }
        Ok(r)
    }

    /// Check an identity against the file list and the Redis copy.
    pub fn check(&self, id: &Identity) -> Check {
        let jti = id.claims.get("jti").and_then(|v| v.as_str());
        let sub = id.subject.as_deref();
        if jti.is_some_and(|j| self.spec.jti.contains(j))
            || sub.is_some_and(|s| self.spec.sub.contains(s))
        {
            return Check::Revoked;
        }
        let Some(redis) = &self.spec.redis else {
            return Check::Pass;
        };
        let remote = self.remote.load();
        if jti.is_some_and(|j| remote.jti.contains(j))
            || sub.is_some_and(|s| remote.sub.contains(s))
        {
            return Check::Revoked;
        }
        if redis.on_error == OnRedisError::FailClosed {
            let age = self.clock.now_ms() - self.last_ok_ms.load(Ordering::Acquire);
            if age > redis.max_stale.as_millis() as i64 {
                return Check::Unavailable;
            }
        }
        Check::Pass
    }

    /// One refresh from Redis: both sets in one pipeline. On failure the last copy stays.
    async fn refresh(
        &self,
        redis: &RedisRevocation,
        conn: &mut Option<redis::aio::MultiplexedConnection>,
    ) {
        let result = tokio::time::timeout(REDIS_TIMEOUT, async {
            if conn.is_none() {
                let client = redis::Client::open(redis.url.as_str())?;
                *conn = Some(client.get_multiplexed_async_connection().await?);
            }
            let Some(c) = conn.as_mut() else {
                return Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no connection",
                )));
            };
            redis::pipe()
                .cmd("SMEMBERS")
                .arg(format!("{}:jti", redis.key))
                .cmd("SMEMBERS")
                .arg(format!("{}:sub", redis.key))
                .query_async::<(Vec<String>, Vec<String>)>(c)
                .await
        })
        .await;
        match result {
            Ok(Ok((jti, sub))) => {
                let m = &self.metrics;
                m.revocation_entries
                    .with_label_values(&["redis", "jti"])
                    .set(jti.len() as i64);
                m.revocation_entries
                    .with_label_values(&["redis", "sub"])
                    .set(sub.len() as i64);
                self.remote.store(Arc::new(Denied {
                    jti: jti.into_iter().collect(),
                    sub: sub.into_iter().collect(),
                }));
                self.last_ok_ms
                    .store(self.clock.now_ms(), Ordering::Release);
                m.revocation_refreshes.with_label_values(&["ok"]).inc();
                if !self.reachable.swap(true, Ordering::AcqRel) {
                    tracing::info!(target: "auth", "revocation list: Redis reachable again");
                }
            }
            Ok(Err(e)) => self.failed(redis, conn, &e.to_string()),
            Err(_) => self.failed(redis, conn, "timed out"),
        }
        self.set_age();
    }

    fn failed(
        &self,
        redis: &RedisRevocation,
        conn: &mut Option<redis::aio::MultiplexedConnection>,
        why: &str,
    ) {
        *conn = None;
        self.metrics
            .revocation_refreshes
            .with_label_values(&["error"])
            .inc();
        if self.reachable.swap(false, Ordering::AcqRel) {
            let mode = match redis.on_error {
                OnRedisError::KeepLast => "keeping the last copy",
                OnRedisError::FailClosed => "failing closed once it is older than max_stale",
            };
            tracing::warn!(target: "auth", error = %why, "revocation list: Redis unreachable, {mode}");
        }
    }

    fn set_age(&self) {
        let last = self.last_ok_ms.load(Ordering::Acquire);
        let age = if last == 0 {
            -1.0
        } else {
            (self.clock.now_ms() - last) as f64 / 1000.0
        };
        self.metrics.revocation_age.set(age);
    }

    /// Start the Redis refresh loop (once). It holds the part weakly and ends when a reload
    /// drops it.
    pub fn ensure_refresh_loop(self: &Arc<Self>) {
        let Some(redis) = self.spec.redis.clone() else {
            return;
        };
        if self.loop_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak: Weak<Revocation> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut conn = None;
            loop {
                tokio::time::sleep(redis.refresh).await;
                let Some(this) = weak.upgrade() else { break };
                this.refresh(&redis, &mut conn).await;
            }
        });
    }
}
