//! The request path: Pingora's `ProxyHttp` phases, each a short list of steps that call the
//! capability modules. Per-request state lives in [`Ctx`]; the policy runtime is loaded once
//! into it so every phase sees the same version.
//!
//! A step either lets the request go on or returns a [`Reject`], which [`Gateway::reject`]
//! sends and records. What each capability decided is kept in [`Outcomes`], and the access
//! log record is built from it in one place ([`Gateway::emit_record`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, RespCacheable};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::Error;

use crate::access_log::{self, AccessLog, RecordBuilder};
use crate::reject::Reject;
use crate::request_id;
use crate::route::{request_host, RoutePlan};
use crate::state::{Runtime, Shared};
use crate::{auth, cache, forwarding, key, limit, resilience, route, shard, upstream};
use edgeway_record::outcome::{
    AuthResult, BreakerState, CacheStatus, CanaryArm, ErrorClass, RateLimitDecision,
};
use edgeway_record::{AccessLogRecordRef, RECORD_VERSION};

pub struct Gateway {
    pub shared: Arc<Shared>,
    /// Also write one tracing line per request (stdout).
    pub log_requests: bool,
    pub access_log: Option<AccessLog>,
    pub records: RecordBuilder,
    /// Per-connection timeouts applied as each request starts.
    pub connections: Arc<crate::connections::Settings>,
}

/// What each capability decided for this request; the record's outcome columns.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub auth: Option<AuthResult>,
    pub auth_subject: Option<String>,
    pub auth_issuer: Option<Arc<str>>,
    pub rate_limit: Option<RateLimitDecision>,
    pub breaker: Option<BreakerState>,
    pub cache: Option<CacheStatus>,
    pub shard: Option<Arc<str>>,
    pub error: Option<ErrorClass>,
}

/// The upstream attempt in progress (or the last one).
#[derive(Debug, Default)]
pub struct Attempt {
    pub addr: Option<pingora::protocols::l4::socket::SocketAddr>,
    pub connect_attempts: usize,
    /// When the current attempt started (peer selected).
    pub start: Option<Instant>,
    pub connected: Option<Instant>,
    pub connect_ms: Option<f64>,
    pub response_ms: Option<f64>,
}

pub struct Ctx {
    pub rt: Arc<Runtime>,
    pub start: Instant,
    pub event_time_ms: i64,
    pub request_id: String,
    /// `request_id` is the `X-Request-Id` the client sent.
    pub request_id_from_client: bool,
    pub client_ip: Option<IpAddr>,
    pub route: Option<Arc<RoutePlan>>,
    /// The canonical request path, when it differs from the one the client sent.
    pub canonical_path: Option<String>,
    pub upstream: Attempt,
    pub outcome: Outcomes,
    /// The verified token's identity, once the auth step has run and accepted one.
    pub identity: Option<Arc<crate::auth::Identity>>,
    /// What the protection steps keep: the RateLimit headers, the in-flight place.
    pub limits: limit::RequestState,
    /// Credentials seen and the micro-cache key, on routes with a cache policy.
    pub cache: cache::ReqState,
    /// Attempts, breaker tickets and the bulkhead slot of this request.
    pub resilience: resilience::RequestState,
    /// A rejection decided in a phase that can only fail with an `Error` (`upstream_peer`);
    /// `fail_to_proxy` sends it.
    pub reject: Option<Reject>,
    /// The cluster the shard step chose (shard, replica, canary); `None`: the route's own.
    pub cluster: Option<Arc<upstream::Cluster>>,
    /// The resilience guard of the chosen cluster, when the shard step chose one.
    pub guard: Option<Arc<resilience::Guard>>,
    /// The canary arm, on routes with a canary.
    pub canary: Option<CanaryArm>,
}

/// What decides whether an attempt already sent may be repeated.
fn sent<'a>(session: &'a Session, plan: &RoutePlan, client_reused: bool) -> resilience::Sent<'a> {
    resilience::Sent {
        method: &session.req_header().method,
        body_bytes: session.body_bytes_read(),
        response_written: session.response_written().is_some(),
        client_reused,
        idempotent_writes: plan.spec.retry_idempotent_writes,
    }
}

impl Ctx {
    /// The cluster this request goes to: the shard step's choice, else the route's.
    pub fn cluster(&self) -> Option<&Arc<upstream::Cluster>> {
        self.cluster
            .as_ref()
            .or_else(|| self.route.as_ref().and_then(|r| r.cluster.as_ref()))
    }

    /// The resilience guard of that cluster (breaker, ejection, bulkhead, retries).
    pub fn guard(&self) -> Option<Arc<resilience::Guard>> {
        self.guard
            .clone()
            .or_else(|| self.route.as_ref().and_then(|r| r.guard.clone()))
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Gateway {
    /// Send a rejection and record why. Returns `Ok(true)`: the request is answered.
    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        reject: Reject,
    ) -> pingora::Result<bool> {
        ctx.outcome.error = Some(reject.class);
        reject.send(session, &ctx.request_id).await?;
        Ok(true)
    }

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
        let route = ctx.route.as_deref();
        let out = &ctx.outcome;
        let tls = session.digest().and_then(|d| d.ssl_digest.as_ref());
        let peer = session.client_addr().and_then(|a| a.as_inet());
        let (mut ip_buf, mut upstream_buf) = ([0u8; 64], [0u8; 64]);
        let trace_id = access_log::record::trace_id(req.headers.get("traceparent"));
        let host = host_only(request_host(session));
        let query = filter_query(req.uri.query(), &policy.access_log.query_params);
        // The path the route matched (canonical), without what identifies a user or session.
        let path = access_log::record::redact_path(
            ctx.canonical_path.as_deref().unwrap_or(req.uri.path()),
            &policy.access_log.mask_paths,
        );
        let referer = referer(req.headers.get(http::header::REFERER));
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
            path: access_log::record::truncate(&path, 2048),
            query: query.as_deref(),
            http_version: access_log::record::http_version(req.version),
            status: i32::from(status),
            bytes_in: session.body_bytes_read() as i64,
            bytes_out: session.body_bytes_sent() as i64,
            duration_ms: ms(elapsed),
            upstream_connect_ms: ctx.upstream.connect_ms,
            upstream_response_ms: ctx.upstream.response_ms,
            route: route.map(RoutePlan::name),
            upstream_cluster: ctx.cluster().map(|c| &*c.spec.name),
            upstream_addr: ctx
                .upstream
                .addr
                .as_ref()
                .map(|a| display(&mut upstream_buf, a)),
            shard: out.shard.as_deref(),
            cache_status: out.cache.map(CacheStatus::as_str),
            auth_result: out.auth.unwrap_or(AuthResult::None).as_str(),
            auth_subject: out.auth_subject.as_deref(),
            auth_issuer: out.auth_issuer.as_deref(),
            rate_limit: out.rate_limit.map(RateLimitDecision::as_str),
            breaker_state: out.breaker.map(BreakerState::as_str),
            error_class: out.error.map(ErrorClass::as_str),
            tls_version: tls.map(|t| &*t.version),
            tls_cipher: tls.map(|t| &*t.cipher),
            user_agent: header_text(req.headers.get(http::header::USER_AGENT)),
            referer: referer.as_deref(),
            policy_version: &policy.version,
            gateway_instance: &self.records.instance,
            upstream_attempts: (ctx.resilience.attempts > 0)
                .then(|| i32::try_from(ctx.resilience.attempts).unwrap_or(i32::MAX)),
            canary: ctx.canary.map(CanaryArm::as_str),
            request_id_from_client: Some(ctx.request_id_from_client),
        });
    }
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
            request_id_from_client: false,
            client_ip: None,
            route: None,
            canonical_path: None,
            upstream: Attempt::default(),
            outcome: Outcomes::default(),
            identity: None,
            limits: limit::RequestState::default(),
            cache: cache::ReqState::default(),
            resilience: resilience::RequestState::default(),
            reject: None,
            cluster: None,
            guard: None,
            canary: None,
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        crate::head::reached_phases(session);
        self.connections.apply(session);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<bool> {
        // `new_ctx` runs per request (also on reused connections), so ctx.rt is current.
        ctx.start = Instant::now();
        ctx.event_time_ms = self.shared.clock.now_ms();
        (ctx.request_id, ctx.request_id_from_client) =
            forwarding::request_id(session, &ctx.rt.policy.forwarding);
        ctx.client_ip = forwarding::client_ip(session, &ctx.rt.policy.forwarding);
        if let Err(reject) = limit::ip_access(&ctx.rt.limits, ctx.client_ip) {
            return self.reject(session, ctx, reject).await;
        }

        let plan = match route::resolve(&ctx.rt.router, session) {
            Ok(resolved) => {
                ctx.canonical_path = resolved.canonical_path;
                Arc::clone(ctx.route.insert(resolved.plan))
            }
            Err(reject) => return self.reject(session, ctx, reject).await,
        };
        // The route's IP lists, then load shedding: before any costlier step.
        if let Err(denied) = limit::admit(&plan.limits, ctx.client_ip, &mut ctx.limits) {
            ctx.outcome.rate_limit = denied.decision;
            return self.reject(session, ctx, denied.reject).await;
        }
        if let Some(plan) = ctx.route.as_ref().and_then(|r| r.auth.clone()) {
            let mut out = auth::Outcome::default();
            let verdict = auth::authenticate(&plan, session, &*self.shared.clock, &mut out).await;
            ctx.outcome.auth = out.result;
            ctx.outcome.auth_issuer = out.issuer;
            ctx.outcome.auth_subject = out.identity.as_ref().and_then(|i| i.subject.clone());
            ctx.identity = out.identity;
            if let Err(reject) = verdict {
                return self.reject(session, ctx, reject).await;
            }
        }
        // Limits after auth (claims feed their keys), then the cluster by shard key and canary
        // arm: both read the same request key sources. Unsharded routes without a canary skip
        // the shard step (their cluster is the route's).
        let (checked, picked) = {
            let req = key::Request {
                header: session.req_header(),
                path: ctx
                    .canonical_path
                    .as_deref()
                    .unwrap_or(session.req_header().uri.path()),
                client_ip: ctx.client_ip,
                route: plan.name(),
                identity: ctx.identity.as_deref(),
            };
            let checked =
                limit::check(&plan.limits, &req, &req.header.method, &mut ctx.limits).await;
            let picked =
                (checked.is_ok() && (plan.shard.is_some() || plan.canary.is_some())).then(|| {
                    shard::pick(
                        plan.shard.as_ref(),
                        plan.canary.as_ref(),
                        &req,
                        &req.header.method,
                    )
                });
            (checked, picked)
        };
        match checked {
            Ok(decision) => ctx.outcome.rate_limit = decision,
            Err(denied) => {
                ctx.outcome.rate_limit = denied.decision;
                return self.reject(session, ctx, denied.reject).await;
            }
        }
        match picked {
            None => {}
            Some(Ok(picked)) => {
                ctx.guard = picked
                    .cluster
                    .as_ref()
                    .and_then(|c| ctx.rt.guards.get(&c.spec.name).cloned());
                ctx.cluster = picked.cluster;
                ctx.outcome.shard = picked.shard;
                ctx.canary = picked.arm;
            }
            Some(Err(reject)) => return self.reject(session, ctx, reject).await,
        }

        // Resilience: fail fast while the chosen cluster's breaker is open; a bulkhead slot.
        if let Some(guard) = ctx.guard() {
            if let Err(reject) = guard
                .admit_request(
                    &mut ctx.resilience,
                    plan.spec.timeout,
                    &mut ctx.outcome.breaker,
                )
                .await
            {
                return self.reject(session, ctx, reject).await;
            }
        }
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
    ) -> pingora::Result<Box<HttpPeer>> {
        let (Some(cluster), Some(guard)) = (ctx.cluster().cloned(), ctx.guard()) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no cluster in upstream_peer",
            ));
        };
        if let Err(reject) = guard
            .before_attempt(&mut ctx.resilience, &mut ctx.outcome.breaker)
            .await
        {
            let class = reject.class;
            ctx.reject = Some(reject);
            return Err(Error::explain(
                ErrorType::Custom(class.as_str()),
                "rejected",
            ));
        }
        let (backend, peer) = guard.select(&cluster, &mut ctx.resilience)?;
        ctx.upstream.addr = Some(backend.addr);
        ctx.upstream.start = Some(Instant::now());
        Ok(Box::new(peer))
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
        let attempt = &mut ctx.upstream;
        attempt.connected = Some(now);
        attempt.connect_ms = match (reused, attempt.start) {
            (false, Some(t)) => Some(ms(now - t)),
            _ => None,
        };
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        ctx.upstream.response_ms = ctx.upstream.connected.map(|t| ms(t.elapsed()));
        let status = upstream_response.status.as_u16();
        if let (Some(plan), Some(guard)) = (ctx.route.clone(), ctx.guard()) {
            if guard.response(&mut ctx.resilience, status, &sent(session, &plan, false)) {
                // Fail this attempt before anything reaches the client; Pingora asks
                // `upstream_peer` again.
                let mut e = Error::explain(ErrorType::HTTPStatus(status), "retrying the status");
                e.set_retry(true);
                return Err(e);
            }
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.upstream.connect_attempts += 1;
        let retry = ctx
            .guard()
            .is_some_and(|g| g.connect_failed(&mut ctx.resilience));
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        let retry = match (ctx.route.clone(), ctx.guard()) {
            (Some(p), Some(g)) => {
                g.proxy_failed(&mut ctx.resilience, &e, &sent(session, &p, client_reused))
            }
            _ => false,
        };
        e.set_retry(retry);
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        upstream_request.insert_header(request_id::X_REQUEST_ID_WIRE, ctx.request_id.as_str())?;
        if let Some(plan) = &ctx.route {
            route::rewrite_upstream_target(
                session,
                plan,
                ctx.canonical_path.as_deref(),
                upstream_request,
            )?;
        }
        auth::rewrite_upstream_headers(
            &ctx.rt.auth,
            ctx.route.as_ref().and_then(|r| r.auth.as_deref()),
            ctx.identity.as_deref(),
            upstream_request,
        )?;
        forwarding::rewrite_upstream_headers(session, &ctx.rt.policy.forwarding, upstream_request)
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<()> {
        upstream_response.insert_header(request_id::X_REQUEST_ID_WIRE, ctx.request_id.as_str())?;
        limit::response_headers(&ctx.limits, upstream_response)?;
        if let Some(plan) = ctx.route.as_deref() {
            if let Some(rc) = &plan.cache {
                let path = ctx
                    .canonical_path
                    .as_deref()
                    .unwrap_or(session.req_header().uri.path());
                let status = cache::respond(
                    rc,
                    &ctx.cache,
                    session,
                    plan.name(),
                    path,
                    upstream_response,
                )?;
                ctx.outcome.cache = status;
            }
        }
        Ok(())
    }

    fn request_cache_filter(&self, session: &mut Session, ctx: &mut Ctx) -> pingora::Result<()> {
        if let Some(plan) = ctx.route.as_deref() {
            if let Some(rc) = &plan.cache {
                let subject = ctx.identity.as_ref().is_some_and(|i| i.subject.is_some());
                ctx.cache = cache::request_state(rc, session, plan.auth.is_some(), subject);
            }
        }
        Ok(())
    }

    fn cache_key_callback(&self, session: &Session, ctx: &mut Ctx) -> pingora::Result<CacheKey> {
        let rc = ctx
            .route
            .as_deref()
            .and_then(|p| p.cache.as_ref())
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no cache policy"))?;
        let req = session.req_header();
        let host = crate::host::checked_host(request_host(session)).unwrap_or_default();
        let path = ctx.canonical_path.as_deref().unwrap_or(req.uri.path());
        cache::cache_key(rc, &mut ctx.cache, host, path, req.uri.query())
    }

    fn cache_vary_filter(
        &self,
        meta: &CacheMeta,
        ctx: &mut Ctx,
        req: &RequestHeader,
    ) -> Option<HashBinary> {
        let rc = ctx.route.as_deref()?.cache.as_ref()?;
        let subject = match (&ctx.outcome.auth_issuer, &ctx.outcome.auth_subject) {
            (Some(i), Some(s)) => Some((&**i, s.as_str())),
            _ => None,
        };
        cache::variance(rc, meta, req, subject)
    }

    fn response_cache_filter(
        &self,
        session: &Session,
        resp: &ResponseHeader,
        ctx: &mut Ctx,
    ) -> pingora::Result<RespCacheable> {
        let Some(plan) = ctx.route.as_deref() else {
            return Ok(RespCacheable::Uncacheable(
                pingora::cache::NoCacheReason::NeverEnabled,
            ));
        };
        let Some(rc) = &plan.cache else {
            return Ok(RespCacheable::Uncacheable(
                pingora::cache::NoCacheReason::NeverEnabled,
            ));
        };
        let path = ctx
            .canonical_path
            .as_deref()
            .unwrap_or(session.req_header().uri.path());
        Ok(cache::response_cacheable(
            rc,
            &ctx.cache,
            plan.name(),
            path,
            resp,
        ))
    }

    fn should_serve_stale(
        &self,
        _session: &mut Session,
        ctx: &mut Ctx,
        error: Option<&Error>,
    ) -> bool {
        ctx.route
            .as_deref()
            .and_then(|p| p.cache.as_ref())
            .is_some_and(|rc| cache::serve_stale(rc, error))
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        if ctx.request_id.is_empty() {
            ctx.request_id = request_id::generate();
        }
        if let Some(reject) = ctx.reject.take() {
            // A step decided the answer (breaker open, bulkhead full).
            ctx.outcome.error = Some(reject.class);
            if let Err(err) = reject.send(session, &ctx.request_id).await {
                tracing::debug!(error = %err, "could not send error response");
            }
            return FailToProxy {
                error_code: reject.status,
                can_reuse_downstream: false,
            };
        }
        let class = upstream::classify(e);
        ctx.outcome.error = Some(class);
        if let (Some(cluster), Some(kind)) = (ctx.cluster(), class.upstream_kind()) {
            self.shared
                .metrics
                .upstream_errors
                .with_label_values(&[&cluster.spec.name, kind])
                .inc();
        }
        let mut status = match e.etype() {
            ErrorType::HTTPStatus(code) => *code,
            _ => class.status(),
        };
        if let Some(written) = session.response_written() {
            // Headers already went out; the client sees a truncated body.
            status = written.status.as_u16();
        } else if status > 0 {
            let mut reject = Reject::new(class).status(status);
            if class == ErrorClass::HttpStatus {
                // A phase chose this status; its class says nothing more than the status does.
                let reason = http::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("error");
                reject = reject.message(reason.to_ascii_lowercase());
            }
            if let Err(err) = reject.send(session, &ctx.request_id).await {
                tracing::debug!(error = %err, "could not send error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        crate::head::request_done(session);
        if let Some(guard) = ctx.guard() {
            guard.finish(&mut ctx.resilience, e);
        }
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let elapsed = ctx.start.elapsed();
        let m = match &ctx.route {
            Some(plan) => &plan.metrics,
            None => &ctx.rt.unrouted_metrics,
        };
        m.observe(status, elapsed.as_secs_f64());
        if ctx.request_id.is_empty() {
            // The request never reached request_filter (malformed): still give it an id.
            ctx.request_id = request_id::generate();
            ctx.event_time_ms = self.shared.clock.now_ms();
        }
        if let Some(log) = &self.access_log {
            self.emit_record(log, session, ctx, status, elapsed);
        }
        if self.log_requests {
            let req = session.req_header();
            tracing::info!(
                target: "access",
                request_id = %ctx.request_id,
                client = %ctx.client_ip.map(|i| i.to_string()).unwrap_or_default(),
                method = %req.method,
                host = %request_host(session),
                path = %req.uri.path(),
                status,
                route = ctx.route.as_deref().map_or("-", RoutePlan::name),
                upstream = %ctx.upstream.addr.as_ref().map(|a| a.to_string()).unwrap_or_default(),
                duration_ms = ms(elapsed),
                error = ctx.outcome.error.map_or("", ErrorClass::as_str),
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
