//! JWT authentication end to end: a real gateway, real origins, keys generated per run, a
//! real JWKS server over HTTPS and a real redis-server.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use e2e::jwt::{claims, hmac_signed, jwks, now, unsigned, JwksServer, SigningKey};
use e2e::origin::Origin;
use e2e::redis::Redis;
use e2e::{eventually, read_access_log, Gateway};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};

const ISS: &str = "https://id.test/";
const AUD: &str = "api.test";
const HS_SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!";

fn cluster(origin: &Origin) -> String {
    format!(
        "[cluster.a]\nendpoints = [\"{}\"]\nconnect_timeout = \"300ms\"\n",
        origin.addr
    )
}

const ROUTES: &str = r#"
[[route]]
name = "private"
path_prefix = "/private"
cluster = "a"
auth = "users"

[[route]]
name = "maybe"
path_prefix = "/maybe"
cluster = "a"
auth = "maybe"

[[route]]
name = "open"
path_prefix = "/"
cluster = "a"
"#;

fn rules(issuers: &str) -> String {
    format!(
        r#"
[auth.users]
issuers = [{issuers}]
scopes = ["read"]
claims = {{ tenant = ["acme", "globex"] }}
forward_claims = {{ sub = "x-user-id", tenant = "x-tenant-id" }}
realm = "test"

[auth.maybe]
mode = "optional"
issuers = [{issuers}]
"#
    )
}

struct Client {
    http: reqwest::Client,
    gw_url: String,
}

struct Answer {
    status: u16,
    www: String,
    body: Value,
}

impl Client {
    fn new(gw: &Gateway) -> Client {
        Client {
            http: reqwest::Client::new(),
            gw_url: gw.url(""),
        }
    }

    async fn get(
        &self,
        path: &str,
        token: Option<&str>,
        id: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        let mut req = self
            .http
            .get(format!("{}{path}", self.gw_url))
            .header("host", "api.test")
            .header("x-request-id", id);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        let www = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_default();
        let body = r.json().await.unwrap_or(Value::Null);
        Answer { status, www, body }
    }
}

fn good(sub: &str) -> Value {
    let mut c = claims(ISS, AUD, sub);
    c["scope"] = json!("read write");
    c["tenant"] = json!("acme");
    c
}

/// Every record of the gateway so far, by request id, once `n` are written.
async fn records(gw: &Gateway, n: usize) -> HashMap<String, edgeway_record::AccessLogRecord> {
    eventually("access-log records", Duration::from_secs(10), || async {
        let all: HashMap<_, _> = read_access_log(&gw.access_log_dir())
            .into_iter()
            .flat_map(|(_, r)| r)
            .map(|r| (r.request_id.clone(), r))
            .collect();
        (all.len() >= n).then_some(all)
    })
    .await
}

#[tokio::test]
async fn every_rejection_is_401_or_403_and_never_reaches_the_origin() {
    let origin = Origin::start("a").await;
    let rsa = SigningKey::rsa("rsa-1", Algorithm::RS256);
    let ec = SigningKey::ec("ec-1", Algorithm::ES256);
    let issuer = format!(
        r#"
[issuer.main]
iss = "{ISS}"
audiences = ["{AUD}"]
algorithms = ["RS256", "ES256"]
jwks_file = "main.jwks.json"
max_lifetime = "1h"
required_claims = ["sub"]
"#
    );
    let jwks_text = jwks(&[&rsa, &ec]);
    let cl = cluster(&origin);
    let auth = format!("{issuer}{}", rules("\"main\""));
    let gw = Gateway::start(&[
        ("c.toml", &cl),
        ("r.toml", ROUTES),
        ("auth.toml", &auth),
        ("main.jwks.json", &jwks_text),
    ])
    .await;
    let c = Client::new(&gw);

    let with = |f: &dyn Fn(&mut Value)| {
        let mut claims = good("u1");
        f(&mut claims);
        rsa.sign(&claims)
    };
    let t = now();
    let rsa_public_as_secret = rsa.jwk["n"].as_str().unwrap().as_bytes().to_vec();
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("missing", None, 401, "missing"),
        (
            "alg-none",
            Some(unsigned(
                &json!({"alg": "none", "kid": "rsa-1"}),
                &good("u1"),
            )),
            401,
            "malformed",
        ),
        (
            "alg-none-sig",
            Some(hmac_signed(
                &json!({"alg": "none", "kid": "rsa-1"}),
                &good("u1"),
                b"x",
            )),
            401,
            "alg_not_allowed",
        ),
        // HS256 keyed with the RSA public key: the classic confusion.
        (
            "confusion",
            Some(hmac_signed(
                &json!({"alg": "HS256", "kid": "rsa-1"}),
                &good("u1"),
                &rsa_public_as_secret,
            )),
            401,
            "alg_not_allowed",
        ),
        (
            "alg-unlisted",
            Some(rsa.sign_as(Algorithm::RS384, &good("u1"))),
            401,
            "alg_not_allowed",
        ),
        // An ES256 token whose kid names the RSA key: the key's type does not fit the alg.
        (
            "key-type",
            Some({
                let mut h = jsonwebtoken::Header::new(Algorithm::ES256);
                h.kid = Some("rsa-1".into());
                jsonwebtoken::encode(&h, &good("u1"), &ec.encoding).unwrap()
            }),
            401,
            "alg_not_allowed",
        ),
        (
            "bad-iss",
            Some(with(&|c| c["iss"] = json!("https://evil.test/"))),
            401,
            "bad_issuer",
        ),
        (
            "bad-aud",
            Some(with(&|c| c["aud"] = json!("other.test"))),
            401,
            "bad_audience",
        ),
        (
            "expired",
            Some(with(&|c| c["exp"] = json!(t - 120))),
            401,
            "expired",
        ),
        (
            "nbf",
            Some(with(&|c| c["nbf"] = json!(t + 300))),
            401,
            "not_yet_valid",
        ),
        (
            "lifetime",
            Some(with(&|c| c["exp"] = json!(t + 7200))),
            401,
            "lifetime_too_long",
        ),
        (
            "no-sub",
            Some(with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            })),
            401,
            "missing_claim",
        ),
        (
            "bad-sig",
            Some({
                let s = rsa.sign(&good("u1"));
                let (head, _) = s.rsplit_once('.').unwrap();
                format!("{head}.{}", b64url("not the signature"))
            }),
            401,
            "bad_signature",
        ),
        (
            "unknown-kid",
            Some(SigningKey::ec("ec-9", Algorithm::ES256).sign(&good("u1"))),
            401,
            "unknown_kid",
        ),
        (
            "crit",
            Some(hmac_signed(
                &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["x"]}),
                &good("u1"),
                b"x",
            )),
            401,
            "malformed",
        ),
        (
            "garbage",
            Some("not.a.token!".to_string()),
            401,
            "malformed",
        ),
        (
            "too-large",
            Some(with(&|c| c["pad"] = json!("x".repeat(9000)))),
            401,
            "malformed",
        ),
        (
            "no-scope",
            Some(with(&|c| c["scope"] = json!("write"))),
            403,
            "forbidden",
        ),
        (
            "wrong-tenant",
            Some(with(&|c| c["tenant"] = json!("initech"))),
            403,
            "forbidden",
        ),
    ];
    for (id, token, status, _) in &cases {
        let a = c.get("/private/x", token.as_deref(), id, &[]).await;
        assert_eq!(a.status, *status, "{id}: {:?}", a.body);
        assert_eq!(
            a.body["request_id"], *id,
            "{id}: JSON body with the request id"
        );
        assert!(
            a.www.starts_with("Bearer realm=\"test\""),
            "{id}: {}",
            a.www
        );
        match (*id, *status) {
            ("missing", _) => assert!(
                !a.www.contains("error="),
                "{id}: no error without a token: {}",
                a.www
            ),
            (_, 401) => assert!(a.www.contains("error=\"invalid_token\""), "{id}: {}", a.www),
            _ => assert!(
                a.www.contains("error=\"insufficient_scope\"") && a.www.contains("scope=\"read\""),
                "{id}: {}",
                a.www
            ),
        }
        assert!(
            !a.www.contains("eyJ"),
            "{id}: the challenge never echoes the token"
        );
    }
    assert_eq!(
        origin.state.requests.load(Ordering::SeqCst),
        0,
        "no rejected request reached the origin"
    );

    // The same valid token passes; an optional route lets anonymous requests through.
    assert_eq!(
        c.get("/private/x", Some(&rsa.sign(&good("u1"))), "ok", &[])
            .await
            .status,
        200
    );
    assert_eq!(c.get("/maybe", None, "anon", &[]).await.status, 200);
    assert_eq!(
        c.get("/maybe", Some("junk.junk.junk"), "maybe-bad", &[])
            .await
            .status,
        401
    );

    let recs = records(&gw, cases.len() + 3).await;
    for (id, _, status, result) in &cases {
        let r = &recs[*id];
        assert_eq!(r.status, i32::from(*status), "{id}");
        assert_eq!(r.auth_result, *result, "{id}");
        let class = if *status == 401 {
            "unauthorized"
        } else {
            "forbidden"
        };
        assert_eq!(r.error_class.as_deref(), Some(class), "{id}");
    }
    assert_eq!(
        recs["no-scope"].auth_subject.as_deref(),
        Some("u1"),
        "a verified subject is recorded"
    );
    assert_eq!(
        recs["bad-sig"].auth_subject, None,
        "an unverified subject is not"
    );
    assert_eq!(recs["ok"].auth_result, "ok");
    assert_eq!(recs["ok"].auth_issuer.as_deref(), Some("main"));
    assert_eq!(recs["anon"].auth_result, "anonymous");
    assert_eq!(recs["maybe-bad"].auth_result, "malformed");
    // No token or signature in any record or log line.
    let everything = format!("{:?}{}", recs, gw.log());
    assert!(
        !everything.contains("eyJ"),
        "a token leaked into records or logs"
    );
    assert_eq!(
        gw.metric(
            "gateway_auth_decisions_total",
            &[("route", "private"), ("result", "bad_signature")]
        )
        .await,
        1.0
    );
}

fn b64url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes())
}

#[tokio::test]
async fn every_algorithm_family_passes_and_claims_reach_the_upstream_as_headers() {
    let origin = Origin::start("a").await;
    let keys = [
        SigningKey::rsa("rs", Algorithm::RS256),
        SigningKey::rsa("ps", Algorithm::PS256),
        SigningKey::ec("es256", Algorithm::ES256),
        SigningKey::ec("es384", Algorithm::ES384),
        SigningKey::ed25519("ed"),
    ];
    let issuer = format!(
        r#"
[issuer.main]
iss = "{ISS}"
audiences = ["{AUD}"]
algorithms = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
jwks_file = "main.jwks.json"

[issuer.shared]
iss = "https://hs.test/"
audiences = ["{AUD}"]
algorithms = ["HS256"]
secret_env = "E2E_HS_SECRET"
token = {{ header = "x-api-token" }}
"#
    );
    let jwks_text = jwks(&keys.iter().collect::<Vec<_>>());
    let cl = cluster(&origin);
    let auth = format!("{issuer}{}", rules("\"main\", \"shared\""));
    let gw = Gateway::start_env(
        &[
            ("c.toml", &cl),
            ("r.toml", ROUTES),
            ("auth.toml", &auth),
            ("main.jwks.json", &jwks_text),
        ],
        &[],
        &[("E2E_HS_SECRET", HS_SECRET.to_string())],
    )
    .await;
    let c = Client::new(&gw);
    let spoof = [("x-user-id", "admin"), ("x-tenant-id", "root")];
    for k in &keys {
        let token = k.sign(&good(&format!("user-{}", k.kid)));
        let a = c.get("/private/echo", Some(&token), &k.kid, &spoof).await;
        assert_eq!(a.status, 200, "{}: {:?}", k.kid, a.body);
        let h = &a.body["headers"];
        assert_eq!(h["x-user-id"], format!("user-{}", k.kid), "claim → header");
        assert_eq!(h["x-tenant-id"], "acme");
        assert!(
            h.get("authorization").is_none(),
            "Authorization is not forwarded by default"
        );
    }
    // HMAC issuer, token in its own header.
    let mut hs = good("hs-user");
    hs["iss"] = json!("https://hs.test/");
    let hs_token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &hs,
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap();
    let a = c
        .get("/private/echo", None, "hs", &[("x-api-token", &hs_token)])
        .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["headers"]["x-user-id"], "hs-user");

    // An open route: spoofed identity headers are removed, nothing is added.
    let a = c.get("/anything", None, "open", &spoof).await;
    assert_eq!(a.status, 200);
    assert!(
        a.body["headers"].get("x-user-id").is_none(),
        "spoofed x-user-id stripped: {}",
        a.body
    );
    assert!(a.body["headers"].get("x-tenant-id").is_none());

    // A repeated token is served from the verified-token cache.
    let token = keys[0].sign(&good("cached"));
    let hits = gw
        .metric("gateway_auth_cache_lookups_total", &[("result", "hit")])
        .await;
    for i in 0..5 {
        assert_eq!(
            c.get("/private/x", Some(&token), &format!("c{i}"), &[])
                .await
                .status,
            200
        );
    }
    let after = gw
        .metric("gateway_auth_cache_lookups_total", &[("result", "hit")])
        .await;
    assert_eq!(after - hits, 4.0, "first verify, then four hits");

    let recs = records(&gw, keys.len() + 7).await;
    assert_eq!(recs["hs"].auth_issuer.as_deref(), Some("shared"));
    assert_eq!(recs["ed"].auth_subject.as_deref(), Some("user-ed"));
    assert_eq!(recs["open"].auth_result, "none");
}

fn url_issuer(server: &JwksServer, refresh: &str, refetch: &str) -> String {
    format!(
        r#"
[issuer.idp]
iss = "{ISS}"
audiences = ["{AUD}"]
algorithms = ["RS256", "EdDSA"]
jwks_url = "{}"
jwks_ca_file = "idp-ca.pem"
jwks_refresh = "{refresh}"
jwks_refresh_min = "{refresh}"
jwks_refetch_interval = "{refetch}"
"#,
        server.url()
    )
}

#[tokio::test]
async fn rotation_passes_at_once_and_unknown_kids_cannot_storm_the_jwks() {
    let origin = Origin::start("a").await;
    let old = SigningKey::ed25519("old");
    let new = SigningKey::ed25519("new");
    let server = JwksServer::start(jwks(&[&old])).await;
    let cl = cluster(&origin);
    let auth = format!("{}{}", url_issuer(&server, "10m", "1h"), rules("\"idp\""));
    let gw = Gateway::start(&[
        ("c.toml", &cl),
        ("r.toml", ROUTES),
        ("auth.toml", &auth),
        ("idp-ca.pem", &server.ca_pem),
    ])
    .await;
    let c = Client::new(&gw);
    assert_eq!(server.fetches(), 1, "fetched once at start");
    assert_eq!(
        c.get("/private/a", Some(&old.sign(&good("u"))), "old", &[])
            .await
            .status,
        200
    );

    // The identity provider rotates: a token with the new kid passes at once (one refetch),
    // without waiting for the 10-minute refresh.
    server.set_body(jwks(&[&old, &new]));
    assert_eq!(
        c.get("/private/a", Some(&new.sign(&good("u"))), "new", &[])
            .await
            .status,
        200
    );
    assert_eq!(server.fetches(), 2, "one refetch for the unknown kid");

    // A flood of random kids: all refused, no further fetch within the window.
    for i in 0..30 {
        let rogue = SigningKey::ed25519(&format!("rogue-{i}"));
        assert_eq!(
            c.get(
                "/private/a",
                Some(&rogue.sign(&good("u"))),
                &format!("r{i}"),
                &[]
            )
            .await
            .status,
            401
        );
    }
    assert_eq!(server.fetches(), 2, "at most one fetch per refetch window");
    assert_eq!(
        gw.metric(
            "gateway_auth_jwks_fetches_total",
            &[
                ("issuer", "idp"),
                ("reason", "unknown_kid"),
                ("result", "ok")
            ]
        )
        .await,
        1.0
    );
    assert_eq!(origin.state.requests.load(Ordering::SeqCst), 2);

    // An unrelated policy edit keeps the issuer with its keys: no new fetch, the new key still
    // verifies.
    gw.write_policy(
        "r.toml",
        &format!(
            "{ROUTES}
# edited
"
        ),
    );
    eventually("reload", Duration::from_secs(10), || async {
        let ok = gw
            .metric("gateway_policy_reloads_total", &[("result", "success")])
            .await;
        (ok >= 1.0).then_some(())
    })
    .await;
    assert_eq!(
        c.get(
            "/private/a",
            Some(&new.sign(&good("v"))),
            "after-reload",
            &[]
        )
        .await
        .status,
        200
    );
    assert_eq!(server.fetches(), 2, "the issuer was kept across the reload");
}

#[tokio::test]
async fn a_jwks_outage_keeps_the_last_good_keys_and_the_age_metric_grows() {
    let origin = Origin::start("a").await;
    let key = SigningKey::rsa("k1", Algorithm::RS256);
    let server = JwksServer::start(jwks(&[&key])).await;
    let cl = cluster(&origin);
    let auth = format!("{}{}", url_issuer(&server, "1s", "1s"), rules("\"idp\""));
    let gw = Gateway::start(&[
        ("c.toml", &cl),
        ("r.toml", ROUTES),
        ("auth.toml", &auth),
        ("idp-ca.pem", &server.ca_pem),
    ])
    .await;
    let c = Client::new(&gw);
    assert_eq!(
        c.get("/private/a", Some(&key.sign(&good("u0"))), "before", &[])
            .await
            .status,
        200
    );

    server.set_status(503);
    let before = server.fetches();
    // Background refreshes fail (and are counted) ...
    eventually("failed JWKS refreshes", Duration::from_secs(10), || async {
        let failed = gw
            .metric(
                "gateway_auth_jwks_fetches_total",
                &[("issuer", "idp"), ("result", "error")],
            )
            .await;
        (failed >= 2.0 && server.fetches() >= before + 2).then_some(())
    })
    .await;
    // ... while fresh tokens (not cached) still verify with the last good keys,
    for i in 0..3 {
        let a = c
            .get(
                "/private/a",
                Some(&key.sign(&good(&format!("fresh-{i}")))),
                &format!("during-{i}"),
                &[],
            )
            .await;
        assert_eq!(a.status, 200, "{:?}", a.body);
    }
    // and the key set's age keeps growing.
    let age = gw
        .metric("gateway_auth_jwks_age_seconds", &[("issuer", "idp")])
        .await;
    eventually("key-set age grows", Duration::from_secs(10), || async {
        let now_age = gw
            .metric("gateway_auth_jwks_age_seconds", &[("issuer", "idp")])
            .await;
        (now_age >= age + 2.0).then_some(())
    })
    .await;
    assert!(gw
        .log()
        .contains("JWKS fetch failed; the last good key set keeps serving"));

    server.set_status(200);
    eventually("key-set age resets", Duration::from_secs(10), || async {
        let a = gw
            .metric("gateway_auth_jwks_age_seconds", &[("issuer", "idp")])
            .await;
        (a < 2.0).then_some(())
    })
    .await;
}

fn revocation(redis: &Redis, on_error: &str) -> String {
    format!(
        r#"
[revocation]
jti = ["revoked-by-file"]
redis_url = "{}"
redis_key = "e2e:revoked"
refresh = "100ms"
on_redis_error = "{on_error}"
max_stale = "1s"
"#,
        redis.url()
    )
}

fn file_issuer() -> String {
    format!(
        r#"
[issuer.main]
iss = "{ISS}"
audiences = ["{AUD}"]
algorithms = ["EdDSA"]
jwks_file = "main.jwks.json"
"#
    )
}

#[tokio::test]
async fn revocation_by_file_and_by_redis_and_keep_last_while_redis_is_down() {
    let origin = Origin::start("a").await;
    let mut redis = Redis::start().await;
    let key = SigningKey::ed25519("k");
    let cl = cluster(&origin);
    let auth = format!(
        "{}{}{}",
        file_issuer(),
        rules("\"main\""),
        revocation(&redis, "keep_last")
    );
    let jwks_text = jwks(&[&key]);
    let gw = Gateway::start(&[
        ("c.toml", &cl),
        ("r.toml", ROUTES),
        ("auth.toml", &auth),
        ("main.jwks.json", &jwks_text),
    ])
    .await;
    let c = Client::new(&gw);

    let mut by_file = good("u1");
    by_file["jti"] = json!("revoked-by-file");
    let a = c
        .get("/private/a", Some(&key.sign(&by_file)), "file", &[])
        .await;
    assert_eq!(a.status, 401);
    assert!(a.www.contains("revoked"), "{}", a.www);

    // A subject revoked fleet-wide in Redis is refused within seconds, cached token or not.
    let token = key.sign(&good("u2"));
    assert_eq!(
        c.get("/private/a", Some(&token), "u2-before", &[])
            .await
            .status,
        200
    );
    redis.cli(&["SADD", "e2e:revoked:sub", "u2"]);
    eventually(
        "Redis revocation applies",
        Duration::from_secs(5),
        || async {
            (c.get("/private/a", Some(&token), "u2-poll", &[])
                .await
                .status
                == 401)
                .then_some(())
        },
    )
    .await;

    // Redis goes away: keep_last keeps the copy (u2 stays revoked, others pass).
    redis.kill();
    eventually("refresh errors counted", Duration::from_secs(5), || async {
        let e = gw
            .metric(
                "gateway_auth_revocation_refreshes_total",
                &[("result", "error")],
            )
            .await;
        (e >= 2.0).then_some(())
    })
    .await;
    assert_eq!(
        c.get("/private/a", Some(&token), "u2-down", &[])
            .await
            .status,
        401
    );
    assert_eq!(
        c.get("/private/a", Some(&key.sign(&good("u3"))), "u3-down", &[])
            .await
            .status,
        200
    );
    assert!(gw
        .log()
        .contains("revocation list: Redis unreachable, keeping the last copy"));

    let recs = records(&gw, 5).await;
    assert_eq!(recs["file"].auth_result, "revoked");
    assert_eq!(recs["u2-down"].auth_result, "revoked");
    assert_eq!(recs["u2-down"].auth_subject.as_deref(), Some("u2"));
}

#[tokio::test]
async fn fail_closed_answers_503_while_redis_is_down_and_recovers() {
    let origin = Origin::start("a").await;
    let mut redis = Redis::start().await;
    let key = SigningKey::ed25519("k");
    let cl = cluster(&origin);
    let auth = format!(
        "{}{}{}",
        file_issuer(),
        rules("\"main\""),
        revocation(&redis, "fail_closed")
    );
    let jwks_text = jwks(&[&key]);
    let gw = Gateway::start(&[
        ("c.toml", &cl),
        ("r.toml", ROUTES),
        ("auth.toml", &auth),
        ("main.jwks.json", &jwks_text),
    ])
    .await;
    let c = Client::new(&gw);
    let token = key.sign(&good("u1"));
    assert_eq!(
        c.get("/private/a", Some(&token), "up", &[]).await.status,
        200
    );

    redis.kill();
    let a = eventually("fail closed", Duration::from_secs(10), || async {
        let a = c.get("/private/a", Some(&token), "down", &[]).await;
        (a.status == 503).then_some(a)
    })
    .await;
    assert_eq!(a.body["error"], "auth_unavailable");
    // Open routes are not affected.
    assert_eq!(c.get("/open", None, "open", &[]).await.status, 200);
    assert!(gw
        .log()
        .contains("failing closed once it is older than max_stale"));

    redis.restart().await;
    eventually("recovers", Duration::from_secs(10), || async {
        (c.get("/private/a", Some(&token), "again", &[]).await.status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn claims_key_rate_limits_and_tiers_per_subject() {
    let origin = Origin::start("a").await;
    let key = SigningKey::ed25519("k");
    let cl = cluster(&origin);
    let routes = r#"
[[route]]
name = "private"
path_prefix = "/private"
cluster = "a"
auth = "users"
limits = ["per_user"]
"#;
    let limits = r#"
[limit.per_user]
key = "claim:sub"
rate = 2
per = "1h"
burst = 2
tier = "claim:plan"

[limit.per_user.tiers.pro]
rate = 5
burst = 5
"#;
    let auth = format!("{}{}", file_issuer(), rules("\"main\""));
    let jwks_text = jwks(&[&key]);
    let gw = Gateway::start(&[
        ("c.toml", &cl),
        ("r.toml", routes),
        ("auth.toml", &auth),
        ("l.toml", limits),
        ("main.jwks.json", &jwks_text),
    ])
    .await;
    let c = Client::new(&gw);
    let statuses = |who: &'static str, plan: Option<&'static str>, n: usize| {
        let mut claims = good(who);
        if let Some(p) = plan {
            claims["plan"] = json!(p);
        }
        let token = key.sign(&claims);
        let c = &c;
        async move {
            let mut out = Vec::new();
            for i in 0..n {
                out.push(
                    c.get("/private/x", Some(&token), &format!("{who}-{i}"), &[])
                        .await
                        .status,
                );
            }
            out
        }
    };
    // Each subject has its own bucket of 2; the `pro` tier gets 5.
    assert_eq!(statuses("alice", None, 3).await, vec![200, 200, 429]);
    assert_eq!(statuses("bob", None, 3).await, vec![200, 200, 429]);
    assert_eq!(
        statuses("carol", Some("pro"), 6).await,
        vec![200, 200, 200, 200, 200, 429]
    );
    // A new token of the same subject shares the subject's bucket.
    assert_eq!(statuses("alice", None, 1).await, vec![429]);
    let recs = records(&gw, 12).await;
    assert_eq!(recs["alice-2"].rate_limit.as_deref(), Some("limited"));
    assert_eq!(recs["alice-2"].auth_subject.as_deref(), Some("alice"));
    assert_eq!(recs["bob-0"].rate_limit.as_deref(), Some("allowed"));
}
