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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwks::Key;
    use crate::auth::spec::{Secret, TokenSource};
    use jsonwebtoken::{EncodingKey, Header as JwtHeader};
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::json;
    use std::time::Duration;

    const NOW_MS: i64 = 1_700_000_000_000;
    const NOW: i64 = NOW_MS / 1000;
    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    struct Keys {
        ed: (EncodingKey, String),
        ec: (EncodingKey, String, String),
        set: KeySet,
    }

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    fn keys() -> Keys {
        let rng = SystemRandom::new();
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let ed_pub = Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
        let ec = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec_pub =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, ec.as_ref(), &rng).unwrap();
        let point = ec_pub.public_key().as_ref();
        let (x, y) = (b64(&point[1..33]), b64(&point[33..65]));
        let jwks = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": b64(ed_pub.public_key().as_ref()), "kid": "ed1"},
            {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": "ec1", "alg": "ES256"},
        ]});
        let (set, _) = KeySet::parse(jwks.to_string().as_bytes()).unwrap();
        Keys {
            ed: (EncodingKey::from_ed_der(ed.as_ref()), "ed1".into()),
            ec: (EncodingKey::from_ec_der(ec.as_ref()), x, "ec1".into()),
            set,
        }
    }

    fn issuer() -> IssuerSpec {
        IssuerSpec {
            name: "main".into(),
            iss: "https://id.test/".into(),
            audiences: vec!["api".into()],
            algorithms: vec![Algorithm::EdDSA, Algorithm::ES256, Algorithm::HS256],
            jwks: None,
            secret: Some(Secret(SECRET.to_vec())),
            leeway: Duration::from_secs(30),
            max_lifetime: Some(Duration::from_secs(3600)),
            required_claims: vec!["sub".into()],
            token: TokenSource::Bearer,
            max_token_bytes: 8192,
            cache_tokens: true,
        }
    }

    fn claims() -> serde_json::Value {
        json!({"iss": "https://id.test/", "aud": "api", "sub": "u1", "exp": NOW + 600, "iat": NOW - 10})
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, c: &serde_json::Value) -> String {
        let mut h = JwtHeader::new(alg);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, c, key).unwrap()
    }

    fn check(token: &str, k: &Keys) -> Result<Identity, Failure> {
        let secret = Key {
            kid: None,
            kind: crate::auth::jwks::KeyKind::Hmac,
            alg: None,
            key: jsonwebtoken::DecodingKey::from_secret(SECRET),
        };
        verify(token, &issuer(), &k.set, Some(&secret), NOW_MS)
    }

    /// Hand-made header and payload, signed with HS256 (to test what encoders refuse to make).
    fn raw(header: serde_json::Value, payload: serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(payload.to_string().as_bytes())
        );
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET),
            input.as_bytes(),
        );
        format!("{input}.{}", b64(tag.as_ref()))
    }

    #[test]
    fn valid_tokens_of_each_family_pass() {
        let k = keys();
        let id = check(&sign(Algorithm::EdDSA, Some("ed1"), &k.ed.0, &claims()), &k).unwrap();
        assert_eq!(id.subject.as_deref(), Some("u1"));
        assert_eq!(&*id.issuer, "main");
        check(&sign(Algorithm::ES256, Some("ec1"), &k.ec.0, &claims()), &k).unwrap();
        check(
            &sign(
                Algorithm::HS256,
                None,
                &EncodingKey::from_secret(SECRET),
                &claims(),
            ),
            &k,
        )
        .unwrap();
        // Without kid: the only key that fits the algorithm.
        check(&sign(Algorithm::EdDSA, None, &k.ed.0, &claims()), &k).unwrap();
        // aud as an array with one accepted value.
        let mut c = claims();
        c["aud"] = json!(["other", "api"]);
        check(&sign(Algorithm::EdDSA, Some("ed1"), &k.ed.0, &c), &k).unwrap();
    }

    #[test]
    fn every_rejection_names_its_reason() {
        let k = keys();
        let ed = |c: &serde_json::Value| sign(Algorithm::EdDSA, Some("ed1"), &k.ed.0, c);
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut c = claims();
            f(&mut c);
            ed(&c)
        };
        let cases: Vec<(&str, String, Failure)> = vec![
            (
                "alg none",
                format!(
                    "{}.{}.",
                    b64(br#"{"alg":"none"}"#),
                    b64(claims().to_string().as_bytes())
                ),
                Failure::Malformed("the token's signature is missing or too long"),
            ),
            (
                "alg none signed",
                raw(json!({"alg": "none"}), claims()),
                Failure::AlgNotAllowed,
            ),
            (
                "alg outside the list",
                raw(json!({"alg": "HS512"}), claims()),
                Failure::AlgNotAllowed,
            ),
            (
                "crit header",
                raw(json!({"alg": "HS256", "crit": ["exp"]}), claims()),
                Failure::Malformed("the token has critical header extensions"),
            ),
            (
                "wrong kid",
                sign(Algorithm::EdDSA, Some("nope"), &k.ed.0, &claims()),
                Failure::UnknownKid,
            ),
            (
                "key type mismatch",
                sign(Algorithm::ES256, Some("ed1"), &k.ec.0, &claims()),
                Failure::AlgNotAllowed,
            ),
            (
                "bad signature",
                {
                    let t = ed(&claims());
                    let (a, _) = t.rsplit_once('.').unwrap();
                    format!("{a}.{}", b64(&[7u8; 64]))
                },
                Failure::BadSignature,
            ),
            (
                "tampered payload",
                {
                    let t = ed(&claims());
                    let p: Vec<&str> = t.split('.').collect();
                    let mut c = claims();
                    c["sub"] = json!("admin");
                    format!("{}.{}.{}", p[0], b64(c.to_string().as_bytes()), p[2])
                },
                Failure::BadSignature,
            ),
            (
                "wrong iss",
                with(&|c| c["iss"] = json!("https://evil/")),
                Failure::BadIssuer,
            ),
            (
                "wrong aud",
                with(&|c| c["aud"] = json!("other")),
                Failure::BadAudience,
            ),
            (
                "no aud",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("aud");
                }),
                Failure::BadAudience,
            ),
            (
                "expired",
                with(&|c| c["exp"] = json!(NOW - 31)),
                Failure::Expired,
            ),
            (
                "no exp",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
                Failure::MissingClaim,
            ),
            (
                "exp not a number",
                with(&|c| c["exp"] = json!("soon")),
                Failure::MissingClaim,
            ),
            (
                "nbf in the future",
                with(&|c| c["nbf"] = json!(NOW + 31)),
                Failure::NotYetValid,
            ),
            (
                "iat in the future",
                with(&|c| c["iat"] = json!(NOW + 31)),
                Failure::NotYetValid,
            ),
            (
                "lifetime too long",
                with(&|c| {
                    c["iat"] = json!(NOW - 10);
                    c["exp"] = json!(NOW + 7200);
                }),
                Failure::LifetimeTooLong,
            ),
            (
                "required sub missing",
                with(&|c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
                Failure::MissingClaim,
            ),
            (
                "two parts",
                "a.b".into(),
                Failure::Malformed("the token is not a compact JWS (three parts)"),
            ),
            (
                "four parts",
                "a.b.c.d".into(),
                Failure::Malformed("the token is not a compact JWS (three parts)"),
            ),
            (
                "bad base64",
                "!!!.b.c".into(),
                Failure::Malformed("the token's header is not base64url"),
            ),
            (
                "padded base64",
                format!("{}=.{}.c", b64(br#"{"alg":"EdDSA"}"#), b64(b"{}")),
                Failure::Malformed("the token's header is not base64url"),
            ),
            (
                "header not json",
                format!("{}.{}.c", b64(b"nope"), b64(b"{}")),
                Failure::Malformed("the token's header is not a JSON object with `alg`"),
            ),
            (
                "payload not an object",
                format!("{}.{}.c", b64(br#"{"alg":"EdDSA"}"#), b64(b"[1]")),
                Failure::Malformed("the token's payload is not a JSON object"),
            ),
            (
                "too large",
                "a".repeat(8193),
                Failure::Malformed("the token is too large"),
            ),
        ];
        for (what, token, want) in cases {
            assert_eq!(check(&token, &k).err(), Some(want), "{what}");
        }
        // HS256 "signed" with the EC public key as the HMAC secret, against an issuer that has
        // no secret: the key the kid names is an EC key, which never verifies HS256.
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","kid":"ec1"}"#),
            b64(claims().to_string().as_bytes())
        );
        let public = URL_SAFE_NO_PAD.decode(&k.ec.1).unwrap();
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public),
            input.as_bytes(),
        );
        let confused = format!("{input}.{}", b64(tag.as_ref()));
        assert_eq!(
            verify(&confused, &issuer(), &k.set, None, NOW_MS).err(),
            Some(Failure::AlgNotAllowed)
        );
        // Leeway: 29 s past exp still passes.
        check(&with(&|c| c["exp"] = json!(NOW - 29)), &k).unwrap();
    }

    #[test]
    fn jku_x5u_and_embedded_jwk_are_never_followed() {
        let k = keys();
        // A token signed with an attacker's key that it embeds (`jwk`) or points to (`jku`):
        // keys come only from the issuer, so the kid is unknown.
        let rng = SystemRandom::new();
        let evil = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let evil_pub = Ed25519KeyPair::from_pkcs8(evil.as_ref()).unwrap();
        let mut h = JwtHeader::new(Algorithm::EdDSA);
        h.kid = Some("evil".into());
        h.jku = Some("https://evil.test/jwks.json".into());
        h.x5u = Some("https://evil.test/cert.pem".into());
        h.jwk = serde_json::from_value(json!({"kty": "OKP", "crv": "Ed25519", "x": b64(evil_pub.public_key().as_ref()), "kid": "evil"})).ok();
        let t =
            jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_ed_der(evil.as_ref())).unwrap();
        assert_eq!(check(&t, &k).err(), Some(Failure::UnknownKid));
        // Same without kid: the issuer's own Ed25519 key does not verify it.
        h.kid = None;
        let t =
            jsonwebtoken::encode(&h, &claims(), &EncodingKey::from_ed_der(evil.as_ref())).unwrap();
        assert_eq!(check(&t, &k).err(), Some(Failure::BadSignature));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            /// Arbitrary bytes never panic and never pass.
            #[test]
            fn arbitrary_input_is_refused(s in "\\PC{0,400}") {
                let k = keys_once();
                prop_assert!(check(&s, k).is_err());
            }

            /// Dotted base64-ish input (the shape of a token) never panics and never passes.
            #[test]
            fn token_shaped_input_is_refused(h in "[A-Za-z0-9_-]{0,80}", p in "[A-Za-z0-9_-]{0,200}", s in "[A-Za-z0-9_-]{0,120}") {
                let k = keys_once();
                let t = format!("{h}.{p}.{s}");
                prop_assert!(check(&t, k).is_err());
            }

            /// Any single-byte change to a valid token is refused.
            #[test]
            fn mutated_valid_tokens_are_refused(pos in 0usize..4096, byte in any::<u8>()) {
                let k = keys_once();
                let t = valid_once();
                let mut b = t.as_bytes().to_vec();
                let i = pos % b.len();
                prop_assume!(b[i] != byte);
                b[i] = byte;
                if let Ok(s) = std::str::from_utf8(&b) {
                    // Base64url has spare bits in the last character of each part: a change
                    // there may decode to the same bytes and still verify.
                    if let Ok(id) = check(s, k) {
                        prop_assert_eq!(id.subject.as_deref(), Some("u1"));
                    }
                }
            }

            /// Random claims in a correctly signed token never panic.
            #[test]
            fn signed_random_claims_never_panic(exp in any::<i64>(), nbf in proptest::option::of(any::<f64>()), aud in "[a-z]{0,5}", extra in "\\PC{0,40}") {
                let k = keys_once();
                let mut c = json!({"iss": "https://id.test/", "aud": aud, "sub": extra, "exp": exp});
                if let Some(n) = nbf.filter(|n| n.is_finite()) { c["nbf"] = json!(n); }
                let t = sign(Algorithm::EdDSA, Some("ed1"), &k.ed.0, &c);
                let _ = check(&t, k);
            }
        }

        fn keys_once() -> &'static Keys {
            static K: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();
            K.get_or_init(keys)
        }

        fn valid_once() -> &'static str {
            static T: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            T.get_or_init(|| {
                let k = keys_once();
                sign(Algorithm::EdDSA, Some("ed1"), &k.ed.0, &claims())
            })
        }
    }
}
