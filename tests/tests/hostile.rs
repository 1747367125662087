//! Hostile clients against a real gateway over raw sockets: requests that try to bend
//! routing (absolute-form targets, malformed hosts, dot segments, encoded slashes, prefix
//! tricks, method fall-through) or to spoof identity headers. Each case asserts the status,
//! what the origin received (or that it received nothing), and the access-log record.

use std::sync::atomic::Ordering;
use std::time::Duration;

use e2e::origin::Origin;
use e2e::{eventually, read_access_log, Gateway};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One raw HTTP/1.1 exchange: `head` is the request line and headers without the final blank
/// line; `Connection: close` is added. Returns (status, response head, body).
async fn raw(gw: &Gateway, head: &str) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(gw.http)
        .await
        .expect("connect");
    let req = format!("{head}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (resp_head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = resp_head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, resp_head.to_ascii_lowercase(), body.to_string())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

const ROUTES: &str = r#"
[[route]]
name = "root"
hosts = ["api.test"]
cluster = "a"

[[route]]
name = "v1"
hosts = ["api.test"]
path_prefix = "/v1/"
cluster = "b"

[[route]]
name = "admin-write"
hosts = ["api.test"]
path_prefix = "/v1/admin/"
methods = ["POST", "PUT"]
cluster = "b"

[[route]]
name = "api-seg"
hosts = ["api.test"]
path_prefix = "/api"
cluster = "b"

[[route]]
name = "legacy"
hosts = ["legacy.test"]
path_prefix = "/"
forward_path = "original"
cluster = "b"
"#;

async fn setup() -> (Origin, Origin, Gateway) {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let clusters = format!(
        "[cluster.a]\nendpoints = [\"{}\"]\n[cluster.b]\nendpoints = [\"{}\"]\n",
        a.addr, b.addr
    );
    let gw = Gateway::start(&[("c.toml", &clusters), ("r.toml", ROUTES)]).await;
    (a, b, gw)
}

/// The record of request `id`, once the log has it.
async fn record(gw: &Gateway, id: &str) -> edgeway_record::AccessLogRecord {
    let dir = gw.access_log_dir();
    eventually(&format!("record {id}"), Duration::from_secs(10), || {
        let found = read_access_log(&dir)
            .into_iter()
            .flat_map(|(_, r)| r)
            .find(|r| r.request_id == id);
        async move { found }
    })
    .await
}

#[tokio::test]
async fn absolute_form_targets_are_routed_by_their_authority() {
    let (a, b, gw) = setup().await;
    // A Host that disagrees with the target is refused by Pingora itself.
    let (status, _, _) = raw(
        &gw,
        "GET http://admin.internal/x HTTP/1.1\r\nHost: api.test",
    )
    .await;
    assert_eq!(status, 400);
    // Without Host, the target's authority is what routing sees (before, an empty host
    // reached the catch-all routes while the upstream was told `Host: admin.internal`). No
    // route serves admin.internal, so nothing reaches any origin.
    let (status, _, body) = raw(
        &gw,
        "GET http://admin.internal/x HTTP/1.1\r\nX-Request-Id: abs-1",
    )
    .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(json(&body)["error"], "no_route");
    assert_eq!(a.state.requests.load(Ordering::SeqCst), 0);
    assert_eq!(b.state.requests.load(Ordering::SeqCst), 0);
    let r = record(&gw, "abs-1").await;
    assert_eq!(
        (r.status, r.error_class.as_deref()),
        (404, Some("no_route"))
    );
    assert_eq!(r.host, "admin.internal");

    // An absolute-form target for a served host goes where its authority says, and the
    // upstream gets an origin-form target with that authority as Host.
    let (status, _, body) = raw(&gw, "GET http://api.test/v1/../v1/users HTTP/1.1").await;
    assert_eq!(status, 200, "{body}");
    let echo = json(&body);
    assert_eq!(echo["origin"], "b");
    assert_eq!(echo["path"], "/v1/users");
    assert_eq!(echo["headers"]["host"], "api.test");
}

#[tokio::test]
async fn malformed_hosts_are_refused_before_matching() {
    let (a, b, gw) = setup().await;
    let long_label = format!("{}.api.test", "a".repeat(64));
    let cases = [
        "evil.example/.api.test",
        "user@api.test",
        "api.test#x",
        "api.test?",
        "api.test:99999",
        long_label.as_str(),
        "-x.api.test",
    ];
    let mut ours = Vec::new();
    for (i, host) in cases.iter().enumerate() {
        let id = format!("host-{i}");
        let (status, _, body) = raw(
            &gw,
            &format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Request-Id: {id}"),
        )
        .await;
        assert_eq!(status, 400, "{host}: {body}");
        if body.is_empty() {
            // Refused by Pingora's parser before any phase (no JSON body).
            continue;
        }
        ours.push(*host);
        assert_eq!(json(&body)["error"], "invalid_host", "{host}");
        let r = record(&gw, &id).await;
        assert_eq!(
            (r.status, r.error_class.as_deref(), r.route.as_deref()),
            (400, Some("invalid_host"), None),
            "{host}"
        );
    }
    // Pingora's parser refuses some on its own (`user@…`); the rest are the gateway's check.
    assert!(ours.contains(&"evil.example/.api.test"), "{ours:?}");
    assert!(ours.len() >= 5, "{ours:?}");
    assert_eq!(a.state.requests.load(Ordering::SeqCst), 0);
    assert_eq!(b.state.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn paths_are_canonical_before_matching_and_forwarding() {
    let (_a, _b, gw) = setup().await;
    // (target, origin that must serve it, path the origin must see)
    let cases = [
        ("/v1/../admin", "a", "/admin"),
        ("/v1/%2e%2e/admin", "a", "/admin"),
        ("/v1/%2E%2e/%2e/admin", "a", "/admin"),
        ("/v1//users", "b", "/v1/users"),
        ("/x/./../v1/%75sers", "b", "/v1/users"),
        // An encoded slash is data, not a separator: kept encoded, no `/v1/` match.
        ("/v1%2Fusers", "a", "/v1%2Fusers"),
        // Segment boundary: `/api` serves `/api` and `/api/…`, not `/apix`.
        ("/api", "b", "/api"),
        ("/api/x", "b", "/api/x"),
        ("/apix", "a", "/apix"),
    ];
    for (target, origin, seen) in cases {
        let (status, _, body) = raw(&gw, &format!("GET {target} HTTP/1.1\r\nHost: api.test")).await;
        assert_eq!(status, 200, "{target}: {body}");
        let echo = json(&body);
        assert_eq!(echo["origin"], origin, "{target}");
        assert_eq!(echo["path"], seen, "{target}");
    }
    // A route may forward what the client sent.
    let (status, _, body) = raw(&gw, "GET /a/../b//c HTTP/1.1\r\nHost: legacy.test").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["path"], "/a/../b//c");
    // A malformed escape is a 400.
    let (status, _, body) = raw(
        &gw,
        "GET /v1/%zz HTTP/1.1\r\nHost: api.test\r\nX-Request-Id: bad-esc",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(json(&body)["error"], "bad_request");
    let r = record(&gw, "bad-esc").await;
    assert_eq!(r.error_class.as_deref(), Some("bad_request"));
}

#[tokio::test]
async fn a_method_the_longest_prefix_does_not_allow_is_405_not_a_fall_through() {
    let (_a, b, gw) = setup().await;
    let (status, head, body) = raw(
        &gw,
        "GET /v1/admin/users HTTP/1.1\r\nHost: api.test\r\nX-Request-Id: m-405",
    )
    .await;
    assert_eq!(status, 405, "{body}");
    assert!(head.contains("\r\nallow: post, put"), "{head}");
    assert_eq!(json(&body)["error"], "method_not_allowed");
    assert_eq!(b.state.requests.load(Ordering::SeqCst), 0);
    let r = record(&gw, "m-405").await;
    assert_eq!(
        (r.status, r.error_class.as_deref()),
        (405, Some("method_not_allowed"))
    );
    let (status, _, body) = raw(
        &gw,
        "POST /v1/admin/users HTTP/1.1\r\nHost: api.test\r\nContent-Length: 0",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["origin"], "b");
}

#[tokio::test]
async fn identity_headers_cannot_be_spoofed() {
    let a = Origin::start("a").await;
    // From an untrusted peer every identity header is replaced or removed.
    let gw = catch_all(&a, &[], &[]).await;
    let (status, _, body) = raw(
        &gw,
        "GET / HTTP/1.1\r\nHost: x.test\r\nX-Real-IP: 6.6.6.6\r\nTrue-Client-IP: 6.6.6.6\r\n\
         X-Client-IP: 6.6.6.6\r\nCF-Connecting-IP: 6.6.6.6\r\nX-Forwarded-Port: 1\r\n\
         X-Forwarded-Prefix: /admin\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let h = &json(&body)["headers"];
    for name in [
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "cf-connecting-ip",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "forwarded",
    ] {
        assert!(h.get(name).is_none(), "{name} reached the origin: {h}");
    }
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    drop(gw);

    // Behind a trusted proxy, every X-Forwarded-For line counts: a forged first line does
    // not make its address the client.
    let fw = "[forwarding]\ntrusted_proxies = [\"127.0.0.0/8\"]\n";
    let gw = catch_all(&a, &[("f.toml", fw)], &[]).await;
    let (status, _, body) = raw(
        &gw,
        "GET / HTTP/1.1\r\nHost: x.test\r\nX-Forwarded-For: 6.6.6.6\r\n\
         X-Forwarded-For: 203.0.113.9\r\nX-Request-Id: xff-lines",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        json(&body)["headers"]["x-forwarded-for"],
        "6.6.6.6, 203.0.113.9, 127.0.0.1"
    );
    let r = record(&gw, "xff-lines").await;
    assert_eq!(r.client_ip, "203.0.113.9");
}

/// The response's `X-Request-Id`.
fn response_id(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test]
async fn client_request_ids_are_kept_or_replaced_by_policy_and_recorded() {
    let a = Origin::start("a").await;

    // Default: a client's id is kept, and the record says it came from the client.
    let gw = catch_all(&a, &[], &[]).await;
    let (status, head, body) = raw(
        &gw,
        "GET /kept HTTP/1.1\r\nHost: x.test\r\nX-Request-Id: client-1",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["headers"]["x-request-id"], "client-1");
    assert_eq!(response_id(&head), "client-1");
    assert_eq!(
        record(&gw, "client-1").await.request_id_from_client,
        Some(true)
    );
    // A malformed id is replaced, and the record says the gateway minted it.
    let (status, head, _) = raw(
        &gw,
        "GET /bad HTTP/1.1\r\nHost: x.test\r\nX-Request-Id: a b",
    )
    .await;
    assert_eq!(status, 200);
    let minted = response_id(&head);
    assert_eq!(minted.len(), 36, "{head}");
    assert_eq!(
        record(&gw, &minted).await.request_id_from_client,
        Some(false)
    );
    drop(gw);

    // `replace`: an untrusted client's id never reaches the origin or the record.
    let fw = "[forwarding]\nuntrusted_request_id = \"replace\"\n";
    let gw = catch_all(&a, &[("f.toml", fw)], &[]).await;
    let (status, head, body) = raw(
        &gw,
        "GET /replaced HTTP/1.1\r\nHost: x.test\r\nX-Request-Id: reused-id",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id = response_id(&head);
    assert_ne!(id, "reused-id");
    assert_eq!(json(&body)["headers"]["x-request-id"], id.as_str());
    let r = record(&gw, &id).await;
    assert_eq!(
        (r.path.as_str(), r.request_id_from_client),
        ("/replaced", Some(false))
    );
    drop(gw);

    // `replace` behind a trusted proxy: the proxy's id is kept.
    let fw =
        "[forwarding]\nuntrusted_request_id = \"replace\"\ntrusted_proxies = [\"127.0.0.0/8\"]\n";
    let gw = catch_all(&a, &[("f.toml", fw)], &[]).await;
    let (status, _, body) = raw(&gw, "GET / HTTP/1.1\r\nHost: x.test\r\nX-Request-Id: lb-7").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["headers"]["x-request-id"], "lb-7");
    assert_eq!(record(&gw, "lb-7").await.request_id_from_client, Some(true));
}

#[tokio::test]
async fn secrets_in_urls_do_not_reach_the_record() {
    let a = Origin::start("a").await;
    let al = "[access_log]\nquery_params = [\"page\"]\nmask_paths = [\"/reset/{token}\"]\n";
    let gw = catch_all(&a, &[("al.toml", al)], &[]).await;
    let (status, _, body) = raw(
        &gw,
        "GET /x/../reset/s3cr3t;jsessionid=ABC/confirm?page=2;token=s3cr3t HTTP/1.1\r\n\
         Host: x.test\r\nReferer: https://alice:hunter2@app.example/from?code=s3cr3t\r\n\
         X-Request-Id: redact-1",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r = record(&gw, "redact-1").await;
    assert_eq!(r.path, "/reset/{token}/confirm");
    assert_eq!(r.query.as_deref(), Some("page=2"));
    assert_eq!(r.referer.as_deref(), Some("https://app.example/from"));
    let bytes = format!("{r:?}");
    assert!(!bytes.contains("s3cr3t") && !bytes.contains("hunter2") && !bytes.contains("ABC"));
}

/// A gateway with one cluster `a` and a catch-all route, started with `args`.
async fn plain_gateway(origin: &Origin, args: &[&str]) -> Gateway {
    catch_all(origin, &[], args).await
}

/// A gateway with one cluster `a` (`origin`), a catch-all route and the `extra` policy
/// files, started with `args`.
async fn catch_all(origin: &Origin, extra: &[(&str, &str)], args: &[&str]) -> Gateway {
    let cl = format!("[cluster.a]\nendpoints = [\"{}\"]\n", origin.addr);
    let mut files = vec![
        ("c.toml", cl.as_str()),
        ("r.toml", "[[route]]\nname = \"all\"\ncluster = \"a\"\n"),
    ];
    files.extend_from_slice(extra);
    Gateway::start_with(&files, args).await
}

/// Read until the peer closes (or `limit` passes): what it sent.
async fn read_until_close(s: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_connection_flood_from_one_ip_meets_the_per_ip_cap() {
    let origin = Origin::start("a").await;
    let gw = plain_gateway(&origin, &["--max-connections-per-ip", "3"]).await;
    // Three idle connections hold their slots (they send nothing).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(gw.http).await.unwrap());
    }
    eventually(
        "three connections counted",
        Duration::from_secs(5),
        || async { (gw.metric("gateway_connections_active", &[]).await >= 3.0).then_some(()) },
    )
    .await;
    // The fourth is answered 503 and closed before any request is read.
    let mut fourth = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let answer = read_until_close(&mut fourth, Duration::from_secs(5))
        .await
        .expect("closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("\"error\":\"overloaded\""), "{answer}");
    assert_eq!(
        gw.metric(
            "gateway_connections_refused_total",
            &[("reason", "per_ip_cap")]
        )
        .await,
        1.0
    );
    assert_eq!(origin.state.requests.load(Ordering::SeqCst), 0);
    // One closes: a new connection is served again.
    drop(held.pop());
    let ok = eventually("a freed slot is reused", Duration::from_secs(5), || async {
        let (status, _, _) = raw(&gw, "GET / HTTP/1.1\r\nHost: api.test").await;
        (status == 200).then_some(status)
    })
    .await;
    assert_eq!(ok, 200);
}

#[tokio::test]
async fn keep_alive_connections_close_when_idle_and_after_the_request_limit() {
    let origin = Origin::start("a").await;
    let gw = plain_gateway(
        &origin,
        &["--keepalive-timeout", "1s", "--keepalive-requests", "2"],
    )
    .await;

    // Idle: after one request the connection is closed once the idle time passes.
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let rest = read_until_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        rest.is_some(),
        "an idle keep-alive connection is closed after --keepalive-timeout"
    );

    // Request limit: two requests are answered on one connection, and the second answer
    // closes it.
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(
        first.starts_with("http/1.1 200") && !first.contains("connection: close"),
        "{first}"
    );
    s.write_all(b"GET /b HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A third request on it is not answered: the connection is closed (the request follows
    // at once, so the idle timeout plays no part).
    let _ = s
        .write_all(b"GET /c HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await;
    let third = read_until_close(&mut s, Duration::from_secs(5))
        .await
        .expect("closed after the limit");
    assert!(!third.contains("HTTP/1.1 200"), "{third}");
}

/// The first record `pick` accepts, once the log has it.
async fn record_where(
    gw: &Gateway,
    what: &str,
    pick: impl Fn(&edgeway_record::AccessLogRecord) -> bool,
) -> edgeway_record::AccessLogRecord {
    let dir = gw.access_log_dir();
    eventually(what, Duration::from_secs(10), || {
        let found = read_access_log(&dir)
            .into_iter()
            .flat_map(|(_, r)| r)
            .find(|r| pick(r));
        async move { found }
    })
    .await
}

/// Send raw bytes on a fresh connection and read until the gateway closes it.
async fn raw_bytes(gw: &Gateway, req: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    // The gateway may answer and close before it has read everything (an oversized head).
    let _ = s.write_all(req).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn requests_pingora_refuses_before_the_phases_still_leave_a_record() {
    let origin = Origin::start("a").await;
    let gw = plain_gateway(&origin, &[]).await;
    let big = format!(
        "GET /oversized HTTP/1.1\r\nHost: api.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1024 * 1024 + 10)
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "/two-lengths",
            b"POST /two-lengths HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
            400,
            "bad_request",
        ),
        (
            "/bad-bytes",
            b"GET /bad-bytes HTTP/1.1\r\nHost: api.test\r\nX-Bad: a\x01b\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "/folded",
            b"GET /folded HTTP/1.1\r\nHost: api.test\r\nX-Fold: a\r\n b\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        ("/oversized", big.into_bytes(), 400, "bad_request"),
        (
            "api.test:443",
            b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\n\r\n".to_vec(),
            405,
            "method_not_allowed",
        ),
    ];
    for (path, req, status, class) in cases {
        let answer = raw_bytes(&gw, &req).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{path}: {answer}"
        );
        let r = record_where(&gw, path, |r| r.path == path).await;
        assert_eq!(
            (r.status, r.error_class.as_deref()),
            (i32::from(status), Some(class)),
            "{path}"
        );
        assert_eq!(r.client_ip, "127.0.0.1", "{path}");
        assert_eq!(r.request_id_from_client, Some(false));
        assert!(!r.request_id.is_empty() && !r.policy_version.is_empty());
    }
    assert_eq!(origin.state.requests.load(Ordering::SeqCst), 0);
    // Counted with the unrouted requests.
    assert!(
        gw.metric(
            "gateway_requests_total",
            &[("route", "-"), ("status", "4xx")]
        )
        .await
            >= 5.0
    );

    // A head abandoned half-sent: no answer can be sent, but the record says so.
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    s.write_all(b"GET /half-sent HTTP/1.1\r\nHost: api")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    assert_eq!(
        read_until_close(&mut s, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("")
    );
    let r = record_where(&gw, "half-sent", |r| r.path == "/half-sent").await;
    assert_eq!(
        (r.status, r.error_class.as_deref()),
        (0, Some("client_closed"))
    );

    // Transfer-Encoding with Content-Length: Pingora follows RFC 9112 §6.3 (the chunked
    // framing wins, Content-Length is dropped, the connection closes after the answer), so
    // the origin never sees both and no bytes are left to smuggle.
    let answer = raw_bytes(
        &gw,
        b"POST /te-and-cl HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\
          Content-Length: 5\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, body) = answer.split_once("\r\n\r\n").unwrap();
    let echo = json(body);
    assert!(echo["headers"].get("content-length").is_none(), "{echo}");
    assert_eq!(
        origin.state.requests.load(Ordering::SeqCst),
        1,
        "nothing smuggled"
    );
    let r = record_where(&gw, "te-and-cl", |r| r.path == "/te-and-cl").await;
    assert_eq!(r.status, 200);
}

/// Write `head` a few bytes at a time, `gap` apart, until the gateway closes the connection;
/// what it answered.
async fn trickle(s: &mut tokio::net::TcpStream, head: &[u8], gap: Duration) -> String {
    for chunk in head.chunks(2) {
        if s.write_all(chunk).await.is_err() {
            break;
        }
        tokio::time::sleep(gap).await;
    }
    read_until_close(s, Duration::from_secs(10))
        .await
        .expect("closed in time")
}

#[tokio::test]
async fn a_trickled_request_head_meets_the_total_header_deadline() {
    let origin = Origin::start("a").await;
    let gw = plain_gateway(&origin, &["--header-timeout", "1s"]).await;
    // Each read comes well within the keep-alive timeout, but the head as a whole does not
    // arrive within 1 s: 408 and closed.
    let head = b"GET /slow-first HTTP/1.1\r\nHost: api.test\r\nX-Pad: aaaaaaaaaaaaaaaa\r\n\r\n";
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    let answer = trickle(&mut s, head, Duration::from_millis(100)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"client_timeout\""), "{answer}");
    let r = record_where(&gw, "slow first head", |r| r.path == "/slow-first").await;
    assert_eq!(
        (r.status, r.error_class.as_deref(), r.method.as_str()),
        (408, Some("client_timeout"), "GET")
    );

    // On a kept-alive connection: idle time before the next request does not count (it is the
    // keep-alive timeout's), but a trickled second head is cut the same way.
    let mut s = tokio::net::TcpStream::connect(gw.http).await.unwrap();
    s.write_all(b"GET /one HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"GET /two HTTP/1.1\r\nHost: api.test\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "an idle pause longer than the header deadline is not a slow head"
    );
    let answer = trickle(
        &mut s,
        b"GET /slow-second HTTP/1.1\r\nHost: api.test\r\nX-Pad: aaaaaaaaaaaaaaaa\r\n\r\n",
        Duration::from_millis(100),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let r = record_where(&gw, "slow second head", |r| r.path == "/slow-second").await;
    assert_eq!(
        (r.status, r.error_class.as_deref()),
        (408, Some("client_timeout"))
    );
    assert_eq!(origin.state.requests.load(Ordering::SeqCst), 2);
    assert_eq!(
        gw.metric("gateway_request_header_timeouts_total", &[])
            .await,
        2.0
    );
    // Pingora's own log lines (here: the failed head read) are in the gateway's JSON log.
    eventually("Pingora's log line", Duration::from_secs(5), || async {
        gw.log()
            .contains(r#""target":"pingora_proxy""#)
            .then_some(())
    })
    .await;
}

/// An HTTP/2 client connection to the gateway's TLS listener (ALPN h2), its driver spawned;
/// the driver's result says how the connection ended.
async fn h2_connect(
    gw: &Gateway,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    use std::sync::Arc;
    let pem = std::fs::read(&gw.ca_pem).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gw.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("api.localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .expect("TLS");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    (send, tokio::spawn(conn))
}

/// The DER certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|c| c.expect("PEM certificate"))
        .collect()
}

fn h2_get(path: &str) -> http::Request<()> {
    http::Request::get(format!("https://api.localhost{path}"))
        .body(())
        .unwrap()
}

#[tokio::test]
async fn http2_stream_limits_and_rapid_reset_are_enforced() {
    let origin = Origin::start("a").await;
    let gw = plain_gateway(
        &origin,
        &[
            "--h2-max-concurrent-streams",
            "4",
            "--h2-max-pending-resets",
            "10",
        ],
    )
    .await;

    // Concurrency: the server advertises 4 streams; with 5 slow requests sent, 4 are at the
    // origin and the fifth starts only when one of them ends.
    let (send, _conn) = h2_connect(&gw).await;
    let mut send = send.ready().await.unwrap();
    // One request first: the server's SETTINGS have arrived once it is answered.
    let (resp, _) = send.send_request(h2_get("/warm"), true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    assert_eq!(send.current_max_send_streams(), 4);
    let mut inflight = Vec::new();
    for _ in 0..5 {
        send = send.ready().await.unwrap();
        let (resp, _) = send.send_request(h2_get("/slow?ms=1000"), true).unwrap();
        inflight.push(resp);
    }
    eventually(
        "4 requests at the origin",
        Duration::from_secs(5),
        || async { (origin.state.requests.load(Ordering::SeqCst) == 5).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        origin.state.requests.load(Ordering::SeqCst),
        5,
        "a fifth stream ran while 4 were open"
    );
    for resp in inflight {
        assert_eq!(resp.await.unwrap().status(), 200);
    }
    let before = origin.state.requests.load(Ordering::SeqCst);
    assert_eq!(before, 6);

    // Rapid reset: open streams and cancel them at once, as fast as the connection allows.
    // The server closes the connection with ENHANCE_YOUR_CALM after a bounded number, and the
    // origin sees at most a bounded share of the cancelled requests.
    let (mut send, conn) = h2_connect(&gw).await;
    let mut sent = 0;
    for _ in 0..5000 {
        send = match send.ready().await {
            Ok(s) => s,
            Err(_) => break,
        };
        match send.send_request(h2_get("/slow?ms=2000"), false) {
            Ok((_, mut body)) => {
                body.send_reset(h2::Reason::CANCEL);
                sent += 1;
                if sent % 16 == 0 {
                    // Let the connection task write (and read what the server says).
                    tokio::task::yield_now().await;
                }
            }
            Err(_) => break,
        }
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), conn)
        .await
        .expect("the connection ends")
        .unwrap();
    // The server sends GOAWAY(ENHANCE_YOUR_CALM) and closes; a client still writing may see
    // the closed socket before it reads the GOAWAY.
    let err = ended.expect_err("closed by the server");
    assert!(
        err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || err.is_io(),
        "after {sent} resets: {err}"
    );
    let reached = origin.state.requests.load(Ordering::SeqCst) - before;
    assert!(
        reached <= 10 + 4,
        "{reached} of {sent} reset requests reached the origin"
    );

    // Other clients are still served, over HTTP/2 and HTTP/1.
    let (send, _conn) = h2_connect(&gw).await;
    let mut send = send.ready().await.unwrap();
    let (resp, _) = send.send_request(h2_get("/after"), true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    let (status, _, _) = raw(&gw, "GET /after HTTP/1.1\r\nHost: api.test").await;
    assert_eq!(status, 200);
}
