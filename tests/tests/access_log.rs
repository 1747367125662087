//! Access logs end to end: every request becomes one record, secrets never reach a record,
//! and records survive Kinesis outages, crashes and a full disk exactly as documented.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use e2e::aws::Moto;
use e2e::origin::Origin;
use e2e::{eventually, free_port, read_access_log, Gateway};

fn policy(origin: &Origin) -> (String, String) {
    let dead = free_port();
    (
        format!(
            "[cluster.app]\nendpoints = [\"{}\"]\nread_timeout = \"300ms\"\n\n\
             [cluster.dead]\nendpoints = [\"127.0.0.1:{dead}\"]\nconnect_timeout = \"200ms\"\n\n\
             [access_log]\nquery_params = [\"page\"]\n",
            origin.addr
        ),
        "[[route]]\nname = \"app\"\nhosts = [\"app.test\"]\ncluster = \"app\"\n\n\
         [[route]]\nname = \"dead\"\nhosts = [\"dead.test\"]\ncluster = \"dead\"\n"
            .to_string(),
    )
}

async fn send(client: &reqwest::Client, gw: &Gateway, host: &str, path: &str, id: &str) -> u16 {
    client
        .get(gw.url(path))
        .header("host", host)
        .header("x-request-id", id)
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

/// `accesslog_records_written_total` also counts the gateway's start event (a policy-change
/// record in the same log): waits for N requests' records use N + 1.
async fn wait_metric(gw: &Gateway, name: &str, at_least: f64) {
    eventually(
        &format!("{name} >= {at_least}"),
        Duration::from_secs(30),
        || {
            let m = gw.metrics();
            let name = name.to_string();
            async move { (e2e::metric_value(&m.await, &name, &[]) >= at_least).then_some(()) }
        },
    )
    .await;
}

#[tokio::test]
async fn every_request_is_one_record_and_secrets_never_are() {
    let origin = Origin::start("app").await;
    let (clusters, routes) = policy(&origin);
    let gw = Gateway::start(&[("c.toml", &clusters), ("r.toml", &routes)]).await;
    let client = reqwest::Client::new();

    let secret = "SeCrEt-T0KEN-9f8e7d";
    let r = client
        .get(gw.url(&format!("/orders?page=2&token={secret}&api_key={secret}")))
        .header("host", "app.test")
        .header("x-request-id", "ok-1")
        .header("authorization", format!("Bearer {secret}"))
        .header("cookie", format!("session={secret}"))
        .header("user-agent", "e2e-test/1.0")
        .header("referer", format!("https://shop.test/cart?sid={secret}"))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(send(&client, &gw, "nowhere.test", "/", "nf-1").await, 404);
    assert_eq!(send(&client, &gw, "dead.test", "/", "dead-1").await, 502);
    assert_eq!(
        send(&client, &gw, "app.test", "/slow?ms=2000", "slow-1").await,
        504
    );
    for i in 0..20 {
        assert_eq!(
            send(&client, &gw, "app.test", "/bulk", &format!("bulk-{i}")).await,
            200
        );
    }
    wait_metric(&gw, "accesslog_records_written_total", 25.0).await;

    let batches = read_access_log(&gw.access_log_dir());
    let records: Vec<_> = batches
        .iter()
        .flat_map(|(_, r)| r.iter().cloned())
        .collect();
    assert_eq!(records.len(), 24, "one record per request");
    let by_id: HashMap<&str, &edgeway_record::AccessLogRecord> =
        records.iter().map(|r| (r.request_id.as_str(), r)).collect();
    assert_eq!(by_id.len(), 24, "request ids are unique");

    let ok = by_id["ok-1"];
    assert_eq!(ok.status, 200);
    assert_eq!(ok.method, "GET");
    assert_eq!(ok.host, "app.test");
    assert_eq!(ok.path, "/orders");
    assert_eq!(
        ok.query.as_deref(),
        Some("page=2"),
        "only allow-listed parameters"
    );
    assert_eq!(ok.scheme, "http");
    assert_eq!(ok.http_version, "HTTP/1.1");
    assert_eq!(ok.client_ip, "127.0.0.1");
    assert!(ok.client_port > 0);
    assert_eq!(ok.route.as_deref(), Some("app"));
    assert_eq!(ok.upstream_cluster.as_deref(), Some("app"));
    assert_eq!(
        ok.upstream_addr.as_deref(),
        Some(origin.addr.to_string().as_str())
    );
    assert_eq!(ok.user_agent.as_deref(), Some("e2e-test/1.0"));
    assert_eq!(ok.referer.as_deref(), Some("https://shop.test/cart"));
    assert_eq!(
        ok.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(ok.auth_result, "none");
    assert!(ok.bytes_out > 0);
    assert!(ok.duration_ms > 0.0);
    assert!(ok.upstream_response_ms.is_some());
    assert_eq!(ok.policy_version.len(), 12);
    assert!(ok.event_time > 1_700_000_000_000);
    assert!(!ok.gateway_instance.is_empty());

    let nf = by_id["nf-1"];
    assert_eq!(
        (nf.status, nf.route.as_deref(), nf.error_class.as_deref()),
        (404, None, Some("no_route"))
    );
    let dead = by_id["dead-1"];
    assert_eq!(
        (dead.status, dead.error_class.as_deref()),
        (502, Some("upstream_connect_failed"))
    );
    let slow = by_id["slow-1"];
    assert_eq!(
        (slow.status, slow.error_class.as_deref()),
        (504, Some("upstream_timeout"))
    );

    // The secret is nowhere on disk: not in any record, not in any byte of the log.
    for entry in std::fs::read_dir(gw.access_log_dir()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "secret leaked into the log"
        );
    }
    assert!(
        !gw.log().contains(secret),
        "secret leaked into the process log"
    );

    // Aggregation: records share Kinesis-sized batches, each with a unique batch id.
    let keys: HashSet<&str> = batches.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.len(), batches.len());
    assert!(batches.len() < records.len(), "records are aggregated");
}

#[tokio::test]
async fn full_log_drops_and_counts_every_drop() {
    let origin = Origin::start("app").await;
    let (clusters, routes) = policy(&origin);
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("log");
    let gw = Gateway::start_with(
        &[("c.toml", &clusters), ("r.toml", &routes)],
        &[
            "--access-log-dir",
            log_dir.to_str().unwrap(),
            "--access-log-cap",
            "24KiB",
            "--access-log-segment",
            "8KiB",
            "--access-log-linger",
            "5ms",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let n = 400;
    for i in 0..n {
        send(&client, &gw, "app.test", "/p", &format!("cap-{i}")).await;
    }
    wait_metric(&gw, "accesslog_records_emitted_total", n as f64).await;
    eventually(
        "every record written or counted as dropped",
        Duration::from_secs(20),
        || {
            let m = gw.metrics();
            async move {
                let m = m.await;
                let written = e2e::metric_value(&m, "accesslog_records_written_total", &[]);
                let dropped = e2e::metric_value(
                    &m,
                    "accesslog_records_dropped_total",
                    &[("reason", "log_full")],
                );
                // n requests and the policy-change event of the load at start.
                (written + dropped == (n + 1) as f64 && dropped > 0.0).then_some((written, dropped))
            }
        },
    )
    .await;
    let written = gw.metric("accesslog_records_written_total", &[]).await as usize;
    let on_disk: usize = read_access_log(&log_dir)
        .iter()
        .map(|(_, r)| r.len())
        .sum::<usize>()
        + e2e::read_policy_changes(&log_dir).len();
    assert_eq!(on_disk, written, "what was counted as written is on disk");
    let used: u64 = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(used <= 24 * 1024, "cap respected: {used} bytes");
    assert!(
        gw.log().contains("access-log records dropped"),
        "drops are logged with their reason"
    );
}

async fn start_with_stream(
    moto: &Moto,
    stream: &str,
    origin: &Origin,
    log_dir: &std::path::Path,
) -> Gateway {
    let (clusters, routes) = policy(origin);
    Gateway::start_env(
        &[("c.toml", &clusters), ("r.toml", &routes)],
        &[
            "--access-log-dir",
            log_dir.to_str().unwrap(),
            "--kinesis-stream",
            stream,
            "--kinesis-timeout",
            "1s",
            "--access-log-linger",
            "20ms",
        ],
        &moto.env(),
    )
    .await
}

/// Every request id appears in the stream exactly once, once repeated batches are removed.
/// Returns how many raw duplicate batches there were (each must repeat a whole batch).
fn assert_exactly_once(batches: &[e2e::kinesis::Batch], expected: &HashSet<String>) -> usize {
    let mut seen_batches: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut dup_batches = 0;
    let mut ids: HashMap<&str, usize> = HashMap::new();
    for b in batches {
        let batch_ids: Vec<&str> = b.records.iter().map(|r| r.request_id.as_str()).collect();
        if let Some(prev) = seen_batches.get(b.key.as_str()) {
            assert_eq!(
                prev, &batch_ids,
                "a repeated batch id repeats the whole batch"
            );
            dup_batches += 1;
            continue;
        }
        for id in &batch_ids {
            *ids.entry(id).or_default() += 1;
        }
        seen_batches.insert(&b.key, batch_ids);
    }
    for id in expected {
        assert_eq!(
            ids.get(id.as_str()),
            Some(&1),
            "request id {id} exactly once"
        );
    }
    assert_eq!(ids.len(), expected.len(), "no unexpected records");
    dup_batches
}

#[tokio::test]
async fn kinesis_outage_spools_and_replays_every_record_once() {
    let moto = Moto::start().await;
    let k = e2e::kinesis::client(&moto).await;
    create_stream_named(&k, "outage").await;
    let origin = Origin::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let gw = start_with_stream(&moto, "outage", &origin, dir.path()).await;
    let client = reqwest::Client::new();
    let mut expected = HashSet::new();

    for i in 0..40 {
        let id = format!("before-{i}");
        assert_eq!(send(&client, &gw, "app.test", "/a", &id).await, 200);
        expected.insert(id);
    }
    wait_metric(&gw, "accesslog_records_sent_total", 40.0).await;

    // Outage: moto frozen. Requests keep flowing and keep succeeding; records pile up on disk.
    moto.pause();
    for i in 0..60 {
        let id = format!("during-{i}");
        let started = std::time::Instant::now();
        assert_eq!(send(&client, &gw, "app.test", "/b", &id).await, 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "logging never blocks a request"
        );
        expected.insert(id);
    }
    wait_metric(&gw, "accesslog_records_written_total", 101.0).await;
    assert!(
        gw.metric("accesslog_backlog_bytes", &[]).await > 0.0,
        "backlog visible while Kinesis is down"
    );
    assert!(gw.metric("accesslog_records_sent_total", &[]).await < 100.0);
    // Let the gateway notice (a PutRecords call times out) before Kinesis comes back.
    wait_metric(&gw, "accesslog_kinesis_put_errors_total", 1.0).await;

    moto.resume();
    for i in 0..20 {
        let id = format!("after-{i}");
        assert_eq!(send(&client, &gw, "app.test", "/c", &id).await, 200);
        expected.insert(id);
    }
    wait_metric(&gw, "accesslog_records_sent_total", 120.0).await;
    assert!(gw.metric("accesslog_records_retried_total", &[]).await > 0.0);

    let batches = e2e::kinesis::read_all(&k, "outage").await;
    let dups = assert_exactly_once(&batches, &expected);
    eprintln!(
        "outage: {} batches, {dups} repeated batch(es) detected by batch id",
        batches.len()
    );
    let shards: HashSet<_> = batches.iter().map(|b| b.key.clone()).collect();
    assert!(shards.len() > 1);
}

async fn create_stream_named(k: &aws_sdk_kinesis::Client, name: &str) {
    e2e::kinesis::create_stream(k, name, 2).await;
}

#[tokio::test]
async fn crash_with_records_in_the_spool_delivers_them_after_restart() {
    let moto = Moto::start().await;
    let k = e2e::kinesis::client(&moto).await;
    create_stream_named(&k, "crash").await;
    let origin = Origin::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let mut expected = HashSet::new();
    {
        moto.pause();
        let mut gw = start_with_stream(&moto, "crash", &origin, dir.path()).await;
        let client = reqwest::Client::new();
        for i in 0..50 {
            let id = format!("spooled-{i}");
            assert_eq!(send(&client, &gw, "app.test", "/x", &id).await, 200);
            expected.insert(id);
        }
        wait_metric(&gw, "accesslog_records_written_total", 51.0).await;
        gw.child.kill().unwrap(); // SIGKILL: no flush, no goodbye
        gw.child.wait().unwrap();
        moto.resume();
    }
    let on_disk: usize = read_access_log(dir.path())
        .iter()
        .map(|(_, r)| r.len())
        .sum();
    assert_eq!(on_disk, 50, "the spool holds every record after kill -9");

    let gw = start_with_stream(&moto, "crash", &origin, dir.path()).await;
    wait_metric(&gw, "accesslog_records_replayed_total", 50.0).await;
    let batches = e2e::kinesis::read_all(&k, "crash").await;
    assert_exactly_once(&batches, &expected);
}
