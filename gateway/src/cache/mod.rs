//! Cache headers per route, safe by default for authenticated traffic, and an opt-in edge
//! micro-cache with request coalescing.
//!
//! - [`file`]: `[cache.<name>]` as written (directive lists in header syntax, rules, tags,
//!   micro-cache); routes name one with `cache = "<name>"`;
//! - [`validate()`](validate::validate): pure; unknown directives, negative lifetimes,
//!   `immutable` without a lifetime, a micro-cache without a size bound are located errors;
//!   `authenticated = "public"` is a located warning (from `policy::lint`);
//! - [`spec`]: the immutable [`spec::CachePolicies`], header values pre-rendered;
//! - runtime: [`CacheRuntime`] holds one [`micro::MicroCache`] per policy that has one
//!   (kept across reloads while its spec is unchanged); [`RouteCache`] on each
//!   `RoutePlan` is the route's policy and micro-cache;
//! - phase steps, called from `proxy.rs`: [`request_state`] (credentials; turns Pingora's
//!   cache on, or records a bypass) in `request_cache_filter`, [`cache_key`] and
//!   [`variance`] in the key and vary callbacks, [`response_cacheable`] in
//!   `response_cache_filter`, [`respond`] in `response_filter` (headers via
//!   [`headers::apply`], `Cache-Status`, the purge index), [`serve_stale`] in
//!   `should_serve_stale`.
//!
//! What leaves: response headers, the record's `cache_status` (the micro-cache's status on
//! micro-cached routes, else `public` / `private` / `no-store` from the final
//! `Cache-Control`), and purges from the admin listener ([`CacheRuntime::purge`]).

pub mod directives;
pub mod file;
pub mod headers;
pub mod micro;
pub mod spec;
pub mod validate;

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderValue;
use pingora::cache::key::HashBinary;
use pingora::cache::{CacheKey, CacheMeta, CachePhase, NoCacheReason, RespCacheable};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

pub use headers::Credentials;
use micro::MicroCache;
use spec::{CachePolicies, CachePolicy};

use crate::state::{keep_or_build, BuildError};
use edgeway_record::outcome::CacheStatus;

/// `Cache-Status` (RFC 9211).
pub static CACHE_STATUS: http::HeaderName = http::HeaderName::from_static("cache-status");

/// A route's cache policy and its micro-cache.
#[derive(Debug, Clone)]
pub struct RouteCache {
    pub policy: Arc<CachePolicy>,
    pub micro: Option<Arc<MicroCache>>,
}

/// The micro-caches, by policy name.
#[derive(Debug, Default)]
pub struct CacheRuntime {
    pub micro: HashMap<Arc<str>, Arc<MicroCache>>,
}

impl CacheRuntime {
    pub async fn build(
        spec: &CachePolicies,
        previous: Option<&CacheRuntime>,
    ) -> Result<CacheRuntime, BuildError> {
        let mut micro = HashMap::new();
        for p in &spec.policies {
            let Some(m) = &p.micro else { continue };
            let prev = previous.and_then(|r| r.micro.get(&p.name));
            let built = keep_or_build(prev, m, || MicroCache::build(m)).await?;
            micro.insert(Arc::clone(&p.name), built);
        }
        Ok(CacheRuntime { micro })
    }

    /// The `RoutePlan` part of a route naming policy `name`.
    pub fn plan(
        &self,
        spec: &CachePolicies,
        name: &str,
        route: &str,
    ) -> Result<RouteCache, BuildError> {
        let policy = spec.get(name).cloned().ok_or_else(|| BuildError {
            field: format!("route.{route}"),
            message: format!("cache policy `{name}` was not built"),
        })?;
        Ok(RouteCache {
            micro: self.micro.get(name).cloned(),
            policy,
        })
    }

    /// Purge by tag or by key in every micro-cache; the number of entries removed.
    pub async fn purge(&self, target: Purge<'_>) -> usize {
        let mut n = 0;
        for m in self.micro.values() {
            n += match target {
                Purge::Tag(t) => m.purge_tag(t).await,
                Purge::Key(k) => m.purge_key(k).await,
            };
        }
        n
    }

    pub fn stats(&self) -> HashMap<String, micro::Stats> {
        self.micro
            .iter()
            .map(|(k, m)| (k.to_string(), m.stats()))
            .collect()
    }
}

/// What an admin `PURGE` names.
#[derive(Debug, Clone, Copy)]
pub enum Purge<'a> {
    /// A surrogate tag (`Surrogate-Key` value).
    Tag(&'a str),
    /// A primary key: `host/path?allow-listed-query`.
    Key(&'a str),
}

/// Per-request cache state, in `Ctx`.
#[derive(Debug, Default)]
pub struct ReqState {
    pub creds: Credentials,
    /// The micro-cache was skipped (credentials, method).
    pub bypass: bool,
    /// The micro-cache's primary key, once computed.
    pub primary: Option<String>,
}

/// `request_cache_filter` step: read the request's credentials and turn the micro-cache on
/// for GET/HEAD without credentials (or with a verified subject when the cache is per
/// subject).
pub fn request_state(
    rc: &RouteCache,
    session: &mut Session,
    route_auth: bool,
    subject: bool,
) -> ReqState {
    let creds = Credentials::of(&rc.policy, session.req_header(), route_auth);
    let mut state = ReqState {
        creds,
        ..ReqState::default()
    };
    if let Some(m) = &rc.micro {
        let method = &session.req_header().method;
        let method_ok = method == http::Method::GET || method == http::Method::HEAD;
        let allowed = !creds.any() || (m.spec.per_subject && subject);
        if method_ok && allowed {
            m.enable(&mut session.cache);
        } else {
            state.bypass = true;
        }
    }
    state
}

/// `cache_key_callback` step.
pub fn cache_key(
    rc: &RouteCache,
    state: &mut ReqState,
    host: &str,
    path: &str,
    query: Option<&str>,
) -> pingora::Result<CacheKey> {
    let m = rc.micro.as_ref().ok_or_else(|| {
        pingora::Error::explain(pingora::ErrorType::InternalError, "no micro-cache")
    })?;
    let primary = m.primary_key(host, path, query);
    state.primary = Some(primary.clone());
    Ok(m.cache_key(primary))
}

/// `cache_vary_filter` step.
pub fn variance(
    rc: &RouteCache,
    meta: &CacheMeta,
    req: &pingora::http::RequestHeader,
    subject: Option<(&str, &str)>,
) -> Option<HashBinary> {
    let m = rc.micro.as_ref()?;
    let subject = if m.spec.per_subject { subject } else { None };
    m.variance(meta, req, subject)
}

/// `response_cache_filter` step: store only what the header policy lets a shared cache
/// store (or, per subject, a private response that is not `no-store`).
pub fn response_cacheable(
    rc: &RouteCache,
    state: &ReqState,
    route: &str,
    path: &str,
    resp: &ResponseHeader,
) -> RespCacheable {
    let Some(m) = &rc.micro else {
        return RespCacheable::Uncacheable(NoCacheReason::NeverEnabled);
    };
    let mut probe = resp.clone();
    let storable = match headers::apply(&rc.policy, state.creds, route, path, &mut probe) {
        Ok(a) => {
            a.shareable
                || (m.spec.per_subject
                    && a.made_private
                    && a.status != Some(CacheStatus::NoStore)
                    && !resp.headers.contains_key(http::header::SET_COOKIE))
        }
        Err(_) => false,
    };
    m.cacheable(resp, storable)
}

/// `should_serve_stale` step: serve stale when the policy has the window for it (the
/// stored entry's own windows then decide).
pub fn serve_stale(rc: &RouteCache, error: Option<&pingora::Error>) -> bool {
    rc.micro.as_ref().is_some_and(|m| match error {
        Some(_) => !m.spec.stale_if_error.is_zero(),
        None => !m.spec.stale_while_revalidate.is_zero(),
    })
}

/// `response_filter` step: the cache headers; on micro-cached routes also `Cache-Status`
/// and the purge index. Returns the record's cache status.
pub fn respond(
    rc: &RouteCache,
    state: &ReqState,
    session: &Session,
    route: &str,
    path: &str,
    resp: &mut ResponseHeader,
) -> pingora::Result<Option<CacheStatus>> {
    let applied = headers::apply(&rc.policy, state.creds, route, path, resp)?;
    let Some(m) = &rc.micro else {
        return Ok(applied.status);
    };
    let cache = &session.cache;
    let (status, value) = micro_status(cache, state.bypass);
    if matches!(cache.phase(), CachePhase::Miss | CachePhase::Expired) && cache.enabled() {
        if let (Some(primary), Some(key)) = (&state.primary, cache.maybe_cache_key()) {
            m.remember(
                primary,
                key.to_compact(),
                headers::tag_list(&rc.policy, route, path),
            );
        }
    }
    resp.insert_header(CACHE_STATUS.clone(), value)?;
    Ok(Some(status))
}

/// The micro-cache status of a request and its `Cache-Status` value (RFC 9211).
fn micro_status(cache: &pingora::cache::HttpCache, bypass: bool) -> (CacheStatus, HeaderValue) {
    let s = HeaderValue::from_static;
    if bypass {
        return (CacheStatus::Bypass, s("edgeway; fwd=bypass"));
    }
    let collapsed = cache.lock_duration().is_some();
    match cache.phase() {
        CachePhase::Hit if collapsed => (CacheStatus::Hit, s("edgeway; hit; collapsed")),
        CachePhase::Hit => (CacheStatus::Hit, s("edgeway; hit")),
        CachePhase::Stale | CachePhase::StaleUpdating => {
            (CacheStatus::Stale, s("edgeway; hit; detail=stale"))
        }
        CachePhase::Miss if cache.enabled() => (CacheStatus::Miss, s("edgeway; fwd=miss; stored")),
        CachePhase::Expired if cache.enabled() => {
            (CacheStatus::Expired, s("edgeway; fwd=stale; stored"))
        }
        CachePhase::Revalidated | CachePhase::RevalidatedNoCache(_) => (
            CacheStatus::Revalidated,
            s("edgeway; fwd=stale; fwd-status=304"),
        ),
        CachePhase::Bypass => (CacheStatus::Bypass, s("edgeway; fwd=bypass")),
        CachePhase::Disabled(NoCacheReason::CacheLockTimeout)
        | CachePhase::Disabled(NoCacheReason::CacheLockRetryLimit) => (
            CacheStatus::Miss,
            s("edgeway; fwd=miss; detail=lock-timeout"),
        ),
        CachePhase::Disabled(NoCacheReason::NeverEnabled) => {
            (CacheStatus::Bypass, s("edgeway; fwd=bypass"))
        }
        _ => (
            CacheStatus::Uncacheable,
            s("edgeway; fwd=miss; detail=uncacheable"),
        ),
    }
}
