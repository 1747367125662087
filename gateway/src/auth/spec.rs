//! The validated auth policy: typed, immutable, held by the [`crate::policy::Snapshot`].

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;
use serde_json::Value;

pub use super::file::{AuthMode, OnRedisError, ScopesMatch};

/// Every issuer, rule and the revocation list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthPolicy {
    pub issuers: Vec<Arc<IssuerSpec>>,
    pub rules: Vec<Arc<RuleSpec>>,
    pub revocation: RevocationSpec,
    /// Every header some rule sets from a claim: removed from every client request.
    pub identity_headers: Vec<HeaderName>,
}

/// One `[issuer.<name>]`.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerSpec {
    pub name: Arc<str>,
    pub iss: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub jwks: Option<JwksSource>,
    pub secret: Option<Secret>,
    pub leeway: Duration,
    pub max_lifetime: Option<Duration>,
    /// Besides `exp`, which is always required.
    pub required_claims: Vec<String>,
    pub token: TokenSource,
    pub max_token_bytes: usize,
    pub cache_tokens: bool,
}

/// Where an issuer's public keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum JwksSource {
    /// A JWKS file's bytes, read with the policy (a changed file rebuilds the issuer).
    File {
        path: String,
        bytes: Vec<u8>,
    },
    Url(JwksUrl),
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwksUrl {
    pub url: http::Uri,
    /// Extra CA certificates (PEM), instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub refresh: Duration,
    pub refresh_min: Duration,
    pub refresh_max: Duration,
    pub refetch_interval: Duration,
}

/// An HMAC secret: compared, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Where a request carries its token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Bearer,
    Header(HeaderName),
    Cookie(String),
    Query(String),
}

/// One `[auth.<name>]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub name: Arc<str>,
    pub mode: AuthMode,
    pub issuers: Vec<Arc<str>>,
    pub scopes: Vec<String>,
    pub scopes_match: ScopesMatch,
    /// (claim name, accepted values).
    pub claims: Vec<(String, Vec<Value>)>,
    /// (claim name, upstream header).
    pub forward_claims: Vec<(String, HeaderName)>,
    pub forward_authorization: bool,
    pub realm: String,
}

/// `[revocation]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RevocationSpec {
    pub jti: BTreeSet<String>,
    pub sub: BTreeSet<String>,
    pub redis: Option<RedisRevocation>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RedisRevocation {
    pub url: String,
    pub key: String,
    pub refresh: Duration,
    pub on_error: OnRedisError,
    pub max_stale: Duration,
}

/// `jti` and `sub` claims that may never pass.
impl RevocationSpec {
    pub fn is_empty(&self) -> bool {
        self.jti.is_empty() && self.sub.is_empty() && self.redis.is_none()
    }
}
