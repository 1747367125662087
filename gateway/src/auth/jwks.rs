//! JSON Web Key Sets: parsing them into verification keys, and fetching them over HTTPS.
//!
//! Keys come only from the issuer's configured JWKS (file or URL) or secret; a token's `jku`,
//! `x5u`, `x5c` or `jwk` header is never followed.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// What kind of key a JWK is: decides which algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
    Hmac,
}

impl KeyKind {
    /// Whether this key may verify `alg` (the key-type/algorithm match that closes the
    /// HS256-with-the-RSA-public-key confusion).
    pub fn fits(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
            KeyKind::Hmac => matches!(alg, HS256 | HS384 | HS512),
        }
    }
}

/// One verification key.
pub struct Key {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, when it pins one.
    pub alg: Option<Algorithm>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish()
    }
}

/// An issuer's keys at one moment.
#[derive(Debug, Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

impl KeySet {
    /// Parse a JWKS document. Keys that are not signature keys (`use: enc`), or of a type the
    /// gateway does not verify, are skipped and counted in the second value; a document that is
    /// not a JWKS, or has no usable key, is an error.
    pub fn parse(bytes: &[u8]) -> Result<(KeySet, usize), String> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a JWKS document (expected {{\"keys\": [...]}}): {e}"))?;
        let mut set = KeySet::default();
        let mut skipped = 0;
        for value in doc.keys {
            match key_from_jwk(value) {
                Some(k) => set.keys.push(k),
                None => skipped += 1,
            }
        }
        if set.keys.is_empty() {
            return Err(format!(
                "the JWKS has no usable signature key ({skipped} skipped; supported: RSA, EC P-256/P-384, OKP Ed25519)"
            ));
        }
        Ok((set, skipped))
    }

    /// An HMAC secret as a one-key set.
    pub fn secret(bytes: &[u8]) -> Key {
        Key {
            kid: None,
            kind: KeyKind::Hmac,
            alg: None,
            key: DecodingKey::from_secret(bytes),
        }
    }

    /// The key for a token's `kid` and `alg`: by `kid` when the token has one; without `kid`,
    /// the only key that fits `alg` (none when several do).
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(k) => Lookup::Found(k),
                None => Lookup::UnknownKid,
            },
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.kind.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Lookup::Found(k),
                    (None, _) => Lookup::UnknownKid,
                    (Some(_), Some(_)) => Lookup::Ambiguous,
                }
            }
        }
    }

    /// The `kid`s, for telling whether a refetch changed anything.
    pub fn kids(&self) -> Vec<Option<&str>> {
        self.keys.iter().map(|k| k.kid.as_deref()).collect()
    }
}

pub enum Lookup<'a> {
    Found(&'a Key),
    UnknownKid,
    /// No `kid` in the token and several keys fit.
    Ambiguous,
}

fn key_from_jwk(value: serde_json::Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return None,
        },
        // Symmetric keys come only from `secret_file`/`secret_env`, never from a JWKS.
        AlgorithmParameters::OctetKey(_) => return None,
    };
    // A key pinned to an algorithm that is not a signature algorithm (`RSA-OAEP`) is skipped.
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        kind,
        alg,
        key,
    })
}

/// A JWKS fetch result.
pub struct Fetched {
    pub keys: KeySet,
    pub skipped: usize,
    /// `Cache-Control: max-age`, when the response gave one.
    pub max_age: Option<Duration>,
}

/// The HTTPS client for JWKS URLs (hyper + rustls with ring, HTTP/1.1).
pub type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<bytes::Bytes>,
>;

/// Build the client for one issuer: its CA file, else the system roots.
pub fn https_client(ca_pem: Option<&[u8]>) -> Result<HttpsClient, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                let cert = cert.map_err(|e| format!("jwks_ca_file: {e}"))?;
                roots.add(cert).map_err(|e| format!("jwks_ca_file: {e}"))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                let _ = roots.add(cert);
            }
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector),
    )
}

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Longest a fetch may take, connect to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Fetch and parse a JWKS URL.
pub async fn fetch(client: &HttpsClient, url: &http::Uri) -> Result<Fetched, String> {
    use http_body_util::BodyExt;
    let work = async {
        let req = http::Request::get(url.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::USER_AGENT, "edgeway-gateway")
            .body(http_body_util::Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = client.request(req).await.map_err(|e| {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(&format!(": {s}"));
                src = s.source();
            }
            msg
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let max_age = resp
            .headers()
            .get(http::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = http_body_util::Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes();
        let (keys, skipped) = KeySet::parse(&body)?;
        Ok(Fetched {
            keys,
            skipped,
            max_age,
        })
    };
    match tokio::time::timeout(FETCH_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {FETCH_TIMEOUT:?}")),
    }
}

/// `max-age` of a `Cache-Control` value (`no-store`/`no-cache` count as zero).
pub fn max_age(cc: &str) -> Option<Duration> {
    let mut age = None;
    for directive in cc.split(',') {
        let d = directive.trim();
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            age = v
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_directives() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("max-age=\"60\""), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=x"), None);
    }

    #[test]
    fn jwks_parsing_skips_what_it_cannot_use() {
        let doc = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"},
            {"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB","kid":"enc"},
            {"kty":"oct","k":"c2VjcmV0","kid":"hs"},
            {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"ec"}
        ]}"#;
        let (set, skipped) = KeySet::parse(doc).unwrap();
        assert_eq!(skipped, 2);
        assert_eq!(set.kids(), vec![Some("ed"), Some("ec")]);
        assert!(matches!(
            set.find(Some("ec"), Algorithm::ES256),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.find(Some("nope"), Algorithm::ES256),
            Lookup::UnknownKid
        ));
        // Without kid: the one key that fits the algorithm.
        assert!(
            matches!(set.find(None, Algorithm::EdDSA), Lookup::Found(k) if k.kid.as_deref() == Some("ed"))
        );
        assert!(matches!(
            set.find(None, Algorithm::RS256),
            Lookup::UnknownKid
        ));
        assert!(KeySet::parse(b"{\"keys\":[]}").is_err());
        assert!(KeySet::parse(b"[1,2]").is_err());
    }

    #[test]
    fn key_kinds_fit_only_their_algorithms() {
        assert!(KeyKind::Rsa.fits(Algorithm::PS384));
        assert!(!KeyKind::Rsa.fits(Algorithm::HS256));
        assert!(!KeyKind::P256.fits(Algorithm::ES384));
        assert!(!KeyKind::Hmac.fits(Algorithm::RS256));
        assert!(KeyKind::Ed25519.fits(Algorithm::EdDSA));
    }
}
