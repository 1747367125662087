//! The serving state: one [`Runtime`] (a policy snapshot plus the objects built from it),
//! swapped atomically on reload. A request loads it once, so every phase of that request sees
//! the same policy version even if a reload lands mid-flight.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::metrics::{Metrics, RouteMetrics};
use crate::policy::{self, PolicyErrors, Snapshot};
use crate::upstream::Cluster;

pub struct Runtime {
    pub policy: Arc<Snapshot>,
    /// Same order as `policy.clusters`.
    pub clusters: Vec<Arc<Cluster>>,
    /// Same order as `policy.routes`.
    pub route_metrics: Vec<RouteMetrics>,
    pub unrouted_metrics: RouteMetrics,
}

impl Runtime {
    /// Build runtime objects for `policy`, reusing clusters whose spec did not change.
    pub fn build(
        policy: Snapshot,
        previous: Option<&Runtime>,
        metrics: &Metrics,
    ) -> Result<Runtime, String> {
        let old: HashMap<&str, &Arc<Cluster>> = previous
            .map(|p| p.clusters.iter().map(|c| (&*c.spec.name, c)).collect())
            .unwrap_or_default();
        let mut clusters = Vec::with_capacity(policy.clusters.len());
        for spec in &policy.clusters {
            match old.get(&*spec.name) {
                Some(c) if c.spec == *spec => clusters.push(Arc::clone(c)),
                _ => clusters.push(Arc::new(Cluster::build(spec, &metrics.upstream_healthy)?)),
            }
        }
        let route_metrics = policy
            .routes
            .iter()
            .map(|r| metrics.route(&r.name))
            .collect();
        Ok(Runtime {
            policy: Arc::new(policy),
            clusters,
            route_metrics,
            unrouted_metrics: metrics.route("-"),
        })
    }
}

/// (cluster, endpoint) label pairs of the health gauge for `rt`.
fn endpoint_labels(rt: &Runtime) -> std::collections::HashSet<(String, String)> {
    rt.clusters
        .iter()
        .flat_map(|c| {
            c.backends()
                .into_iter()
                .map(|b| (c.spec.name.to_string(), b.addr.to_string()))
        })
        .collect()
}

/// Process-wide state shared by the proxy, the admin listener and the reloader.
pub struct Shared {
    pub current: ArcSwap<Runtime>,
    pub metrics: Metrics,
    pub policy_dir: PathBuf,
    reload_lock: std::sync::Mutex<()>,
}

impl Shared {
    pub fn load(policy_dir: &Path) -> Result<Arc<Shared>, String> {
        let metrics = Metrics::new();
        let snapshot = policy::load_dir(policy_dir).map_err(|e| e.to_string())?;
        let version = snapshot.version.clone();
        let rt = Runtime::build(snapshot, None, &metrics)?;
        metrics.set_policy_version(&version);
        Ok(Arc::new(Shared {
            current: ArcSwap::from_pointee(rt),
            metrics,
            policy_dir: policy_dir.to_path_buf(),
            reload_lock: std::sync::Mutex::new(()),
        }))
    }

    /// Re-read the policy directory. On success the new runtime replaces the old one in a
    /// single atomic store; on any error the current runtime keeps serving. Blocking (file
    /// reads, DNS): call from a blocking-capable context.
    pub fn reload(&self) -> Result<ReloadOutcome, PolicyErrors> {
        let _serialised = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = policy::load_dir(&self.policy_dir).and_then(|snapshot| {
            let current = self.current.load();
            if snapshot.version == current.policy.version {
                return Ok(ReloadOutcome::Unchanged(snapshot.version.to_string()));
            }
            let version = snapshot.version.to_string();
            let rt = Runtime::build(snapshot, Some(&current), &self.metrics).map_err(|msg| {
                PolicyErrors(vec![policy::PolicyError {
                    file: self.policy_dir.clone(),
                    line: 0,
                    column: 0,
                    field: "cluster".into(),
                    message: msg,
                }])
            })?;
            let rt = Arc::new(rt);
            rt.clusters.iter().for_each(Cluster::ensure_health_loop);
            let gone = endpoint_labels(&current)
                .difference(&endpoint_labels(&rt))
                .cloned()
                .collect::<Vec<_>>();
            self.current.store(rt);
            // Endpoints no longer in any cluster leave the health gauge, so dashboards do not
            // show a removed endpoint as healthy (or down) forever.
            for (cluster, endpoint) in gone {
                let _ = self
                    .metrics
                    .upstream_healthy
                    .remove_label_values(&[&cluster, &endpoint]);
            }
            self.metrics.set_policy_version(&version);
            Ok(ReloadOutcome::Applied(version))
        });
        match &result {
            Ok(ReloadOutcome::Applied(_)) => self.metrics.reload(true),
            Ok(ReloadOutcome::Unchanged(_)) => {}
            Err(_) => self.metrics.reload(false),
        }
        result
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied(String),
    Unchanged(String),
}
