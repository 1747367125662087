//! Counters and gauges in a `prometheus` registry (as the gateway keeps its own), served in the
//! Prometheus text format at `GET /metrics` on the optional `--metrics` listener, a hyper
//! HTTP/1 server. Labels are bounded: shard ids only (a stream has a bounded number of shards).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Encoder, IntCounter, IntGaugeVec, Opts, Registry, TextEncoder};

/// The pipeline's metrics. Clones of the counters share their values.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Kinesis records (or local log frames) read.
    pub blobs_in: IntCounter,
    /// Records decoded (after de-aggregation), every table.
    pub records_in: IntCounter,
    /// Policy-change records decoded (part of `records_in`), for the `policy_changes` table.
    pub policy_changes_in: IntCounter,
    /// Records of a kind this pipeline does not know (a newer gateway): to the error prefix.
    pub unknown_kind: IntCounter,
    /// Records written into durable files.
    pub records_out: IntCounter,
    /// Records skipped because a replay found them already in a file.
    pub records_replayed: IntCounter,
    pub files_written: IntCounter,
    pub bytes_written: IntCounter,
    /// Partitions created in the Glue catalog (`--register-partitions`).
    pub partitions_registered: IntCounter,
    /// Records of repeated batches (a producer retry) dropped.
    pub duplicates: IntCounter,
    /// Sorted runs spilled to local disk (files larger than one row group).
    pub runs_spilled: IntCounter,
    /// Undecodable records written to the error prefix.
    pub errors: IntCounter,
    /// Transient failures (AWS calls, object store), retried.
    pub retries: IntCounter,
    /// GetRecords throttled.
    pub throttled: IntCounter,
    pub checkpoints: IntCounter,
    pub leases_taken: IntCounter,
    pub leases_lost: IntCounter,
    pub leases_stolen: IntCounter,
    /// MillisBehindLatest per shard.
    pub lag_ms: IntGaugeVec,
    /// Shards this worker is processing (1 while owned; the series goes when it is not).
    pub owned: IntGaugeVec,
}

pub fn inc(c: &IntCounter, n: u64) {
    c.inc_by(n);
}

pub fn get(c: &IntCounter) -> u64 {
    c.get()
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric at zero.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // The names and labels are constants and the registry is new, so neither creating
        // nor registering a metric can fail.
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric name");
            registry
                .register(Box::new(c.clone()))
                .expect("metric registered once");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["shard"]).expect("valid metric name");
            registry
                .register(Box::new(g.clone()))
                .expect("metric registered once");
            g
        };
        Metrics {
            blobs_in: counter(
                "pipeline_kinesis_records_total",
                "Kinesis records (local log frames) read",
            ),
            records_in: counter(
                "pipeline_records_in_total",
                "Records decoded (access logs and policy changes)",
            ),
            policy_changes_in: counter(
                "pipeline_policy_changes_in_total",
                "Policy-change records decoded (for the policy_changes table)",
            ),
            unknown_kind: counter(
                "pipeline_unknown_kind_records_total",
                "Records of an unknown kind (a newer gateway?) written to the error prefix",
            ),
            records_out: counter(
                "pipeline_records_out_total",
                "Records written into durable files",
            ),
            records_replayed: counter(
                "pipeline_records_replayed_total",
                "Records skipped on replay (already in a file)",
            ),
            files_written: counter("pipeline_files_written_total", "Parquet files completed"),
            bytes_written: counter(
                "pipeline_bytes_written_total",
                "Bytes of Parquet files completed",
            ),
            partitions_registered: counter(
                "pipeline_partitions_registered_total",
                "Partitions created in the Glue catalog (BatchCreatePartition)",
            ),
            duplicates: counter(
                "pipeline_duplicate_records_total",
                "Records of repeated batches (producer retries) dropped",
            ),
            runs_spilled: counter(
                "pipeline_runs_spilled_total",
                "Sorted runs spilled to local disk before a file's merge",
            ),
            errors: counter(
                "pipeline_errors_total",
                "Undecodable records written to the error prefix",
            ),
            retries: counter(
                "pipeline_retries_total",
                "Failed calls retried with backoff",
            ),
            throttled: counter("pipeline_throttled_total", "GetRecords calls throttled"),
            checkpoints: counter("pipeline_checkpoints_total", "Checkpoints saved"),
            leases_taken: counter(
                "pipeline_leases_taken_total",
                "Shard leases taken (free or expired)",
            ),
            leases_stolen: counter(
                "pipeline_leases_stolen_total",
                "Shard leases taken from a busier worker",
            ),
            leases_lost: counter(
                "pipeline_leases_lost_total",
                "Shard leases lost to another worker",
            ),
            lag_ms: gauge(
                "pipeline_millis_behind_latest",
                "MillisBehindLatest of the last GetRecords",
            ),
            owned: gauge("pipeline_shard_owned", "Shards this worker processes"),
            registry,
        }
    }

    pub fn set_lag(&self, shard: &str, ms: i64) {
        self.lag_ms.with_label_values(&[shard]).set(ms);
    }

    pub fn set_owned(&self, shard: &str, owned: bool) {
        if owned {
            self.owned.with_label_values(&[shard]).set(1);
        } else {
            // Not an error when it was not owned: there is simply no series to remove.
            let _ = self.owned.remove_label_values(&[shard]);
        }
    }

    /// Every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec fails only on metric families the registry cannot hold.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!("metrics: {e}");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The answer to one request: the metrics at `GET /metrics` (and `HEAD`), 404 elsewhere, 405
/// for other methods on `/metrics`.
fn respond(metrics: &Metrics, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (path, method) {
        ("/metrics", &Method::GET | &Method::HEAD) => (
            StatusCode::OK,
            prometheus::TEXT_FORMAT,
            Bytes::from(metrics.render()),
        ),
        ("/metrics", _) => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"method not allowed\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"not found: the pipeline serves /metrics\n"),
        ),
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        resp.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
    }
    resp
}

/// Bind `addr` and serve `/metrics` in the background until the process exits. Returns the
/// bound address (useful with port 0).
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (sock, _) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!("metrics listener: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let m = metrics.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let resp = respond(&m, req.method(), req.uri().path());
                        async move { Ok::<_, Infallible>(resp) }
                    });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), service)
                    .await
                {
                    tracing::debug!("metrics connection: {e}");
                }
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn counters_and_shard_gauges_render_with_their_names() {
        let m = Metrics::default();
        inc(&m.records_in, 5);
        inc(&m.duplicates, 2);
        m.set_lag("shardId-000000000001", 1500);
        m.set_owned("shardId-000000000001", true);
        m.set_owned("shardId-000000000002", true);
        m.set_owned("shardId-000000000002", false);
        m.set_owned("never-owned", false);
        let text = m.render();
        for line in [
            "# TYPE pipeline_records_in_total counter",
            "pipeline_records_in_total 5",
            "pipeline_duplicate_records_total 2",
            "pipeline_errors_total 0",
            "# TYPE pipeline_millis_behind_latest gauge",
            "pipeline_millis_behind_latest{shard=\"shardId-000000000001\"} 1500",
            "pipeline_shard_owned{shard=\"shardId-000000000001\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(!text.contains("shardId-000000000002"), "{text}");
        assert_eq!(get(&m.records_in), 5);
        // Each Metrics has its own registry.
        assert!(Metrics::default()
            .render()
            .contains("pipeline_records_in_total 0"));
    }

    async fn http(addr: SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_404_elsewhere() {
        let m = Arc::new(Metrics::default());
        inc(&m.files_written, 3);
        let addr = serve("127.0.0.1:0".parse().unwrap(), m.clone())
            .await
            .unwrap();
        let ok = http(
            addr,
            "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("content-type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(ok.contains("\npipeline_files_written_total 3\n"), "{ok}");
        let missing = http(
            addr,
            "GET /other HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(
            missing.starts_with("HTTP/1.1 404 Not Found\r\n"),
            "{missing}"
        );
        assert!(!missing.contains("pipeline_"), "{missing}");
        let post = http(
            addr,
            "POST /metrics HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{post}"
        );
        // Two requests on one kept-alive connection both get answers.
        let two = http(
            addr,
            "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\nGET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(two.matches("HTTP/1.1 200 OK").count(), 2, "{two}");
    }
}
