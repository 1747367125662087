//! Counters and gauges, rendered as Prometheus text on the optional `--metrics` listener.
//! Labels are bounded: shard ids only (a stream has a bounded number of shards).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Kinesis records (or local log frames) read.
    pub blobs_in: AtomicU64,
    /// Access-log records decoded (after de-aggregation).
    pub records_in: AtomicU64,
    /// Records written into durable files.
    pub records_out: AtomicU64,
    /// Records skipped because a replay found them already in a file.
    pub records_replayed: AtomicU64,
    pub files_written: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Partitions created in the Glue catalog (`--register-partitions`).
    pub partitions_registered: AtomicU64,
    /// Records of repeated batches (a producer retry) dropped.
    pub duplicates: AtomicU64,
    /// Sorted runs spilled to local disk (files larger than one row group).
    pub runs_spilled: AtomicU64,
    /// Undecodable records written to the error prefix.
    pub errors: AtomicU64,
    /// Transient failures (AWS calls, object store), retried.
    pub retries: AtomicU64,
    /// GetRecords throttled.
    pub throttled: AtomicU64,
    pub checkpoints: AtomicU64,
    pub leases_taken: AtomicU64,
    pub leases_lost: AtomicU64,
    pub leases_stolen: AtomicU64,
    /// MillisBehindLatest per shard.
    pub lag_ms: Mutex<BTreeMap<String, i64>>,
    /// Shards this worker is processing.
    pub owned: Mutex<BTreeMap<String, ()>>,
}

pub fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Metrics {
    pub fn set_lag(&self, shard: &str, ms: i64) {
        if let Ok(mut m) = self.lag_ms.lock() {
            m.insert(shard.to_string(), ms);
        }
    }

    pub fn set_owned(&self, shard: &str, owned: bool) {
        if let Ok(mut m) = self.owned.lock() {
            if owned {
                m.insert(shard.to_string(), ());
            } else {
                m.remove(shard);
            }
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let counters: [(&str, &str, &AtomicU64); 16] = [
            (
                "pipeline_kinesis_records_total",
                "Kinesis records (local log frames) read",
                &self.blobs_in,
            ),
            (
                "pipeline_records_in_total",
                "Access-log records decoded",
                &self.records_in,
            ),
            (
                "pipeline_records_out_total",
                "Records written into durable files",
                &self.records_out,
            ),
            (
                "pipeline_records_replayed_total",
                "Records skipped on replay (already in a file)",
                &self.records_replayed,
            ),
            (
                "pipeline_files_written_total",
                "Parquet files completed",
                &self.files_written,
            ),
            (
                "pipeline_bytes_written_total",
                "Bytes of Parquet files completed",
                &self.bytes_written,
            ),
            (
                "pipeline_partitions_registered_total",
                "Partitions created in the Glue catalog (BatchCreatePartition)",
                &self.partitions_registered,
            ),
            (
                "pipeline_duplicate_records_total",
                "Records of repeated batches (producer retries) dropped",
                &self.duplicates,
            ),
            (
                "pipeline_runs_spilled_total",
                "Sorted runs spilled to local disk before a file's merge",
                &self.runs_spilled,
            ),
            (
                "pipeline_errors_total",
                "Undecodable records written to the error prefix",
                &self.errors,
            ),
            (
                "pipeline_retries_total",
                "Failed calls retried with backoff",
                &self.retries,
            ),
            (
                "pipeline_throttled_total",
                "GetRecords calls throttled",
                &self.throttled,
            ),
            (
                "pipeline_checkpoints_total",
                "Checkpoints saved",
                &self.checkpoints,
            ),
            (
                "pipeline_leases_taken_total",
                "Shard leases taken (free or expired)",
                &self.leases_taken,
            ),
            (
                "pipeline_leases_stolen_total",
                "Shard leases taken from a busier worker",
                &self.leases_stolen,
            ),
            (
                "pipeline_leases_lost_total",
                "Shard leases lost to another worker",
                &self.leases_lost,
            ),
        ];
        for (name, help, c) in counters {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(s, "# HELP pipeline_millis_behind_latest MillisBehindLatest of the last GetRecords\n# TYPE pipeline_millis_behind_latest gauge");
        if let Ok(m) = self.lag_ms.lock() {
            for (shard, v) in m.iter() {
                let _ = writeln!(s, "pipeline_millis_behind_latest{{shard=\"{shard}\"}} {v}");
            }
        }
        let _ = writeln!(s, "# HELP pipeline_shard_owned Shards this worker processes\n# TYPE pipeline_shard_owned gauge");
        if let Ok(m) = self.owned.lock() {
            for shard in m.keys() {
                let _ = writeln!(s, "pipeline_shard_owned{{shard=\"{shard}\"}} 1");
            }
        }
        s
    }
}

/// Serve `GET /metrics` (any path, really) until the process exits.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let m = metrics.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = sock.read(&mut buf).await;
                let body = m.render();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(())
}
