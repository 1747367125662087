//! The shipper: tails the segment log and sends its aggregates to Kinesis with PutRecords,
//! retrying only the entries that failed, and checkpoints after Kinesis acknowledged them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgeway_record::kpl;
use edgeway_record::put_records::{
    self, Backoff, CallBudget, CallError, KinesisTransport, PutEntry, PutObserver, RetryPolicy,
};
use edgeway_record::segment::{load_position, save_position, Position, SegmentReader};
use tokio::sync::Notify;

use super::writer::LogWriter;
use super::{AccessLogConfig, LogMetrics};

/// At shutdown, how long to keep trying before leaving the rest in the log.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

struct Entry {
    key: String,
    blob: Vec<u8>,
    records: u64,
    next: Position,
}

impl PutEntry for Entry {
    fn partition_key(&self) -> &str {
        &self.key
    }
    fn data(&self) -> &[u8] {
        &self.blob
    }
}

pub async fn ship(
    cfg: AccessLogConfig,
    stream: String,
    log: Arc<Mutex<LogWriter>>,
    written: Arc<Notify>,
    metrics: Arc<LogMetrics>,
    stop: Arc<AtomicBool>,
) {
    let sdk = edgeway_record::aws::sdk_config(&cfg.aws).await;
    let client = aws_sdk_kinesis::Client::new(&sdk);
    let cursor_path = cfg.dir.join("kinesis.pos");
    let start = match load_position(&cursor_path) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "access log: unreadable Kinesis checkpoint; shipping from the start of the log");
            Position::default()
        }
    };
    let mut reader = SegmentReader::new(&cfg.dir, start);
    lock(&log).shipped = Some(start);
    // Everything already in the log at start-up is a replay (after a crash or an outage that
    // outlived the previous process).
    let mut replay_until = lock(&log).seg.end();
    let mut stop_deadline: Option<Instant> = None;

    loop {
        let stopping = stop.load(Ordering::Acquire);
        if stopping && stop_deadline.is_none() {
            stop_deadline = Some(Instant::now() + SHUTDOWN_DEADLINE);
        }
        let batch = read_batch(&mut reader);
        if batch.is_empty() {
            {
                let mut w = lock(&log);
                w.shipped = Some(reader.position());
                w.update_gauges();
            }
            if stopping {
                return;
            }
            tokio::select! {
                _ = written.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            continue;
        }
        let last = batch.last().map(|e| e.next).unwrap_or_default();
        let replay = batch[0].next <= replay_until;
        let count: u64 = batch.iter().map(|e| e.records).sum();
        if !send_all(
            &client,
            &stream,
            batch,
            &metrics,
            &stop,
            &mut stop_deadline,
            cfg.put_timeout,
        )
        .await
        {
            // Shutting down with entries unacknowledged: they stay in the log (the checkpoint
            // is not advanced) and go out on the next start.
            tracing::warn!(records = count, "access log: Kinesis did not take every record before shutdown; they stay in the local log");
            return;
        }
        if replay {
            metrics.replayed.inc_by(count);
        }
        metrics.sent.inc_by(count);
        if let Err(e) = save_position(&cursor_path, last) {
            tracing::error!(error = %e, "access log: cannot save the Kinesis checkpoint; records may be sent again after a restart");
        }
        {
            let mut w = lock(&log);
            w.release_before(last);
            w.shipped = Some(last);
            w.update_gauges();
            if replay_until <= last {
                replay_until = Position::default();
            }
        }
    }
}

fn lock(log: &Mutex<LogWriter>) -> std::sync::MutexGuard<'_, LogWriter> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Read frames into one PutRecords call's worth of entries.
fn read_batch(reader: &mut SegmentReader) -> Vec<Entry> {
    let mut batch = Vec::new();
    let mut budget = CallBudget::default();
    while !budget.is_full() {
        // Remember where this frame starts, to give it back if it does not fit this call.
        let before = reader.position();
        let frame = match reader.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::error!(error = %e, "access log: cannot read the local log");
                break;
            }
        };
        let key = kpl::partition_key(&frame.payload)
            .unwrap_or_else(|| format!("seg-{}-{}", frame.at.segment, frame.at.offset));
        let size = frame.payload.len() + key.len();
        if !budget.fits(size) {
            reader.seek(before);
            break;
        }
        budget.add(size);
        batch.push(Entry {
            records: kpl::count_records(&frame.payload),
            key,
            blob: frame.payload,
            next: frame.next,
        });
    }
    batch
}

/// The shipper's view of [`put_records::send_all`]: metrics, rate-limited warnings, and the
/// shutdown deadline.
struct Shipping<'a> {
    metrics: &'a LogMetrics,
    stop: &'a AtomicBool,
    stop_deadline: &'a mut Option<Instant>,
}

impl PutObserver<Entry> for Shipping<'_> {
    fn before_retry(&mut self, _attempt: u32, pending: &[Entry]) -> bool {
        if self.stop.load(Ordering::Acquire) {
            let deadline = *self
                .stop_deadline
                .get_or_insert_with(|| Instant::now() + SHUTDOWN_DEADLINE);
            if Instant::now() >= deadline {
                return false;
            }
        }
        self.metrics
            .retried
            .inc_by(pending.iter().map(|e| e.records).sum());
        true
    }

    fn call_finished(&mut self, elapsed: Duration) {
        self.metrics.put_latency.observe(elapsed.as_secs_f64());
    }

    fn entry_failed(&mut self, code: &str) {
        if code == put_records::THROTTLED {
            self.metrics.throttled.inc();
        }
    }

    #[allow(clippy::manual_is_multiple_of)] // u32::is_multiple_of needs Rust 1.87; MSRV is 1.85
    fn call_failed(&mut self, attempt: u32, error: &CallError) {
        match error {
            CallError::Throttled(_) => self.metrics.throttled.inc(),
            CallError::Failed(_) | CallError::Timeout(_) => self.metrics.put_errors.inc(),
            CallError::Mismatch { .. } => {}
        }
        if matches!(error, CallError::Mismatch { .. }) || attempt == 1 || attempt % 20 == 0 {
            tracing::warn!(%error, attempt, "access log: PutRecords failed; records stay in the local log and are retried");
        }
    }
}

/// Send every entry, retrying only failed ones with jittered exponential backoff. Returns
/// `false` only when shutting down with entries still unacknowledged.
async fn send_all(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    pending: Vec<Entry>,
    metrics: &LogMetrics,
    stop: &AtomicBool,
    stop_deadline: &mut Option<Instant>,
    call_timeout: Duration,
) -> bool {
    let transport = KinesisTransport {
        client: client.clone(),
        stream: stream.to_string(),
        call_timeout,
    };
    let policy = RetryPolicy::default();
    let mut backoff = Backoff::new(policy.backoff_start, policy.backoff_max);
    let mut shipping = Shipping {
        metrics,
        stop,
        stop_deadline,
    };
    put_records::send_all(
        &transport,
        pending,
        &policy,
        &mut backoff,
        &mut shipping,
        tokio::time::sleep,
    )
    .await
    .is_ok()
}

#[cfg(test)]
mod tests {
    //! PutRecords partial failures, which moto cannot produce: a real HTTP server on loopback
    //! answers the first call with one throttled entry, and the test checks that the retry
    //! carries exactly that entry.

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn fake_kinesis(
        answers: Vec<String>,
    ) -> (String, tokio::task::JoinHandle<Vec<serde_json::Value>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut bodies = Vec::new();
            for answer in answers {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let body = loop {
                    let mut chunk = [0u8; 65536];
                    let n = s.read(&mut chunk).await.unwrap();
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let len: usize = text[..end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            break buf[end + 4..end + 4 + len].to_vec();
                        }
                    }
                };
                bodies.push(serde_json::from_slice(&body).unwrap());
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            }
            bodies
        });
        (format!("http://{addr}"), task)
    }

    fn entry(key: &str) -> Entry {
        let mut a = kpl::Aggregator::new(key, 1 << 20);
        a.try_push(key.as_bytes());
        Entry {
            key: key.into(),
            blob: a.finish(),
            records: 1,
            next: Position::default(),
        }
    }

    #[tokio::test]
    async fn only_failed_entries_are_resent() {
        let first = r#"{"FailedRecordCount":1,"Records":[
            {"SequenceNumber":"1","ShardId":"shardId-000000000000"},
            {"ErrorCode":"ProvisionedThroughputExceededException","ErrorMessage":"Rate exceeded"},
            {"SequenceNumber":"2","ShardId":"shardId-000000000001"}]}"#;
        let second = r#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"3","ShardId":"shardId-000000000000"}]}"#;
        let (endpoint, server) = fake_kinesis(vec![first.into(), second.into()]).await;
        let conf = edgeway_record::aws::sdk_config(&edgeway_record::aws::AwsSettings {
            region: Some("us-east-1".into()),
            endpoint: Some(endpoint),
        })
        .await;
        let conf = aws_sdk_kinesis::config::Builder::from(&conf)
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                "a", "b", None, None, "test",
            ))
            .build();
        let client = aws_sdk_kinesis::Client::from_conf(conf);
        let metrics = LogMetrics::new(&prometheus::Registry::new());
        let stop = AtomicBool::new(false);
        let ok = send_all(
            &client,
            "s",
            vec![entry("a"), entry("b"), entry("c")],
            &metrics,
            &stop,
            &mut None,
            Duration::from_secs(5),
        )
        .await;
        assert!(ok);
        let bodies = server.await.unwrap();
        let keys = |b: &serde_json::Value| -> Vec<String> {
            b["Records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["PartitionKey"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(keys(&bodies[0]), ["a", "b", "c"]);
        assert_eq!(
            keys(&bodies[1]),
            ["b"],
            "only the throttled entry is sent again"
        );
        assert_eq!(metrics.throttled.get(), 1);
        assert_eq!(metrics.retried.get(), 1);
    }
}
