//! Connection-level limits, before any request is read: a cap on concurrent downstream
//! connections per instance and per client IP (the TCP peer), and the per-connection time and
//! size settings that Pingora applies (keep-alive idle time and request count, body read and
//! send timeouts, a minimum send rate, HTTP/2 stream and header limits).
//!
//! The caps are enforced by [`Guarded`], a [`ServerApp`] around the proxy: it takes a slot
//! when a connection arrives and gives it back when the connection ends, so a client that
//! holds many idle or slow connections runs out of slots instead of taking the instance's.
//! Over a cap, an HTTP/1 client gets a 503 with `Connection: close` (an HTTP/2 client a
//! closed connection), and `gateway_connections_refused_total{reason}` counts it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::io::AsyncWriteExt;

/// The connection and timing settings (flags of `gateway run`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Concurrent downstream connections per instance (0: no cap).
    pub max_connections: usize,
    /// Concurrent downstream connections per client IP (0: no cap).
    pub max_connections_per_ip: usize,
    /// Idle time allowed between requests on a kept-alive HTTP/1 connection.
    pub keepalive_timeout: Duration,
    /// Requests served on one HTTP/1 connection before it is closed (0: no limit).
    pub keepalive_requests: u32,
    /// Longest wait for the next piece of a request body.
    pub body_read_timeout: Duration,
    /// Longest wait for the client to take the next piece of the response.
    pub send_timeout: Duration,
    /// Slowest accepted download, bytes per second (0: off); scales the send timeout to the
    /// size of each write.
    pub min_send_rate: usize,
    /// HTTP/2: concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: largest decoded header list, bytes.
    pub h2_max_header_list_size: u32,
    /// HTTP/2: close a connection idle this long.
    pub h2_idle_timeout: Duration,
    /// HTTP/2: streams reset by the client before the gateway accepted them, per connection,
    /// before it is closed with ENHANCE_YOUR_CALM (the rapid-reset defence).
    pub h2_max_pending_resets: usize,
}

impl Settings {
    /// Pingora's HTTP server options.
    pub fn server_options(&self) -> pingora::apps::HttpServerOptions {
        let mut o = pingora::apps::HttpServerOptions::default();
        // Pingora counts reuses after the first request: N requests are N - 1 reuses.
        o.keepalive_request_limit =
            (self.keepalive_requests > 0).then(|| self.keepalive_requests - 1);
        o.h2_idle_timeout = Some(self.h2_idle_timeout);
        o
    }

    /// HTTP/2 settings: Pingora's bounded defaults, with ours on top.
    pub fn h2_options(&self) -> pingora::protocols::http::v2::server::H2Options {
        let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
        h2.max_concurrent_streams(self.h2_max_concurrent_streams);
        h2.max_header_list_size(self.h2_max_header_list_size);
        h2.max_pending_accept_reset_streams(self.h2_max_pending_resets);
        h2
    }

    /// Per-request settings, applied as each request starts (`early_request_filter`).
    pub fn apply(&self, session: &mut pingora::proxy::Session) {
        session.set_keepalive(Some(self.keepalive_timeout.as_secs().max(1)));
        session.set_read_timeout(Some(self.body_read_timeout));
        session.set_write_timeout(Some(self.send_timeout));
        session.set_min_send_rate((self.min_send_rate > 0).then_some(self.min_send_rate));
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Instance,
    PerIp,
}

impl Refused {
    fn as_str(self) -> &'static str {
        match self {
            Refused::Instance => "instance_cap",
            Refused::PerIp => "per_ip_cap",
        }
    }
}

/// Counts of open connections, total and per client IP.
pub struct Limits {
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    active: IntGauge,
    refused: IntCounterVec,
}

/// An open connection's slot, given back on drop.
pub struct Slot<'a> {
    limits: &'a Limits,
    ip: Option<IpAddr>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
        self.limits.active.dec();
        if let (Some(ip), Ok(mut map)) = (self.ip, self.limits.per_ip.lock()) {
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }
}

impl Limits {
    #[allow(
        clippy::expect_used,
        reason = "static metric definitions, checked at start-up"
    )]
    pub fn new(settings: &Settings, registry: &Registry) -> Limits {
        let active = IntGauge::with_opts(Opts::new(
            "gateway_connections_active",
            "Open downstream connections.",
        ))
        .expect("static metric");
        let refused = IntCounterVec::new(
            Opts::new(
                "gateway_connections_refused_total",
                "Downstream connections refused by reason (instance_cap, per_ip_cap).",
            ),
            &["reason"],
        )
        .expect("static metric");
        registry
            .register(Box::new(active.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(refused.clone()))
            .expect("unique metric");
        for r in [Refused::Instance, Refused::PerIp] {
            refused.with_label_values(&[r.as_str()]);
        }
        Limits {
            max_total: settings.max_connections,
            max_per_ip: settings.max_connections_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            active,
            refused,
        }
    }

    /// Take a slot for a connection from `ip`, or say which cap refuses it.
    pub fn acquire(&self, ip: Option<IpAddr>) -> Result<Slot<'_>, Refused> {
        let total = self.total.fetch_add(1, Ordering::AcqRel) + 1;
        if self.max_total > 0 && total > self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            self.refused
                .with_label_values(&[Refused::Instance.as_str()])
                .inc();
            return Err(Refused::Instance);
        }
        let mut counted_ip = None;
        if let (Some(ip), true) = (ip, self.max_per_ip > 0) {
            let over = match self.per_ip.lock() {
                Ok(mut map) => {
                    let n = map.entry(ip).or_insert(0);
                    if *n >= self.max_per_ip {
                        true
                    } else {
                        *n += 1;
                        counted_ip = Some(ip);
                        false
                    }
                }
                Err(_) => false,
            };
            if over {
                self.total.fetch_sub(1, Ordering::AcqRel);
                self.refused
                    .with_label_values(&[Refused::PerIp.as_str()])
                    .inc();
                return Err(Refused::PerIp);
            }
        }
        self.active.inc();
        Ok(Slot {
            limits: self,
            ip: counted_ip,
        })
    }
}

/// The proxy app with connection caps in front.
pub struct Guarded<A> {
    pub inner: Arc<A>,
    pub limits: Arc<Limits>,
    /// The request-head deadline and the records of heads Pingora refuses (HTTP/1).
    pub heads: Arc<crate::head::Heads>,
}

const REFUSED_BODY: &str =
    r#"{"error":"overloaded","message":"too many connections","status":503}"#;

#[async_trait]
impl<A> ServerApp for Guarded<A>
where
    A: ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let ip = stream
            .get_socket_digest()
            .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()));
        let slot = match self.limits.acquire(ip) {
            Ok(slot) => slot,
            Err(reason) => {
                tracing::debug!(target: "connections", client = ?ip, reason = reason.as_str(), "connection refused");
                if !matches!(stream.selected_alpn_proto(), Some(ALPN::H2)) {
                    let head = format!(
                        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{REFUSED_BODY}",
                        REFUSED_BODY.len()
                    );
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        let _ = stream.write_all(head.as_bytes()).await;
                        let _ = stream.flush().await;
                        let _ = stream.shutdown().await;
                    })
                    .await;
                }
                return None;
            }
        };
        let stream = self.heads.watch(stream);
        let reused = self.inner.process_new(stream, shutdown).await;
        drop(slot);
        reused
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(total: usize, per_ip: usize) -> Settings {
        Settings {
            max_connections: total,
            max_connections_per_ip: per_ip,
            keepalive_timeout: Duration::from_secs(60),
            keepalive_requests: 0,
            body_read_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            min_send_rate: 0,
            h2_max_concurrent_streams: 100,
            h2_max_header_list_size: 65536,
            h2_idle_timeout: Duration::from_secs(300),
            h2_max_pending_resets: 20,
        }
    }

    #[test]
    fn caps_per_ip_and_per_instance_and_slots_come_back() {
        let reg = Registry::new();
        let l = Limits::new(&settings(3, 2), &reg);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let s1 = l.acquire(Some(a)).unwrap();
        let _s2 = l.acquire(Some(a)).unwrap();
        assert_eq!(l.acquire(Some(a)).err(), Some(Refused::PerIp));
        let _s3 = l.acquire(Some(b)).unwrap();
        assert_eq!(l.acquire(Some(b)).err(), Some(Refused::Instance));
        drop(s1);
        let _s4 = l.acquire(Some(a)).expect("a slot is given back on drop");
        assert_eq!(l.active.get(), 3);
        assert_eq!(l.refused.with_label_values(&["per_ip_cap"]).get(), 1);
        assert_eq!(l.refused.with_label_values(&["instance_cap"]).get(), 1);
    }
}
