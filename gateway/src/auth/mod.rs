//! Authentication: JWTs verified at the edge against the issuers in the policy files.
//!
//! The five parts of the capability:
//! 1. file types: [`file`] (`[issuer.<name>]`, `[auth.<name>]`, `[revocation]`; routes refer to
//!    a rule with `auth = "<name>"`);
//! 2. pure validation: [`validate`];
//! 3. spec: [`spec::AuthPolicy`] in the snapshot;
//! 4. runtime: [`AuthRuntime`] — one [`Issuer`] per issuer (its key set, JWKS refresh loop and
//!    unknown-`kid` refetch limiter, kept across reloads while its spec is unchanged), the
//!    [`revoke::Revocation`] list (Redis copy kept likewise) and the verified-token
//!    [`cache::TokenCache`] (kept always; entries are tied to the issuer build that made them);
//! 5. phase steps: [`authenticate`] in `request_filter` (after routing), and
//!    [`rewrite_upstream_headers`] in `upstream_request_filter` (every route).

pub mod cache;
pub mod file;
pub mod identity;
pub mod jwks;
pub mod metrics;
pub mod revoke;
pub mod spec;
pub mod token;
pub mod validate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderName;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use prometheus::IntCounter;
use serde_json::Value;

pub use identity::Identity;

use crate::reject::Reject;
use crate::state::{keep_or_build, BuildError, Part};
use cache::{Entry, TokenCache};
use edgeway_record::clock::Clock;
use edgeway_record::outcome::{AuthResult, ErrorClass};
use jwks::{HttpsClient, Key, KeySet};
use metrics::AuthMetrics;
use revoke::{Check, Revocation};
use spec::{AuthMode, AuthPolicy, IssuerSpec, JwksSource, RuleSpec, ScopesMatch, TokenSource};
use token::Failure;

/// Verified tokens kept, across all issuers (about 0.5–1 KiB each).
pub const TOKEN_CACHE_ENTRIES: usize = 65_536;

static ISSUER_GENERATION: AtomicU64 = AtomicU64::new(1);

/// One issuer at run time: its spec and its current keys.
pub struct Issuer {
    pub spec: IssuerSpec,
    /// Unique per build; ties cache entries to the keys and rules that verified them.
    pub id: u64,
    keys: ArcSwap<KeySet>,
    secret: Option<Key>,
    http: Option<HttpsClient>,
    /// When the key set was last loaded (clock ms); 0 = never.
    loaded_ms: AtomicI64,
    last_refetch_ms: AtomicI64,
    refetch: tokio::sync::Mutex<()>,
    loop_started: AtomicBool,
    clock: Arc<dyn Clock>,
    metrics: AuthMetrics,
    cache: Arc<TokenCache>,
}

impl Part for Issuer {
    type Spec = IssuerSpec;
    fn spec(&self) -> &IssuerSpec {
        &self.spec
    }
}

/// How long the first JWKS fetch may hold up a (re)load; after that the background loop
/// keeps trying.
const FIRST_FETCH_TIMEOUT: Duration = Duration::from_secs(3);

impl Issuer {
    async fn build(
        spec: &IssuerSpec,
        env: &Env<'_>,
        cache: &Arc<TokenCache>,
    ) -> Result<Issuer, BuildError> {
        let field = format!("issuer.{}", spec.name);
        let err = |message: String| BuildError {
            field: field.clone(),
            message,
        };
        let secret = spec.secret.as_ref().map(|s| KeySet::secret(&s.0));
        let (keys, http) = match &spec.jwks {
            None => (KeySet::default(), None),
            Some(JwksSource::File { bytes, .. }) => (KeySet::parse(bytes).map_err(&err)?.0, None),
            Some(JwksSource::Url(u)) => (
                KeySet::default(),
                Some(jwks::https_client(u.ca_pem.as_deref()).map_err(&err)?),
            ),
        };
        let now = env.clock.now_ms();
        let issuer = Issuer {
            spec: spec.clone(),
            id: ISSUER_GENERATION.fetch_add(1, Ordering::Relaxed),
            loaded_ms: AtomicI64::new(if http.is_some() { 0 } else { now }),
            keys: ArcSwap::from_pointee(keys),
            secret,
            http,
            last_refetch_ms: AtomicI64::new(i64::MIN / 2),
            refetch: tokio::sync::Mutex::new(()),
            loop_started: AtomicBool::new(false),
            clock: Arc::clone(env.clock),
            metrics: env.metrics.clone(),
            cache: Arc::clone(cache),
        };
        if issuer.http.is_some()
            && tokio::time::timeout(FIRST_FETCH_TIMEOUT, issuer.refresh("refresh"))
                .await
                .is_err()
        {
            tracing::warn!(target: "auth", issuer = %spec.name,
                    "first JWKS fetch still running after {FIRST_FETCH_TIMEOUT:?}; retrying in the background");
        }
        issuer.set_age();
        Ok(issuer)
    }

    /// Fetch the JWKS URL now. On success the key set is replaced (and cached tokens of this
    /// issuer forgotten when the keys changed); on failure the last good set keeps serving.
    /// Returns the `max-age` the server gave, on success.
    async fn refresh(&self, reason: &str) -> Result<Option<Duration>, ()> {
        let (Some(http), Some(JwksSource::Url(u))) = (&self.http, &self.spec.jwks) else {
            return Err(());
        };
        let name = &*self.spec.name;
        match jwks::fetch(http, &u.url).await {
            Ok(fetched) => {
                self.metrics
                    .jwks_fetches
                    .with_label_values(&[name, reason, "ok"])
                    .inc();
                let changed = self.keys.load().kids() != fetched.keys.kids();
                self.keys.store(Arc::new(fetched.keys));
                self.loaded_ms.store(self.clock.now_ms(), Ordering::Release);
                if changed {
                    self.cache.forget_issuer(self.id);
                    tracing::info!(target: "auth", issuer = name, reason,
                        skipped = fetched.skipped, "JWKS loaded");
                }
                self.set_age();
                Ok(fetched.max_age)
            }
            Err(e) => {
                self.metrics
                    .jwks_fetches
                    .with_label_values(&[name, reason, "error"])
                    .inc();
                tracing::warn!(target: "auth", issuer = name, reason, error = %e,
                    "JWKS fetch failed; the last good key set keeps serving");
                self.set_age();
                Err(())
            }
        }
    }

    fn set_age(&self) {
        let loaded = self.loaded_ms.load(Ordering::Acquire);
        let age = if loaded == 0 {
            -1.0
        } else {
            (self.clock.now_ms() - loaded) as f64 / 1000.0
        };
        self.metrics
            .jwks_age
            .with_label_values(&[&self.spec.name])
            .set(age);
    }

    /// A token named a `kid` we do not have: refetch once, unless this issuer refetched less
    /// than `jwks_refetch_interval` ago. Concurrent callers share one fetch. Returns whether
    /// the keys may have changed (worth verifying again).
    async fn refetch_for_unknown_kid(&self) -> bool {
        let Some(JwksSource::Url(u)) = &self.spec.jwks else {
            return false;
        };
        let seen = self.last_refetch_ms.load(Ordering::Acquire);
        let _one_at_a_time = self.refetch.lock().await;
        if self.last_refetch_ms.load(Ordering::Acquire) != seen {
            // Another request refetched while this one waited.
            return true;
        }
        let now = self.clock.now_ms();
        if now - seen < u.refetch_interval.as_millis() as i64 {
            return false;
        }
        self.last_refetch_ms.store(now, Ordering::Release);
        self.refresh("unknown_kid").await.is_ok()
    }

    /// Start the JWKS refresh loop (once), holding the issuer weakly.
    fn ensure_refresh_loop(self: &Arc<Self>) {
        let Some(JwksSource::Url(u)) = &self.spec.jwks else {
            return;
        };
        if self.loop_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let (refresh, lo, hi) = (u.refresh, u.refresh_min, u.refresh_max);
        let weak: Weak<Issuer> = Arc::downgrade(self);
        let loaded = self.loaded_ms.load(Ordering::Acquire) != 0;
        tokio::spawn(async move {
            // After a failed first fetch, retry soon, backing off up to the minimum interval.
            let mut wait = if loaded {
                refresh
            } else {
                Duration::from_secs(1)
            };
            let mut failures = 0u32;
            loop {
                let deadline = tokio::time::Instant::now() + wait;
                // Wake every second to keep the age gauge current.
                while tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_secs(1).min(wait)).await;
                    let Some(this) = weak.upgrade() else { return };
                    this.set_age();
                }
                let Some(this) = weak.upgrade() else { return };
                wait = match this.refresh("refresh").await {
                    Ok(max_age) => {
                        failures = 0;
                        max_age.map_or(refresh, |a| a.clamp(lo, hi))
                    }
                    Err(()) => {
                        failures = failures.saturating_add(1);
                        Duration::from_secs(1u64 << failures.min(6)).min(lo)
                    }
                };
            }
        });
    }
}

/// What building the auth runtime uses.
pub struct Env<'a> {
    pub clock: &'a Arc<dyn Clock>,
    pub metrics: &'a AuthMetrics,
}

/// The auth part of a [`crate::state::Runtime`].
pub struct AuthRuntime {
    pub issuers: HashMap<Arc<str>, Arc<Issuer>>,
    pub rules: HashMap<Arc<str>, Arc<RuleSpec>>,
    pub revocation: Option<Arc<Revocation>>,
    pub cache: Arc<TokenCache>,
    /// Headers that rules set from claims: stripped from every client request.
    pub identity_headers: Arc<[HeaderName]>,
    metrics: AuthMetrics,
}

impl AuthRuntime {
    /// Build from the policy, keeping each issuer and the revocation list whose spec did not
    /// change (with their keys, refresh loops and Redis copy), and the token cache always.
    pub async fn build(
        policy: &AuthPolicy,
        previous: Option<&AuthRuntime>,
        env: &Env<'_>,
    ) -> Result<AuthRuntime, BuildError> {
        let cache = previous.map_or_else(
            || Arc::new(TokenCache::new(TOKEN_CACHE_ENTRIES)),
            |p| Arc::clone(&p.cache),
        );
        let mut issuers = HashMap::with_capacity(policy.issuers.len());
        for spec in &policy.issuers {
            let prev = previous.and_then(|p| p.issuers.get(&spec.name));
            let issuer = keep_or_build(prev, spec, || Issuer::build(spec, env, &cache)).await?;
            issuers.insert(Arc::clone(&spec.name), issuer);
        }
        let revocation = if policy.revocation.is_empty() {
            None
        } else {
            let prev = previous.and_then(|p| p.revocation.as_ref());
            Some(
                keep_or_build(prev, &policy.revocation, || {
                    Revocation::build(
                        &policy.revocation,
                        Arc::clone(env.clock),
                        env.metrics.clone(),
                    )
                })
                .await?,
            )
        };
        Ok(AuthRuntime {
            issuers,
            rules: policy
                .rules
                .iter()
                .map(|r| (Arc::clone(&r.name), Arc::clone(r)))
                .collect(),
            revocation,
            cache,
            identity_headers: policy.identity_headers.clone().into(),
            metrics: env.metrics.clone(),
        })
    }

    /// The auth plan of one route: its rule and the runtime objects the rule names.
    pub fn plan(&self, rule: &str, route: &str) -> Result<Arc<RouteAuth>, BuildError> {
        let missing = |what: String| BuildError {
            field: format!("route.{route}"),
            message: what,
        };
        let rule = self
            .rules
            .get(rule)
            .cloned()
            .ok_or_else(|| missing(format!("auth rule `{rule}` was not built")))?;
        let mut issuers = Vec::with_capacity(rule.issuers.len());
        let mut sources: Vec<TokenSource> = Vec::new();
        for name in &rule.issuers {
            let issuer = self
                .issuers
                .get(name)
                .cloned()
                .ok_or_else(|| missing(format!("issuer `{name}` was not built")))?;
            if !sources.contains(&issuer.spec.token) {
                sources.push(issuer.spec.token.clone());
            }
            issuers.push(issuer);
        }
        let max_token_bytes = issuers
            .iter()
            .map(|i| i.spec.max_token_bytes)
            .max()
            .unwrap_or(0);
        Ok(Arc::new(RouteAuth {
            decisions: self.metrics.decisions(route),
            rule,
            issuers,
            sources,
            max_token_bytes,
            revocation: self.revocation.clone(),
            cache: Arc::clone(&self.cache),
            metrics: self.metrics.clone(),
        }))
    }

    /// Start the JWKS and revocation refresh loops (idempotent).
    pub fn start_background(&self) {
        self.issuers.values().for_each(Issuer::ensure_refresh_loop);
        if let Some(r) = &self.revocation {
            r.ensure_refresh_loop();
        }
    }
}

/// Everything one route's auth step needs, resolved once per policy load.
pub struct RouteAuth {
    pub rule: Arc<RuleSpec>,
    issuers: Vec<Arc<Issuer>>,
    /// Distinct token sources of the rule's issuers, in order.
    sources: Vec<TokenSource>,
    max_token_bytes: usize,
    revocation: Option<Arc<Revocation>>,
    cache: Arc<TokenCache>,
    decisions: Vec<IntCounter>,
    metrics: AuthMetrics,
}

impl RouteAuth {
    /// For the offline tools (`gateway explain`, `gateway test`): make `claims` the verified
    /// identity of a token from `issuer` (the rule's first issuer when `None`), as if its
    /// signature had been checked, and return the token and where to present it. It places an
    /// entry in the verified-token cache, so the step itself runs unchanged: revocation, the
    /// rule's scopes and claims, the forwarded claims. The entry lives until the token's
    /// `exp` (or an hour from `now_ms` without one).
    pub fn assume_verified(
        &self,
        issuer: Option<&str>,
        claims: serde_json::Map<String, Value>,
        now_ms: i64,
    ) -> Result<(TokenSource, String), String> {
        let issuer = self.issuer(issuer)?;
        let until_ms = match claims.get("exp") {
            Some(_) => token::exp_ms(&claims) + issuer.spec.leeway.as_millis() as i64,
            None => now_ms + 3_600_000,
        };
        let digest = cache::hash(&format!(
            "{}\n{}",
            issuer.spec.name,
            Value::Object(claims.clone())
        ));
        let token: String = std::iter::once("offline.".to_string())
            .chain(digest.iter().take(12).map(|b| format!("{b:02x}")))
            .collect();
        let identity = token::identity(&issuer.spec.name, claims);
        self.cache.insert(
            cache::hash(&token),
            Entry {
                issuer_id: issuer.id,
                until_ms,
                identity: Arc::new(identity),
            },
        );
        Ok((issuer.spec.token.clone(), token))
    }

    /// Where a token of `issuer` (the rule's first issuer when `None`) is presented.
    pub fn token_source(&self, issuer: Option<&str>) -> Result<TokenSource, String> {
        Ok(self.issuer(issuer)?.spec.token.clone())
    }

    /// One of the rule's issuers by name, or its first.
    fn issuer(&self, issuer: Option<&str>) -> Result<&Arc<Issuer>, String> {
        match issuer {
            Some(name) => self
                .issuers
                .iter()
                .find(|i| &*i.spec.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> = self.issuers.iter().map(|i| &*i.spec.name).collect();
                    format!(
                        "issuer `{name}` is not accepted by auth rule `{}` (it accepts {known:?})",
                        self.rule.name
                    )
                }),
            None => self
                .issuers
                .first()
                .ok_or_else(|| format!("auth rule `{}` has no issuer", self.rule.name)),
        }
    }
}

/// What the auth step decided, for the record and the later steps.
#[derive(Debug, Default)]
pub struct Outcome {
    pub result: Option<AuthResult>,
    pub identity: Option<Arc<Identity>>,
    /// The policy name of the issuer that verified (or was chosen for) the token.
    pub issuer: Option<Arc<str>>,
}

/// `request_filter` step: find the token, verify it (or take it from the cache), check
/// revocation and the rule. `Err` carries the rejection to send (401, 403 or 503).
pub async fn authenticate(
    plan: &RouteAuth,
    session: &Session,
    clock: &dyn Clock,
    out: &mut Outcome,
) -> Result<(), Reject> {
    let result = decide(plan, session, clock, out).await;
    let r = match &result {
        Ok(()) => out.result.unwrap_or(AuthResult::Ok),
        Err((r, _)) => *r,
    };
    out.result = Some(r);
    if let Some(c) = plan.decisions.get(r as usize) {
        c.inc();
    }
    result.map_err(|(_, reject)| reject)
}

async fn decide(
    plan: &RouteAuth,
    session: &Session,
    clock: &dyn Clock,
    out: &mut Outcome,
) -> Result<(), (AuthResult, Reject)> {
    let rule = &plan.rule;
    let req = session.req_header();
    let token = match find_token(req, &plan.sources) {
        Ok(Some(t)) => t,
        Ok(None) if rule.mode == AuthMode::Optional => {
            out.result = Some(AuthResult::Anonymous);
            return Ok(());
        }
        Ok(None) => {
            return Err((AuthResult::Missing, challenge(rule, None, "")));
        }
        Err(why) => {
            return Err((
                AuthResult::Malformed,
                challenge(rule, Some("invalid_request"), why),
            ));
        }
    };
    let now = clock.now_ms();
    let (issuer, identity) = match verified(plan, token, now).await {
        Ok(v) => v,
        Err((failure, issuer)) => {
            out.issuer = issuer;
            return Err((
                failure.result(),
                challenge(rule, Some("invalid_token"), failure.description()),
            ));
        }
    };
    out.issuer = Some(issuer);
    out.identity = Some(Arc::clone(&identity));
    if let Some(rev) = &plan.revocation {
        match rev.check(&identity) {
            Check::Pass => {}
            Check::Revoked => {
                return Err((
                    AuthResult::Revoked,
                    challenge(rule, Some("invalid_token"), "the token has been revoked"),
                ));
            }
            Check::Unavailable => {
                return Err((
                    AuthResult::Unavailable,
                    Reject::new(ErrorClass::AuthUnavailable).header(http::header::RETRY_AFTER, "5"),
                ));
            }
        }
    }
    if let Err(why) = allowed(rule, &identity) {
        let r = Reject::new(ErrorClass::Forbidden).message(why).header(
            http::header::WWW_AUTHENTICATE,
            format!(
                "Bearer realm=\"{}\", error=\"insufficient_scope\", error_description=\"{why}\"{}",
                rule.realm,
                scope_param(rule)
            ),
        );
        return Err((AuthResult::Forbidden, r));
    }
    out.result = Some(AuthResult::Ok);
    Ok(())
}

/// A verified identity for `token`, from the cache or by verifying it with the issuer its
/// `iss` names (among the rule's issuers). On failure, the chosen issuer's name (if any).
async fn verified(
    plan: &RouteAuth,
    token: &str,
    now_ms: i64,
) -> Result<(Arc<str>, Arc<Identity>), (Failure, Option<Arc<str>>)> {
    if token.len() > plan.max_token_bytes {
        return Err((Failure::Malformed("the token is too large"), None));
    }
    let key = cache::hash(token);
    if let Some(hit) = plan.cache.get(&key, now_ms) {
        if let Some(issuer) = plan.issuers.iter().find(|i| i.id == hit.issuer_id) {
            plan.metrics.cache_hits.inc();
            return Ok((Arc::clone(&issuer.spec.name), hit.identity));
        }
    }
    plan.metrics.cache_misses.inc();
    let parsed = token::parse(token, plan.max_token_bytes).map_err(|f| (f, None))?;
    let issuer = match parsed.iss() {
        Some(iss) => plan.issuers.iter().find(|i| i.spec.iss == iss),
        None => None,
    };
    // A token without `iss` (or with an unknown one) is refused as such, unless the rule has
    // one issuer: then its own check names the problem precisely.
    let issuer = match (issuer, plan.issuers.as_slice()) {
        (Some(i), _) => i,
        (None, [only]) => only,
        (None, _) => return Err((Failure::BadIssuer, None)),
    };
    let name = || Some(Arc::clone(&issuer.spec.name));
    if token.len() > issuer.spec.max_token_bytes {
        return Err((Failure::Malformed("the token is too large"), name()));
    }
    let keys = issuer.keys.load_full();
    let mut sig = token::verify_signature(&parsed, &issuer.spec, &keys, issuer.secret.as_ref());
    if sig == Err(Failure::UnknownKid) && issuer.refetch_for_unknown_kid().await {
        let keys = issuer.keys.load_full();
        sig = token::verify_signature(&parsed, &issuer.spec, &keys, issuer.secret.as_ref());
    }
    sig.map_err(|f| (f, name()))?;
    token::check_claims(&parsed.claims, &issuer.spec, now_ms).map_err(|f| (f, name()))?;
    let until_ms = token::exp_ms(&parsed.claims) + issuer.spec.leeway.as_millis() as i64;
    let identity = Arc::new(token::identity(&issuer.spec.name, parsed.claims));
    if issuer.spec.cache_tokens {
        plan.cache.insert(
            key,
            Entry {
                issuer_id: issuer.id,
                until_ms,
                identity: Arc::clone(&identity),
            },
        );
    }
    Ok((Arc::clone(&issuer.spec.name), identity))
}

/// The token from the first of `sources` that has one. `Err` for a credential that is
/// present but unusable (two Authorization headers, an empty bearer).
fn find_token<'r>(
    req: &'r RequestHeader,
    sources: &[TokenSource],
) -> Result<Option<&'r str>, &'static str> {
    for source in sources {
        let found = match source {
            TokenSource::Bearer => bearer(req, &http::header::AUTHORIZATION)?,
            TokenSource::Header(h) => bearer(req, h)?,
            TokenSource::Cookie(name) => cookie(req, name),
            TokenSource::Query(name) => query(req, name),
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// A header holding `Bearer <token>` (or, for a named header, the bare token).
fn bearer<'r>(req: &'r RequestHeader, name: &HeaderName) -> Result<Option<&'r str>, &'static str> {
    let mut values = req.headers.get_all(name).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one credential header");
    }
    let v = v
        .to_str()
        .map_err(|_| "the credential header is not ASCII")?
        .trim();
    let token = match v.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        // Another scheme (Basic, ...) in Authorization: no bearer token here.
        Some(_) if name == http::header::AUTHORIZATION => return Ok(None),
        None if name == http::header::AUTHORIZATION => {
            if v.eq_ignore_ascii_case("bearer") {
                return Err("empty bearer token");
            }
            return Ok(None);
        }
        _ => v,
    };
    if token.is_empty() {
        return Err("empty bearer token");
    }
    Ok(Some(token))
}

fn cookie<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r str> {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

fn query<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r str> {
    req.uri
        .query()?
        .split(['&', ';'])
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A 401 with the RFC 6750 challenge. `error` is omitted when no credential was sent.
fn challenge(rule: &RuleSpec, error: Option<&str>, description: &'static str) -> Reject {
    let value = match error {
        None => format!("Bearer realm=\"{}\"", rule.realm),
        Some(e) => format!(
            "Bearer realm=\"{}\", error=\"{e}\", error_description=\"{description}\"",
            rule.realm
        ),
    };
    let mut r = Reject::new(ErrorClass::Unauthorized).header(http::header::WWW_AUTHENTICATE, value);
    if !description.is_empty() {
        r = r.message(description);
    }
    r
}

fn scope_param(rule: &RuleSpec) -> String {
    if rule.scopes.is_empty() {
        String::new()
    } else {
        format!(", scope=\"{}\"", rule.scopes.join(" "))
    }
}

/// Whether the identity meets the rule's scopes and claim values; `Err` says what is missing
/// (names only, never values).
pub fn allowed(rule: &RuleSpec, id: &Identity) -> Result<(), &'static str> {
    if !rule.scopes.is_empty() {
        let has = |s: &str| token_scopes(id).any(|t| t == s);
        let ok = match rule.scopes_match {
            ScopesMatch::All => rule.scopes.iter().all(|s| has(s)),
            ScopesMatch::Any => rule.scopes.iter().any(|s| has(s)),
        };
        if !ok {
            return Err("the token lacks a required scope");
        }
    }
    for (claim, accepted) in &rule.claims {
        let ok = match id.claim(claim) {
            Some(Value::Array(items)) => items.iter().any(|v| accepted.contains(v)),
            Some(v) => accepted.contains(v),
            None => false,
        };
        if !ok {
            return Err("the token lacks a required claim value");
        }
    }
    Ok(())
}

/// The token's scopes: `scope` (space-separated) and `scp` (array or string).
fn token_scopes(id: &Identity) -> impl Iterator<Item = &str> {
    let scope = id
        .claims
        .get("scope")
        .and_then(Value::as_str)
        .into_iter()
        .flat_map(str::split_whitespace);
    let scp: Box<dyn Iterator<Item = &str>> = match id.claims.get("scp") {
        Some(Value::Array(a)) => Box::new(a.iter().filter_map(Value::as_str)),
        Some(Value::String(s)) => Box::new(s.split_whitespace()),
        _ => Box::new(std::iter::empty()),
    };
    scope.chain(scp)
}

/// `upstream_request_filter` step, on every route: remove every identity header a client
/// could spoof, drop `Authorization` unless the route's rule forwards it, and set the
/// claim headers of the verified identity.
pub fn rewrite_upstream_headers(
    auth: &AuthRuntime,
    route: Option<&RouteAuth>,
    identity: Option<&Identity>,
    upstream: &mut RequestHeader,
) -> pingora::Result<()> {
    for h in auth.identity_headers.iter() {
        upstream.remove_header(h);
    }
    let Some(route) = route else { return Ok(()) };
    if !route.rule.forward_authorization {
        upstream.remove_header(&http::header::AUTHORIZATION);
    }
    if let Some(id) = identity {
        for (claim, header) in &route.rule.forward_claims {
            if let Some(v) = id.claim_text(claim) {
                // A claim that is not a valid header value is left out, not an error.
                if let Ok(v) = http::HeaderValue::from_str(&v) {
                    upstream.insert_header(header.clone(), v)?;
                }
            }
        }
    }
    Ok(())
}
