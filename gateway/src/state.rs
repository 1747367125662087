//! The serving state: one [`Runtime`] (a policy snapshot plus the objects built from it),
//! swapped atomically on reload. A request loads it once, so every phase of that request sees
//! the same policy version even if a reload lands mid-flight.
//!
//! Each capability's runtime part is built from its spec and the previous runtime
//! ([`keep_or_build`]): when the spec did not change, the part itself is kept, with its state
//! (health today; buckets, breaker windows, key sets, caches as they land) and its background
//! tasks. Building is async (DNS now, JWKS fetches and Redis later) and runs on the reloader's
//! runtime, never on a proxy thread; a failure names the file and line of the definition.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::metrics::{Metrics, RouteMetrics};
use crate::policy::fingerprint::Fingerprint;
use crate::policy::{self, PolicyErrors, Snapshot};
use crate::resilience::{Guard, GuardSpec, ResilienceSpec};
use crate::route::{RoutePlan, Router};
use crate::shard::RouteTarget;
use crate::upstream::Cluster;
use edgeway_record::clock::Clock;

/// Building a runtime part failed (after the policy validated): `field` names the definition
/// (`cluster.api`), which [`policy::locate`] turns into a file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct BuildError {
    pub field: String,
    pub message: String,
}

/// A runtime part built from one spec.
pub trait Part {
    type Spec: PartialEq;
    fn spec(&self) -> &Self::Spec;
}

/// The previous part when its spec is unchanged (keeping its state), else a new one.
pub async fn keep_or_build<T, F>(
    previous: Option<&Arc<T>>,
    spec: &T::Spec,
    build: impl FnOnce() -> F,
) -> Result<Arc<T>, BuildError>
where
    T: Part,
    F: Future<Output = Result<T, BuildError>>,
{
    match previous {
        Some(p) if p.spec() == spec => Ok(Arc::clone(p)),
        _ => build().await.map(Arc::new),
    }
}

/// What building a runtime may use besides the specs.
pub struct BuildEnv<'a> {
    pub metrics: &'a Metrics,
    pub clock: &'a Arc<dyn Clock>,
}

pub struct Runtime {
    pub policy: Arc<Snapshot>,
    /// By name.
    pub clusters: HashMap<Arc<str>, Arc<Cluster>>,
    /// Resilience state per cluster (breakers, ejections, bulkhead, retry budget), by name.
    pub guards: HashMap<Arc<str>, Arc<Guard>>,
    /// One plan per route, in policy order.
    pub routes: Vec<Arc<RoutePlan>>,
    pub router: Router<RoutePlan>,
    pub unrouted_metrics: RouteMetrics,
    /// Issuers (key sets), revocation list and the verified-token cache.
    pub auth: crate::auth::AuthRuntime,
    /// Rate limiters, the Redis connection, the in-flight counter, IP lists.
    pub limits: Arc<crate::limit::Runtime>,
    /// The micro-caches (kept across reloads while their spec is unchanged).
    pub cache: crate::cache::CacheRuntime,
}

impl Runtime {
    /// Build the runtime for `policy`, keeping every part of `previous` whose spec did not
    /// change.
    pub async fn build(
        policy: Snapshot,
        previous: Option<&Runtime>,
        env: &BuildEnv<'_>,
    ) -> Result<Runtime, BuildError> {
        let mut clusters = HashMap::with_capacity(policy.clusters.len());
        let mut guards = HashMap::with_capacity(policy.clusters.len());
        for spec in &policy.clusters {
            let prev = previous.and_then(|p| p.clusters.get(&spec.name));
            let cluster = keep_or_build(prev, spec, || {
                Cluster::build(spec, &env.metrics.upstream_healthy)
            })
            .await?;
            let guard_spec = GuardSpec {
                resilience: policy
                    .resilience
                    .get(&spec.name)
                    .cloned()
                    .unwrap_or_else(|| ResilienceSpec::baseline(&spec.name)),
                endpoints: spec.endpoints.clone(),
            };
            let prev = previous.and_then(|p| p.guards.get(&spec.name));
            let guard = keep_or_build(prev, &guard_spec, || async {
                Guard::build(
                    guard_spec.clone(),
                    &cluster,
                    &env.metrics.resilience,
                    Arc::clone(env.clock),
                )
            })
            .await?;
            guards.insert(Arc::clone(&spec.name), guard);
            clusters.insert(Arc::clone(&spec.name), cluster);
        }
        let mut shard_maps = HashMap::with_capacity(policy.shards.maps.len());
        for spec in &policy.shards.maps {
            // Compiled with every runtime (cheap: a sort and a table), from this runtime's
            // clusters, so a request sees one version of the map and of its clusters.
            let map = crate::shard::ShardMap::build(spec, &clusters)?;
            shard_maps.insert(Arc::clone(&spec.name), Arc::new(map));
        }
        let auth_env = crate::auth::Env {
            clock: env.clock,
            metrics: &env.metrics.auth,
        };
        let auth =
            crate::auth::AuthRuntime::build(&policy.auth, previous.map(|p| &p.auth), &auth_env)
                .await?;
        let limits = Arc::new(
            crate::limit::Runtime::build(&policy.limits, previous.map(|p| &*p.limits), env).await?,
        );
        let cache =
            crate::cache::CacheRuntime::build(&policy.cache, previous.map(|p| &p.cache)).await?;
        let mut routes = Vec::with_capacity(policy.routes.len());
        for spec in &policy.routes {
            // Validation checked the names; a miss here is a bug, reported, not a panic.
            let (cluster, shard_rule) = match &spec.target {
                RouteTarget::Cluster(name) => {
                    let c = clusters.get(name).cloned().ok_or_else(|| BuildError {
                        field: format!("route.{}", spec.name),
                        message: format!("cluster `{name}` was not built"),
                    })?;
                    (Some(c), None)
                }
                RouteTarget::Shard(rule) => (None, Some(rule)),
            };
            let (shard, canary) = crate::shard::plan(
                &spec.name,
                shard_rule,
                spec.canary.as_ref(),
                &shard_maps,
                &clusters,
                &env.metrics.shard,
            )?;
            let route_auth = match &spec.auth {
                Some(rule) => Some(auth.plan(rule, &spec.name)?),
                None => None,
            };
            let route_cache = match &spec.cache {
                Some(name) => Some(cache.plan(&policy.cache, name, &spec.name)?),
                None => None,
            };
            // The guard of the route's own cluster; a sharded route uses the guard of the
            // cluster its shard step picks (`Runtime::guards`).
            let guard = cluster
                .as_ref()
                .and_then(|c| guards.get(&c.spec.name).cloned());
            routes.push(Arc::new(RoutePlan {
                spec: Arc::clone(spec),
                cluster,
                guard,
                shard,
                canary,
                metrics: env.metrics.route(&spec.name),
                auth: route_auth,
                limits: limits.plan(&spec.name, &spec.protection),
                cache: route_cache,
            }));
        }
        Ok(Runtime {
            router: Router::new(&routes),
            routes,
            clusters,
            guards,
            unrouted_metrics: env.metrics.route("-"),
            auth,
            limits,
            cache,
            policy: Arc::new(policy),
        })
    }

    /// Start the background tasks of every part that has one (health checks). Idempotent;
    /// call on a tokio runtime that lives as long as the process, after every swap. Each task
    /// holds its part weakly and ends when a reload drops the part.
    pub fn start_background(&self) {
        self.clusters.values().for_each(Cluster::ensure_health_loop);
        self.auth.start_background();
        self.limits.start_background();
    }

    /// (cluster, endpoint) label pairs of the breaker-state gauge.
    fn breaker_labels(&self) -> HashSet<(String, String)> {
        self.guards
            .values()
            .flat_map(|g| g.gauge_labels())
            .collect()
    }

    /// (cluster, endpoint) label pairs of the health gauge.
    fn endpoint_labels(&self) -> HashSet<(String, String)> {
        self.clusters
            .values()
            .flat_map(|c| {
                c.backends()
                    .into_iter()
                    .map(|b| (c.spec.name.to_string(), b.addr.to_string()))
            })
            .collect()
    }
}

/// Process-wide state shared by the proxy, the admin listener and the reloader.
pub struct Shared {
    pub current: ArcSwap<Runtime>,
    pub metrics: Metrics,
    pub policy_dir: PathBuf,
    pub clock: Arc<dyn Clock>,
    /// The reload audit trail: one event per applied or rejected load.
    pub audit: crate::audit::Audit,
    reload_lock: tokio::sync::Mutex<()>,
}

impl Shared {
    /// Load and build the first runtime. Fails (with located errors) when the policy is
    /// invalid or a part cannot be built.
    pub async fn load(
        policy_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Shared>, PolicyErrors> {
        let (read, print) = read_policy(policy_dir).await;
        let snapshot = read.inspect_err(|e| {
            crate::audit::start_rejected(policy_dir, &*clock, &print, e);
        })?;
        log_warnings(&snapshot);
        let started = print.clone();
        Shared::from_snapshot(snapshot, policy_dir, Arc::clone(&clock), started)
            .await
            .inspect_err(|e| crate::audit::start_rejected(policy_dir, &*clock, &print, e))
    }

    /// Build the first runtime from a loaded snapshot; nothing starts in the background (the
    /// caller does that). The offline tools (`gateway explain`, `gateway test`) use it directly.
    /// `print` is what the snapshot was read from, for the audit trail.
    pub async fn from_snapshot(
        snapshot: Snapshot,
        policy_dir: &Path,
        clock: Arc<dyn Clock>,
        print: crate::policy::fingerprint::Fingerprint,
    ) -> Result<Arc<Shared>, PolicyErrors> {
        let metrics = Metrics::new();
        let version = snapshot.version.clone();
        let env = BuildEnv {
            metrics: &metrics,
            clock: &clock,
        };
        let rt = build_located(snapshot, None, &env, policy_dir).await?;
        metrics.set_policy_version(&version);
        Ok(Arc::new(Shared {
            current: ArcSwap::from_pointee(rt),
            metrics,
            policy_dir: policy_dir.to_path_buf(),
            audit: crate::audit::Audit::started(policy_dir, Arc::clone(&clock), print),
            clock,
            reload_lock: tokio::sync::Mutex::new(()),
        }))
    }

    /// Re-read the policy directory. On success the new runtime replaces the old one in a
    /// single atomic store and its background tasks start; on any error the current runtime
    /// keeps serving. Call on the long-lived runtime (the reloader's).
    pub async fn reload(&self) -> Result<ReloadOutcome, PolicyErrors> {
        let _serialised = self.reload_lock.lock().await;
        let (read, candidate) = read_stable(&self.policy_dir, STABLE_WINDOW).await;
        let result = match read {
            Ok(snapshot) => self.apply(snapshot).await,
            Err(e) => Err(e),
        };
        match &result {
            Ok(ReloadOutcome::Applied(_)) => self.metrics.reload(true),
            Ok(ReloadOutcome::Unchanged(_)) => {}
            Err(_) => self.metrics.reload(false),
        }
        self.audit.reloaded(&candidate, &result);
        result
    }

    async fn apply(&self, snapshot: Snapshot) -> Result<ReloadOutcome, PolicyErrors> {
        let current = self.current.load_full();
        if snapshot.version == current.policy.version {
            return Ok(ReloadOutcome::Unchanged(snapshot.version.to_string()));
        }
        let version = snapshot.version.to_string();
        log_warnings(&snapshot);
        let env = BuildEnv {
            metrics: &self.metrics,
            clock: &self.clock,
        };
        let rt = Arc::new(build_located(snapshot, Some(&current), &env, &self.policy_dir).await?);
        rt.start_background();
        let gone: Vec<_> = current
            .endpoint_labels()
            .difference(&rt.endpoint_labels())
            .cloned()
            .collect();
        crate::limit::forget_removed(&self.metrics.limits, &current, &rt);
        let gone_breakers: Vec<_> = current
            .breaker_labels()
            .difference(&rt.breaker_labels())
            .cloned()
            .collect();
        self.metrics.shard.forget_removed(&current, &rt);
        self.current.store(rt);
        // Endpoints no longer in any cluster leave the health gauge, so dashboards do not
        // show a removed endpoint as healthy (or down) forever.
        for (cluster, endpoint) in gone {
            let _ = self
                .metrics
                .upstream_healthy
                .remove_label_values(&[&cluster, &endpoint]);
        }
        for (cluster, endpoint) in gone_breakers {
            let _ = self
                .metrics
                .resilience
                .breaker_state
                .remove_label_values(&[&cluster, &endpoint]);
        }
        self.metrics.set_policy_version(&version);
        Ok(ReloadOutcome::Applied(version))
    }
}

/// Valid but risky settings are logged at every load that applies them.
fn log_warnings(snapshot: &Snapshot) {
    for w in &snapshot.warnings {
        tracing::warn!(warning = %w, "policy warning");
    }
}

/// How long the policy files must stay the same before a reload applies them.
pub const STABLE_WINDOW: Duration = Duration::from_millis(100);
/// Reads before a reload gives up on files that keep changing.
const MAX_STABLE_READS: usize = 30;

/// An editor or a deploy tool may save a file in several writes, and a half-written file can
/// still parse (a route list cut after a whole route). A reload applies only what two reads,
/// `window` apart, agree on: the same content (same version) or the same errors.
async fn read_stable(dir: &Path, window: Duration) -> Loaded {
    stable_read(|| read_policy(dir), window)
        .await
        .unwrap_or_else(|last| {
            let e = PolicyErrors(vec![policy::PolicyError {
                file: dir.to_path_buf(),
                line: 0,
                column: 0,
                field: "-".into(),
                message: format!(
                    "the policy files kept changing for {:?}; not reloaded (the next change triggers another attempt)",
                    window * MAX_STABLE_READS as u32
                ),
            }]);
            (Err(e), last)
        })
}

/// What one read of the policy directory gave, and the fingerprint of what it read.
type Loaded = (Result<Snapshot, PolicyErrors>, Fingerprint);

/// The result of `read` once two consecutive reads, `window` apart, agree; when they never
/// do within [`MAX_STABLE_READS`], the fingerprint of the last read.
async fn stable_read<F, Fut>(mut read: F, window: Duration) -> Result<Loaded, Fingerprint>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Loaded>,
{
    let mut previous = read().await;
    for _ in 0..MAX_STABLE_READS {
        tokio::time::sleep(window).await;
        let current = read().await;
        let stable = match (&previous.0, &current.0) {
            (Ok(a), Ok(b)) => a.version == b.version,
            (Err(a), Err(b)) => a.0 == b.0,
            _ => false,
        };
        if stable {
            return Ok(current);
        }
        previous = current;
    }
    Err(previous.1)
}

/// Read, parse and validate off the async threads (file reads, parsing).
async fn read_policy(dir: &Path) -> Loaded {
    let owned = dir.to_path_buf();
    tokio::task::spawn_blocking(move || policy::load_dir_fingerprinted(&owned))
        .await
        .unwrap_or_else(|e| {
            let e = PolicyErrors(vec![policy::PolicyError {
                file: dir.to_path_buf(),
                line: 0,
                column: 0,
                field: "-".into(),
                message: format!("policy loading task failed: {e}"),
            }]);
            (Err(e), Fingerprint::default())
        })
}

/// [`Runtime::build`] with its error located in the policy files.
async fn build_located(
    snapshot: Snapshot,
    previous: Option<&Runtime>,
    env: &BuildEnv<'_>,
    dir: &Path,
) -> Result<Runtime, PolicyErrors> {
    // Keep what `locate` needs: the snapshot moves into the runtime.
    let origins = snapshot.origins.clone();
    Runtime::build(snapshot, previous, env)
        .await
        .map_err(|e| PolicyErrors(vec![policy::locate(&origins, dir, e.field, e.message)]))
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied(String),
    Unchanged(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeway_record::clock::ManualClock;

    const CLUSTERS: &str = "[cluster.api]\nendpoints = [\"127.0.0.1:9\"]\n\n[cluster.other]\nendpoints = [\"127.0.0.1:10\"]\n";

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[tokio::test]
    async fn unchanged_parts_keep_their_state_across_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "clusters.toml", CLUSTERS);
        write(
            dir.path(),
            "routes.toml",
            "[[route]]\nname = \"a\"\ncluster = \"api\"\n",
        );
        let shared = Shared::load(dir.path(), Arc::new(ManualClock::new(0)))
            .await
            .unwrap();
        let before = shared.current.load_full();

        // Only a route changes: both clusters are the same objects afterwards.
        write(
            dir.path(),
            "routes.toml",
            "[[route]]\nname = \"a\"\npath_prefix = \"/v1\"\ncluster = \"api\"\n",
        );
        assert!(matches!(
            shared.reload().await,
            Ok(ReloadOutcome::Applied(_))
        ));
        let after = shared.current.load_full();
        assert_ne!(before.policy.version, after.policy.version);
        for name in ["api", "other"] {
            assert!(
                Arc::ptr_eq(&before.clusters[name], &after.clusters[name]),
                "{name}"
            );
        }
        assert!(Arc::ptr_eq(
            after.routes[0].cluster.as_ref().unwrap(),
            &after.clusters["api"]
        ));

        // One cluster changes: only that one is rebuilt.
        write(
            dir.path(),
            "clusters.toml",
            &CLUSTERS.replace("127.0.0.1:10", "127.0.0.1:11"),
        );
        shared.reload().await.unwrap();
        let third = shared.current.load_full();
        assert!(Arc::ptr_eq(&after.clusters["api"], &third.clusters["api"]));
        assert!(!Arc::ptr_eq(
            &after.clusters["other"],
            &third.clusters["other"]
        ));

        // An identical reload is a no-op.
        assert!(matches!(
            shared.reload().await,
            Ok(ReloadOutcome::Unchanged(_))
        ));
    }

    /// A reader over scripted directory states, as a file being saved in several writes
    /// would show them: each call returns the next state (the last one repeats).
    fn scripted(states: Vec<tempfile::TempDir>) -> impl FnMut() -> std::future::Ready<Loaded> {
        let mut calls = 0;
        move || {
            let dir = &states[calls.min(states.len() - 1)];
            calls += 1;
            std::future::ready(policy::load_dir_fingerprinted(dir.path()))
        }
    }

    fn state(routes: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "clusters.toml", CLUSTERS);
        write(dir.path(), "routes.toml", routes);
        dir
    }

    #[tokio::test(start_paused = true)]
    async fn a_file_still_being_written_is_not_applied() {
        let route = |name: &str, cluster: &str| {
            format!("[[route]]\nname = \"{name}\"\ncluster = \"{cluster}\"\n")
        };
        // Half-written but valid (the second route not yet there), then invalid (cut inside
        // a table), then the whole file, which stays.
        let whole = format!(
            "{}[[route]]\nname = \"b\"\npath_prefix = \"/b/\"\ncluster = \"other\"\n",
            route("a", "api")
        );
        let states = vec![
            state(&route("a", "api")),
            state("[[route]]\nname = \"a\"\n"),
            state(&whole),
        ];
        let applied = stable_read(scripted(states), STABLE_WINDOW)
            .await
            .expect("settles")
            .0
            .expect("valid");
        let names: Vec<&str> = applied.routes.iter().map(|r| &*r.name).collect();
        assert_eq!(names, ["a", "b"], "applied a half-written save");

        // Files that never settle are not applied.
        let states: Vec<_> = (0..=MAX_STABLE_READS + 1)
            .map(|i| state(&route(&format!("r{i}"), "api")))
            .collect();
        assert!(stable_read(scripted(states), STABLE_WINDOW).await.is_err());

        // Errors that stay the same are reported (the last good policy keeps serving).
        let states = vec![state("[[route]]\nname = \"a\"\ncluster = \"nope\"\n")];
        let errs = stable_read(scripted(states), STABLE_WINDOW)
            .await
            .expect("settles")
            .0
            .unwrap_err();
        assert!(errs.0[0].message.contains("nope"), "{}", errs.0[0]);
    }

    #[tokio::test]
    async fn a_build_failure_is_located_and_the_last_good_runtime_serves() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "clusters.toml", CLUSTERS);
        let shared = Shared::load(dir.path(), Arc::new(ManualClock::new(0)))
            .await
            .unwrap();
        let good = shared.current.load().policy.version.clone();
        // Valid syntax, but the name does not resolve (`.invalid` never does, RFC 6761).
        write(
            dir.path(),
            "clusters.toml",
            "# comment\n[cluster.api]\nendpoints = [\"nowhere.invalid:80\"]\n",
        );
        let errs = shared.reload().await.unwrap_err();
        assert_eq!(errs.0.len(), 1);
        let e = &errs.0[0];
        assert!(e.file.ends_with("clusters.toml"), "{e}");
        assert_eq!((e.line, e.field.as_str()), (2, "cluster.api"), "{e}");
        assert!(
            e.message.contains("cannot resolve `nowhere.invalid:80`"),
            "{e}"
        );
        assert_eq!(shared.current.load().policy.version, good);
    }
}
