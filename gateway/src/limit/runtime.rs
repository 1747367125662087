//! The protection runtime: every limiter, the Redis connection, the in-flight counter and the
//! IP lists, built from the policy and the previous runtime; and what one route needs of it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;

use prometheus::IntCounter;

use super::limiter::{Limiter, LimiterSpec};
use super::metrics::{DecisionCounters, LimitMetrics};
use super::{CidrSet, LimitPolicy, RedisStore, RouteRules, Scope, Shedder};
use crate::state::{keep_or_build, BuildEnv, BuildError};

/// The protection runtime.
pub struct Runtime {
    pub(super) limiters: HashMap<Arc<str>, Arc<Limiter>>,
    pub(super) redis: Option<Arc<RedisStore>>,
    pub(super) shedder: Option<Arc<Shedder>>,
    pub(super) ip_lists: HashMap<Arc<str>, Arc<CidrSet>>,
    pub(super) allow: Vec<Arc<CidrSet>>,
    pub(super) deny: Vec<Arc<CidrSet>>,
    pub(super) default: Vec<Arc<str>>,
    pub(super) metrics: LimitMetrics,
    pub(super) global_denied: IntCounter,
}

impl Runtime {
    /// Build from the policy, keeping the limiters (with their buckets), the Redis connection
    /// and the in-flight counter of `previous` whose specs did not change.
    pub async fn build(
        policy: &LimitPolicy,
        previous: Option<&Runtime>,
        env: &BuildEnv<'_>,
    ) -> Result<Runtime, BuildError> {
        let m = &env.metrics.limits;
        let redis = match &policy.settings.redis {
            Some(spec) => Some(
                keep_or_build(previous.and_then(|p| p.redis.as_ref()), spec, || async {
                    RedisStore::build(spec, m)
                })
                .await?,
            ),
            None => None,
        };
        let mut limiters = HashMap::with_capacity(policy.limits.len());
        for l in &policy.limits {
            let spec = LimiterSpec {
                limit: Arc::clone(l),
                redis: match l.scope {
                    Scope::Cluster => policy.settings.redis.clone(),
                    Scope::Local => None,
                },
            };
            let prev = previous.and_then(|p| p.limiters.get(&l.name));
            let store = match l.scope {
                Scope::Cluster => redis.clone(),
                Scope::Local => None,
            };
            let limiter = keep_or_build(prev, &spec, || async {
                Ok(Limiter::build(
                    LimiterSpec {
                        limit: Arc::clone(l),
                        redis: spec.redis.clone(),
                    },
                    store,
                    env.clock,
                    m,
                ))
            })
            .await?;
            limiters.insert(Arc::clone(&l.name), limiter);
        }
        let shedder = match &policy.shedding {
            Some(spec) => Some(
                keep_or_build(previous.and_then(|p| p.shedder.as_ref()), spec, || async {
                    Ok(Shedder::new(spec, m.in_flight.clone()))
                })
                .await?,
            ),
            None => None,
        };
        let lists = |names: &[Arc<str>]| -> Vec<Arc<CidrSet>> {
            names
                .iter()
                .filter_map(|n| policy.ip_lists.get(n).cloned())
                .collect()
        };
        Ok(Runtime {
            allow: lists(&policy.allow),
            deny: lists(&policy.deny),
            ip_lists: policy.ip_lists.clone(),
            default: policy.settings.default.clone(),
            limiters,
            redis,
            shedder,
            global_denied: m.ip_denied.with_label_values(&["-"]),
            metrics: m.clone(),
        })
    }

    /// Start the sweepers and the Redis connection. Call on the long-lived runtime.
    pub fn start_background(&self) {
        if let Some(r) = &self.redis {
            r.ensure_background();
        }
        self.limiters.values().for_each(Limiter::ensure_background);
    }

    /// The protection of one route, for its `RoutePlan`.
    pub fn plan(&self, route: &str, rules: &RouteRules) -> RouteLimits {
        let names = rules.limits.as_deref().unwrap_or(&self.default);
        let limits = names
            .iter()
            .filter_map(|n| self.limiters.get(n))
            .map(|l| {
                (
                    Arc::clone(l),
                    DecisionCounters::new(&self.metrics, route, l.name()),
                )
            })
            .collect();
        let lists = |names: &[Arc<str>]| -> Vec<Arc<CidrSet>> {
            names
                .iter()
                .filter_map(|n| self.ip_lists.get(n).cloned())
                .collect()
        };
        RouteLimits {
            limits,
            headers: rules.headers,
            priority: rules.priority,
            cost: rules.cost,
            allow: lists(&rules.ip_allow),
            deny: lists(&rules.ip_deny),
            shedder: self.shedder.clone(),
            ip_denied: self.metrics.ip_denied.with_label_values(&[route]),
            shed: self.metrics.shed.with_label_values(&[route]),
        }
    }

    pub fn limiter(&self, name: &str) -> Option<&Arc<Limiter>> {
        self.limiters.get(name)
    }
}

/// After a reload: remove the metric label sets of the (route, limit) pairs, limits and
/// routes that `after` no longer has, so that dashboards do not show them forever.
pub fn forget_removed(
    m: &LimitMetrics,
    before: &crate::state::Runtime,
    after: &crate::state::Runtime,
) {
    use std::collections::HashSet;
    let pairs = |rt: &crate::state::Runtime| -> HashSet<(String, String)> {
        rt.routes
            .iter()
            .flat_map(|p| {
                p.limits
                    .limits
                    .iter()
                    .map(move |(l, _)| (p.name().to_string(), l.name().to_string()))
            })
            .collect()
    };
    for (route, limit) in pairs(before).difference(&pairs(after)) {
        for d in ["allowed", "limited", "shadow"] {
            let _ = m.decisions.remove_label_values(&[route, limit, d]);
        }
    }
    for name in before.limits.limiters.keys() {
        if !after.limits.limiters.contains_key(name) {
            let _ = m.keys.remove_label_values(&[name]);
            let _ = m.fallback.remove_label_values(&[name]);
        }
    }
    let routes: HashSet<&str> = after.routes.iter().map(|p| p.name()).collect();
    for p in &before.routes {
        if !routes.contains(p.name()) {
            let _ = m.ip_denied.remove_label_values(&[p.name()]);
            let _ = m.shed.remove_label_values(&[p.name()]);
        }
    }
}

/// Everything the request path needs to protect one route; on its `RoutePlan`.
pub struct RouteLimits {
    pub(super) limits: Vec<(Arc<Limiter>, DecisionCounters)>,
    pub(super) headers: bool,
    pub(super) priority: u8,
    pub(super) cost: NonZeroU32,
    pub(super) allow: Vec<Arc<CidrSet>>,
    pub(super) deny: Vec<Arc<CidrSet>>,
    pub(super) shedder: Option<Arc<Shedder>>,
    pub(super) ip_denied: IntCounter,
    pub(super) shed: IntCounter,
}
