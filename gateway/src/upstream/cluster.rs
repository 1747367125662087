//! Upstream clusters at runtime: round-robin selection over healthy endpoints, active HTTP
//! health checks, and the `HttpPeer` template (timeouts, TLS, CA) each request connects with.
//!
//! A [`Cluster`] is built from a [`ClusterSpec`]. Across policy reloads an unchanged spec keeps
//! its `Cluster` (and so its health state and its health-check task); a changed or removed one
//! is dropped, and its health-check task ends when the last request holding it finishes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthObserve, HttpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::WrappedX509;
use prometheus::IntGaugeVec;

use super::ClusterSpec;
use crate::state::{BuildError, Part};

/// Mirrors health transitions into `gateway_upstream_endpoint_healthy` and the log.
struct HealthGauge {
    cluster: String,
    gauge: IntGaugeVec,
}

#[async_trait::async_trait]
impl HealthObserve for HealthGauge {
    async fn observe(&self, target: &Backend, healthy: bool) {
        let endpoint = target.addr.to_string();
        self.gauge
            .with_label_values(&[&self.cluster, &endpoint])
            .set(healthy as i64);
        if healthy {
            tracing::info!(cluster = %self.cluster, %endpoint, "endpoint healthy again");
        } else {
            tracing::warn!(cluster = %self.cluster, %endpoint, "endpoint failed its health check; out of rotation");
        }
    }
}

pub struct Cluster {
    pub spec: ClusterSpec,
    lb: LoadBalancer<RoundRobin>,
    ca: Option<Arc<CaType>>,
    health_loop_started: AtomicBool,
}

impl Cluster {
    /// Resolve the endpoints (asynchronously: DNS never blocks a proxy thread) and set up
    /// balancing and health checks. Runs at load and reload time only.
    pub async fn build(
        spec: &ClusterSpec,
        healthy_gauge: &IntGaugeVec,
    ) -> Result<Cluster, BuildError> {
        let err = |message: String| BuildError {
            field: format!("cluster.{}", spec.name),
            message,
        };
        let mut addrs = Vec::new();
        for ep in &spec.endpoints {
            let mut resolved = tokio::net::lookup_host(ep.as_str())
                .await
                .map_err(|e| err(format!("cannot resolve `{ep}`: {e}")))?;
            match resolved.next() {
                Some(addr) => addrs.push(addr),
                None => return Err(err(format!("`{ep}` resolved to no address"))),
            }
        }
        let mut lb =
            LoadBalancer::<RoundRobin>::try_from_iter(addrs).map_err(|e| err(e.to_string()))?;
        let ca = spec
            .tls
            .as_ref()
            .and_then(|t| t.ca_der.as_ref())
            .map(|ders| {
                let certs: Vec<WrappedX509> = ders
                    .iter()
                    .map(|d| WrappedX509::new(d.clone(), pingora::utils::tls::parse_x509))
                    .collect();
                Arc::<CaType>::from(certs.into_boxed_slice())
            });
        for b in lb.backends().get_backend().iter() {
            healthy_gauge
                .with_label_values(&[&spec.name, &b.addr.to_string()])
                .set(1);
        }
        if let Some(hc) = &spec.health_check {
            let tls = spec.tls.is_some();
            let mut check = HttpHealthCheck::new(&hc.host, tls);
            let mut req = RequestHeader::build("GET", hc.path.as_bytes(), None)
                .map_err(|e| err(format!("health check path: {e}")))?;
            req.insert_header("Host", &hc.host)
                .map_err(|e| err(format!("health check host: {e}")))?;
            req.insert_header("User-Agent", "edgeway-health-check")
                .map_err(|e| err(e.to_string()))?;
            check.req = req;
            check.consecutive_failure = hc.unhealthy_threshold as usize;
            check.consecutive_success = hc.healthy_threshold as usize;
            check.peer_template.options.connection_timeout = Some(hc.timeout);
            check.peer_template.options.read_timeout = Some(hc.timeout);
            if let Some(t) = &spec.tls {
                check.peer_template.sni = t.sni.clone();
                check.peer_template.options.ca = ca.clone();
            }
            check.health_changed_callback = Some(Box::new(HealthGauge {
                cluster: spec.name.to_string(),
                gauge: healthy_gauge.clone(),
            }));
            lb.set_health_check(Box::new(check));
            lb.health_check_frequency = Some(hc.interval);
            lb.parallel_health_check = true;
        }
        Ok(Cluster {
            spec: spec.clone(),
            lb,
            ca,
            health_loop_started: AtomicBool::new(false),
        })
    }

    /// The first endpoint in round-robin order that `accept(backend, healthy)` takes.
    pub fn select_with(&self, accept: impl Fn(&Backend, bool) -> bool) -> Option<Backend> {
        self.lb
            .select_with(b"", self.spec.endpoints.len().max(1) * 2, accept)
    }

    /// Whether at least one endpoint passes its health check (always, without checks).
    pub fn has_healthy(&self) -> bool {
        let backends = self.lb.backends();
        backends.get_backend().iter().any(|b| backends.ready(b))
    }

    pub fn backends(&self) -> Vec<Backend> {
        self.lb.backends().get_backend().iter().cloned().collect()
    }

    /// The peer to connect to for `backend`, with this cluster's timeouts and TLS settings.
    pub fn peer(&self, backend: &Backend) -> HttpPeer {
        let (tls, sni) = match &self.spec.tls {
            Some(t) => (true, t.sni.clone()),
            None => (false, String::new()),
        };
        let mut peer = HttpPeer::new(backend.addr.clone(), tls, sni);
        peer.options.connection_timeout = Some(self.spec.connect_timeout);
        peer.options.read_timeout = Some(self.spec.read_timeout);
        peer.options.ca = self.ca.clone();
        peer
    }

    /// Start the periodic health check on the current tokio runtime, once per cluster. The
    /// task holds only a weak reference and ends when the cluster is dropped after a reload.
    pub fn ensure_health_loop(self: &Arc<Self>) {
        let Some(hc) = &self.spec.health_check else {
            return;
        };
        if self.health_loop_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let interval = hc.interval;
        let weak: Weak<Cluster> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(cluster) = weak.upgrade() else { break };
                cluster.lb.backends().run_health_check(true).await;
                drop(cluster);
                tokio::time::sleep(interval).await;
            }
        });
    }
}

impl Part for Cluster {
    type Spec = ClusterSpec;

    fn spec(&self) -> &ClusterSpec {
        &self.spec
    }
}
