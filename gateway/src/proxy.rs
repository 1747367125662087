//! The request path: Pingora's `ProxyHttp` phases, each a short list of steps that call the
//! capability modules. Per-request state lives in [`Ctx`]; the policy runtime is loaded once
//! into it so every phase sees the same version.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderName, HOST};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType};

use crate::access_log::{self, AccessLog, RecordBuilder};
use crate::request_id;
use crate::state::{Runtime, Shared};
use edgeway_record::{AccessLogRecordRef, RECORD_VERSION};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Error type for "every endpoint of the cluster failed its health check".
const NO_HEALTHY_UPSTREAM: ErrorType = ErrorType::Custom("no healthy upstream");
/// Connect attempts per request (first try plus retries on other endpoints).
const MAX_CONNECT_ATTEMPTS: usize = 3;

pub struct Gateway {
    pub shared: Arc<Shared>,
    /// Also write one tracing line per request (stdout).
    pub log_requests: bool,
    pub access_log: Option<AccessLog>,
    pub records: RecordBuilder,
}

pub struct Ctx {
    rt: Arc<Runtime>,
    start: Instant,
    event_time_ms: i64,
    request_id: String,
    client_ip: Option<IpAddr>,
    route: Option<usize>,
    upstream: Option<pingora::protocols::l4::socket::SocketAddr>,
    connect_attempts: usize,
    error_class: Option<&'static str>,
    /// When the current upstream attempt started (peer selected).
    upstream_start: Option<Instant>,
    upstream_connected: Option<Instant>,
    upstream_connect_ms: Option<f64>,
    upstream_response_ms: Option<f64>,
}

impl Ctx {
    fn cluster(&self) -> Option<&crate::upstream::Cluster> {
        let route = &self.rt.policy.routes[self.route?];
        Some(&self.rt.clusters[route.cluster])
    }
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The client: the TCP peer, or, when the peer is a trusted proxy, the right-most
/// `X-Forwarded-For` hop that is not itself trusted.
fn effective_client_ip(
    session: &Session,
    forwarding: &crate::policy::Forwarding,
) -> Option<IpAddr> {
    let peer = client_ip(session)?;
    if !forwarding.is_trusted(peer) {
        return Some(peer);
    }
    let Some(xff) = session
        .req_header()
        .headers
        .get(X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
    else {
        return Some(peer);
    };
    let mut last = peer;
    for hop in xff.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if forwarding.is_trusted(ip) => last = ip,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(last)
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

fn request_host(session: &Session) -> &str {
    let req = session.req_header();
    req.uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers.get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Gateway {
    /// Build the access-log record of a finished request from borrowed parts and hand it to
    /// the log. Never copies a token, cookie or Authorization value; the query keeps only
    /// allow-listed parameters.
    fn emit_record(
        &self,
        log: &AccessLog,
        session: &Session,
        ctx: &Ctx,
        status: u16,
        elapsed: std::time::Duration,
    ) {
        use access_log::record::{display, filter_query, header_text, host_only, referer};
        let req = session.req_header();
        let policy = &ctx.rt.policy;
        let route = ctx.route.map(|i| &policy.routes[i]);
        let tls = session.digest().and_then(|d| d.ssl_digest.as_ref());
        let peer = session.client_addr().and_then(|a| a.as_inet());
        let (mut ip_buf, mut upstream_buf) = ([0u8; 64], [0u8; 64]);
        let trace_id = access_log::record::trace_id(req.headers.get("traceparent"));
        let host = host_only(request_host(session));
        let query = filter_query(req.uri.query(), &policy.access_log.query_params);
        log.emit(&AccessLogRecordRef {
            record_version: RECORD_VERSION,
            event_time: ctx.event_time_ms,
            request_id: &ctx.request_id,
            trace_id: trace_id.as_deref(),
            client_ip: ctx.client_ip.map_or("", |i| display(&mut ip_buf, i)),
            client_port: peer.map_or(0, |a| i32::from(a.port())),
            method: req.method.as_str(),
            scheme: if tls.is_some() { "https" } else { "http" },
            host: &host,
            path: access_log::record::truncate(req.uri.path(), 2048),
            query: query.as_deref(),
            http_version: access_log::record::http_version(req.version),
            status: i32::from(status),
            bytes_in: session.body_bytes_read() as i64,
            bytes_out: session.body_bytes_sent() as i64,
            duration_ms: ms(elapsed),
            upstream_connect_ms: ctx.upstream_connect_ms,
            upstream_response_ms: ctx.upstream_response_ms,
            route: route.map(|r| &*r.name),
            upstream_cluster: route.map(|r| &*ctx.rt.clusters[r.cluster].spec.name),
            upstream_addr: ctx.upstream.as_ref().map(|a| display(&mut upstream_buf, a)),
            shard: None,
            cache_status: None,
            auth_result: "none",
            auth_subject: None,
            auth_issuer: None,
            rate_limit: None,
            breaker_state: None,
            error_class: ctx.error_class,
            tls_version: tls.map(|t| &*t.version),
            tls_cipher: tls.map(|t| &*t.cipher),
            user_agent: header_text(req.headers.get(http::header::USER_AGENT)),
            referer: referer(req.headers.get(http::header::REFERER)),
            policy_version: &policy.version,
            gateway_instance: &self.records.instance,
        });
    }
}

/// Map a proxy error to (status, error class for logs and the JSON body).
fn classify(e: &Error) -> (u16, &'static str) {
    use ErrorType::*;
    match e.etype() {
        HTTPStatus(code) => (*code, "http_status"),
        t if *t == NO_HEALTHY_UPSTREAM => (503, "no_healthy_upstream"),
        _ => match e.esource() {
            ErrorSource::Upstream => match e.etype() {
                ConnectTimedout => (502, "upstream_connect_timeout"),
                ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError => {
                    (502, "upstream_connect_failed")
                }
                TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | HandshakeError => {
                    (502, "upstream_tls_failed")
                }
                ReadTimedout | WriteTimedout => (504, "upstream_timeout"),
                _ => (502, "upstream_error"),
            },
            ErrorSource::Downstream => match e.etype() {
                ReadError | WriteError | ConnectionClosed => (0, "client_closed"),
                ReadTimedout | WriteTimedout => (408, "client_timeout"),
                _ => (400, "bad_request"),
            },
            ErrorSource::Internal | ErrorSource::Unset => match e.etype() {
                ConnectTimedout => (502, "upstream_connect_timeout"),
                ConnectRefused | ConnectNoRoute | ConnectError => (502, "upstream_connect_failed"),
                ReadTimedout => (504, "upstream_timeout"),
                _ => (500, "internal"),
            },
        },
    }
}

fn upstream_error_kind(class: &str) -> &'static str {
    match class {
        "upstream_connect_timeout" => "connect_timeout",
        "upstream_connect_failed" => "connect",
        "upstream_tls_failed" => "tls",
        "upstream_timeout" => "timeout",
        "no_healthy_upstream" => "no_healthy",
        _ => "protocol",
    }
}

fn error_message(status: u16) -> &'static str {
    match status {
        400 => "malformed request",
        404 => "no route matches this request",
        408 => "client did not send the request in time",
        502 => "the upstream could not be reached",
        503 => "no healthy upstream is available",
        504 => "the upstream did not answer in time",
        _ => "internal error",
    }
}

/// Write a small JSON error body that carries the request id.
pub async fn respond_json(
    session: &mut Session,
    status: u16,
    code: &str,
    request_id: &str,
) -> pingora::Result<()> {
    let body = serde_json::json!({
        "error": code,
        "message": error_message(status),
        "status": status,
        "request_id": request_id,
    });
    let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
    let mut resp = ResponseHeader::build(status, Some(5))?;
    resp.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len())?;
    resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
    resp.insert_header(X_REQUEST_ID, request_id)?;
    session.set_keepalive(None);
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            rt: self.shared.current.load_full(),
            start: Instant::now(),
            event_time_ms: 0,
            request_id: String::new(),
            client_ip: None,
            route: None,
            upstream: None,
            connect_attempts: 0,
            error_class: None,
            upstream_start: None,
            upstream_connected: None,
            upstream_connect_ms: None,
            upstream_response_ms: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<bool> {
        // `new_ctx` runs per request (also on reused connections), so ctx.rt is current.
        ctx.start = Instant::now();
        ctx.event_time_ms = now_ms();
        ctx.client_ip = effective_client_ip(session, &ctx.rt.policy.forwarding);
        ctx.request_id = request_id::accept_or_generate(
            session
                .req_header()
                .headers
                .get(X_REQUEST_ID)
                .map(|v| v.as_bytes()),
        );

        let req = session.req_header();
        let policy = &ctx.rt.policy;
        ctx.route = policy.router.find(
            &policy.routes,
            request_host(session),
            req.uri.path(),
            &req.method,
        );
        if ctx.route.is_none() {
            ctx.error_class = Some("no_route");
            respond_json(session, 404, "no_route", &ctx.request_id).await?;
            return Ok(true);
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let cluster = ctx
            .cluster()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in upstream_peer"))?;
        let Some(backend) = cluster.select() else {
            return Err(Error::explain(
                NO_HEALTHY_UPSTREAM,
                format!(
                    "cluster {}: every endpoint failed its health check",
                    cluster.spec.name
                ),
            ));
        };
        let peer = Box::new(cluster.peer(&backend));
        ctx.upstream = Some(backend.addr);
        ctx.upstream_start = Some(Instant::now());
        Ok(peer)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        let now = Instant::now();
        ctx.upstream_connected = Some(now);
        ctx.upstream_connect_ms = match (reused, ctx.upstream_start) {
            (false, Some(t)) => Some(ms(now - t)),
            _ => None,
        };
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        ctx.upstream_response_ms = ctx.upstream_connected.map(|t| ms(t.elapsed()));
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing was sent yet, so trying another endpoint is safe for any method.
        ctx.connect_attempts += 1;
        let endpoints = ctx.cluster().map_or(1, |c| c.spec.endpoints.len());
        if ctx.connect_attempts >= MAX_CONNECT_ATTEMPTS.min(endpoints) {
            e.set_retry(false);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        let peer_ip = client_ip(session);
        let trusted = peer_ip.is_some_and(|ip| ctx.rt.policy.forwarding.is_trusted(ip));
        let tls = is_tls(session);
        let host = request_host(session).to_string();

        upstream_request.insert_header(X_REQUEST_ID, ctx.request_id.as_str())?;

        let xff = match (
            trusted,
            upstream_request.headers.get(X_FORWARDED_FOR),
            peer_ip,
        ) {
            (true, Some(prior), Some(ip)) => {
                let prior = String::from_utf8_lossy(prior.as_bytes()).into_owned();
                Some(format!("{prior}, {ip}"))
            }
            (_, _, Some(ip)) => Some(ip.to_string()),
            (_, _, None) => None,
        };
        match xff {
            Some(v) => upstream_request.insert_header(X_FORWARDED_FOR, v)?,
            None => {
                upstream_request.remove_header(&X_FORWARDED_FOR);
            }
        }
        if !trusted || upstream_request.headers.get(X_FORWARDED_PROTO).is_none() {
            upstream_request
                .insert_header(X_FORWARDED_PROTO, if tls { "https" } else { "http" })?;
        }
        if !trusted || upstream_request.headers.get(X_FORWARDED_HOST).is_none() {
            if host.is_empty() {
                upstream_request.remove_header(&X_FORWARDED_HOST);
            } else {
                upstream_request.insert_header(X_FORWARDED_HOST, host)?;
            }
        }
        if !trusted {
            upstream_request.remove_header(&FORWARDED);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        upstream_response.insert_header(X_REQUEST_ID, ctx.request_id.as_str())?;
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let (mut status, class) = classify(e);
        ctx.error_class = Some(class);
        if ctx.request_id.is_empty() {
            ctx.request_id = request_id::accept_or_generate(None);
        }
        if let (Some(cluster), true) = (
            ctx.cluster(),
            class.starts_with("upstream") || class == "no_healthy_upstream",
        ) {
            self.shared
                .metrics
                .upstream_errors
                .with_label_values(&[&cluster.spec.name, upstream_error_kind(class)])
                .inc();
        }
        if let Some(written) = session.response_written() {
            // Headers already went out; the client sees a truncated body.
            status = written.status.as_u16();
        } else if status > 0 {
            if let Err(err) = respond_json(session, status, class, &ctx.request_id).await {
                tracing::debug!(error = %err, "could not send error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let elapsed = ctx.start.elapsed();
        let m = match ctx.route {
            Some(i) => &ctx.rt.route_metrics[i],
            None => &ctx.rt.unrouted_metrics,
        };
        m.observe(status, elapsed.as_secs_f64());
        if ctx.request_id.is_empty() {
            // The request never reached request_filter (malformed): still give it an id.
            ctx.request_id = request_id::accept_or_generate(None);
            ctx.event_time_ms = now_ms();
        }
        if let Some(log) = &self.access_log {
            self.emit_record(log, session, ctx, status, elapsed);
        }
        if self.log_requests {
            let req = session.req_header();
            let route = ctx
                .route
                .map(|i| &*ctx.rt.policy.routes[i].name)
                .unwrap_or("-");
            tracing::info!(
                target: "access",
                request_id = %ctx.request_id,
                client = %ctx.client_ip.map(|i| i.to_string()).unwrap_or_default(),
                method = %req.method,
                host = %request_host(session),
                path = %req.uri.path(),
                status,
                route,
                upstream = %ctx.upstream.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                duration_ms = ms(elapsed),
                error = ctx.error_class.unwrap_or(""),
                detail = %e.map(|e| e.etype().as_str()).unwrap_or(""),
                policy_version = %ctx.rt.policy.version,
            );
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, _error: &Error) -> bool {
        // The access log line carries the outcome; Pingora's own error line would repeat it
        // with the full request summary.
        true
    }
}
