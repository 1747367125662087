//! Cache headers and the micro-cache end to end: a real gateway, real origins whose answers
//! the query string shapes (`cc=`, `cdn=`, `etag=`, `status=`, `cookie=`), real tokens.

use std::sync::atomic::Ordering;
use std::time::Duration;

use e2e::jwt::claims;
use e2e::origin::Origin;
use e2e::{eventually, read_access_log, Gateway};
use reqwest::header::HeaderMap;

const HS_SECRET: &str = "an-hmac-secret-of-at-least-32-bytes!";

fn cluster(origin: &Origin) -> String {
    format!(
        "[cluster.a]\nendpoints = [\"{}\"]\nconnect_timeout = \"300ms\"\n",
        origin.addr
    )
}

const AUTH: &str = r#"
[issuer.hs]
iss = "https://hs.test/"
audiences = ["api.test"]
algorithms = ["HS256"]
secret_env = "E2E_HS_SECRET"

[auth.users]
issuers = ["hs"]
"#;

const POLICIES: &str = r#"
[cache.web]
cache_control = "public, max-age=60, s-maxage=300, stale-while-revalidate=30"
cdn_cache_control = "max-age=10m, stale-if-error=1d"
cdn_header = "Surrogate-Control"
origin = "override"
vary = ["Accept-Encoding"]
credential_cookies = ["session"]
[cache.web.tags]
headers = ["Surrogate-Key", "Cache-Tag"]
path_segments = 2
fixed = ["site"]
[[cache.web.rule]]
paths = ["/static/*.js"]
cache_control = "public, max-age=365d, immutable"
[[cache.web.rule]]
statuses = [404]
cache_control = "public, max-age=30"

[cache.keep]
cache_control = "public, max-age=300"
origin = "keep"

[cache.stricter]
cache_control = "public, max-age=300, s-maxage=600"
cdn_cache_control = "max-age=3600"
"#;

const ROUTES: &str = r#"
[[route]]
name = "account"
path_prefix = "/account"
cluster = "a"
auth = "users"
cache = "web"

[[route]]
name = "keep"
path_prefix = "/keep"
cluster = "a"
cache = "keep"

[[route]]
name = "stricter"
path_prefix = "/stricter"
cluster = "a"
cache = "stricter"

[[route]]
name = "plain"
path_prefix = "/plain"
cluster = "a"

[[route]]
name = "web"
path_prefix = "/"
cluster = "a"
cache = "web"
"#;

async fn start(origin: &Origin, extra: &[(&str, &str)]) -> Gateway {
    let cl = cluster(origin);
    let mut files = vec![
        ("c.toml", cl.as_str()),
        ("auth.toml", AUTH),
        ("r.toml", ROUTES),
        ("cache.toml", POLICIES),
    ];
    files.extend_from_slice(extra);
    Gateway::start_env(&files, &[], &[("E2E_HS_SECRET", HS_SECRET.to_string())]).await
}

fn token(sub: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims("https://hs.test/", "api.test", sub),
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .unwrap()
}

struct Got {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Got {
    fn h(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
    fn n(&self) -> u64 {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["n"].as_u64())
            .unwrap_or(0)
    }
}

async fn get(c: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut req = c.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap_or_default();
    Got {
        status,
        headers,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_headers_reach_the_client_exactly() {
    let origin = Origin::start("o").await;
    let gw = start(&origin, &[]).await;
    let c = reqwest::Client::new();

    let a = get(&c, &gw.url("/shop/42/reviews?cc=no-cache"), &[]).await;
    assert_eq!(a.status, 200);
    // override: the origin's no-cache is replaced.
    assert_eq!(
        a.h("cache-control"),
        Some("public, max-age=60, s-maxage=300, stale-while-revalidate=30")
    );
    assert_eq!(
        a.h("cdn-cache-control"),
        Some("max-age=600, stale-if-error=86400")
    );
    assert_eq!(
        a.h("surrogate-control"),
        Some("max-age=600, stale-if-error=86400")
    );
    assert_eq!(a.h("vary"), Some("accept-encoding"));
    assert_eq!(a.h("surrogate-key"), Some("web /shop /shop/42 site"));
    assert_eq!(a.h("cache-tag"), Some("web,/shop,/shop/42,site"));

    // Rules: hashed assets get a year and immutable; a 404 its own lifetime.
    let a = get(&c, &gw.url("/static/app.3f9a.js"), &[]).await;
    assert_eq!(
        a.h("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    let a = get(&c, &gw.url("/missing?status=404"), &[]).await;
    assert_eq!(a.status, 404);
    assert_eq!(a.h("cache-control"), Some("public, max-age=30"));
    // 5xx: never cached, even if the origin says so.
    let a = get(
        &c,
        &gw.url("/broken?status=503&cc=public,max-age=600&cdn=max-age=9"),
        &[],
    )
    .await;
    assert_eq!(a.status, 503);
    assert_eq!(a.h("cache-control"), Some("no-store"));
    assert_eq!(a.h("cdn-cache-control"), None);
    assert_eq!(a.h("surrogate-key"), None);

    // keep: the origin's header when it sent one, else the policy's.
    let a = get(&c, &gw.url("/keep/x?cc=public,max-age=7"), &[]).await;
    assert_eq!(a.h("cache-control"), Some("public,max-age=7"));
    let a = get(&c, &gw.url("/keep/x"), &[]).await;
    assert_eq!(a.h("cache-control"), Some("public, max-age=300"));
    // stricter: shorter lifetime, private over public, no-store over all.
    let a = get(
        &c,
        &gw.url("/stricter/x?cc=max-age=30,s-maxage=9999&cdn=max-age=60"),
        &[],
    )
    .await;
    assert_eq!(
        a.h("cache-control"),
        Some("public, max-age=30, s-maxage=600")
    );
    assert_eq!(a.h("cdn-cache-control"), Some("max-age=60"));
    let a = get(&c, &gw.url("/stricter/x?cc=private,max-age=900"), &[]).await;
    assert_eq!(
        a.h("cache-control"),
        Some("private, max-age=300, s-maxage=600")
    );
    let a = get(&c, &gw.url("/stricter/x?cc=no-store"), &[]).await;
    assert_eq!(a.h("cache-control"), Some("no-store"));
    // A route without a policy passes the origin's headers untouched.
    let a = get(
        &c,
        &gw.url("/plain/x?cc=public,max-age=5&cdn=max-age=9"),
        &[],
    )
    .await;
    assert_eq!(a.h("cache-control"), Some("public,max-age=5"));
    assert_eq!(a.h("cdn-cache-control"), Some("max-age=9"));

    // The record says what the CDN was told.
    let records = eventually("records", Duration::from_secs(10), || {
        let all: Vec<_> = read_access_log(&gw.access_log_dir())
            .into_iter()
            .flat_map(|(_, r)| r)
            .collect();
        async move { (all.len() >= 10).then_some(all) }
    })
    .await;
    let status_of = |path: &str| {
        records
            .iter()
            .find(|r| r.path == path)
            .and_then(|r| r.cache_status.clone())
    };
    assert_eq!(status_of("/shop/42/reviews").as_deref(), Some("public"));
    assert_eq!(status_of("/broken").as_deref(), Some("no-store"));
    assert_eq!(status_of("/plain/x"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentialed_and_cookie_setting_responses_are_never_public() {
    let origin = Origin::start("o").await;
    let gw = start(&origin, &[]).await;
    let c = reqwest::Client::new();
    let shared = "cc=public,s-maxage=600,max-age=60&cdn=max-age=600";

    // A route with an auth rule: private, no CDN header, Vary: Authorization.
    let bearer = format!("Bearer {}", token("alice"));
    let a = get(
        &c,
        &gw.url(&format!("/account/me?{shared}")),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.h("cache-control"),
        Some("private, max-age=60, stale-while-revalidate=30")
    );
    assert_eq!(a.h("cdn-cache-control"), None);
    assert_eq!(a.h("surrogate-control"), None);
    assert_eq!(a.h("surrogate-key"), None);
    assert_eq!(a.h("vary"), Some("accept-encoding, authorization"));

    // An open route, but the request carries Authorization (the origin may personalise).
    let a = get(&c, &gw.url("/page"), &[("authorization", "Bearer x")]).await;
    assert_eq!(
        a.h("cache-control"),
        Some("private, max-age=60, stale-while-revalidate=30")
    );
    assert_eq!(a.h("cdn-cache-control"), None);
    // A session cookie named in the policy; other cookies do not count.
    let a = get(
        &c,
        &gw.url("/page"),
        &[("cookie", "theme=dark; session=abc")],
    )
    .await;
    assert_eq!(
        a.h("cache-control"),
        Some("private, max-age=60, stale-while-revalidate=30")
    );
    assert_eq!(a.h("vary"), Some("accept-encoding"));
    let a = get(&c, &gw.url("/page"), &[("cookie", "theme=dark")]).await;
    assert_eq!(
        a.h("cache-control"),
        Some("public, max-age=60, s-maxage=300, stale-while-revalidate=30")
    );
    // A response setting a cookie, to an anonymous request.
    let a = get(&c, &gw.url("/login?cookie=session%3Dnew"), &[]).await;
    assert_eq!(a.h("set-cookie"), Some("session=new"));
    assert_eq!(
        a.h("cache-control"),
        Some("private, max-age=60, stale-while-revalidate=30")
    );
    assert_eq!(a.h("cdn-cache-control"), None);

    let records = eventually("records", Duration::from_secs(10), || {
        let all: Vec<_> = read_access_log(&gw.access_log_dir())
            .into_iter()
            .flat_map(|(_, r)| r)
            .collect();
        async move { (all.len() >= 5).then_some(all) }
    })
    .await;
    let account = records.iter().find(|r| r.path == "/account/me").unwrap();
    assert_eq!(account.cache_status.as_deref(), Some("private"));
    assert_eq!(account.auth_subject.as_deref(), Some("alice"));
}

#[test]
fn check_warns_about_public_authenticated_responses() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[cluster.a]\nendpoints = [\"127.0.0.1:9\"]\n\n[cache.risky]\ncache_control = \"public, max-age=60\"\nauthenticated = \"public\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(e2e::bin("gateway"))
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", dir.path().display()), "");
    assert!(
        err.contains("warning: c.toml:6:17: cache.risky.authenticated: responses to requests with credentials"),
        "{err}"
    );
    assert!(err.contains("1 warning(s)"), "{err}");

    // And the errors: unknown directive, negative lifetime, immutable alone, no size bound.
    std::fs::write(
        dir.path().join("c.toml"),
        "[cluster.a]\nendpoints = [\"127.0.0.1:9\"]\n\n[cache.bad]\ncache_control = \"public, max-ag=60\"\ncdn_cache_control = \"max-age=-5\"\n\n[cache.imm]\ncache_control = \"public, immutable\"\n\n[cache.micro]\ncache_control = \"public, max-age=1\"\n[cache.micro.micro_cache]\nttl = \"1s\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(e2e::bin("gateway"))
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", dir.path().display()), "");
    for want in [
        "c.toml:5:26: cache.bad.cache_control: unknown directive `max-ag`",
        "c.toml:6:22: cache.bad.cdn_cache_control: `max-age=-5`: negative lifetime",
        "c.toml:9:18: cache.imm.cache_control: `immutable` without a lifetime",
        "c.toml:13:1: cache.micro.micro_cache.max_bytes: missing, expected a memory bound",
        "4 error(s)",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validators_pass_through_and_conditional_requests_get_304() {
    let origin = Origin::start("o").await;
    let gw = start(&origin, &[]).await;
    let c = reqwest::Client::new();
    let lm = "Tue, 10 Nov 2026 10:00:00 GMT";
    let url = gw.url(&format!("/doc?etag=%22v1%22&lm={}", lm.replace(' ', "%20")));
    let a = get(&c, &url, &[]).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.h("etag"), Some("\"v1\""));
    assert_eq!(a.h("last-modified"), Some(lm));
    let a = get(&c, &url, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(a.status, 304);
    assert!(a.body.is_empty());
    // The 304 carries the headers the 200 had.
    assert_eq!(
        a.h("cache-control"),
        Some("public, max-age=60, s-maxage=300, stale-while-revalidate=30")
    );
    assert_eq!(a.h("etag"), Some("\"v1\""));
    let a = get(&c, &url, &[("if-modified-since", lm)]).await;
    assert_eq!(a.status, 304);
    let a = get(&c, &url, &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(a.status, 200);
}

// ---- the micro-cache ----

const MICRO: &str = r#"
[cache.hot]
cache_control = "public, max-age=5"
vary = ["Accept-Language"]
[cache.hot.tags]
path_segments = 1
[cache.hot.micro_cache]
max_bytes = "1MiB"
ttl = "30s"
lock_timeout = "5s"
query_params = ["page"]

[cache.short]
cache_control = "public, max-age=1"
[cache.short.micro_cache]
max_bytes = "1MiB"
ttl = "1s"
stale_while_revalidate = "30s"
stale_if_error = "60s"

[cache.expiring]
cache_control = "public, max-age=1"
[cache.expiring.micro_cache]
max_bytes = "1MiB"
ttl = "1s"

[cache.tiny]
cache_control = "public, max-age=60"
[cache.tiny.micro_cache]
max_bytes = "64KiB"
ttl = "60s"
"#;

const MICRO_ROUTES: &str = r#"
[[route]]
name = "expiring"
path_prefix = "/expiring"
cluster = "a"
cache = "expiring"

[[route]]
name = "short"
path_prefix = "/short"
cluster = "a"
cache = "short"

[[route]]
name = "tiny"
path_prefix = "/tiny"
cluster = "a"
cache = "tiny"

[[route]]
name = "hot"
path_prefix = "/"
cluster = "a"
cache = "hot"
"#;

async fn start_micro(origin: &Origin) -> Gateway {
    let cl = cluster(origin);
    Gateway::start(&[
        ("c.toml", &cl),
        ("r.toml", MICRO_ROUTES),
        ("cache.toml", MICRO),
    ])
    .await
}

fn hits(origin: &Origin) -> u64 {
    origin.state.requests.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_misses_make_one_origin_request() {
    let origin = Origin::start("o").await;
    let gw = start_micro(&origin).await;
    let c = reqwest::Client::new();
    let url = gw.url("/slow/popular?ms=300&page=1");
    let before = hits(&origin);
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move { get(&c, &url, &[]).await })
        })
        .collect();
    let mut statuses = std::collections::HashMap::<String, usize>::new();
    for t in tasks {
        let a = t.await.unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.n(), before + 1, "every answer is the one origin response");
        *statuses
            .entry(a.h("cache-status").unwrap_or("-").to_string())
            .or_default() += 1;
    }
    assert_eq!(
        hits(&origin) - before,
        1,
        "one origin request: {statuses:?}"
    );
    assert_eq!(
        statuses.get("edgeway; fwd=miss; stored"),
        Some(&1),
        "{statuses:?}"
    );
    // The rest waited on the lock (collapsed) or came after the fill (hit).
    let hit: usize = statuses
        .iter()
        .filter(|(k, _)| k.starts_with("edgeway; hit"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(hit, 99, "{statuses:?}");

    // Query parameters outside the allow-list do not split the key; allow-listed ones do.
    let a = get(&c, &gw.url("/slow/popular?page=1&ms=300&utm=x"), &[]).await;
    assert_eq!(a.h("cache-status"), Some("edgeway; hit"));
    let a = get(&c, &gw.url("/slow/popular?ms=1&page=2"), &[]).await;
    assert_eq!(a.h("cache-status"), Some("edgeway; fwd=miss; stored"));
    // Credentials bypass the micro-cache and get private headers.
    let a = get(&c, &url, &[("authorization", "Bearer x")]).await;
    assert_eq!(a.h("cache-status"), Some("edgeway; fwd=bypass"));
    assert_eq!(a.h("cache-control"), Some("private, max-age=5"));
    assert_eq!(a.n(), hits(&origin));

    let records = eventually("records", Duration::from_secs(10), || {
        let all: Vec<_> = read_access_log(&gw.access_log_dir())
            .into_iter()
            .flat_map(|(_, r)| r)
            .collect();
        async move { (all.len() >= 103).then_some(all) }
    })
    .await;
    let count = |s: &str| {
        records
            .iter()
            .filter(|r| r.cache_status.as_deref() == Some(s))
            .count()
    };
    assert_eq!(count("miss"), 2);
    assert_eq!(count("hit"), 100);
    assert_eq!(count("bypass"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_separates_entries_and_conditional_hits_get_304() {
    let origin = Origin::start("o").await;
    let gw = start_micro(&origin).await;
    let c = reqwest::Client::new();
    let url = gw.url("/greeting?etag=%22g1%22");
    let en = get(&c, &url, &[("accept-language", "en")]).await;
    let fr = get(&c, &url, &[("accept-language", "fr")]).await;
    assert_ne!(en.n(), fr.n(), "two variants, two origin requests");
    assert_eq!(en.h("vary"), Some("accept-language"));
    let en2 = get(&c, &url, &[("accept-language", "en")]).await;
    let fr2 = get(&c, &url, &[("accept-language", "fr")]).await;
    assert_eq!((en2.n(), fr2.n()), (en.n(), fr.n()));
    assert_eq!(en2.h("cache-status"), Some("edgeway; hit"));
    assert_eq!(fr2.h("cache-status"), Some("edgeway; hit"));
    // From the micro-cache: 304 for a matching validator, with the policy's headers.
    let before = hits(&origin);
    let nm = get(
        &c,
        &url,
        &[("accept-language", "en"), ("if-none-match", "\"g1\"")],
    )
    .await;
    assert_eq!(nm.status, 304);
    assert_eq!(nm.h("cache-control"), Some("public, max-age=5"));
    assert_eq!(nm.h("etag"), Some("\"g1\""));
    assert_eq!(hits(&origin), before, "served by the micro-cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_refreshes_once_and_stale_if_error_covers_an_outage() {
    let origin = Origin::start("o").await;
    let gw = start_micro(&origin).await;
    let c = reqwest::Client::new();
    let url = gw.url("/short/item");
    let first = get(&c, &url, &[]).await;
    assert_eq!(first.h("cache-status"), Some("edgeway; fwd=miss; stored"));
    // After the 1 s ttl: stale answers at once while one background request refreshes.
    let before = hits(&origin);
    let stale = eventually("entry stale", Duration::from_secs(5), || {
        let c = c.clone();
        let url = url.clone();
        async move {
            let a = get(&c, &url, &[]).await;
            (a.h("cache-status") == Some("edgeway; hit; detail=stale")).then_some(a)
        }
    })
    .await;
    assert_eq!(stale.n(), first.n(), "the stale body");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { get(&c, &url, &[]).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let first_n = first.n();
    eventually("refreshed", Duration::from_secs(5), || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let a = get(&c, &url, &[]).await;
            (a.n() > first_n && a.h("cache-status") == Some("edgeway; hit")).then_some(())
        }
    })
    .await;
    assert_eq!(hits(&origin) - before, 1, "one background refresh");

    // The origin fails: after the ttl, the stale entry is served instead of the 503.
    origin.state.fail_status.store(503, Ordering::SeqCst);
    let a = eventually("served stale on error", Duration::from_secs(5), || {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let a = get(&c, &url, &[]).await;
            (a.h("cache-status") == Some("edgeway; hit; detail=stale")).then_some(a)
        }
    })
    .await;
    assert_eq!(a.status, 200);
    assert!(a.body.contains("\"origin\""), "{}", a.body);
    // A key the cache never had gets the origin's error (never cached).
    let a = get(&c, &gw.url("/short/never"), &[]).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.h("cache-control"), Some("no-store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_by_tag_and_key_on_the_admin_listener_only() {
    let origin = Origin::start("o").await;
    let gw = start_micro(&origin).await;
    let c = reqwest::Client::new();
    for p in ["/news/1", "/news/2", "/sport/1"] {
        let a = get(&c, &gw.url(p), &[]).await;
        assert_eq!(
            a.h("surrogate-key"),
            Some(&*format!("hot /{}", p.split('/').nth(1).unwrap()))
        );
        assert_eq!(
            get(&c, &gw.url(p), &[]).await.h("cache-status"),
            Some("edgeway; hit")
        );
    }
    // PURGE on the public listener is an ordinary proxied request, never a purge.
    let r = c
        .request(
            reqwest::Method::from_bytes(b"PURGE").unwrap(),
            gw.url("/cache/purge?tag=/news"),
        )
        .send()
        .await
        .unwrap();
    assert_ne!(r.text().await.unwrap_or_default(), "{\"purged\":2}\n");
    assert_eq!(
        get(&c, &gw.url("/news/1"), &[]).await.h("cache-status"),
        Some("edgeway; hit")
    );

    let admin = |q: &str| format!("http://{}/cache/purge?{q}", gw.admin);
    let purge = reqwest::Method::from_bytes(b"PURGE").unwrap();
    let r = c
        .request(purge.clone(), admin("tag=/news"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{\"purged\":2}\n");
    for p in ["/news/1", "/news/2"] {
        assert_eq!(
            get(&c, &gw.url(p), &[]).await.h("cache-status"),
            Some("edgeway; fwd=miss; stored"),
            "{p}"
        );
    }
    assert_eq!(
        get(&c, &gw.url("/sport/1"), &[]).await.h("cache-status"),
        Some("edgeway; hit")
    );
    // By key: host and canonical path.
    let host = "127.0.0.1/sport/1";
    let r = c
        .request(purge, admin(&format!("key={host}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "{\"purged\":1}\n");
    assert_eq!(
        get(&c, &gw.url("/sport/1"), &[]).await.h("cache-status"),
        Some("edgeway; fwd=miss; stored")
    );
    let r = c.get(admin("tag=x")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_bound_holds_under_a_key_flood() {
    let origin = Origin::start("o").await;
    let gw = start_micro(&origin).await;
    let c = reqwest::Client::new();
    for i in 0..400 {
        let a = get(&c, &gw.url(&format!("/tiny/{i}")), &[]).await;
        assert_eq!(a.status, 200);
    }
    let stats: serde_json::Value = c
        .get(format!("http://{}/cache/stats", gw.admin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tiny = &stats["tiny"];
    let bytes = tiny["bytes"].as_u64().unwrap();
    assert!(bytes <= 64 * 1024, "{stats}");
    assert!(bytes > 32 * 1024, "the cache is used: {stats}");
    assert!(tiny["evicted_items"].as_u64().unwrap() > 0, "{stats}");
    // The newest entries are still there, the oldest were evicted.
    assert_eq!(
        get(&c, &gw.url("/tiny/399"), &[]).await.h("cache-status"),
        Some("edgeway; hit")
    );
    assert_eq!(
        get(&c, &gw.url("/tiny/0"), &[]).await.h("cache-status"),
        Some("edgeway; fwd=miss; stored")
    );
}

/// 100 concurrent requests on `url`; their answers.
async fn burst(c: &reqwest::Client, url: &str) -> Vec<Got> {
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (c, url) = (c.clone(), url.to_string());
            tokio::spawn(async move { get(&c, &url, &[]).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_requests_on_an_expired_key_make_one_origin_request() {
    let origin = Origin::start("o").await;
    let gw = start_micro(&origin).await;
    let c = reqwest::Client::new();
    let url = gw.url("/expiring/slow?ms=300");
    let first = get(&c, &url, &[]).await;
    assert_eq!(first.h("cache-status"), Some("edgeway; fwd=miss; stored"));
    // Past the 1 s ttl (no stale window): the next burst refetches once. pingora-cache
    // judges freshness by the system clock, so this waits the ttl out for real.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = hits(&origin);
    let answers = burst(&c, &url).await;
    assert_eq!(hits(&origin) - before, 1, "one refetch for 100 requests");
    let refetched = answers
        .iter()
        .filter(|a| a.h("cache-status") == Some("edgeway; fwd=stale; stored"))
        .count();
    assert_eq!(refetched, 1);
    assert!(answers.iter().all(|a| a.status == 200 && a.n() > first.n()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_subject_entries_on_an_authenticated_route() {
    let origin = Origin::start("o").await;
    let mine = r#"
[cache.mine]
cache_control = "public, max-age=60"
[cache.mine.micro_cache]
max_bytes = "1MiB"
ttl = "30s"
per_subject = true

[cache.shared]
cache_control = "public, max-age=60"
[cache.shared.micro_cache]
max_bytes = "1MiB"
ttl = "30s"
"#;
    let routes = r#"
[[route]]
name = "me"
path_prefix = "/me"
cluster = "a"
auth = "users"
cache = "mine"

[[route]]
name = "team"
path_prefix = "/team"
cluster = "a"
auth = "users"
cache = "shared"
"#;
    let cl = cluster(&origin);
    let gw = Gateway::start_env(
        &[
            ("c.toml", &cl),
            ("auth.toml", AUTH),
            ("r.toml", routes),
            ("cache.toml", mine),
        ],
        &[],
        &[("E2E_HS_SECRET", HS_SECRET.to_string())],
    )
    .await;
    let c = reqwest::Client::new();
    let alice = format!("Bearer {}", token("alice"));
    let bob = format!("Bearer {}", token("bob"));
    let url = gw.url("/me/profile");
    let a1 = get(&c, &url, &[("authorization", &alice)]).await;
    let b1 = get(&c, &url, &[("authorization", &bob)]).await;
    let a2 = get(&c, &url, &[("authorization", &alice)]).await;
    assert_eq!(a1.h("cache-status"), Some("edgeway; fwd=miss; stored"));
    assert_eq!(
        b1.h("cache-status"),
        Some("edgeway; fwd=miss; stored"),
        "bob never gets alice's entry"
    );
    assert_ne!(a1.n(), b1.n());
    assert_eq!(a2.h("cache-status"), Some("edgeway; hit"));
    assert_eq!(a2.n(), a1.n());
    // Still private to the browser and the CDN.
    assert_eq!(a2.h("cache-control"), Some("private, max-age=60"));
    assert_eq!(a2.h("vary"), Some("authorization"));
    // Without a token: 401 from the auth step, never a cached answer.
    assert_eq!(get(&c, &url, &[]).await.status, 401);
    // An authenticated route without per_subject bypasses the micro-cache.
    let t = get(&c, &gw.url("/team/x"), &[("authorization", &alice)]).await;
    assert_eq!(t.h("cache-status"), Some("edgeway; fwd=bypass"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_micro_cache_keeps_its_entries_across_an_unrelated_reload() {
    let origin = Origin::start("o").await;
    let gw = start_micro(&origin).await;
    let c = reqwest::Client::new();
    let url = gw.url("/kept");
    let first = get(&c, &url, &[]).await;
    assert_eq!(first.h("cache-status"), Some("edgeway; fwd=miss; stored"));
    // A route is added: the micro-caches' settings did not change, their entries stay.
    gw.write_policy(
        "r.toml",
        &format!("{MICRO_ROUTES}\n[[route]]\nname = \"extra\"\npath_prefix = \"/extra\"\ncluster = \"a\"\n"),
    );
    eventually("reload applied", Duration::from_secs(10), || {
        let (c, u) = (c.clone(), gw.url("/extra/x"));
        async move { (get(&c, &u, &[]).await.h("cache-status").is_none()).then_some(()) }
    })
    .await;
    let again = get(&c, &url, &[]).await;
    assert_eq!(again.h("cache-status"), Some("edgeway; hit"));
    assert_eq!(again.n(), first.n());
    // The policy's own settings change: a new, empty cache.
    gw.write_policy(
        "cache.toml",
        &MICRO.replace("ttl = \"30s\"", "ttl = \"20s\""),
    );
    eventually("new micro-cache", Duration::from_secs(10), || {
        let (c, u) = (c.clone(), url.clone());
        async move {
            (get(&c, &u, &[]).await.h("cache-status") == Some("edgeway; fwd=miss; stored"))
                .then_some(())
        }
    })
    .await;
}
