//! The writer: queue → KPL aggregates → segment log. Runs on the sink thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgeway_record::kpl::{Aggregator, MAX_KINESIS_RECORD_BYTES, MAX_PARTITION_KEY_BYTES};
use edgeway_record::segment::{Position, SegmentError, SegmentWriter};
use tokio::sync::{mpsc, Notify};

use super::{AccessLogConfig, LogMetrics};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("access log: {0}")]
    Log(#[from] SegmentError),
    #[error("access log: cannot start the sink thread: {0}")]
    Thread(std::io::Error),
}

/// How often the writer drains the queue.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

/// Largest aggregate: a Kinesis record minus room for the partition key.
const AGGREGATE_LIMIT: usize = MAX_KINESIS_RECORD_BYTES - MAX_PARTITION_KEY_BYTES;

/// Shared between the writer and the shipper (same thread; the mutex is never contended).
pub struct LogWriter {
    pub seg: SegmentWriter,
    instance: String,
    boot: u32,
    seq: u64,
    metrics: Arc<LogMetrics>,
    /// Up to where Kinesis acknowledged; `None` without a stream.
    pub shipped: Option<Position>,
}

impl LogWriter {
    pub fn open(cfg: &AccessLogConfig, metrics: Arc<LogMetrics>) -> Result<Self, SinkError> {
        let seg = SegmentWriter::open(&cfg.dir, cfg.segment_bytes, cfg.cap_bytes, cfg.fsync)?;
        metrics.log_bytes.set(seg.used_bytes() as i64);
        Ok(LogWriter {
            seg,
            instance: cfg
                .instance
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .take(64)
                .collect(),
            // Distinguishes batch ids across restarts of the same instance.
            boot: fastrand::u32(..),
            seq: 0,
            metrics,
            shipped: None,
        })
    }

    fn new_aggregate(&mut self) -> Aggregator {
        self.seq += 1;
        let key = format!("{}-{:08x}-{}", self.instance, self.boot, self.seq);
        Aggregator::new(&key, AGGREGATE_LIMIT)
    }

    /// Append a finished aggregate of `n` records.
    fn write(&mut self, agg: Aggregator) {
        let n = agg.len() as u64;
        if n == 0 {
            return;
        }
        let blob = agg.finish();
        match self.seg.append(&blob) {
            Ok(_) => {
                self.metrics.written.inc_by(n);
                self.metrics.aggregates.inc();
                self.metrics.aggregate_bytes.inc_by(blob.len() as u64);
            }
            Err(e @ SegmentError::Full { .. }) => self.metrics.dropped("log_full", n, &e),
            Err(e) => self.metrics.dropped("io", n, &e),
        }
        self.update_gauges();
    }

    /// Refresh the log-size and backlog gauges.
    pub fn update_gauges(&self) {
        self.metrics.log_bytes.set(self.seg.used_bytes() as i64);
        let Some(shipped) = self.shipped else { return };
        let end = self.seg.end();
        // Exact within a segment; across segments the unshipped segments dominate the size.
        let backlog = if shipped >= end {
            0
        } else if shipped.segment == end.segment {
            end.offset - shipped.offset
        } else {
            self.seg.used_bytes()
        };
        self.metrics.backlog_bytes.set(backlog as i64);
    }
}

/// Writer loop: until the queue closes or `stop` is set, then a final drain and flush.
pub async fn run(
    cfg: AccessLogConfig,
    log: LogWriter,
    mut rx: mpsc::Receiver<Vec<u8>>,
    metrics: Arc<LogMetrics>,
    stop: Arc<AtomicBool>,
) {
    let log = Arc::new(Mutex::new(log));
    let written = Arc::new(Notify::new());
    let shipper_stop = Arc::new(AtomicBool::new(false));
    let shipper = cfg.stream.clone().map(|stream| {
        tokio::spawn(super::kinesis::ship(
            cfg.clone(),
            stream,
            Arc::clone(&log),
            Arc::clone(&written),
            Arc::clone(&metrics),
            Arc::clone(&shipper_stop),
        ))
    });

    let mut agg = lock(&log).new_aggregate();
    let mut oldest: Option<Instant> = None;
    // Drain on a short timer instead of waking per record: a wake-up per request costs the
    // proxy thread a futex call and this thread a context switch, which dominated the cost of
    // logging. The queue absorbs DRAIN_EVERY worth of records.
    let mut tick = tokio::time::interval(DRAIN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    'outer: loop {
        tick.tick().await;
        metrics.queued.set(rx.len() as i64);
        loop {
            match rx.try_recv() {
                Ok(rec) => {
                    push(&log, &mut agg, &rec, &metrics, &written);
                    oldest.get_or_insert_with(Instant::now);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => break 'outer,
            }
        }
        if oldest.is_some_and(|t| t.elapsed() >= cfg.linger) {
            flush(&log, &mut agg, &written);
            oldest = None;
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
    }
    // Drain what is already queued, then make it durable.
    rx.close();
    while let Ok(rec) = rx.try_recv() {
        push(&log, &mut agg, &rec, &metrics, &written);
    }
    flush(&log, &mut agg, &written);
    if let Err(e) = lock(&log).seg.sync() {
        tracing::error!(error = %e, "access log: final fsync failed");
    }
    metrics.queued.set(0);
    if let Some(shipper) = shipper {
        shipper_stop.store(true, Ordering::Release);
        written.notify_one();
        let _ = shipper.await;
    }
}

fn lock(log: &Mutex<LogWriter>) -> std::sync::MutexGuard<'_, LogWriter> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

fn push(
    log: &Mutex<LogWriter>,
    agg: &mut Aggregator,
    data: &[u8],
    metrics: &LogMetrics,
    written: &Notify,
) {
    if agg.try_push(data) {
        return;
    }
    flush(log, agg, written);
    if !agg.try_push(data) {
        // Larger than a Kinesis record on its own: impossible for real records (they are a
        // few hundred bytes), but never silently.
        metrics.dropped("too_large", 1, &format_args!("{} bytes", data.len()));
    }
}

fn flush(log: &Mutex<LogWriter>, agg: &mut Aggregator, written: &Notify) {
    if agg.is_empty() {
        return;
    }
    let mut w = lock(log);
    let full = std::mem::replace(agg, w.new_aggregate());
    w.write(full);
    drop(w);
    written.notify_one();
}
