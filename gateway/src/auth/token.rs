//! Parsing and verifying one compact JWS token against one issuer: pure (time comes in as an
//! argument), so every rejection can be unit-tested and fuzzed.
//!
//! Order of checks: size (before any decoding) → structure, base64 and JSON → header (`alg`
//! allowed, no `crit`) → key (by `kid`, type fits `alg`) → signature → `iss`, `aud` → times →
//! required claims. Nothing here logs; nothing returned holds the token.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::identity::Identity;
use super::jwks::{KeySet, Lookup};
use super::spec::IssuerSpec;
use edgeway_record::outcome::AuthResult;

/// Why a token was refused; each maps to one `auth_result` and one `error_description`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Malformed(&'static str),
    AlgNotAllowed,
    UnknownKid,
    BadSignature,
    BadIssuer,
    BadAudience,
    Expired,
    NotYetValid,
    LifetimeTooLong,
    MissingClaim,
}

impl Failure {
    pub fn result(self) -> AuthResult {
        match self {
            Failure::Malformed(_) => AuthResult::Malformed,
            Failure::AlgNotAllowed => AuthResult::AlgNotAllowed,
            Failure::UnknownKid => AuthResult::UnknownKid,
            Failure::BadSignature => AuthResult::BadSignature,
            Failure::BadIssuer => AuthResult::BadIssuer,
            Failure::BadAudience => AuthResult::BadAudience,
            Failure::Expired => AuthResult::Expired,
            Failure::NotYetValid => AuthResult::NotYetValid,
            Failure::LifetimeTooLong => AuthResult::LifetimeTooLong,
            Failure::MissingClaim => AuthResult::MissingClaim,
        }
    }

    /// The RFC 6750 `error_description`: says what is wrong, never echoes the token.
    pub fn description(self) -> &'static str {
        match self {
            Failure::Malformed(what) => what,
            Failure::AlgNotAllowed => "the token's algorithm is not accepted",
            Failure::UnknownKid => "the token's signing key is unknown",
            Failure::BadSignature => "the token's signature is invalid",
            Failure::BadIssuer => "the token's issuer is not accepted",
            Failure::BadAudience => "the token's audience is not accepted",
            Failure::Expired => "the token has expired",
            Failure::NotYetValid => "the token is not valid yet",
            Failure::LifetimeTooLong => "the token's lifetime is too long",
            Failure::MissingClaim => "the token lacks a required claim",
        }
    }
}

/// The JOSE header fields the gateway looks at. The key-location headers (`jku`, `x5u`,
/// `x5c`, `jwk`) are read only to be ignored: keys come from the issuer's configuration.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// A token split and decoded, not yet verified.
pub struct Parsed<'t> {
    alg: String,
    kid: Option<String>,
    /// `header.payload`, the signed bytes.
    signing_input: &'t str,
    signature: &'t str,
    pub claims: Map<String, Value>,
}

impl Parsed<'_> {
    /// The unverified `iss`, to pick the issuer whose keys verify the token.
    pub fn iss(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }
}

/// Split and decode a compact JWS, refusing anything oversized or malformed before any
/// signature work.
pub fn parse(token: &str, max_bytes: usize) -> Result<Parsed<'_>, Failure> {
    if token.len() > max_bytes {
        return Err(Failure::Malformed("the token is too large"));
    }
    let mut parts = token.splitn(4, '.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::Malformed(
            "the token is not a compact JWS (three parts)",
        ));
    };
    let signing_input = &token[..h.len() + 1 + p.len()];
    let header_bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| Failure::Malformed("the token's header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|_| Failure::Malformed("the token's header is not a JSON object with `alg`"))?;
    if header.crit.is_some() {
        return Err(Failure::Malformed(
            "the token has critical header extensions",
        ));
    }
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| Failure::Malformed("the token's payload is not base64url"))?;
    let claims: Map<String, Value> = serde_json::from_slice(&payload)
        .map_err(|_| Failure::Malformed("the token's payload is not a JSON object"))?;
    if sig.is_empty() || sig.len() > 1024 {
        return Err(Failure::Malformed(
            "the token's signature is missing or too long",
        ));
    }
    Ok(Parsed {
        alg: header.alg,
        kid: header.kid,
        signing_input,
        signature: sig,
        claims,
    })
}

/// The JOSE algorithm name, if the gateway supports it (`none` never is).
pub fn algorithm(name: &str) -> Option<Algorithm> {
    use Algorithm::*;
    Some(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        _ => return None,
    })
}

/// The signature step: `Ok` when the key set is what decides (a key is found, or the `kid`
/// is unknown), so the caller can refetch on `UnknownKid` and retry.
pub fn verify_signature(
    parsed: &Parsed<'_>,
    issuer: &IssuerSpec,
    keys: &KeySet,
    secret: Option<&super::jwks::Key>,
) -> Result<(), Failure> {
    let alg = algorithm(&parsed.alg)
        .filter(|a| issuer.algorithms.contains(a))
        .ok_or(Failure::AlgNotAllowed)?;
    let key = match secret {
        Some(k) if k.kind.fits(alg) => k,
        _ => match keys.find(parsed.kid.as_deref(), alg) {
            Lookup::Found(k) => k,
            Lookup::UnknownKid | Lookup::Ambiguous => return Err(Failure::UnknownKid),
        },
    };
    if !key.kind.fits(alg) || key.alg.is_some_and(|pinned| pinned != alg) {
        return Err(Failure::AlgNotAllowed);
    }
    match jsonwebtoken::crypto::verify(
        parsed.signature,
        parsed.signing_input.as_bytes(),
        &key.key,
        alg,
    ) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::BadSignature),
        // Undecodable signature base64, or a key ring refuses (wrong size).
        Err(_) => Err(Failure::BadSignature),
    }
}

/// A numeric date claim in seconds; absent → `Ok(None)`, wrong type → malformed.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<f64>, Failure> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite())
            .map(Some)
            .ok_or(Failure::MissingClaim),
    }
}

/// Check `iss`, `aud`, the times and the required claims of a verified token, at `now_ms`.
pub fn check_claims(
    claims: &Map<String, Value>,
    issuer: &IssuerSpec,
    now_ms: i64,
) -> Result<(), Failure> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer.iss.as_str()) {
        return Err(Failure::BadIssuer);
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => issuer.audiences.iter().any(|x| x == a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| issuer.audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(Failure::BadAudience);
    }
    let now = now_ms as f64 / 1000.0;
    let leeway = issuer.leeway.as_secs_f64();
    let exp = numeric_date(claims, "exp")?.ok_or(Failure::MissingClaim)?;
    if now > exp + leeway {
        return Err(Failure::Expired);
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if now + leeway < nbf {
            return Err(Failure::NotYetValid);
        }
    }
    let iat = numeric_date(claims, "iat")?;
    if let Some(iat) = iat {
        if now + leeway < iat {
            return Err(Failure::NotYetValid);
        }
    }
    if let Some(max) = issuer.max_lifetime {
        let lifetime = exp - iat.unwrap_or(now);
        if lifetime > max.as_secs_f64() + leeway {
            return Err(Failure::LifetimeTooLong);
        }
    }
    if issuer
        .required_claims
        .iter()
        .any(|c| claims.get(c).is_none_or(Value::is_null))
    {
        return Err(Failure::MissingClaim);
    }
    Ok(())
}

/// `exp` in milliseconds, for bounding how long a verified token may stay cached.
pub fn exp_ms(claims: &Map<String, Value>) -> i64 {
    claims
        .get("exp")
        .and_then(Value::as_f64)
        .map_or(0, |s| (s * 1000.0) as i64)
}

/// The identity a verified token carries.
pub fn identity(issuer: &Arc<str>, claims: Map<String, Value>) -> Identity {
    Identity {
        issuer: Arc::clone(issuer),
        subject: claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_string),
        claims,
    }
}

/// The whole of verification for one issuer and key set, for tests and the fuzz target.
pub fn verify(
    token: &str,
    issuer: &IssuerSpec,
    keys: &KeySet,
    secret: Option<&super::jwks::Key>,
    now_ms: i64,
) -> Result<Identity, Failure> {
    let parsed = parse(token, issuer.max_token_bytes)?;
    verify_signature(&parsed, issuer, keys, secret)?;
    check_claims(&parsed.claims, issuer, now_ms)?;
    Ok(identity(&issuer.name, parsed.claims))
}
