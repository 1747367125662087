//! The proxy's decision phases, run offline on one request.
//!
//! [`Simulator::load`] builds the same [`Runtime`](crate::state::Runtime) the gateway builds,
//! with nothing that reaches the network: endpoints that are names get placeholder addresses
//! (shown as written), issuers with a JWKS URL get an empty key set (tokens of those issuers
//! can be given as claims instead), Redis revocation sets are not consulted, and
//! cluster-scope limits run as they do while Redis is unreachable (their `on_redis_down`
//! fallback). No background task starts: health checks do not run, so every endpoint counts
//! as healthy.
//!
//! [`Simulator::run`] then feeds the request to the real [`Gateway`]'s phases over an
//! in-memory connection ([`super::stream::Offline`]): `request_filter` (request id, client
//! address, IP lists, routing, auth, limits, shard and canary, breaker admission),
//! `request_cache_filter`, `upstream_peer`, `upstream_request_filter` (what the upstream would
//! receive), and, with the upstream answer the caller describes, `upstream_response_filter`
//! and `response_filter` (the cache and rate-limit headers the client would get). What the
//! proxy does is what this reports: nothing here decides anything itself.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use pingora::http::ResponseHeader;
use pingora::proxy::{ProxyHttp, Session};
use serde_json::{Map, Value};

use super::stream::Offline;
use crate::access_log::RecordBuilder;
use crate::auth::spec::{JwksSource, TokenSource};
use crate::auth::Identity;
use crate::key;
use crate::policy::{self, PolicyErrors, Snapshot};
use crate::proxy::{Ctx, Gateway};
use crate::route::RoutePlan;
use crate::state::Shared;
use edgeway_record::clock::{Clock, ManualClock};
use edgeway_record::outcome::{AuthResult, BreakerState, CanaryArm, ErrorClass, RateLimitDecision};

/// One request to simulate.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// `http://host/path?query` or `https://…`; or origin-form (`/path`) with a `Host` header.
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The address the connection comes from (the peer; `X-Forwarded-For` is read only when
    /// the policy trusts it).
    pub client_ip: IpAddr,
    /// Present a token whose verified claims are these (signature assumed valid).
    pub claims: Option<Map<String, Value>>,
    /// The issuer of that token (default: the route rule's first issuer).
    pub issuer: Option<String>,
    /// Present this token (verified for real, against the issuers' local JWKS files).
    pub token: Option<String>,
    /// What the upstream answers, when the request gets that far.
    pub response: UpstreamResponse,
}

/// The upstream's answer, as the test or the command line describes it.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Default for UpstreamResponse {
    fn default() -> Self {
        UpstreamResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
        }
    }
}

/// What the gateway did with the request.
pub struct Decision {
    /// The status the client gets.
    pub status: u16,
    /// Whether the request reached the upstream (the status is then the upstream's).
    pub forwarded: bool,
    /// The headers the client gets (without `X-Request-Id`, which is random).
    pub response_headers: Vec<(String, String)>,
    /// The JSON body of a gateway answer (a rejection).
    pub body: Option<String>,
    pub error: Option<ErrorClass>,
    pub route: Option<Arc<RoutePlan>>,
    /// The host routing saw (checked, lower case, without port); `None` when invalid.
    pub host: Option<String>,
    /// The path routing saw (canonical), when it could be made canonical.
    pub path: Option<String>,
    /// The path the route matched, when normalising changed it.
    pub canonical_path: Option<String>,
    pub client_ip: Option<IpAddr>,
    pub auth: Option<AuthResult>,
    pub auth_issuer: Option<Arc<str>>,
    pub identity: Option<Arc<Identity>>,
    pub rate_limit: Option<RateLimitDecision>,
    /// Each limit of the route and its key for this request (`None`: a key part is missing,
    /// so the limit does not apply).
    pub limit_keys: Vec<(Arc<str>, Option<String>)>,
    pub cluster: Option<Arc<str>>,
    pub shard: Option<Arc<str>>,
    pub canary: Option<CanaryArm>,
    pub breaker: Option<BreakerState>,
    /// The endpoint chosen, as written in the policy.
    pub endpoint: Option<String>,
    /// The upstream request: target and headers, when the request was forwarded.
    pub upstream_target: Option<String>,
    pub upstream_headers: Vec<(String, String)>,
    /// The upstream status would be retried (on another endpoint) before answering.
    pub retried_status: bool,
}

/// A problem with the request itself (not with the policy).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadRequest(pub String);

pub struct Simulator {
    /// The policy as written (endpoints, JWKS sources), for display.
    pub policy: Snapshot,
    gateway: Gateway,
    pub clock: ManualClock,
    /// Placeholder address → the endpoint as written.
    placeholders: HashMap<SocketAddr, String>,
    /// What the offline run cannot do like the gateway would (JWKS URLs, Redis).
    pub caveats: Vec<String>,
}

impl Simulator {
    /// Load and build `dir` offline, with the clock at `now_ms`.
    pub async fn load(dir: &Path, now_ms: i64) -> Result<Simulator, PolicyErrors> {
        let policy = policy::load_dir(dir)?;
        let mut offline = policy::load_dir(dir)?;
        let (placeholders, caveats) = take_offline(&mut offline);
        let clock = ManualClock::new(now_ms);
        let dyn_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let shared = Shared::from_snapshot(offline, dir, dyn_clock, Default::default()).await?;
        let gateway = Gateway {
            shared,
            log_requests: false,
            access_log: None,
            records: RecordBuilder {
                instance: "offline".into(),
            },
            connections: Arc::new(unused_connection_settings()),
        };
        Ok(Simulator {
            policy,
            gateway,
            clock,
            placeholders,
            caveats,
        })
    }

    /// Where a named definition (`route.api`) is written: `file:line`.
    pub fn origin(&self, field: &str) -> Option<String> {
        self.policy
            .origins
            .get(field)
            .map(|o| format!("{}:{}", o.file.display(), o.line))
    }

    pub fn runtime(&self) -> Arc<crate::state::Runtime> {
        self.gateway.shared.current.load_full()
    }

    /// Run `req` through the gateway's phases.
    pub async fn run(&self, req: &Request) -> Result<Decision, BadRequest> {
        let mut head = Head::parse(req)?;
        if req.claims.is_some() || req.token.is_some() {
            // The token goes where the route's issuer looks for one.
            let session = head.session(req.client_ip).await?;
            let rt = self.runtime();
            let what = if req.claims.is_some() {
                "claims"
            } else {
                "a token"
            };
            let plan = crate::route::resolve(&rt.router, &session)
                .map_err(|_| BadRequest(format!("{what} given, but no route matches the request")))?
                .plan;
            let auth = plan.auth.as_ref().ok_or_else(|| {
                BadRequest(format!(
                    "{what} given, but route `{}` has no auth rule",
                    plan.name()
                ))
            })?;
            let (source, token) = match &req.claims {
                Some(claims) => auth
                    .assume_verified(req.issuer.as_deref(), claims.clone(), self.clock.now_ms())
                    .map_err(BadRequest)?,
                None => (
                    auth.token_source(req.issuer.as_deref())
                        .map_err(BadRequest)?,
                    req.token.clone().unwrap_or_default(),
                ),
            };
            head.present(&source, &token);
        }
        let mut session = head.session(req.client_ip).await?;
        let gw = &self.gateway;
        let mut ctx = gw.new_ctx();
        let answered = gw
            .request_filter(&mut session, &mut ctx)
            .await
            .map_err(|e| BadRequest(format!("the gateway failed on this request: {e}")))?;
        let limit_keys = limit_keys(&ctx, &session);
        let mut d = Decision {
            status: 0,
            forwarded: false,
            response_headers: Vec::new(),
            body: None,
            error: None,
            route: None,
            host: crate::host::checked_host(crate::route::request_host(&session))
                .map(str::to_ascii_lowercase),
            path: crate::route::path::normalize(session.req_header().uri.path())
                .ok()
                .map(|p| p.into_owned()),
            canonical_path: None,
            client_ip: None,
            auth: None,
            auth_issuer: None,
            identity: None,
            rate_limit: None,
            limit_keys,
            cluster: None,
            shard: None,
            canary: None,
            breaker: None,
            endpoint: None,
            upstream_target: None,
            upstream_headers: Vec::new(),
            retried_status: false,
        };
        if !answered {
            self.forward(&mut session, &mut ctx, req, &mut d).await?;
        }
        if let Some(resp) = session.response_written() {
            d.status = resp.status.as_u16();
            d.response_headers = headers_of(resp.headers.iter());
        }
        d.body = head.body_written().map(|b| without_request_id(&b));
        d.error = ctx.outcome.error;
        d.route = ctx.route.clone();
        d.canonical_path = ctx.canonical_path.clone();
        d.client_ip = ctx.client_ip;
        d.auth = ctx.outcome.auth;
        d.auth_issuer = ctx.outcome.auth_issuer.clone();
        d.identity = ctx.identity.clone();
        d.rate_limit = ctx.outcome.rate_limit;
        d.cluster = ctx.cluster().map(|c| Arc::clone(&c.spec.name));
        d.shard = ctx.outcome.shard.clone();
        d.canary = ctx.canary;
        d.breaker = ctx.outcome.breaker;
        // Releases the bulkhead slot and in-flight place, as after any request.
        gw.logging(&mut session, None, &mut ctx).await;
        Ok(d)
    }

    /// The phases after `request_filter`, for a request that goes upstream.
    async fn forward(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        req: &Request,
        d: &mut Decision,
    ) -> Result<(), BadRequest> {
        let gw = &self.gateway;
        let fail = |e: Box<pingora::Error>| BadRequest(format!("the gateway failed: {e}"));
        gw.request_cache_filter(session, ctx).map_err(fail)?;
        match gw.upstream_peer(session, ctx).await {
            Ok(peer) => {
                let addr = peer._address.to_string();
                d.endpoint = Some(match peer._address.as_inet() {
                    Some(a) => self.placeholders.get(a).cloned().unwrap_or(addr),
                    None => addr,
                });
            }
            Err(e) => {
                // A step refused (breaker open, bulkhead full) or no endpoint is left: the
                // proxy answers in `fail_to_proxy`.
                gw.fail_to_proxy(session, &e, ctx).await;
                return Ok(());
            }
        }
        let mut upstream = session.req_header().clone();
        gw.upstream_request_filter(session, &mut upstream, ctx)
            .await
            .map_err(fail)?;
        d.upstream_target = Some(upstream.uri.to_string());
        d.upstream_headers = headers_of(upstream.headers.iter());
        d.forwarded = true;
        let mut resp = ResponseHeader::build(req.response.status, None)
            .map_err(|e| BadRequest(format!("upstream status: {e}")))?;
        for (name, value) in &req.response.headers {
            resp.append_header(name.clone(), value.as_str())
                .map_err(|e| BadRequest(format!("upstream header `{name}`: {e}")))?;
        }
        if let Err(e) = gw.upstream_response_filter(session, &mut resp, ctx).await {
            // A retryable status: the proxy would try another endpoint first.
            d.retried_status = e.retry();
        }
        gw.response_filter(session, &mut resp, ctx)
            .await
            .map_err(fail)?;
        d.status = resp.status.as_u16();
        d.response_headers = headers_of(resp.headers.iter());
        Ok(())
    }
}

/// The request's keys for each limit of its route, read as the limit step reads them.
fn limit_keys(ctx: &Ctx, session: &Session) -> Vec<(Arc<str>, Option<String>)> {
    let Some(plan) = ctx.route.as_deref() else {
        return Vec::new();
    };
    let header = session.req_header();
    let req = key::Request {
        header,
        path: ctx.canonical_path.as_deref().unwrap_or(header.uri.path()),
        client_ip: ctx.client_ip,
        route: plan.name(),
        identity: ctx.identity.as_deref(),
    };
    let policy = &ctx.rt.policy.limits;
    let names = plan
        .spec
        .protection
        .limits
        .as_ref()
        .unwrap_or(&policy.settings.default);
    names
        .iter()
        .filter_map(|n| policy.limits.iter().find(|l| l.name == *n))
        .map(|l| (Arc::clone(&l.name), l.key.describe(&req)))
        .collect()
}

fn headers_of<'a>(
    headers: impl Iterator<Item = (&'a http::HeaderName, &'a http::HeaderValue)>,
) -> Vec<(String, String)> {
    headers
        // Random or time-dependent: the request id and Pingora's `Date`.
        .filter(|(n, _)| *n != crate::request_id::X_REQUEST_ID && *n != http::header::DATE)
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The request head as bytes on the wire, and what the gateway wrote back.
struct Head {
    method: String,
    https: bool,
    /// Origin-form target.
    target: String,
    headers: Vec<(String, String)>,
    written: Option<super::stream::Written>,
}

impl Head {
    fn parse(req: &Request) -> Result<Head, BadRequest> {
        let method = req.method.trim();
        if method.is_empty() || !method.bytes().all(is_token_byte) {
            return Err(BadRequest(format!(
                "`{method}` is not a request method (expected a token such as GET or POST)"
            )));
        }
        let mut headers = Vec::with_capacity(req.headers.len() + 1);
        let (https, target) = match req.url.split_once("://") {
            Some((scheme, rest)) => {
                let https = match scheme.to_ascii_lowercase().as_str() {
                    "http" => false,
                    "https" => true,
                    other => {
                        return Err(BadRequest(format!(
                            "`{other}://` is not supported: the URL must start with http:// or https://"
                        )))
                    }
                };
                let split = rest.find(['/', '?']).unwrap_or(rest.len());
                let (authority, target) = rest.split_at(split);
                if authority.is_empty() {
                    return Err(BadRequest(format!("`{}` has no host", req.url)));
                }
                if !req
                    .headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case("host"))
                {
                    headers.push(("Host".to_string(), authority.to_string()));
                }
                let target = if target.starts_with('/') {
                    target.to_string()
                } else {
                    format!("/{target}")
                };
                (https, target)
            }
            None if req.url.starts_with('/') => (false, req.url.clone()),
            None => {
                return Err(BadRequest(format!(
                    "`{}` is neither an absolute URL (https://host/path) nor a path (/path)",
                    req.url
                )))
            }
        };
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(BadRequest(format!(
                "the URL `{}` contains spaces or control characters (percent-encode them)",
                req.url
            )));
        }
        for (name, value) in &req.headers {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(BadRequest(format!("`{name}` is not a valid header name")));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(BadRequest(format!(
                    "the value of header `{name}` contains a line break or NUL"
                )));
            }
            headers.push((name.clone(), value.clone()));
        }
        Ok(Head {
            method: method.to_string(),
            https,
            target,
            headers,
            written: None,
        })
    }

    /// Present a token where `source` says.
    fn present(&mut self, source: &TokenSource, token: &str) {
        match source {
            TokenSource::Bearer => self
                .headers
                .push(("Authorization".into(), format!("Bearer {token}"))),
            TokenSource::Header(h) => self.headers.push((h.as_str().into(), token.into())),
            TokenSource::Cookie(name) => self
                .headers
                .push(("Cookie".into(), format!("{name}={token}"))),
            TokenSource::Query(name) => {
                let sep = if self.target.contains('?') { '&' } else { '?' };
                self.target = format!("{}{sep}{name}={token}", self.target);
            }
        }
    }

    /// A session that has read this head, as Pingora would from a connection.
    async fn session(&mut self, client_ip: IpAddr) -> Result<Session, BadRequest> {
        let mut raw = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (n, v) in &self.headers {
            raw.push_str(n);
            raw.push_str(": ");
            raw.push_str(v);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        let (conn, written) = Offline::new(
            raw.into_bytes(),
            SocketAddr::new(client_ip, 50000),
            self.https,
        );
        self.written = Some(written);
        let mut session = Session::new_h1(Box::new(conn));
        match session.read_request().await {
            Ok(true) => Ok(session),
            Ok(false) => Err(BadRequest("the request ended before its head".into())),
            Err(e) => Err(BadRequest(format!(
                "the gateway's HTTP parser refuses this request: {e}"
            ))),
        }
    }

    /// The body of a response the gateway wrote itself (a rejection), if any.
    fn body_written(&self) -> Option<String> {
        let bytes = self.written.as_ref()?.lock().ok()?.clone();
        let at = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let body = &bytes[at + 4..];
        (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned())
    }
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Make the snapshot buildable without the network; returns the placeholder addresses and
/// what the offline run does differently.
fn take_offline(p: &mut Snapshot) -> (HashMap<SocketAddr, String>, Vec<String>) {
    let mut placeholders = HashMap::new();
    let mut caveats = Vec::new();
    let mut next: u16 = 1;
    for c in &mut p.clusters {
        for ep in &mut c.endpoints {
            if ep.parse::<SocketAddr>().is_ok() {
                continue;
            }
            let port = ep
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .unwrap_or(80);
            // 192.0.2.0/24 and beyond (TEST-NET-1, RFC 5737): never a real endpoint.
            let [hi, lo] = next.to_be_bytes();
            let addr = SocketAddr::new(IpAddr::from([192, 0, hi.wrapping_add(2), lo]), port);
            next = next.wrapping_add(1);
            placeholders.insert(addr, std::mem::replace(ep, addr.to_string()));
        }
    }
    for issuer in &mut p.auth.issuers {
        if let Some(JwksSource::Url(u)) = &issuer.jwks {
            caveats.push(format!(
                "issuer `{}`: keys come from {} and are not fetched offline; give `claims` instead of a token",
                issuer.name, u.url
            ));
            let spec = Arc::make_mut(issuer);
            spec.jwks = Some(JwksSource::File {
                path: "(offline)".into(),
                bytes: br#"{"keys":[]}"#.to_vec(),
            });
        }
    }
    if p.auth.revocation.redis.take().is_some() {
        caveats.push(
            "revocation: the Redis sets are not consulted offline (the jti and sub lists are)"
                .into(),
        );
    }
    if p.limits.settings.redis.is_some() {
        caveats.push(
            "cluster-scope limits run as while Redis is unreachable (their on_redis_down fallback)"
                .into(),
        );
    }
    (placeholders, caveats)
}

/// The connection settings are applied in `early_request_filter`, which the offline run does
/// not call (there is no connection to time out).
fn unused_connection_settings() -> crate::connections::Settings {
    use std::time::Duration;
    crate::connections::Settings {
        max_connections: 0,
        max_connections_per_ip: 0,
        keepalive_timeout: Duration::ZERO,
        keepalive_requests: 0,
        body_read_timeout: Duration::ZERO,
        send_timeout: Duration::ZERO,
        min_send_rate: 0,
        h2_max_concurrent_streams: 0,
        h2_max_header_list_size: 0,
        h2_idle_timeout: Duration::ZERO,
        h2_max_pending_resets: 0,
    }
}

/// A JSON error body without its `request_id` (random per request).
fn without_request_id(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(mut map)) => {
            map.remove("request_id");
            Value::Object(map).to_string()
        }
        _ => body.to_string(),
    }
}
