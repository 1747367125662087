//! The embedded local log with its consumer: a real gateway in local mode (no Kinesis) and a
//! real `pipeline run --local-log` side by side. The pipeline's durable checkpoint releases
//! segments, so a log much smaller than the traffic never fills, and every request reaches
//! the lake exactly once.

use std::path::Path;
use std::time::Duration;

use e2e::origin::Origin;
use e2e::pipeline_util::{pyarrow_request_ids, PipelineProc};
use e2e::{eventually, free_port, metric_value, Gateway};
use edgeway_record::segment::{disk_usage, list_segments, LOCAL_CONSUMER_POSITION_FILE};

/// The log's cap (`--access-log-cap 64KiB`), with segments of 8 KiB.
const CAP: u64 = 64 * 1024;
/// Requests in all: their records are several times the cap.
const REQUESTS: usize = 2000;
/// Requests sent back to back before looking at the log again.
const WAVE: usize = 25;
/// A generous size of one record in the log (they are about 250 bytes, plus KPL framing).
const RECORD_BYTES: u64 = 400;

async fn pipeline_metric(addr: std::net::SocketAddr, name: &str) -> Option<f64> {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(metric_value(&text, name, &[]))
}

fn segment_files(dir: &Path) -> Vec<u64> {
    list_segments(dir).unwrap_or_default()
}

#[tokio::test]
async fn the_local_pipeline_releases_the_log_so_it_never_fills() {
    let origin = Origin::start("app").await;
    let clusters = format!("[cluster.app]\nendpoints = [\"{}\"]\n", origin.addr);
    let routes = "[[route]]\nname = \"app\"\nhosts = [\"app.test\"]\ncluster = \"app\"\n";
    let gw = Gateway::start_with(
        &[("c.toml", &clusters), ("r.toml", routes)],
        &[
            "--access-log-cap",
            "64KiB",
            "--access-log-segment",
            "8KiB",
            "--access-log-linger",
            "20ms",
        ],
    )
    .await;
    let log = gw.access_log_dir();
    let lake = tempfile::tempdir().unwrap();
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut pipeline = PipelineProc::start(
        &[
            "--local-log",
            log.to_str().unwrap(),
            "--lake",
            lake.path().join("lake").to_str().unwrap(),
            "--metrics",
            &metrics.to_string(),
            "--max-file-age",
            "1s",
            "--target-file-bytes",
            "8192",
            "--idle-poll",
            "50ms",
        ],
        &[],
        lake.path().join("pipeline.log"),
    );

    let client = reqwest::Client::new();
    let mut max_on_disk = 0;
    for wave in 0..REQUESTS / WAVE {
        // Room for this wave and for the previous one, which may still wait in the
        // aggregator: the log only has it once the pipeline's checkpoint released segments.
        eventually(
            "room in the access log (released by the pipeline's checkpoint)",
            Duration::from_secs(30),
            || {
                let m = gw.metrics();
                async move {
                    let used = metric_value(&m.await, "accesslog_log_bytes", &[]) as u64;
                    (used + 2 * WAVE as u64 * RECORD_BYTES <= CAP).then_some(())
                }
            },
        )
        .await;
        for i in wave * WAVE..(wave + 1) * WAVE {
            let status = client
                .get(gw.url(&format!("/soak/{i}")))
                .header("host", "app.test")
                .header("x-request-id", format!("soak-{i:05}"))
                .send()
                .await
                .expect("request")
                .status();
            assert_eq!(status, 200);
        }
        let on_disk = disk_usage(&log).unwrap();
        max_on_disk = max_on_disk.max(on_disk);
        assert!(
            on_disk <= CAP,
            "{on_disk} bytes of segments after wave {wave}"
        );
    }

    // Every record in the log, then in files of the lake.
    eventually("every record written", Duration::from_secs(30), || {
        let m = gw.metrics();
        async move {
            let n = metric_value(&m.await, "accesslog_records_written_total", &[]);
            // The requests and the gateway's start event (a policy-change record).
            (n >= (REQUESTS + 1) as f64).then_some(())
        }
    })
    .await;
    eventually(
        "every record in a file",
        Duration::from_secs(60),
        || async {
            let n = pipeline_metric(metrics, "pipeline_records_out_total").await?;
            // The requests and the gateway's start event (a policy-change record).
            (n >= (REQUESTS + 1) as f64).then_some(())
        },
    )
    .await;
    let m = gw.metrics().await;
    for reason in ["log_full", "queue_full", "io"] {
        assert_eq!(
            metric_value(&m, "accesslog_records_dropped_total", &[("reason", reason)]),
            0.0,
            "records dropped: {reason}"
        );
    }
    let written_bytes = metric_value(&m, "accesslog_kinesis_record_bytes_total", &[]) as u64;
    assert!(
        written_bytes > 4 * CAP,
        "the records ({written_bytes} bytes) are several times the cap"
    );
    let released = metric_value(&m, "accesslog_released_bytes_total", &[]) as u64;
    assert!(
        released + CAP >= written_bytes,
        "{released} of {written_bytes} bytes released"
    );
    assert!(max_on_disk <= CAP);
    // Once the pipeline's checkpoint covers everything, all that is left is the segment it
    // resumes in and the open one.
    eventually(
        "consumed segments deleted down to the last two",
        Duration::from_secs(15),
        || {
            let segments = segment_files(&log);
            async move {
                (segments.len() <= 2 && segments.first().is_some_and(|&s| s > 1)).then_some(())
            }
        },
    )
    .await;
    assert!(log.join(LOCAL_CONSUMER_POSITION_FILE).exists());

    pipeline.signal("TERM");
    pipeline.wait_success();
    let ids = pyarrow_request_ids(&lake.path().join("lake"));
    let expected: Vec<String> = (0..REQUESTS).map(|i| format!("soak-{i:05}")).collect();
    assert_eq!(ids.len(), REQUESTS, "every request once in the lake");
    assert!(ids == expected, "the lake holds exactly the requests sent");
    assert!(
        gw.log().lines().all(|l| !l.contains("records dropped")),
        "{}",
        gw.log()
    );
}
