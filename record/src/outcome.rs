//! The allowed values of the record's outcome columns (`auth_result`, `rate_limit`,
//! `breaker_state`, `cache_status`, `error_class`).
//!
//! The columns are strings in the lake so analysts can read them, but they are written and
//! read in several places: the gateway sets them, `lake generate` fakes them, and the named
//! queries in `lake/queries/` filter on them. Each column's values are one enum here, and
//! `as_str` is the only spelling; a test in `lake` checks every literal the queries compare
//! these columns with against [`ALL`](AuthResult::ALL), so the names cannot drift.

use std::fmt;
use std::str::FromStr;

use crate::policy_change::{ReloadCause, ReloadResult};

macro_rules! outcome_enum {
    (
        $(#[$meta:meta])*
        $name:ident, column = $column:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The record column these values go in.
            pub const COLUMN: &'static str = $column;

            /// The value as stored in the lake.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        column: $column,
                        found: s.to_string(),
                        expected: &[$($text),+],
                    }),
                }
            }
        }
    };
}

/// Other record modules declare their enum columns the same way.
pub(crate) use outcome_enum;

/// A string that is not one of a column's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{column}: found `{found}`, expected one of {expected:?}")]
pub struct UnknownValue {
    pub column: &'static str,
    pub found: String,
    pub expected: &'static [&'static str],
}

outcome_enum! {
    /// What authentication decided for a request.
    AuthResult, column = "auth_result" {
        /// The route does not authenticate (no auth rule), so no token was looked at.
        None => "none",
        /// A token was verified and the route's rules allow it.
        Ok => "ok",
        /// The route's auth is optional and no token was sent: let through anonymously.
        Anonymous => "anonymous",
        /// The route requires a token and none was sent.
        Missing => "missing",
        /// The token is not a well-formed JWS (size, base64, JSON, `crit`, header fields).
        Malformed => "malformed",
        /// The token's `exp` (plus leeway) has passed.
        Expired => "expired",
        /// The token's `nbf` or `iat` (minus leeway) is in the future.
        NotYetValid => "not_yet_valid",
        /// The token's lifetime (`exp - iat`) is above the issuer's maximum.
        LifetimeTooLong => "lifetime_too_long",
        /// A claim the issuer requires (`exp` always) is absent or has the wrong type.
        MissingClaim => "missing_claim",
        /// The signature does not verify with the issuer's key.
        BadSignature => "bad_signature",
        /// No key of the issuer matches the token's `kid` (even after one refetch).
        UnknownKid => "unknown_kid",
        /// The token's `iss` is not an issuer the route accepts.
        BadIssuer => "bad_issuer",
        /// None of the token's `aud` values is accepted by the issuer.
        BadAudience => "bad_audience",
        /// The token's `alg` is not in the issuer's allow-list (or is `none`), or does not
        /// fit the key's type.
        AlgNotAllowed => "alg_not_allowed",
        /// The token's `jti` or `sub` is on the revocation list.
        Revoked => "revoked",
        /// The token is valid but lacks a required scope or claim value (403).
        Forbidden => "forbidden",
        /// The revocation list could not be read and the policy fails closed (503).
        Unavailable => "unavailable",
    }
}

outcome_enum! {
    /// What the rate limiter decided.
    RateLimitDecision, column = "rate_limit" {
        /// Within every limit that applied.
        Allowed => "allowed",
        /// Over a limit: answered 429.
        Limited => "limited",
        /// Over a limit in shadow (dry-run) mode: let through, but counted.
        Shadow => "shadow",
        /// Dropped by load shedding (priority) before any limit: answered 503.
        Shed => "shed",
    }
}

outcome_enum! {
    /// The circuit breaker state the request met.
    BreakerState, column = "breaker_state" {
        Closed => "closed",
        /// The breaker rejected the request without touching the upstream.
        Open => "open",
        /// The request was one of the capped probes of a half-open breaker.
        HalfOpen => "half_open",
    }
}

outcome_enum! {
    /// How the response was made cacheable (the `Cache-Control` class the gateway sent), or
    /// what the edge micro-cache did.
    CacheStatus, column = "cache_status" {
        /// Cacheable by shared caches (CDN).
        Public => "public",
        /// Cacheable by the browser only.
        Private => "private",
        /// Not cacheable anywhere.
        NoStore => "no-store",
        /// Served from the edge micro-cache.
        Hit => "hit",
        /// Served stale from the micro-cache while it revalidated or the origin failed.
        Stale => "stale",
        /// Fetched from the upstream and stored in the micro-cache.
        Miss => "miss",
        /// A stale micro-cache entry was revalidated with the origin (304) and served.
        Revalidated => "revalidated",
        /// A micro-cache entry had expired; a fresh response was fetched and stored.
        Expired => "expired",
        /// The route has a micro-cache but this request skipped it (credentials, method).
        Bypass => "bypass",
        /// The route has a micro-cache but the response may not be stored (private,
        /// `no-store`, `Set-Cookie`, status, size).
        Uncacheable => "uncacheable",
    }
}

outcome_enum! {
    /// Why a request did not get a normal upstream response. It is the `error` field of the
    /// JSON error body the client gets, the record's `error_class`, and a metrics label.
    ErrorClass, column = "error_class" {
        /// Pingora or the gateway rejected the request syntax (400).
        BadRequest => "bad_request",
        /// The host is not a valid DNS name or IP literal (400).
        InvalidHost => "invalid_host",
        /// No route matches host, path and method (404).
        NoRoute => "no_route",
        /// The route's shard map has no shard for the request's key (404).
        NoShard => "no_shard",
        /// A route matches host and path but not the method (405, with `Allow`).
        MethodNotAllowed => "method_not_allowed",
        /// The client did not send the request in time (408).
        ClientTimeout => "client_timeout",
        /// The client went away; no response was sent.
        ClientClosed => "client_closed",
        /// Authentication failed (401).
        Unauthorized => "unauthorized",
        /// Authenticated, but not allowed: scopes, claims or IP policy (403).
        Forbidden => "forbidden",
        /// Authentication cannot decide (the revocation list is unreachable and the policy
        /// fails closed) (503).
        AuthUnavailable => "auth_unavailable",
        /// Over a rate limit (429).
        RateLimited => "rate_limited",
        /// Shed under overload (503).
        Overloaded => "overloaded",
        /// The cluster's circuit breaker is open (503).
        BreakerOpen => "breaker_open",
        /// Every endpoint of the cluster failed its health check (503).
        NoHealthyUpstream => "no_healthy_upstream",
        /// The TCP or TLS connect to the upstream timed out (502).
        UpstreamConnectTimeout => "upstream_connect_timeout",
        /// The upstream refused or reset the connection (502).
        UpstreamConnectFailed => "upstream_connect_failed",
        /// The TLS handshake with the upstream failed (502).
        UpstreamTlsFailed => "upstream_tls_failed",
        /// The upstream did not answer in time (504).
        UpstreamTimeout => "upstream_timeout",
        /// The upstream broke the protocol or the connection mid-response (502).
        UpstreamError => "upstream_error",
        /// A phase returned an HTTP status as an error.
        HttpStatus => "http_status",
        /// A bug or an unexpected state in the gateway (500).
        Internal => "internal",
    }
}

impl ErrorClass {
    /// The status the client gets for this class; `0` when nothing can be sent.
    pub const fn status(self) -> u16 {
        use ErrorClass::*;
        match self {
            BadRequest | InvalidHost => 400,
            NoRoute | NoShard => 404,
            MethodNotAllowed => 405,
            ClientTimeout => 408,
            ClientClosed => 0,
            Unauthorized => 401,
            Forbidden => 403,
            RateLimited => 429,
            Overloaded | BreakerOpen | NoHealthyUpstream | AuthUnavailable => 503,
            UpstreamConnectTimeout | UpstreamConnectFailed | UpstreamTlsFailed | UpstreamError => {
                502
            }
            UpstreamTimeout => 504,
            HttpStatus | Internal => 500,
        }
    }

    /// The default human message of the JSON error body.
    pub const fn message(self) -> &'static str {
        use ErrorClass::*;
        match self {
            BadRequest => "malformed request",
            InvalidHost => "the Host is not a valid host name",
            NoRoute => "no route matches this request",
            NoShard => "no shard holds this key",
            MethodNotAllowed => "this route does not allow the method",
            ClientTimeout => "client did not send the request in time",
            ClientClosed => "client closed the connection",
            Unauthorized => "authentication is required",
            Forbidden => "access to this resource is forbidden",
            RateLimited => "rate limit exceeded",
            AuthUnavailable => "authentication is temporarily unavailable",
            Overloaded => "the gateway is overloaded",
            BreakerOpen => "the upstream is failing; try again later",
            NoHealthyUpstream => "no healthy upstream is available",
            UpstreamConnectTimeout | UpstreamConnectFailed | UpstreamTlsFailed | UpstreamError => {
                "the upstream could not be reached"
            }
            UpstreamTimeout => "the upstream did not answer in time",
            HttpStatus | Internal => "internal error",
        }
    }

    /// The upstream failure kind for `gateway_upstream_errors_total{kind}`; `None` when the
    /// upstream is not at fault.
    pub const fn upstream_kind(self) -> Option<&'static str> {
        use ErrorClass::*;
        match self {
            UpstreamConnectTimeout => Some("connect_timeout"),
            UpstreamConnectFailed => Some("connect"),
            UpstreamTlsFailed => Some("tls"),
            UpstreamTimeout => Some("timeout"),
            UpstreamError => Some("protocol"),
            NoHealthyUpstream => Some("no_healthy"),
            _ => None,
        }
    }
}

outcome_enum! {
    /// Which side of a route's canary served the request.
    CanaryArm, column = "canary" {
        /// The route's own cluster (or shard).
        Stable => "stable",
        /// The canary cluster.
        Canary => "canary",
    }
}

/// Every outcome column and its allowed values, for checks over SQL and generated data.
pub fn allowed_values(column: &str) -> Option<Vec<&'static str>> {
    fn strs<T: Copy>(all: &[T], f: fn(T) -> &'static str) -> Option<Vec<&'static str>> {
        Some(all.iter().map(|v| f(*v)).collect())
    }
    match column {
        AuthResult::COLUMN => strs(AuthResult::ALL, AuthResult::as_str),
        RateLimitDecision::COLUMN => strs(RateLimitDecision::ALL, RateLimitDecision::as_str),
        BreakerState::COLUMN => strs(BreakerState::ALL, BreakerState::as_str),
        CacheStatus::COLUMN => strs(CacheStatus::ALL, CacheStatus::as_str),
        ErrorClass::COLUMN => strs(ErrorClass::ALL, ErrorClass::as_str),
        CanaryArm::COLUMN => strs(CanaryArm::ALL, CanaryArm::as_str),
        // The policy_changes table's enum columns.
        ReloadResult::COLUMN => strs(ReloadResult::ALL, ReloadResult::as_str),
        ReloadCause::COLUMN => strs(ReloadCause::ALL, ReloadCause::as_str),
        _ => None,
    }
}

/// The outcome columns [`allowed_values`] knows.
pub const OUTCOME_COLUMNS: &[&str] = &[
    AuthResult::COLUMN,
    RateLimitDecision::COLUMN,
    BreakerState::COLUMN,
    CacheStatus::COLUMN,
    ErrorClass::COLUMN,
    CanaryArm::COLUMN,
    ReloadResult::COLUMN,
    ReloadCause::COLUMN,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_and_is_unique() {
        for col in OUTCOME_COLUMNS {
            let values = allowed_values(col).unwrap();
            let mut sorted = values.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), values.len(), "{col} has a repeated value");
        }
        for v in ErrorClass::ALL {
            assert_eq!(v.as_str().parse::<ErrorClass>(), Ok(*v));
        }
        for v in AuthResult::ALL {
            assert_eq!(v.as_str().parse::<AuthResult>(), Ok(*v));
        }
        let e = "nope".parse::<BreakerState>().unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"breaker_state: found `nope`, expected one of ["closed", "open", "half_open"]"#
        );
    }

    #[test]
    fn statuses_match_the_class() {
        assert_eq!(ErrorClass::RateLimited.status(), 429);
        assert_eq!(ErrorClass::Unauthorized.status(), 401);
        assert_eq!(ErrorClass::BreakerOpen.status(), 503);
        assert_eq!(ErrorClass::UpstreamTimeout.status(), 504);
        assert_eq!(ErrorClass::ClientClosed.status(), 0);
        assert!(ErrorClass::ALL
            .iter()
            .filter(|c| c.upstream_kind().is_some())
            .all(|c| c.status() >= 500));
    }
}
