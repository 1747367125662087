//! Rate limits, IP lists and load shedding end to end: real gateway processes, real origins,
//! a real `redis-server` for cluster limits. Origin hit counts prove that what the gateway
//! refused never reached the upstream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::origin::Origin;
use e2e::redis::Redis;
use e2e::{eventually, read_access_log, Gateway};
use serde_json::Value;

fn cluster(origin: &Origin) -> String {
    format!(
        "[cluster.a]\nendpoints = [\"{}\"]\nconnect_timeout = \"300ms\"\n",
        origin.addr
    )
}

fn hits(o: &Origin) -> u64 {
    o.state.requests.load(Ordering::SeqCst)
}

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

async fn send(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    Resp {
        status: r.status().as_u16(),
        headers: r.headers().clone(),
        body: r.json().await.unwrap_or(Value::Null),
    }
}

/// `accesslog_records_written_total` also counts the gateway's start event (a policy-change
/// record in the same log): waits for N requests' records use N + 1.
async fn wait_metric(gw: &Gateway, name: &str, labels: &[(&str, &str)], at_least: f64) {
    eventually(
        &format!("{name}{labels:?} >= {at_least}"),
        Duration::from_secs(10),
        || async { (gw.metric(name, labels).await >= at_least).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn over_the_limit_is_429_with_retry_after_headers_record_and_metric() {
    let origin = Origin::start("a").await;
    let limits = r#"
[limit.per_ip]
key = "ip"
rate = 1
per = "1h"
burst = 3

[rate_limits]
default = ["per_ip"]

[[route]]
name = "api"
cluster = "a"

[[route]]
name = "open"
path_prefix = "/open"
cluster = "a"
limits = []

[[route]]
name = "quiet"
path_prefix = "/quiet"
cluster = "a"
limits = ["per_ip"]
rate_limit_headers = false
"#;
    let gw = Gateway::start(&[("c.toml", &cluster(&origin)), ("limits.toml", limits)]).await;
    let client = reqwest::Client::new();
    for left in (0..3).rev() {
        let r = send(&client, &gw.url("/x"), &[]).await;
        assert_eq!(r.status, 200);
        // draft-ietf-httpapi-ratelimit-headers-08, and the X-RateLimit-* trio.
        assert_eq!(r.header("ratelimit-policy"), "\"per_ip\";q=1;w=3600");
        assert_eq!(
            r.header("ratelimit"),
            format!("\"per_ip\";r={left};t={}", (3 - left) * 3600)
        );
        assert_eq!(r.header("x-ratelimit-limit"), "1");
        assert_eq!(r.header("x-ratelimit-remaining"), left.to_string());
        assert_eq!(
            r.header("x-ratelimit-reset"),
            ((3 - left) * 3600).to_string()
        );
    }
    assert_eq!(hits(&origin), 3);
    for i in 0..2 {
        let id = format!("limited-{i}");
        let r = send(&client, &gw.url("/x"), &[("x-request-id", &id)]).await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), "3600");
        assert_eq!(r.header("ratelimit"), "\"per_ip\";r=0;t=10800");
        assert_eq!(r.header("x-ratelimit-remaining"), "0");
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.body["error"], "rate_limited");
        assert_eq!(r.body["status"], 429);
        assert_eq!(r.body["request_id"], id.as_str());
        assert_eq!(r.body["message"], "rate limit exceeded: 1 per 1h (per_ip)");
    }
    assert_eq!(hits(&origin), 3, "limited requests never reach the origin");
    // The same bucket (same limit, same key) is empty on another route too; headers off.
    let r = send(&client, &gw.url("/quiet"), &[]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), "3600");
    assert_eq!(r.header("ratelimit"), "");
    assert_eq!(r.header("x-ratelimit-limit"), "");
    // A route that opts out of the default set is not limited.
    for _ in 0..5 {
        let r = send(&client, &gw.url("/open"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit"), "");
    }
    assert_eq!(hits(&origin), 8);

    let labels = |d| [("route", "api"), ("limit", "per_ip"), ("decision", d)];
    assert_eq!(
        gw.metric("gateway_rate_limit_decisions_total", &labels("allowed"))
            .await,
        3.0
    );
    assert_eq!(
        gw.metric("gateway_rate_limit_decisions_total", &labels("limited"))
            .await,
        2.0
    );
    wait_metric(&gw, "accesslog_records_written_total", &[], 12.0).await;
    let records: Vec<_> = read_access_log(&gw.access_log_dir())
        .into_iter()
        .flat_map(|(_, r)| r)
        .collect();
    let by_id: HashMap<&str, _> = records.iter().map(|r| (r.request_id.as_str(), r)).collect();
    let limited = by_id["limited-0"];
    assert_eq!(limited.status, 429);
    assert_eq!(limited.rate_limit.as_deref(), Some("limited"));
    assert_eq!(limited.error_class.as_deref(), Some("rate_limited"));
    assert_eq!(limited.route.as_deref(), Some("api"));
    let allowed = records
        .iter()
        .filter(|r| r.rate_limit.as_deref() == Some("allowed"))
        .count();
    assert_eq!(allowed, 3);
    let open = records
        .iter()
        .filter(|r| r.route.as_deref() == Some("open"))
        .collect::<Vec<_>>();
    assert!(
        open.iter().all(|r| r.rate_limit.is_none()),
        "no limit applied"
    );
}

#[tokio::test]
async fn keys_by_client_ip_behind_a_trusted_proxy_by_api_key_and_by_header_tier() {
    let origin = Origin::start("a").await;
    let limits = r#"
[forwarding]
trusted_proxies = ["127.0.0.0/8"]

[limit.per_ip]
key = "ip"
rate = 1
per = "1h"
burst = 2

[limit.per_key]
key = "header:x-api-key"
rate = 1
per = "1h"
burst = 3
tier = "header:x-plan"
cost = { POST = 3 }
[limit.per_key.tiers.pro]
rate = 1
per = "1h"
burst = 6

[[route]]
name = "by-ip"
path_prefix = "/ip"
cluster = "a"
limits = ["per_ip"]

[[route]]
name = "by-key"
path_prefix = "/key"
cluster = "a"
limits = ["per_key"]
"#;
    let gw = Gateway::start(&[("c.toml", &cluster(&origin)), ("limits.toml", limits)]).await;
    let client = reqwest::Client::new();
    let statuses = |path: &'static str, headers: Vec<(&'static str, String)>, n: usize| {
        let client = client.clone();
        let url = gw.url(path);
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                out.push(send(&client, &url, &h).await.status);
            }
            out
        }
    };
    // Each client behind the trusted proxy has its own bucket.
    for client_ip in ["198.51.100.1", "198.51.100.2"] {
        let xff = vec![("x-forwarded-for", client_ip.to_string())];
        assert_eq!(
            statuses("/ip", xff, 3).await,
            [200, 200, 429],
            "{client_ip}"
        );
    }
    // The API key is the bucket, whatever the address; the plan header picks the tier.
    let key = |k: &str, plan: &str| {
        vec![
            ("x-api-key", k.to_string()),
            ("x-plan", plan.to_string()),
            ("x-forwarded-for", format!("203.0.113.{}", k.len())),
        ]
    };
    assert_eq!(
        statuses("/key", key("k1", "free"), 4).await,
        [200, 200, 200, 429]
    );
    assert_eq!(
        statuses("/key", key("k2", "pro"), 7).await,
        [200, 200, 200, 200, 200, 200, 429]
    );
    assert_eq!(
        statuses("/key", key("k3", "gold"), 4).await,
        [200, 200, 200, 429],
        "an unknown tier gets the default"
    );
    // Without the key the limit does not apply.
    assert_eq!(statuses("/key", vec![], 5).await, [200; 5]);
    // A POST costs 3 tokens: one fits in a fresh free bucket, the next does not.
    let post = |k: &'static str| {
        let client = client.clone();
        let url = gw.url("/key");
        async move {
            client
                .post(url)
                .header("x-api-key", k)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post("k9").await, 200);
    assert_eq!(post("k9").await, 429);
    assert_eq!(hits(&origin), 4 + 3 + 6 + 3 + 5 + 1);
}

#[tokio::test]
async fn shadow_mode_counts_but_lets_through() {
    let origin = Origin::start("a").await;
    let limits = r#"
[limit.trial]
key = "ip"
rate = 1
per = "1h"
burst = 2
mode = "shadow"

[[route]]
name = "api"
cluster = "a"
limits = ["trial"]
"#;
    let gw = Gateway::start(&[("c.toml", &cluster(&origin)), ("limits.toml", limits)]).await;
    let client = reqwest::Client::new();
    for _ in 0..5 {
        let r = send(&client, &gw.url("/x"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("retry-after"), "");
    }
    assert_eq!(hits(&origin), 5);
    let labels = |d| [("route", "api"), ("limit", "trial"), ("decision", d)];
    assert_eq!(
        gw.metric("gateway_rate_limit_decisions_total", &labels("shadow"))
            .await,
        3.0
    );
    wait_metric(&gw, "accesslog_records_written_total", &[], 6.0).await;
    let decisions: Vec<String> = read_access_log(&gw.access_log_dir())
        .into_iter()
        .flat_map(|(_, r)| r)
        .map(|r| r.rate_limit.unwrap_or_default())
        .collect();
    assert_eq!(
        decisions,
        ["allowed", "allowed", "shadow", "shadow", "shadow"]
    );
}

#[tokio::test]
async fn ip_lists_deny_beats_allow_route_lists_and_a_large_list_file() {
    let origin = Origin::start("a").await;
    // 100,000 blocks: every other /24 from 10.0.0.0, plus comments.
    let mut list = String::from("# generated block list\n");
    for i in 0..100_000u32 {
        let base = (10u32 << 24) + i * 512;
        let ip = std::net::Ipv4Addr::from(base);
        list.push_str(&format!("{ip}/24\n"));
    }
    let policy = r#"
[forwarding]
trusted_proxies = ["127.0.0.0/8"]

[ip_list.partners]
cidrs = ["198.51.100.0/24", "2001:db8::/32", "10.0.0.0/8", "127.0.0.0/8"]

[ip_list.blocked]
files = ["blocked.txt"]
cidrs = ["198.51.100.66"]

[ip_list.office]
cidrs = ["198.51.100.10"]

[ip_access]
allow = ["partners"]
deny = ["blocked"]

[[route]]
name = "api"
cluster = "a"

[[route]]
name = "admin"
path_prefix = "/admin"
cluster = "a"
ip_allow = ["office"]
"#;
    let gw = Gateway::start(&[
        ("c.toml", &cluster(&origin)),
        ("ip.toml", policy),
        ("blocked.txt", &list),
    ])
    .await;
    let client = reqwest::Client::new();
    let status = |ip: &str, path: &str| {
        let client = client.clone();
        let url = gw.url(path);
        let ip = ip.to_string();
        async move { send(&client, &url, &[("x-forwarded-for", &ip)]).await }
    };
    assert_eq!(status("198.51.100.7", "/").await.status, 200);
    assert_eq!(status("2001:db8::5", "/").await.status, 200);
    // In the allow list and in the deny list: deny wins.
    let r = status("198.51.100.66", "/").await;
    assert_eq!(r.status, 403);
    assert_eq!(r.body["error"], "forbidden");
    assert_eq!(r.body["message"], "access from this address is not allowed");
    // The 100k-entry file: inside a listed /24 and in the gap after it.
    assert_eq!(status("10.0.0.9", "/").await.status, 403);
    assert_eq!(status("10.0.1.9", "/").await.status, 200);
    assert_eq!(status("10.156.64.1", "/").await.status, 403); // block 20,000
    assert_eq!(status("10.156.65.1", "/").await.status, 200);
    // Not in any allow list.
    assert_eq!(status("203.0.113.1", "/").await.status, 403);
    // Route allow list on top of the global lists.
    assert_eq!(status("198.51.100.10", "/admin").await.status, 200);
    assert_eq!(status("198.51.100.7", "/admin").await.status, 403);
    assert_eq!(hits(&origin), 5, "refused requests never reach the origin");
    assert_eq!(
        gw.metric("gateway_ip_denied_total", &[("route", "-")])
            .await,
        4.0
    );
    assert_eq!(
        gw.metric("gateway_ip_denied_total", &[("route", "admin")])
            .await,
        1.0
    );

    // The lists reload with the policy: unblock 198.51.100.66.
    gw.write_policy(
        "ip.toml",
        &policy.replace("cidrs = [\"198.51.100.66\"]", ""),
    );
    eventually("reloaded list", Duration::from_secs(10), || async {
        (status("198.51.100.66", "/").await.status == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn overload_sheds_the_lowest_priority_first_and_admin_still_answers() {
    let origin = Origin::start("a").await;
    let policy = r#"
[load_shedding]
max_in_flight = 4
retry_after = "2s"

[[route]]
name = "bulk"
hosts = ["bulk.test"]
cluster = "a"
priority = "bulk"

[[route]]
name = "normal"
hosts = ["normal.test"]
cluster = "a"

[[route]]
name = "critical"
hosts = ["critical.test"]
cluster = "a"
priority = "critical"
"#;
    let gw = Gateway::start(&[("c.toml", &cluster(&origin)), ("shed.toml", policy)]).await;
    let client = reqwest::Client::new();
    let slow = |host: &'static str| {
        let client = client.clone();
        let url = gw.url("/slow?ms=3000");
        tokio::spawn(async move {
            client
                .get(url)
                .header("host", host)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    // Two bulk requests fill bulk's share (50% of 4).
    let held: Vec<_> = (0..2).map(|_| slow("bulk.test")).collect();
    wait_metric(&gw, "gateway_in_flight_requests", &[], 2.0).await;
    let r = send(&client, &gw.url("/x"), &[("host", "bulk.test")]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["error"], "overloaded");
    assert_eq!(r.header("retry-after"), "2");
    // Normal (80%: 3) still passes; hold one more so only critical is left.
    let held2 = slow("normal.test");
    wait_metric(&gw, "gateway_in_flight_requests", &[], 3.0).await;
    assert_eq!(
        send(&client, &gw.url("/x"), &[("host", "normal.test")])
            .await
            .status,
        503
    );
    assert_eq!(
        send(&client, &gw.url("/x"), &[("host", "critical.test")])
            .await
            .status,
        200
    );
    // The admin listener is never shed.
    let admin = reqwest::get(format!("http://{}/metrics", gw.admin))
        .await
        .unwrap();
    assert_eq!(admin.status(), 200);
    assert_eq!(
        gw.metric("gateway_shed_total", &[("route", "bulk")]).await,
        1.0
    );
    assert_eq!(
        gw.metric("gateway_shed_total", &[("route", "normal")])
            .await,
        1.0
    );
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    assert_eq!(held2.await.unwrap(), 200);
    // Places are freed when requests finish (the context is dropped just after the response).
    eventually("no request in flight", Duration::from_secs(10), || async {
        (gw.metric("gateway_in_flight_requests", &[]).await == 0.0).then_some(())
    })
    .await;
    assert_eq!(
        send(&client, &gw.url("/x"), &[("host", "bulk.test")])
            .await
            .status,
        200
    );
    assert_eq!(hits(&origin), 5, "shed requests never reach the origin");
    wait_metric(&gw, "accesslog_records_written_total", &[], 8.0).await;
    let shed = read_access_log(&gw.access_log_dir())
        .into_iter()
        .flat_map(|(_, r)| r)
        .filter(|r| r.rate_limit.as_deref() == Some("shed"))
        .inspect(|r| assert_eq!(r.status, 503))
        .count();
    assert_eq!(shed, 2);
}

fn cluster_limits(redis: &Redis, rate: u32, burst: u32, lease: u32, on_down: &str) -> String {
    format!(
        r#"
[rate_limits]
redis_url = "{}"
redis_budget = "100ms"
on_redis_down = "{on_down}"
instances = 2

[limit.shared]
key = "route"
rate = {rate}
burst = {burst}
lease = {lease}
scope = "cluster"

[[route]]
name = "api"
cluster = "a"
limits = ["shared"]

[[route]]
name = "warm"
path_prefix = "/warm"
cluster = "a"
limits = []
"#,
        redis.url()
    )
}

async fn redis_up(gw: &Gateway) {
    wait_metric(gw, "gateway_rate_limit_redis_up", &[], 1.0).await;
}

/// Drive `gws` with `workers` loops each, from `begin` (connections already warm, through
/// the unlimited `/warm` route) until `until`; (accepted, refused, other statuses, the time
/// the last response arrived).
async fn drive(
    gws: &[&Gateway],
    workers: usize,
    begin: Instant,
    until: Instant,
) -> (u64, u64, Vec<u16>, Instant) {
    let ok = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let other = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for gw in gws {
        for _ in 0..workers {
            let (url, warm) = (gw.url("/x"), gw.url("/warm"));
            let (ok, limited, other) = (ok.clone(), limited.clone(), other.clone());
            tasks.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                assert_eq!(client.get(&warm).send().await.unwrap().status(), 200);
                tokio::time::sleep_until(begin.into()).await;
                let mut last = Instant::now();
                while Instant::now() < until {
                    match client.get(&url).send().await.map(|r| r.status().as_u16()) {
                        Ok(200) => ok.fetch_add(1, Ordering::SeqCst),
                        Ok(429) => limited.fetch_add(1, Ordering::SeqCst),
                        Ok(s) => {
                            other.lock().unwrap().push(s);
                            0
                        }
                        Err(_) => {
                            other.lock().unwrap().push(0);
                            0
                        }
                    };
                    last = Instant::now();
                }
                last
            }));
        }
    }
    let mut end = begin;
    for t in tasks {
        end = end.max(t.await.unwrap());
    }
    let other = other.lock().unwrap().clone();
    (
        ok.load(Ordering::SeqCst),
        limited.load(Ordering::SeqCst),
        other,
        end,
    )
}

#[tokio::test]
async fn two_gateways_share_one_cluster_limit_within_five_percent() {
    let origin = Origin::start("a").await;
    let redis = Redis::start().await;
    let (rate, burst) = (40u32, 10u32);
    let policy = cluster_limits(&redis, rate, burst, 2, "local");
    let files = [("c.toml", cluster(&origin)), ("limits.toml", policy)];
    let files: Vec<(&str, &str)> = files.iter().map(|(a, b)| (*a, b.as_str())).collect();
    let gw1 = Gateway::start(&files).await;
    let gw2 = Gateway::start(&files).await;
    redis_up(&gw1).await;
    redis_up(&gw2).await;

    let begin = Instant::now() + Duration::from_millis(500);
    let (ok, limited, other, end) =
        drive(&[&gw1, &gw2], 4, begin, begin + Duration::from_secs(4)).await;
    let secs = (end - begin).as_secs_f64();
    assert!(other.is_empty(), "no errors: {other:?}");
    assert!(limited > 0, "the load exceeded the limit");
    let expected = f64::from(rate) * secs + f64::from(burst);
    let error = (ok as f64 - expected) / expected;
    println!(
        "accepted {ok} of {} in {secs:.2}s, expected {expected:.0} ({:+.1}%)",
        ok + limited,
        error * 100.0
    );
    assert!(
        error.abs() <= 0.05,
        "accepted {ok}, expected {expected:.0} ± 5%"
    );
    assert_eq!(
        hits(&origin),
        ok + 8,
        "refused requests never reach the origin"
    );
    // The bucket lives in Redis, under a hashed, hash-tagged name.
    let keys = redis.cli(&["--scan", "--pattern", "edgeway:rl:*"]);
    assert!(keys.starts_with("edgeway:rl:{shared:-:"), "{keys}");
    assert_eq!(
        gw1.metric("gateway_rate_limit_redis_fallback_total", &[])
            .await,
        0.0
    );
}

#[tokio::test]
async fn redis_outage_falls_back_locally_without_errors_and_recovers() {
    let origin = Origin::start("a").await;
    let mut redis = Redis::start().await;
    // A limit that the test's load does not reach while Redis is there.
    let policy = cluster_limits(&redis, 1000, 1000, 10, "local");
    let gw = Gateway::start(&[("c.toml", &cluster(&origin)), ("limits.toml", &policy)]).await;
    redis_up(&gw).await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        assert_eq!(send(&client, &gw.url("/x"), &[]).await.status, 200);
    }
    assert_eq!(
        gw.metric("gateway_rate_limit_redis_fallback_total", &[])
            .await,
        0.0
    );

    // Frozen (SIGSTOP): no answer within the budget; the local share (1000/2 burst 500) serves.
    redis.pause(true);
    for _ in 0..30 {
        let r = send(&client, &gw.url("/x"), &[]).await;
        assert_eq!(r.status, 200, "no errors while Redis hangs");
    }
    assert_eq!(gw.metric("gateway_rate_limit_redis_up", &[]).await, 0.0);
    assert!(
        gw.metric("gateway_rate_limit_redis_fallback_total", &[])
            .await
            > 0.0
    );
    assert_eq!(
        gw.log().matches("redis unreachable").count(),
        1,
        "logged once"
    );
    redis.pause(false);
    redis_up(&gw).await;

    // Killed: connection refused; same fallback.
    redis.kill();
    let fallback_before = gw
        .metric("gateway_rate_limit_redis_fallback_total", &[])
        .await;
    for _ in 0..30 {
        assert_eq!(send(&client, &gw.url("/x"), &[]).await.status, 200);
    }
    assert!(
        gw.metric("gateway_rate_limit_redis_fallback_total", &[])
            .await
            > fallback_before
    );
    assert_eq!(gw.metric("gateway_rate_limit_redis_up", &[]).await, 0.0);

    // Back (empty): the gateway returns to Redis and writes its bucket again.
    redis.restart().await;
    redis_up(&gw).await;
    let fallback_after = gw
        .metric("gateway_rate_limit_redis_fallback_total", &[])
        .await;
    for _ in 0..20 {
        assert_eq!(send(&client, &gw.url("/x"), &[]).await.status, 200);
    }
    assert_eq!(
        gw.metric("gateway_rate_limit_redis_fallback_total", &[])
            .await,
        fallback_after
    );
    let keys = redis.cli(&["--scan", "--pattern", "edgeway:rl:*"]);
    assert!(!keys.is_empty(), "the bucket is back in Redis");
    assert!(gw.log().contains("redis reachable"));
    assert_eq!(hits(&origin), 100);
}

#[tokio::test]
async fn redis_down_with_deny_refuses_and_with_a_small_local_share_limits() {
    let origin = Origin::start("a").await;
    let mut redis = Redis::start().await;
    let policy =
        cluster_limits(&redis, 1, 4, 1, "local").replace("rate = 1\n", "rate = 1\nper = \"1h\"\n");
    let gw = Gateway::start(&[("c.toml", &cluster(&origin)), ("limits.toml", &policy)]).await;
    redis_up(&gw).await;
    redis.kill();
    let client = reqwest::Client::new();
    // Fallback share: burst 4 / 2 instances = 2.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(send(&client, &gw.url("/x"), &[]).await.status);
    }
    assert_eq!(statuses, [200, 200, 429, 429]);

    // on_redis_down = "deny": everything is refused while Redis is away.
    gw.write_policy(
        "limits.toml",
        &policy.replace("on_redis_down = \"local\"", "on_redis_down = \"deny\""),
    );
    eventually("deny applied", Duration::from_secs(10), || async {
        (send(&client, &gw.url("/y"), &[]).await.status == 429).then_some(())
    })
    .await;
    assert_eq!(hits(&origin), 2);
}

#[test]
fn gateway_check_names_file_line_and_field_of_bad_limits() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("c.toml", "[cluster.a]\nendpoints = [\"127.0.0.1:9\"]\n"),
        (
            "limits.toml",
            "[limit.per_ip]\nkey = \"ip\"\nrate = 0\n\n[limit.by_key]\nkey = \"haeder:x-api-key\"\nrate = 5\nburst = 0\n\n[ip_list.bad]\ncidrs = [\"10.0.0.0/40\"]\nfiles = [\"missing.txt\"]\n\n[[route]]\nname = \"r\"\ncluster = \"a\"\nlimits = [\"per_pi\"]\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = std::process::Command::new(e2e::bin("gateway"))
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", dir.path().display()), "");
    for expected in [
        "limits.toml:3:8: limit.per_ip.rate: found `0`, expected a positive whole number",
        "limits.toml:6:7: limit.by_key.key: found `haeder:x-api-key` (unknown key source)",
        "limits.toml:8:9: limit.by_key.burst: found `0`",
        "limits.toml:11:10: ip_list.bad.cidrs[0]: found `10.0.0.0/40`",
        "limits.toml:12:10: ip_list.bad.files[0]: cannot read",
        "limits.toml:17:11: route[0].limits[0]: found `per_pi`, expected one of the defined limits: [by_key, per_ip] (did you mean `per_ip`?)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[tokio::test]
async fn cluster_limits_authenticate_to_redis_and_never_log_the_password() {
    let origin = Origin::start("a").await;
    let redis = Redis::start().await;
    assert_eq!(
        redis.cli(&["CONFIG", "SET", "requirepass", "s3cret-pw"]),
        "OK"
    );
    let policy = cluster_limits(&redis, 1, 3, 1, "deny")
        .replace("redis://", "redis://:s3cret-pw@")
        .replace("rate = 1\n", "rate = 1\nper = \"1h\"\n");
    let gw = Gateway::start(&[("c.toml", &cluster(&origin)), ("limits.toml", &policy)]).await;
    redis_up(&gw).await;
    let client = reqwest::Client::new();
    let mut responses = Vec::new();
    for _ in 0..4 {
        responses.push(send(&client, &gw.url("/x"), &[]).await);
    }
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    // Decided by Redis (on_redis_down = "deny" would refuse everything).
    assert_eq!(statuses, [200, 200, 200, 429]);
    // The numbers come from the script (Redis's clock): 3 per 3 hours, one token an hour.
    assert_eq!(
        responses[0].header("ratelimit-policy"),
        "\"shared\";q=1;w=3600"
    );
    assert_eq!(responses[0].header("ratelimit"), "\"shared\";r=2;t=3600");
    assert_eq!(responses[2].header("ratelimit"), "\"shared\";r=0;t=10800");
    assert_eq!(responses[3].header("retry-after"), "3600");
    assert_eq!(responses[3].header("x-ratelimit-remaining"), "0");
    let keys = redis.cli(&[
        "-a",
        "s3cret-pw",
        "--no-auth-warning",
        "--scan",
        "--pattern",
        "edgeway:rl:*",
    ]);
    assert!(keys.starts_with("edgeway:rl:{shared:"), "{keys}");
    // A wrong password: Redis refuses, the gateway logs why without the URL.
    gw.write_policy("limits.toml", &policy.replace("s3cret-pw", "wrong-pw"));
    eventually(
        "fallback after the reload",
        Duration::from_secs(10),
        || async {
            (send(&client, &gw.url("/y"), &[]).await.status == 429
                && gw.log().contains("redis unreachable"))
            .then_some(())
        },
    )
    .await;
    let log = gw.log();
    assert!(
        !log.contains("s3cret-pw") && !log.contains("wrong-pw"),
        "{log}"
    );
}

#[tokio::test]
async fn cluster_limits_reach_redis_over_tls_with_a_policy_ca() {
    let origin = Origin::start("a").await;
    let certs = tempfile::tempdir().unwrap();
    let ok = std::process::Command::new(e2e::bin("gateway"))
        .args(["gen-certs", "--out"])
        .arg(certs.path())
        .status()
        .unwrap()
        .success();
    assert!(ok, "gateway gen-certs");
    let redis = Redis::start_tls(e2e::redis::Tls {
        cert: certs.path().join("server.pem"),
        key: certs.path().join("server.key"),
        ca: certs.path().join("ca.pem"),
    })
    .await;
    assert!(redis.url().starts_with("rediss://"));
    let ca = std::fs::read_to_string(certs.path().join("ca.pem")).unwrap();
    let policy = cluster_limits(&redis, 1, 2, 1, "allow")
        .replace("rate = 1\n", "rate = 1\nper = \"1h\"\n")
        .replace(
            "instances = 2\n",
            "instances = 2\nredis_ca_file = \"redis-ca.pem\"\n",
        );
    let gw = Gateway::start(&[
        ("c.toml", &cluster(&origin)),
        ("limits.toml", &policy),
        ("redis-ca.pem", &ca),
    ])
    .await;
    redis_up(&gw).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(&client, &gw.url("/x"), &[]).await.status);
    }
    // Decided by Redis (on_redis_down = "allow" would let everything through).
    assert_eq!(statuses, [200, 200, 429]);
    let keys = redis.cli(&["--scan", "--pattern", "edgeway:rl:*"]);
    assert!(keys.starts_with("edgeway:rl:{shared:"), "{keys}");
}

#[tokio::test]
async fn cluster_limits_spread_over_a_redis_cluster_by_slot() {
    let origin = Origin::start("a").await;
    let nodes = [
        Redis::start_cluster_node().await,
        Redis::start_cluster_node().await,
        Redis::start_cluster_node().await,
    ];
    e2e::redis::create_cluster(&nodes.iter().collect::<Vec<_>>()).await;
    let policy = format!(
        r#"
[rate_limits]
redis_url = "{}"
redis_cluster = true
redis_budget = "100ms"
on_redis_down = "allow"

[limit.per_key]
key = "header:x-api-key"
rate = 1
per = "1h"
burst = 2
scope = "cluster"

[[route]]
name = "api"
cluster = "a"
limits = ["per_key"]
"#,
        nodes[0].url()
    );
    let gw = Gateway::start(&[("c.toml", &cluster(&origin)), ("limits.toml", &policy)]).await;
    redis_up(&gw).await;
    let client = reqwest::Client::new();
    for k in 0..12 {
        let key = format!("key-{k}");
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(
                send(&client, &gw.url("/x"), &[("x-api-key", &key)])
                    .await
                    .status,
            );
        }
        // Decided by Redis (on_redis_down = "allow" would let everything through).
        assert_eq!(statuses, [200, 200, 429], "{key}");
    }
    // Each bucket lives on the one node that owns its slot; 12 keys reach more than one node.
    let per_node: Vec<usize> = nodes
        .iter()
        .map(|n| {
            n.cli(&["--scan", "--pattern", "edgeway:rl:*"])
                .lines()
                .filter(|l| !l.is_empty())
                .count()
        })
        .collect();
    assert_eq!(per_node.iter().sum::<usize>(), 12, "{per_node:?}");
    assert!(
        per_node.iter().filter(|&&n| n > 0).count() > 1,
        "{per_node:?}"
    );
    assert_eq!(
        gw.metric("gateway_rate_limit_redis_fallback_total", &[])
            .await,
        0.0
    );
}

#[tokio::test]
async fn an_edit_of_a_list_file_alone_is_reloaded() {
    let origin = Origin::start("a").await;
    let policy = |files: &str| {
        format!(
            "[forwarding]\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n[ip_list.blocked]\nfiles = [{files}]\n\n[ip_access]\ndeny = [\"blocked\"]\n\n[[route]]\nname = \"api\"\ncluster = \"a\"\n"
        )
    };
    let gw = Gateway::start(&[
        ("c.toml", &cluster(&origin)),
        ("ip.toml", &policy("\"blocked.txt\"")),
        ("blocked.txt", "198.51.100.1\n"),
    ])
    .await;
    let client = reqwest::Client::new();
    let status = |ip: &'static str| {
        let client = client.clone();
        let url = gw.url("/");
        async move { send(&client, &url, &[("x-forwarded-for", ip)]).await.status }
    };
    assert_eq!(status("198.51.100.1").await, 403);
    assert_eq!(status("198.51.100.2").await, 200);
    let version = |gw: &Gateway| {
        let gw_admin = gw.admin;
        async move {
            reqwest::get(format!("http://{gw_admin}/readyz"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let v1 = version(&gw).await;
    // Only the list file changes: a new policy version, applied.
    gw.write_policy("blocked.txt", "198.51.100.2\n");
    eventually("list edit applied", Duration::from_secs(10), || async {
        (status("198.51.100.2").await == 403 && status("198.51.100.1").await == 200).then_some(())
    })
    .await;
    assert_ne!(version(&gw).await, v1);

    // A list in a subdirectory of the policy directory is watched too.
    std::fs::create_dir(gw.policies.join("lists")).unwrap();
    std::fs::write(gw.policies.join("lists/more.txt"), "198.51.100.3\n").unwrap();
    gw.write_policy("ip.toml", &policy("\"blocked.txt\", \"lists/more.txt\""));
    eventually(
        "subdirectory list applied",
        Duration::from_secs(10),
        || async { (status("198.51.100.3").await == 403).then_some(()) },
    )
    .await;
    let tmp = gw.policies.join("lists/.more.tmp");
    std::fs::write(&tmp, "198.51.100.4\n").unwrap();
    std::fs::rename(&tmp, gw.policies.join("lists/more.txt")).unwrap();
    eventually(
        "subdirectory list edit applied",
        Duration::from_secs(10),
        || async {
            (status("198.51.100.4").await == 403 && status("198.51.100.3").await == 200)
                .then_some(())
        },
    )
    .await;
}
