//! Access logs: one [`edgeway_record::AccessLogRecord`] per request, handed off without
//! blocking, made durable on local disk, and shipped to Kinesis when a stream is configured.
//!
//! The proxy thread builds the record from borrowed parts ([`AccessLogRecordRef`]) and
//! encodes it straight into one buffer: one allocation per request, and the queue moves a
//! pointer rather than a struct of thirty strings.
//!
//! ```text
//! logging phase: encode ─try_send─▶ bounded queue ─▶ writer: KPL aggregate ─▶ segment log
//!                                                                       │
//!                                     shipper (stream configured): tail ─▶ PutRecords
//! ```
//!
//! The segment log is written ahead of Kinesis, always: it is the local durable log when no
//! stream is configured (the pipeline's local mode reads it) and the outage spool when one
//! is. A Kinesis outage or throttling only makes the shipper fall behind; it replays from its
//! checkpoint in order when Kinesis recovers, and a restart after a crash resumes from the
//! same checkpoint. Records are dropped only when the queue is full (the writer cannot keep
//! up) or the log reaches its cap, and every drop is counted by reason and logged.
//!
//! Each aggregated Kinesis record's partition key is a batch id, `<instance>-<boot>-<seq>`:
//! unique, so the load spreads over all shards, and a batch that is sent twice (a retry after
//! an acknowledgement was lost, or a crash between a send and its checkpoint) is detectable
//! downstream by its repeated batch id.

mod kinesis;
pub mod metrics;
pub mod policy;
pub mod record;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edgeway_record::segment::FsyncPolicy;
use edgeway_record::AccessLogRecordRef;
use tokio::sync::mpsc;

pub use metrics::LogMetrics;
pub use record::RecordBuilder;

/// Settings of the access-log sink (process settings, not policy).
#[derive(Debug, Clone)]
pub struct AccessLogConfig {
    /// Directory of the segment log.
    pub dir: PathBuf,
    /// Kinesis stream name; `None` keeps records in the local log only.
    pub stream: Option<String>,
    pub aws: edgeway_record::aws::AwsSettings,
    pub fsync: FsyncPolicy,
    /// Records waiting in memory before the writer; beyond it records are dropped.
    pub queue_capacity: usize,
    /// Longest a record waits in the aggregator before it is written.
    pub linger: Duration,
    /// Size of one segment file.
    pub segment_bytes: u64,
    /// Cap of the whole log on disk.
    pub cap_bytes: u64,
    /// Identifies this gateway in records and batch ids.
    pub instance: String,
    /// Longest wait for one PutRecords call.
    pub put_timeout: Duration,
}

/// First allocation for an encoded record: a typical one is 150–300 bytes.
const ENCODED_CAPACITY: usize = 384;

/// The request path's handle: cheap to clone, never blocks.
#[derive(Clone)]
pub struct AccessLog {
    tx: mpsc::Sender<Vec<u8>>,
    metrics: Arc<LogMetrics>,
}

impl AccessLog {
    /// Queue one record. Never waits: when the queue is full the record is dropped and the
    /// drop counted (the writer is not keeping up with disk).
    pub fn emit(&self, record: &AccessLogRecordRef<'_>) {
        let mut buf = Vec::with_capacity(ENCODED_CAPACITY);
        record.encode(&mut buf);
        self.emit_encoded(buf);
    }

    /// Queue one record already encoded with its kind ([`edgeway_record::kind`]): another
    /// table's record (a policy change) on the same durable path. Never waits, like [`emit`].
    ///
    /// [`emit`]: AccessLog::emit
    pub fn emit_encoded(&self, buf: Vec<u8>) {
        self.metrics.emitted.inc();
        match self.tx.try_send(buf) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.metrics
                    .dropped("queue_full", 1, &"the writer is not keeping up")
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.metrics.dropped("shutdown", 1, &"the sink has stopped")
            }
        }
    }
}

/// Owns the sink thread; [`Sink::shutdown`] flushes and waits for it.
pub struct Sink {
    thread: Option<std::thread::JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Sink {
    /// Start the writer (and the shipper when a stream is configured) on a dedicated thread
    /// with its own runtime, so disk and network I/O never run on proxy threads.
    pub fn start(
        config: AccessLogConfig,
        metrics: Arc<LogMetrics>,
    ) -> Result<(AccessLog, Sink), writer::SinkError> {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let log = writer::LogWriter::open(&config, Arc::clone(&metrics))?;
        let handle = AccessLog {
            tx,
            metrics: Arc::clone(&metrics),
        };
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "access-log runtime failed to start; records will be dropped");
                        return;
                    }
                };
                rt.block_on(writer::run(config, log, rx, metrics, thread_stop));
            })
            .map_err(writer::SinkError::Thread)?;
        Ok((
            handle,
            Sink {
                thread: Some(thread),
                stop,
            },
        ))
    }

    /// Drain the queue, flush and fsync the log, give Kinesis a last chance, and wait for it,
    /// bounded by `timeout`. Whatever Kinesis did not take stays in the log and is shipped on
    /// the next start.
    pub fn shutdown(mut self, timeout: Duration) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + timeout;
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            // Process exit, after the server's runtimes stopped: nothing else runs here.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            tracing::warn!("access-log sink still busy at exit; unsent records stay in the log for the next start");
        }
    }
}
