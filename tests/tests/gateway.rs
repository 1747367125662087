//! Gateway end to end: a real `gateway` process, real hyper origins, real HTTP/TLS clients.

use std::time::Duration;

use e2e::origin::Origin;
use e2e::{eventually, free_port, Gateway};
use serde_json::Value;

fn clusters(list: &[(&str, &[&Origin], &str)]) -> String {
    let mut s = String::new();
    for (name, origins, extra) in list {
        let eps: Vec<String> = origins.iter().map(|o| format!("\"{}\"", o.addr)).collect();
        s.push_str(&format!(
            "[cluster.{name}]\nendpoints = [{}]\nconnect_timeout = \"300ms\"\n{extra}\n",
            eps.join(", ")
        ));
    }
    s
}

/// A gateway with one cluster `a` (origin `a`) and one route `all` to it, plus `more` files.
async fn gateway_all_to(a: &Origin, more: &[(&str, &str)]) -> Gateway {
    let cl = clusters(&[("a", &[a], "")]);
    let mut files = vec![
        ("c.toml", cl.as_str()),
        ("r.toml", "[[route]]\nname = \"all\"\ncluster = \"a\"\n"),
    ];
    files.extend_from_slice(more);
    Gateway::start(&files).await
}

async fn get(
    client: &reqwest::Client,
    url: &str,
    host: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client
        .get(url)
        .header("host", host)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

const ROUTES: &str = r#"
[[route]]
name = "exact-root"
hosts = ["api.test"]
cluster = "a"

[[route]]
name = "exact-v1"
hosts = ["api.test"]
path_prefix = "/v1/"
cluster = "b"

[[route]]
name = "exact-v1-admin"
hosts = ["api.test"]
path_prefix = "/v1/admin/"
methods = ["POST"]
cluster = "c"

[[route]]
name = "wildcard"
hosts = ["*.tenants.test"]
path_prefix = "/"
cluster = "c"
"#;

#[tokio::test]
async fn routes_by_host_prefix_and_method_and_forwards_identity() {
    let (a, b, c) = (
        Origin::start("a").await,
        Origin::start("b").await,
        Origin::start("c").await,
    );
    let cl = clusters(&[("a", &[&a], ""), ("b", &[&b], ""), ("c", &[&c], "")]);
    let gw = Gateway::start(&[("clusters.toml", &cl), ("routes.toml", ROUTES)]).await;
    let client = reqwest::Client::new();

    let cases = [
        ("api.test", "/", "a"),
        ("api.test:8080", "/other", "a"),
        ("API.TEST", "/v1/users", "b"),
        ("x.tenants.test", "/anything", "c"),
        ("deep.x.tenants.test", "/", "c"),
    ];
    for (host, path, want) in cases {
        let (status, headers, body) = get(&client, &gw.url(path), host).await;
        assert_eq!(status, 200, "{host}{path}");
        assert_eq!(body["origin"], want, "{host}{path} → {body}");
        assert_eq!(body["path"], path);
        // The request id is generated, sent upstream and returned to the client.
        let rid = headers["x-request-id"].to_str().unwrap();
        assert_eq!(rid.len(), 36);
        assert_eq!(body["headers"]["x-request-id"], rid);
    }
    // GET under the POST-only longer prefix: 405, not a fall-through to `/v1/` (see
    // tests/hostile.rs for the rest of the canonical-routing cases).
    let r = client
        .get(gw.url("/v1/admin/x"))
        .header("host", "api.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = client
        .post(gw.url("/v1/admin/x"))
        .header("host", "api.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["origin"],
        "c",
        "longest prefix with method"
    );

    // A well-formed incoming id is kept; spoofed forwarding headers from an untrusted peer are
    // replaced.
    let r = client
        .get(gw.url("/v1/echo"))
        .header("host", "api.test")
        .header("x-request-id", "client-id-123")
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("forwarded", "for=6.6.6.6")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-id-123");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-request-id"], "client-id-123");
    assert_eq!(body["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(body["headers"]["x-forwarded-proto"], "http");
    assert_eq!(body["headers"]["x-forwarded-host"], "api.test");
    assert!(body["headers"].get("forwarded").is_none());

    // A malformed id (header injection attempt, too long) is replaced.
    let r = client
        .get(gw.url("/"))
        .header("host", "api.test")
        .header("x-request-id", "a".repeat(200))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"].len(), 36);

    let m = gw
        .metric(
            "gateway_requests_total",
            &[("route", "exact-v1"), ("status", "2xx")],
        )
        .await;
    assert!(m >= 2.0, "per-route metric counted: {m}");
}

#[tokio::test]
async fn trusted_proxy_forwarding_is_appended() {
    let a = Origin::start("a").await;
    let fw = "[forwarding]\ntrusted_proxies = [\"127.0.0.0/8\"]\n";
    let gw = gateway_all_to(&a, &[("f.toml", fw)]).await;
    let body: Value = reqwest::Client::new()
        .get(gw.url("/"))
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["headers"]["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");
}

#[tokio::test]
async fn no_route_is_a_json_404_with_the_request_id() {
    let a = Origin::start("a").await;
    let cl = clusters(&[("a", &[&a], "")]);
    let routes = "[[route]]\nname = \"only\"\nhosts = [\"api.test\"]\npath_prefix = \"/v1/\"\ncluster = \"a\"\n";
    let gw = Gateway::start(&[("c.toml", &cl), ("r.toml", routes)]).await;
    let client = reqwest::Client::new();
    for (host, path) in [("api.test", "/v2/x"), ("other.test", "/v1/x")] {
        let r = client
            .get(gw.url(path))
            .header("host", host)
            .header("x-request-id", "rid-404")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["x-request-id"], "rid-404");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "no_route");
        assert_eq!(body["status"], 404);
        assert_eq!(body["request_id"], "rid-404");
    }
    assert_eq!(
        a.state.requests.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504_with_request_id() {
    let slow = Origin::start("slow").await;
    let dead_port = free_port();
    let cl = format!(
        "[cluster.dead]\nendpoints = [\"127.0.0.1:{dead_port}\"]\nconnect_timeout = \"300ms\"\n\n\
         [cluster.slow]\nendpoints = [\"{}\"]\nread_timeout = \"200ms\"\n",
        slow.addr
    );
    let routes = "[[route]]\nname = \"dead\"\npath_prefix = \"/dead\"\ncluster = \"dead\"\n\n\
                  [[route]]\nname = \"slow\"\npath_prefix = \"/slow\"\ncluster = \"slow\"\n";
    let gw = Gateway::start(&[("c.toml", &cl), ("r.toml", routes)]).await;
    let client = reqwest::Client::new();

    let r = client
        .get(gw.url("/dead"))
        .header("x-request-id", "rid-502")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-request-id"], "rid-502");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "upstream_connect_failed");
    assert_eq!(body["request_id"], "rid-502");

    let r = client
        .get(gw.url("/slow?ms=3000"))
        .header("x-request-id", "rid-504")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert_eq!(r.headers()["x-request-id"], "rid-504");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "upstream_timeout");
    assert_eq!(body["request_id"], "rid-504");

    // Under the timeout the same route works.
    let r = client.get(gw.url("/slow?ms=10")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    assert!(
        gw.metric(
            "gateway_upstream_errors_total",
            &[("cluster", "dead"), ("kind", "connect")]
        )
        .await
            >= 1.0
    );
    assert!(
        gw.metric(
            "gateway_upstream_errors_total",
            &[("cluster", "slow"), ("kind", "timeout")]
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn health_check_removes_a_dead_endpoint_and_restores_it() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let hc = "[cluster.pool.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"2s\"\nunhealthy_threshold = 1\nhealthy_threshold = 1\n";
    let cl = clusters(&[("pool", &[&a, &b], hc)]);
    let routes = "[[route]]\nname = \"pool\"\ncluster = \"pool\"\n";
    let gw = Gateway::start(&[("c.toml", &cl), ("r.toml", routes)]).await;
    let client = reqwest::Client::new();
    let origin_of = |client: reqwest::Client, url: String| async move {
        let v: Value = client.get(url).send().await.unwrap().json().await.unwrap();
        v["origin"].as_str().unwrap().to_string()
    };
    let url = gw.url("/x");

    // Both serve while healthy.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(origin_of(client.clone(), url.clone()).await);
    }
    assert_eq!(seen.len(), 2, "round robin over both: {seen:?}");

    // A fails its health check: it leaves the rotation.
    a.set_healthy(false);
    eventually("endpoint a marked down", Duration::from_secs(10), || {
        let m = gw.metrics();
        async move {
            (e2e::metric_value(
                &m.await,
                "gateway_upstream_endpoint_healthy",
                &[("cluster", "pool"), ("endpoint", &a.addr.to_string())],
            ) == 0.0)
                .then_some(())
        }
    })
    .await;
    for _ in 0..10 {
        assert_eq!(origin_of(client.clone(), url.clone()).await, "b");
    }

    // A recovers: it is put back.
    a.set_healthy(true);
    eventually(
        "endpoint a back in rotation",
        Duration::from_secs(10),
        || {
            let f = origin_of(client.clone(), url.clone());
            async move { (f.await == "a").then_some(()) }
        },
    )
    .await;

    // Every endpoint down: 503, not a hang.
    a.set_healthy(false);
    b.set_healthy(false);
    let r = eventually("all endpoints down", Duration::from_secs(10), || {
        let req = client.get(url.clone()).send();
        async move { req.await.ok().filter(|r| r.status() == 503) }
    })
    .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "no_healthy_upstream");
}

fn tls_client(gw: &Gateway, max: Option<reqwest::tls::Version>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&gw.ca_pem).unwrap()).unwrap();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .resolve("api.localhost", gw.https);
    if let Some(v) = max {
        b = b.max_tls_version(v);
    }
    b.build().unwrap()
}

#[tokio::test]
async fn tls_with_generated_ca_alpn_h2_and_old_versions_refused() {
    let a = Origin::start("a").await;
    let gw = gateway_all_to(&a, &[]).await;
    let url = format!("https://api.localhost:{}/hello", gw.https.port());

    // TLS 1.3 with ALPN: HTTP/2 is negotiated; the origin sees X-Forwarded-Proto https.
    let r = tls_client(&gw, None)
        .get(&url)
        .send()
        .await
        .expect("TLS handshake with dev CA");
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-forwarded-proto"], "https");
    assert_eq!(
        body["headers"]["x-forwarded-host"],
        format!("api.localhost:{}", gw.https.port())
    );

    // TLS 1.2 is accepted.
    let r = tls_client(&gw, Some(reqwest::tls::Version::TLS_1_2))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // HTTP/1.1 only client still works over ALPN.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&gw.ca_pem).unwrap()).unwrap();
    let h1 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .http1_only()
        .resolve("api.localhost", gw.https)
        .build()
        .unwrap();
    assert_eq!(
        h1.get(&url).send().await.unwrap().version(),
        reqwest::Version::HTTP_11
    );

    // A TLS 1.1 ClientHello gets a fatal alert, never a ServerHello.
    let reply = e2e::tls::send_client_hello(gw.https, [3, 2]).await;
    assert_eq!(
        reply.first(),
        Some(&21),
        "expected a TLS alert record, got {reply:?}"
    );
    assert_eq!(reply.get(5), Some(&2), "alert level fatal");
    assert_eq!(reply.get(6), Some(&70), "alert protocol_version");
    // The same hello offering TLS 1.2 gets a ServerHello: the refusal above is about the version.
    let reply = e2e::tls::send_client_hello(gw.https, [3, 3]).await;
    assert_eq!(
        reply.first(),
        Some(&22),
        "expected a handshake record, got {reply:?}"
    );

    // A client that does not trust the dev CA fails the handshake.
    let untrusting = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .resolve("api.localhost", gw.https)
        .build()
        .unwrap();
    assert!(untrusting.get(&url).send().await.is_err());
}

#[tokio::test]
async fn valid_reload_applies_without_failing_in_flight_and_invalid_is_rejected() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let cl = clusters(&[("a", &[&a], ""), ("b", &[&b], "")]);
    let routes_v1 = "[[route]]\nname = \"main\"\ncluster = \"a\"\n";
    let gw = Gateway::start(&[("c.toml", &cl), ("r.toml", routes_v1)]).await;
    let client = reqwest::Client::new();
    let v1 = gw.metrics().await;
    assert!(v1.contains("gateway_policy_info{version="));

    // A request in flight across the reload finishes normally.
    let in_flight = tokio::spawn(client.get(gw.url("/slow?ms=1500")).send());
    // Background traffic during the reload never fails.
    let bg_client = client.clone();
    let bg_url = gw.url("/bg");
    let background = tokio::spawn(async move {
        let mut ok = 0;
        for _ in 0..200 {
            let r = bg_client
                .get(&bg_url)
                .send()
                .await
                .expect("no connection error during reload");
            assert_eq!(r.status(), 200);
            ok += 1;
        }
        ok
    });

    gw.write_policy("r.toml", "[[route]]\nname = \"main\"\ncluster = \"b\"\n");
    eventually("reload to cluster b", Duration::from_secs(10), || {
        let req = client.get(gw.url("/probe")).send();
        async move {
            let v: Value = req.await.ok()?.json().await.ok()?;
            (v["origin"] == "b").then_some(())
        }
    })
    .await;
    let r = in_flight
        .await
        .unwrap()
        .expect("in-flight request survived the reload");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["origin"],
        "a",
        "started on the old policy"
    );
    assert_eq!(background.await.unwrap(), 200);
    assert_eq!(
        gw.metric("gateway_policy_reloads_total", &[("result", "success")])
            .await,
        1.0
    );

    // An invalid edit: rejected, counted, logged with file and line; the last good policy serves.
    let before = gw.metrics().await;
    let version_line = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("gateway_policy_info{"))
            .unwrap()
            .to_string()
    };
    gw.write_policy("r.toml", "[[route]]\nname = \"main\"\ncluster = \"nope\"\n");
    eventually("reload failure counted", Duration::from_secs(10), || {
        let m = gw.metrics();
        async move {
            (e2e::metric_value(
                &m.await,
                "gateway_policy_reloads_total",
                &[("result", "failure")],
            ) >= 1.0)
                .then_some(())
        }
    })
    .await;
    let v: Value = client
        .get(gw.url("/x"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["origin"], "b");
    assert_eq!(version_line(&gw.metrics().await), version_line(&before));
    let log = gw.log();
    assert!(
        log.contains("r.toml:3:11: route[0].cluster"),
        "log names file, line and field:\n{log}"
    );

    // SIGHUP after fixing the file applies it.
    std::fs::write(
        gw.policies.join("r.toml"),
        "[[route]]\nname = \"main\"\ncluster = \"a\"\n",
    )
    .unwrap();
    gw.signal("HUP");
    eventually("reload back to a", Duration::from_secs(10), || {
        let req = client.get(gw.url("/probe")).send();
        async move {
            let v: Value = req.await.ok()?.json().await.ok()?;
            (v["origin"] == "a").then_some(())
        }
    })
    .await;

    // Removing cluster b removes its endpoint from the health gauge; a's stays.
    let gauge = |m: &str, cluster: &str| {
        m.lines().any(|l| {
            l.starts_with("gateway_upstream_endpoint_healthy{")
                && l.contains(&format!("cluster=\"{cluster}\""))
        })
    };
    assert!(gauge(&gw.metrics().await, "b"));
    gw.write_policy("c.toml", &clusters(&[("a", &[&a], "")]));
    eventually(
        "cluster b leaves the gauge",
        Duration::from_secs(10),
        || {
            let m = gw.metrics();
            async move { (!gauge(&m.await, "b")).then_some(()) }
        },
    )
    .await;
    assert!(gauge(&gw.metrics().await, "a"));
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let a = Origin::start("a").await;
    let cl = clusters(&[("a", &[&a], "")]);
    let routes = "[[route]]\nname = \"main\"\ncluster = \"a\"\n";
    let mut gw = Gateway::start(&[("c.toml", &cl), ("r.toml", routes)]).await;
    let client = reqwest::Client::new();
    let in_flight = tokio::spawn(client.get(gw.url("/slow?ms=1000")).send());
    eventually("request reached origin", Duration::from_secs(5), || {
        let n = a.state.requests.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n >= 1).then_some(()) }
    })
    .await;
    gw.signal("TERM");
    let r = in_flight
        .await
        .unwrap()
        .expect("in-flight request completed during drain");
    assert_eq!(r.status(), 200);
    let status = tokio::task::spawn_blocking(move || gw.child.wait().map(|s| s.success()))
        .await
        .unwrap()
        .unwrap();
    assert!(status, "clean exit after drain");
}

#[tokio::test]
async fn certificate_rotation_without_restart() {
    let a = Origin::start("a").await;
    let gw = gateway_all_to(&a, &[]).await;
    let url = format!("https://api.localhost:{}/", gw.https.port());
    assert_eq!(
        tls_client(&gw, None)
            .get(&url)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A new CA and certificate, moved into place the way deploy tools do (write, rename).
    let fresh = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(e2e::bin("gateway"))
        .args(["gen-certs", "--out"])
        .arg(fresh.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let live = gw.ca_pem.parent().unwrap().to_path_buf();
    for f in ["server.key", "server.pem"] {
        std::fs::copy(fresh.path().join(f), live.join(format!(".{f}.new"))).unwrap();
        std::fs::rename(live.join(format!(".{f}.new")), live.join(f)).unwrap();
    }
    let new_ca =
        reqwest::Certificate::from_pem(&std::fs::read(fresh.path().join("ca.pem")).unwrap())
            .unwrap();
    let trusting_new = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(new_ca)
        .resolve("api.localhost", gw.https)
        .build()
        .unwrap();
    eventually("new certificate served", Duration::from_secs(10), || {
        let req = trusting_new.get(&url).send();
        async move { req.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
    })
    .await;
    // Clients that only trust the old CA now fail: the old certificate is gone.
    assert!(tls_client(&gw, None).get(&url).send().await.is_err());

    // A broken pair is rejected and the current certificate keeps serving.
    std::fs::write(live.join("server.key"), "not a key").unwrap();
    std::fs::write(live.join("server.pem"), "not a cert").unwrap();
    eventually("rejection logged", Duration::from_secs(10), || {
        let log = gw.log();
        async move {
            log.contains("TLS certificate reload rejected")
                .then_some(())
        }
    })
    .await;
    assert_eq!(trusting_new.get(&url).send().await.unwrap().status(), 200);
}

/// The leaf certificate the gateway's HTTPS listener presents for `sni` (trusting `ca`), or
/// the handshake error.
async fn presented_cert(
    addr: std::net::SocketAddr,
    sni: &str,
    ca: &rcgen::Certificate,
) -> Result<Vec<u8>, String> {
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    Ok(conn.peer_certificates().unwrap()[0].as_ref().to_vec())
}

#[tokio::test]
async fn https_serves_a_certificate_per_sni_and_can_refuse_unknown_names() {
    let a = Origin::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let mut leaves = Vec::new();
    let mut args: Vec<String> = Vec::new();
    for (name, sans) in [("one", vec!["one.test"]), ("two", vec!["*.two.test"])] {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap()
                .signed_by(&key, &ca, &ca_key)
                .unwrap();
        let (c, k) = (
            dir.path().join(format!("{name}.pem")),
            dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        args.extend([
            "--tls-cert".into(),
            c.display().to_string(),
            "--tls-key".into(),
            k.display().to_string(),
        ]);
        leaves.push(cert.der().as_ref().to_vec());
    }
    let cl = clusters(&[("a", &[&a], "")]);
    let files = [
        ("c.toml", cl.as_str()),
        ("r.toml", "[[route]]\nname = \"all\"\ncluster = \"a\"\n"),
    ];
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let gw = Gateway::start_with(&files, &arg_refs).await;
    assert_eq!(
        presented_cert(gw.https, "one.test", &ca).await.unwrap(),
        leaves[0]
    );
    assert_eq!(
        presented_cert(gw.https, "api.two.test", &ca).await.unwrap(),
        leaves[1]
    );
    // Unknown name: the default (first) certificate, which the client then rejects.
    let err = presented_cert(gw.https, "three.test", &ca)
        .await
        .unwrap_err();
    assert!(
        err.contains("certificate") || err.contains("NotValidForName"),
        "{err}"
    );
    drop(gw);

    let mut strict = arg_refs.clone();
    strict.extend(["--tls-unknown-sni", "reject"]);
    let gw = Gateway::start_with(&files, &strict).await;
    assert_eq!(
        presented_cert(gw.https, "api.two.test", &ca).await.unwrap(),
        leaves[1]
    );
    let err = presented_cert(gw.https, "three.test", &ca)
        .await
        .unwrap_err();
    assert!(
        err.contains("alert")
            || err.contains("Unrecognised")
            || err.contains("unrecognized")
            || err.contains("HandshakeFailure"),
        "{err}"
    );
}
