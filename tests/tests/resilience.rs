//! Resilience end to end: a real gateway in front of real origins that the tests tell to
//! fail, hang or recover. Breakers, ejections, bulkheads and retry budgets are observed the
//! way users see them: statuses, bodies, `Retry-After`, origin hit counts, metrics and
//! access-log records.
//!
//! The gateway process runs on the system clock, so open intervals here are short and
//! waited for with `eventually`; the state machine's timing itself is unit-tested on a
//! manual clock (`gateway/src/resilience/tests.rs`).

use std::time::{Duration, Instant};

use e2e::origin::Origin;
use e2e::{eventually, read_access_log, Gateway};
use serde_json::Value;

fn cluster(name: &str, origins: &[&Origin]) -> String {
    let eps: Vec<String> = origins.iter().map(|o| format!("\"{}\"", o.addr)).collect();
    format!(
        "[cluster.{name}]\nendpoints = [{}]\nconnect_timeout = \"300ms\"\n",
        eps.join(", ")
    )
}

const ROUTE_ALL_TO_API: &str = "[[route]]\nname = \"all\"\ncluster = \"api\"\n";

struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn send(client: &reqwest::Client, method: &str, url: &str, id: &str) -> Reply {
    let r = client
        .request(method.parse().unwrap(), url)
        .header("x-request-id", id)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let body = r.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        retry_after,
        body,
    }
}

/// The access-log record of request `id` (the first one with `status` when the id was
/// sent several times), once it is on disk.
async fn record(gw: &Gateway, id: &str) -> edgeway_record::AccessLogRecord {
    record_with(gw, id, None).await
}

async fn record_with(
    gw: &Gateway,
    id: &str,
    status: Option<i32>,
) -> edgeway_record::AccessLogRecord {
    let dir = gw.access_log_dir();
    eventually(&format!("record {id}"), Duration::from_secs(10), || {
        let found = read_access_log(&dir)
            .into_iter()
            .flat_map(|(_, r)| r)
            .find(|r| r.request_id == id && status.is_none_or(|s| r.status == s));
        async move { found }
    })
    .await
}

#[tokio::test]
async fn a_failing_cluster_opens_the_breaker_fails_fast_and_recovers_through_half_open() {
    let origin = Origin::start("a").await;
    let resilience = "[resilience.api.breaker]\nconsecutive_failures = 3\nopen_for = \"1s\"\nmax_open_for = \"4s\"\nhalf_open_probes = 1\n";
    let gw = Gateway::start(&[
        ("c.toml", &cluster("api", &[&origin])),
        ("r.toml", ROUTE_ALL_TO_API),
        ("resilience.toml", resilience),
    ])
    .await;
    let client = reqwest::Client::new();
    let url = gw.url("/x");

    assert_eq!(send(&client, "GET", &url, "ok-1").await.status, 200);
    origin.fail_with(503);
    for i in 0..3 {
        let r = send(&client, "GET", &url, &format!("fail-{i}")).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.body["origin"], "a", "the origin's own 503 passes through");
    }
    let hits = origin.hits();
    assert_eq!(hits, 4);

    // Open: fast 503 breaker_open with Retry-After, and the origin sees nothing.
    for i in 0..20 {
        let started = Instant::now();
        let r = send(&client, "GET", &url, &format!("open-{i}")).await;
        assert_eq!(r.status, 503);
        assert_eq!(r.body["error"], "breaker_open");
        assert_eq!(r.body["request_id"], format!("open-{i}"));
        assert_eq!(r.retry_after.as_deref(), Some("1"));
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    assert_eq!(
        origin.hits(),
        hits,
        "no request reached the origin while open"
    );
    let state = &[("cluster", "api"), ("endpoint", "*")];
    assert_eq!(gw.metric("gateway_breaker_state", state).await, 1.0);

    // Half-open after the interval: the one probe fails, the breaker reopens for twice as
    // long (Retry-After 2).
    let probe = eventually("a half-open probe", Duration::from_secs(5), || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let r = send(&client, "GET", &url, "probe-1").await;
            (r.body["error"] != "breaker_open").then_some(r)
        }
    })
    .await;
    assert_eq!(probe.status, 503);
    assert_eq!(origin.hits(), hits + 1, "exactly one probe");
    let r = send(&client, "GET", &url, "reopened").await;
    assert_eq!(r.body["error"], "breaker_open");
    assert_eq!(r.retry_after.as_deref(), Some("2"), "open interval doubled");

    // Recovery: the next probe succeeds and closes the breaker.
    origin.fail_with(0);
    let recovered = eventually("recovery", Duration::from_secs(8), || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let r = send(&client, "GET", &url, "probe-2").await;
            (r.status == 200).then_some(r)
        }
    })
    .await;
    assert_eq!(recovered.body["origin"], "a");
    assert_eq!(send(&client, "GET", &url, "closed-1").await.status, 200);
    assert_eq!(gw.metric("gateway_breaker_state", state).await, 0.0);
    let to = |s| [("cluster", "api"), ("endpoint", "*"), ("to", s)];
    assert_eq!(
        gw.metric("gateway_breaker_transitions_total", &to("open"))
            .await,
        2.0
    );
    assert_eq!(
        gw.metric("gateway_breaker_transitions_total", &to("half_open"))
            .await,
        2.0
    );
    assert_eq!(
        gw.metric("gateway_breaker_transitions_total", &to("closed"))
            .await,
        1.0
    );

    // The records say what the breaker did.
    let open = record(&gw, "open-0").await;
    assert_eq!(
        (
            open.status,
            open.breaker_state.as_deref(),
            open.error_class.as_deref()
        ),
        (503, Some("open"), Some("breaker_open"))
    );
    assert_eq!(open.upstream_addr, None, "never touched the upstream");
    assert_eq!(open.upstream_attempts, None);
    let probe = record_with(&gw, "probe-2", Some(200)).await;
    assert_eq!(
        (probe.status, probe.breaker_state.as_deref()),
        (200, Some("half_open"))
    );
    let closed = record(&gw, "closed-1").await;
    assert_eq!(closed.breaker_state.as_deref(), Some("closed"));
    assert_eq!(closed.error_class, None);
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_another_endpoint_and_posts_are_not() {
    let (bad, good) = (Origin::start("bad").await, Origin::start("good").await);
    let resilience =
        "[resilience.api.retry]\nattempts = 2\nbackoff_base = \"1ms\"\nbackoff_max = \"5ms\"\n";
    // PUT and DELETE are retried only where a route says its upstream makes them idempotent.
    let routes = format!(
        "{ROUTE_ALL_TO_API}\n[[route]]\nname = \"writes\"\nhosts = [\"writes.test\"]\ncluster = \"api\"\nretry_idempotent_writes = true\n"
    );
    let gw = Gateway::start(&[
        ("c.toml", &cluster("api", &[&bad, &good])),
        ("r.toml", &routes),
        ("resilience.toml", resilience),
    ])
    .await;
    bad.fail_with(503);
    let client = reqwest::Client::new();
    let url = gw.url("/item");

    let mut put_failed = 0;
    for _ in 0..6 {
        let r = client.put(&url).send().await.unwrap();
        if r.status() == 503 {
            put_failed += 1;
        }
        let r = client
            .put(&url)
            .header("host", "writes.test")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "retried on the route that allows it");
    }
    assert!(put_failed > 0, "PUT on the default route is sent once");
    let (bad_start, good_start) = (bad.hits(), good.hits());
    let retried_label = [("cluster", "api"), ("outcome", "retried")];
    let retries_start = gw
        .metric("gateway_upstream_retries_total", &retried_label)
        .await;

    for i in 0..10 {
        let r = send(&client, "GET", &url, &format!("get-{i}")).await;
        assert_eq!(r.status, 200, "GET {i} retried on the good endpoint");
        assert_eq!(r.body["origin"], "good");
    }
    let retried = bad.hits() - bad_start;
    assert!(
        retried >= 4,
        "round-robin sent some GETs to bad first: {retried}"
    );
    assert_eq!(good.hits() - good_start, 10);
    assert_eq!(
        gw.metric("gateway_upstream_retries_total", &retried_label)
            .await
            - retries_start,
        retried as f64
    );

    // POST: sent once, whatever the answer.
    let mut failed = 0;
    for i in 0..10 {
        let r = client
            .post(&url)
            .header("x-request-id", format!("post-{i}"))
            .body("{\"order\": 1}")
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            failed += 1;
        }
    }
    assert!(failed > 0, "some POSTs met the bad endpoint");
    assert_eq!(
        bad.hits() - bad_start,
        retried + failed,
        "each failed POST reached bad once"
    );
    assert_eq!(
        good.hits() - good_start,
        10 + 10 - failed,
        "and was not retried on good"
    );

    // The records count the attempts.
    let mut attempts = Vec::new();
    for i in 0..10 {
        attempts.push(record(&gw, &format!("get-{i}")).await.upstream_attempts);
    }
    assert_eq!(
        attempts.iter().filter(|a| **a == Some(2)).count() as u64,
        retried
    );
    assert!(attempts.iter().all(|a| matches!(a, Some(1) | Some(2))));
    for i in 0..10 {
        let r = record(&gw, &format!("post-{i}")).await;
        assert_eq!(r.upstream_attempts, Some(1), "post-{i}");
    }
}

#[tokio::test]
async fn the_retry_budget_stops_a_retry_storm() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    // 25% of requests, no floor: a cluster-wide outage adds at most a quarter more load.
    let resilience = "[resilience.api.retry]\nattempts = 3\nbackoff_base = \"1ms\"\nbackoff_max = \"2ms\"\nbudget_percent = 25\nbudget_min_per_second = 0\n";
    let gw = Gateway::start(&[
        ("c.toml", &cluster("api", &[&a, &b])),
        ("r.toml", ROUTE_ALL_TO_API),
        ("resilience.toml", resilience),
    ])
    .await;
    a.fail_with(503);
    b.fail_with(503);
    let client = reqwest::Client::new();
    for i in 0..40 {
        let r = send(&client, "GET", &gw.url("/storm"), &format!("s-{i}")).await;
        assert_eq!(r.status, 503);
    }
    let hits = a.hits() + b.hits();
    assert!(
        (40..=50).contains(&hits),
        "at most 25% more than the 40 requests: {hits}"
    );
    let labels = |o| [("cluster", "api"), ("outcome", o)];
    assert!(
        gw.metric(
            "gateway_upstream_retries_total",
            &labels("budget_exhausted")
        )
        .await
            > 0.0
    );
    assert_eq!(
        gw.metric("gateway_upstream_retries_total", &labels("retried"))
            .await,
        (hits - 40) as f64
    );
}

#[tokio::test]
async fn a_full_bulkhead_rejects_at_once_and_other_clusters_are_not_delayed() {
    let (slow, fast) = (Origin::start("slow").await, Origin::start("fast").await);
    let clusters = format!("{}{}", cluster("api", &[&slow]), cluster("other", &[&fast]));
    let routes = "[[route]]\nname = \"slow\"\npath_prefix = \"/slow\"\ncluster = \"api\"\n\n[[route]]\nname = \"other\"\npath_prefix = \"/fast\"\ncluster = \"other\"\n";
    let resilience =
        "[resilience.api.bulkhead]\nmax_concurrent = 2\nmax_waiting = 1\nmax_wait = \"100ms\"\n";
    let gw = Gateway::start(&[
        ("c.toml", &clusters),
        ("r.toml", routes),
        ("resilience.toml", resilience),
    ])
    .await;
    let client = reqwest::Client::new();
    let hanging: Vec<_> = (0..2)
        .map(|_| tokio::spawn(client.get(gw.url("/slow?ms=3000")).send()))
        .collect();
    eventually(
        "two slow requests in flight",
        Duration::from_secs(5),
        || async { (slow.hits() == 2).then_some(()) },
    )
    .await;

    // A third waits at most max_wait for a slot, then 503 overloaded.
    let started = Instant::now();
    let r = send(&client, "GET", &gw.url("/slow?ms=1"), "over-1").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body["error"], "overloaded");
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert!(started.elapsed() < Duration::from_millis(1000));
    // Two at once: one may wait, the other is refused without waiting.
    let one = gw.url("/slow?ms=1");
    let (x, y) = tokio::join!(
        send(&client, "GET", &one, "over-2"),
        send(&client, "GET", &one, "over-3")
    );
    assert_eq!((x.status, y.status), (503, 503));
    assert_eq!(slow.hits(), 2, "none of them reached the slow origin");

    // The other cluster is served at once meanwhile.
    for i in 0..20 {
        let started = Instant::now();
        let r = send(&client, "GET", &gw.url("/fast"), &format!("fast-{i}")).await;
        assert_eq!(r.status, 200);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    assert_eq!(
        gw.metric("gateway_bulkhead_rejected_total", &[("cluster", "api")])
            .await,
        3.0
    );
    for h in hanging {
        assert_eq!(h.await.unwrap().unwrap().status(), 200);
    }
    // Slots are released: the cluster serves again.
    assert_eq!(
        send(&client, "GET", &gw.url("/slow?ms=1"), "after")
            .await
            .status,
        200
    );
    let rec = record(&gw, "over-1").await;
    assert_eq!(rec.error_class.as_deref(), Some("overloaded"));
}

#[tokio::test]
async fn outlier_ejection_takes_out_one_bad_endpoint_of_two_and_the_cap_holds() {
    let (bad, good) = (Origin::start("bad").await, Origin::start("good").await);
    let resilience = "[resilience.api.outlier]\nconsecutive_failures = 2\nejection_time = \"30s\"\nmax_ejected_percent = 50\n";
    // The active health check passes throughout (/healthz answers 200): only real traffic
    // shows the endpoint failing.
    let clusters = format!(
        "{}[cluster.api.health_check]\npath = \"/healthz\"\ninterval = \"200ms\"\n",
        cluster("api", &[&bad, &good])
    );
    let gw = Gateway::start(&[
        ("c.toml", &clusters),
        ("r.toml", ROUTE_ALL_TO_API),
        ("resilience.toml", resilience),
    ])
    .await;
    bad.fail_with(500);
    let client = reqwest::Client::new();
    // 500 is not a failure status by default: nothing is ejected.
    for i in 0..6 {
        send(&client, "GET", &gw.url("/x"), &format!("w-{i}")).await;
    }
    assert_eq!(
        gw.metric("gateway_outlier_ejections_total", &[("cluster", "api")])
            .await,
        0.0
    );
    let traffic = |o: &Origin| o.state.requests.load(std::sync::atomic::Ordering::SeqCst);
    let bad_before = traffic(&bad);
    bad.fail_with(502);
    let mut from_bad = 0;
    for i in 0..20 {
        let r = send(&client, "GET", &gw.url("/x"), &format!("e-{i}")).await;
        if r.status == 502 {
            from_bad += 1;
        }
    }
    assert_eq!(from_bad, 2, "ejected after 2 failures in a row");
    let bad_label = bad.addr.to_string();
    let ep = [("cluster", "api"), ("endpoint", bad_label.as_str())];
    assert_eq!(gw.metric("gateway_outlier_ejections_total", &ep).await, 1.0);
    assert_eq!(gw.metric("gateway_breaker_state", &ep).await, 1.0);
    assert_eq!(
        gw.metric("gateway_upstream_endpoint_healthy", &ep).await,
        1.0,
        "the health check has not noticed"
    );
    assert!(traffic(&bad) > bad_before, "health checks still reach it");

    // The good one fails too: the cap (half of two) keeps it in rotation.
    good.fail_with(502);
    let before = good.hits();
    for i in 0..10 {
        let r = send(&client, "GET", &gw.url("/x"), &format!("c-{i}")).await;
        assert_eq!(r.status, 502, "the outage stays visible");
    }
    assert!(good.hits() >= before + 10);
    assert_eq!(
        gw.metric("gateway_outlier_ejections_total", &[("cluster", "api")])
            .await,
        1.0
    );
    assert!(gw.log().contains("the ejection cap is reached"));
}

#[tokio::test]
async fn breaker_state_is_kept_across_an_unrelated_reload() {
    let origin = Origin::start("a").await;
    let resilience = "[resilience.api.breaker]\nconsecutive_failures = 2\nopen_for = \"60s\"\n";
    let gw = Gateway::start(&[
        ("c.toml", &cluster("api", &[&origin])),
        ("r.toml", ROUTE_ALL_TO_API),
        ("resilience.toml", resilience),
    ])
    .await;
    let client = reqwest::Client::new();
    origin.fail_with(503);
    for i in 0..2 {
        send(&client, "GET", &gw.url("/x"), &format!("f-{i}")).await;
    }
    assert_eq!(
        send(&client, "GET", &gw.url("/x"), "open").await.body["error"],
        "breaker_open"
    );

    // A new route elsewhere: the cluster and its breaker are untouched.
    gw.write_policy(
        "r.toml",
        &format!("{ROUTE_ALL_TO_API}\n[[route]]\nname = \"new\"\npath_prefix = \"/new\"\ncluster = \"api\"\n"),
    );
    eventually("reload applied", Duration::from_secs(10), || async {
        let n = gw
            .metric("gateway_policy_reloads_total", &[("result", "success")])
            .await;
        (n >= 1.0).then_some(())
    })
    .await;
    let hits = origin.hits();
    let r = send(&client, "GET", &gw.url("/new/x"), "after-reload").await;
    assert_eq!(
        r.body["error"], "breaker_open",
        "still open after the reload"
    );
    assert_eq!(origin.hits(), hits);

    // Changing the cluster's resilience settings starts it afresh.
    gw.write_policy(
        "resilience.toml",
        "[resilience.api.breaker]\nconsecutive_failures = 3\nopen_for = \"60s\"\n",
    );
    origin.fail_with(0);
    eventually("fresh breaker", Duration::from_secs(10), || {
        let client = client.clone();
        let url = gw.url("/x");
        async move { (send(&client, "GET", &url, "fresh").await.status == 200).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn request_timeout_bounds_the_whole_exchange() {
    let origin = Origin::start("slow").await;
    let resilience = "[resilience.api]\nrequest_timeout = \"300ms\"\n";
    let clusters = format!("{}read_timeout = \"10s\"\n", cluster("api", &[&origin]));
    // A route that needs less than its cluster's deadline says so.
    let routes = format!(
        "{ROUTE_ALL_TO_API}\n[[route]]\nname = \"quick\"\nhosts = [\"quick.test\"]\ncluster = \"api\"\ntimeout = \"100ms\"\n"
    );
    let gw = Gateway::start(&[
        ("c.toml", &clusters),
        ("r.toml", &routes),
        ("resilience.toml", resilience),
    ])
    .await;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let r = client
        .get(gw.url("/slow?ms=3000"))
        .header("host", "quick.test")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let quick = started.elapsed();
    assert!(quick < Duration::from_millis(280), "{quick:?}");
    let started = Instant::now();
    let r = send(&client, "GET", &gw.url("/slow?ms=3000"), "deadline").await;
    assert_eq!(r.status, 504);
    assert_eq!(r.body["error"], "upstream_timeout");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(2000),
        "{took:?}"
    );
    assert_eq!(
        send(&client, "GET", &gw.url("/slow?ms=10"), "in-time")
            .await
            .status,
        200
    );
}

#[test]
fn check_reports_bad_resilience_settings_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[cluster.api]\nendpoints = [\"127.0.0.1:9001\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("resilience.toml"),
        "[resilience.api.retry]\nmethods = [\"GET\", \"POST\"]\nbudget_percent = 150\n\n[resilience.apx.breaker]\nhalf_open_probes = 0\n",
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
    assert!(
        err.contains("resilience.toml:2:19: resilience.api.retry.methods[1]: found `POST`, expected an idempotent method"),
        "{err}"
    );
    assert!(
        err.contains("resilience.toml:3:18: resilience.api.retry.budget_percent: found 150, expected 0 to 100"),
        "{err}"
    );
    assert!(
        err.contains("resilience.toml:5:13: resilience.apx: found `apx`, expected one of the defined clusters: [api] (did you mean `api`?)"),
        "{err}"
    );
}
