//! Token issuers for the tests: signing keys generated per run (RSA through the `openssl`
//! CLI, EC and Ed25519 through ring; nothing is committed), their JWKS, signed tokens, and a
//! real JWKS server over HTTPS whose key set, status and `Cache-Control` a test can change.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use serde_json::{json, Value};

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Value,
}

impl SigningKey {
    /// A 2048-bit RSA key (for RS* and PS*), generated with the `openssl` CLI.
    pub fn rsa(kid: &str, alg: Algorithm) -> SigningKey {
        let dir = tempfile::tempdir().expect("tempdir");
        let pem = dir.path().join("k.pem");
        let der = dir.path().join("k.der");
        run("openssl", &["genrsa", "-out", s(&pem), "2048"]);
        run(
            "openssl",
            &[
                "rsa",
                "-in",
                s(&pem),
                "-traditional",
                "-outform",
                "DER",
                "-out",
                s(&der),
            ],
        );
        let der = std::fs::read(&der).expect("read der");
        let out = Command::new("openssl")
            .args(["rsa", "-in", s(&pem), "-noout", "-modulus"])
            .output()
            .expect("openssl modulus");
        let text = String::from_utf8_lossy(&out.stdout);
        let hex = text.trim().trim_start_matches("Modulus=");
        let n: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
            .collect();
        let e = [1u8, 0, 1]; // openssl's default public exponent, 65537
        SigningKey {
            kid: kid.into(),
            alg,
            encoding: EncodingKey::from_rsa_der(&der),
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64(&n), "e": b64(&e)}),
        }
    }

    /// An EC key: P-256 for ES256, P-384 for ES384.
    pub fn ec(kid: &str, alg: Algorithm) -> SigningKey {
        let rng = SystemRandom::new();
        let (curve, signing) = match alg {
            Algorithm::ES384 => ("P-384", &ECDSA_P384_SHA384_FIXED_SIGNING),
            _ => ("P-256", &ECDSA_P256_SHA256_FIXED_SIGNING),
        };
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).expect("ec key");
        let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref(), &rng).expect("ec key");
        let point = pair.public_key().as_ref();
        let half = (point.len() - 1) / 2;
        SigningKey {
            kid: kid.into(),
            alg,
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            jwk: json!({"kty": "EC", "kid": kid, "crv": curve,
                "x": b64(&point[1..1 + half]), "y": b64(&point[1 + half..])}),
        }
    }

    pub fn ed25519(kid: &str) -> SigningKey {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ed25519 key");
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwk: json!({"kty": "OKP", "kid": kid, "crv": "Ed25519",
                "x": b64(pair.public_key().as_ref())}),
        }
    }

    /// Sign `claims` with this key (header `alg` and `kid` set).
    pub fn sign(&self, claims: &Value) -> String {
        let mut h = Header::new(self.alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).expect("sign")
    }

    /// Sign with another `alg` in the header than the key's own (for rejection tests).
    pub fn sign_as(&self, alg: Algorithm, claims: &Value) -> String {
        let mut h = Header::new(alg);
        h.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&h, claims, &self.encoding).expect("sign")
    }
}

/// A JWKS document of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

/// Seconds since the epoch: the gateway under test reads the real clock, so tokens must too.
#[allow(
    clippy::disallowed_methods,
    reason = "tokens for a real gateway process carry real times"
)]
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Claims valid for ten minutes.
pub fn claims(iss: &str, aud: &str, sub: &str) -> Value {
    json!({"iss": iss, "aud": aud, "sub": sub, "iat": now(), "exp": now() + 600})
}

/// An unsigned token with a hand-made header (for `alg: none` and friends).
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// An HMAC-signed token with a hand-made header.
pub fn hmac_signed(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect("run openssl");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the JWKS server answers.
pub struct JwksState {
    pub body: Mutex<String>,
    /// 200 normally; anything else to simulate an outage.
    pub status: Mutex<u16>,
    pub cache_control: Mutex<Option<String>>,
    pub fetches: AtomicU64,
}

/// A JWKS server over HTTPS on a free loopback port, with a CA of its own (`ca_pem`).
pub struct JwksServer {
    pub addr: SocketAddr,
    pub state: Arc<JwksState>,
    pub ca_pem: String,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(body: String) -> JwksServer {
        let ca_key = rcgen::KeyPair::generate().expect("ca key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edgeway test JWKS CA");
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .expect("leaf")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf cert");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .expect("server cert");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind jwks");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(JwksState {
            body: Mutex::new(body),
            status: Mutex::new(200),
            cache_control: Mutex::new(None),
            fetches: AtomicU64::new(0),
        });
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, st) = (acceptor.clone(), Arc::clone(&st));
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = service_fn(move |req| answer(Arc::clone(&st), req));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        JwksServer {
            addr,
            state,
            ca_pem: ca.pem(),
            task,
        }
    }

    /// The URL the gateway fetches (`localhost`, which the certificate names).
    pub fn url(&self) -> String {
        format!("https://localhost:{}/jwks.json", self.addr.port())
    }

    pub fn set_body(&self, body: String) {
        *self.state.body.lock().expect("lock") = body;
    }

    pub fn set_status(&self, status: u16) {
        *self.state.status.lock().expect("lock") = status;
    }

    pub fn set_cache_control(&self, v: Option<&str>) {
        *self.state.cache_control.lock().expect("lock") = v.map(str::to_string);
    }

    pub fn fetches(&self) -> u64 {
        self.state.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    st: Arc<JwksState>,
    _req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    st.fetches.fetch_add(1, Ordering::SeqCst);
    let status = *st.status.lock().expect("lock");
    let body = st.body.lock().expect("lock").clone();
    let mut resp = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(cc) = st.cache_control.lock().expect("lock").clone() {
        resp = resp.header("cache-control", cc);
    }
    Ok(resp.body(Full::new(Bytes::from(body))).unwrap_or_default())
}
