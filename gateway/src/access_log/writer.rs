//! The writer: queue → KPL aggregates → segment log. Runs on the sink thread.
//!
//! It also keeps the log from filling in local mode (no stream): see [`LocalRelease`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edgeway_record::kpl::{Aggregator, MAX_KINESIS_RECORD_BYTES, MAX_PARTITION_KEY_BYTES};
use edgeway_record::segment::{
    load_position, Position, SegmentError, SegmentWriter, LOCAL_CONSUMER_POSITION_FILE,
};
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

/// Local mode: how often the writer reads the local pipeline's position (one small file).
const CONSUMED_POLL: Duration = Duration::from_millis(250);

/// Local mode (no stream): deletes the segments the local pipeline has made durable.
///
/// The pipeline saves its checkpoint in the lake (perhaps S3, which the gateway neither can
/// nor should read); once that save returns, it also writes the checkpoint's log position to
/// [`LOCAL_CONSUMER_POSITION_FILE`] in this directory (atomically: temp file, fsync, rename).
/// The gateway, not the pipeline, deletes, because it owns the directory: it alone knows
/// which segment is open, and its cap accounting (`used_bytes`) must shrink by exactly what
/// was deleted, which [`SegmentWriter::release_before`] does; a pipeline deleting files
/// behind the gateway's back would leave the gateway refusing records (`log_full`) for space
/// that is free. The rule is the Kinesis shipper's: the position is saved durably before
/// anything is deleted, only segments wholly before it go, and never the open one. The file
/// can only lag the lake's checkpoint (a crash between the two saves), which keeps a segment
/// longer, never deletes one early. One local pipeline per log: a second reader of the same
/// directory would lose the segments the first one has finished.
struct LocalRelease {
    path: PathBuf,
    released: Position,
    next_poll: Instant,
    /// The file was unreadable last time (warn once per episode, not every poll).
    warned: bool,
}

impl LocalRelease {
    fn new(dir: &std::path::Path) -> Self {
        LocalRelease {
            path: dir.join(LOCAL_CONSUMER_POSITION_FILE),
            released: Position::default(),
            next_poll: Instant::now(),
            warned: false,
        }
    }

    /// The pipeline's position, when it moved since the last release.
    fn moved(&mut self) -> Option<Position> {
        self.next_poll = Instant::now() + CONSUMED_POLL;
        match load_position(&self.path) {
            Ok(pos) => {
                self.warned = false;
                (pos > self.released).then_some(pos)
            }
            Err(e) => {
                if !self.warned {
                    tracing::warn!(path = %self.path.display(), error = %e, "access log: unreadable local pipeline position; consumed segments are kept");
                    self.warned = true;
                }
                None
            }
        }
    }
}

/// Shared between the writer and the shipper (same thread; the mutex is never contended).
pub struct LogWriter {
    pub seg: SegmentWriter,
    instance: String,
    boot: u32,
    seq: u64,
    metrics: Arc<LogMetrics>,
    /// Up to where Kinesis acknowledged; `None` without a stream.
    pub shipped: Option<Position>,
    /// Without a stream: releases what the local pipeline consumed.
    local: Option<LocalRelease>,
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
            local: cfg.stream.is_none().then(|| LocalRelease::new(&cfg.dir)),
        })
    }

    /// Delete segments wholly before `pos` (durable downstream) and count the bytes freed.
    pub fn release_before(&mut self, pos: Position) {
        let before = self.seg.used_bytes();
        let result = self.seg.release_before(pos);
        let freed = before.saturating_sub(self.seg.used_bytes());
        self.metrics.released_bytes.inc_by(freed);
        if let Err(e) = result {
            tracing::warn!(error = %e, "access log: cannot delete consumed segments");
        }
        self.update_gauges();
    }

    /// Local mode: release what the local pipeline consumed, once the poll interval has
    /// passed or at once when `force`d (the log is full). True when the pipeline's position
    /// moved.
    fn release_consumed(&mut self, force: bool) -> bool {
        let Some(local) = self.local.as_mut() else {
            return false;
        };
        if !force && Instant::now() < local.next_poll {
            return false;
        }
        let Some(pos) = local.moved() else {
            return false;
        };
        local.released = pos;
        self.release_before(pos);
        true
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
        let mut appended = self.seg.append(&blob);
        // Full in local mode: the pipeline may have consumed more since the last poll.
        if matches!(appended, Err(SegmentError::Full { .. })) && self.release_consumed(true) {
            appended = self.seg.append(&blob);
        }
        match appended {
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
        lock(&log).release_consumed(false);
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

#[cfg(test)]
mod tests {
    //! Local mode: the writer deletes what the local pipeline's published position covers,
    //! and its cap accounting learns about the freed space.

    use super::*;
    use edgeway_record::segment::{disk_usage, list_segments, save_position, FsyncPolicy};

    fn config(dir: &std::path::Path, stream: Option<&str>) -> AccessLogConfig {
        AccessLogConfig {
            dir: dir.to_path_buf(),
            stream: stream.map(str::to_string),
            aws: Default::default(),
            fsync: FsyncPolicy::Never,
            queue_capacity: 16,
            linger: Duration::from_millis(10),
            segment_bytes: 2048,
            cap_bytes: 8192,
            instance: "gw-test".into(),
            put_timeout: Duration::from_secs(1),
        }
    }

    fn aggregate(w: &mut LogWriter, i: usize) -> Aggregator {
        let mut a = w.new_aggregate();
        assert!(a.try_push(&vec![i as u8; 600]));
        a
    }

    fn dropped(m: &LogMetrics, reason: &str) -> u64 {
        m.dropped.with_label_values(&[reason]).get()
    }

    #[test]
    fn a_full_log_releases_what_the_local_pipeline_made_durable() {
        let d = tempfile::tempdir().unwrap();
        let metrics = Arc::new(LogMetrics::new(&prometheus::Registry::new()));
        let mut w = LogWriter::open(&config(d.path(), None), Arc::clone(&metrics)).unwrap();
        let mut i = 0;
        while dropped(&metrics, "log_full") == 0 {
            let a = aggregate(&mut w, i);
            w.write(a);
            i += 1;
        }
        let written = metrics.written.get();
        assert!(written >= 8, "{written}");
        // The pipeline made everything read so far durable and published its position.
        let mut r = edgeway_record::segment::SegmentReader::new(d.path(), Position::default());
        while r.next_frame().unwrap().is_some() {}
        save_position(&d.path().join(LOCAL_CONSUMER_POSITION_FILE), r.position()).unwrap();
        // The next write finds the log full, reads the position at once, and fits.
        let a = aggregate(&mut w, i);
        w.write(a);
        assert_eq!(metrics.written.get(), written + 1);
        assert_eq!(dropped(&metrics, "log_full"), 1);
        assert_eq!(
            list_segments(d.path()).unwrap().len(),
            2,
            "the reader's and the new"
        );
        assert_eq!(w.seg.used_bytes(), disk_usage(d.path()).unwrap());
        assert_eq!(metrics.log_bytes.get() as u64, w.seg.used_bytes());
        assert!(metrics.released_bytes.get() >= 4096);
    }

    #[test]
    fn with_a_stream_the_local_pipeline_position_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let metrics = Arc::new(LogMetrics::new(&prometheus::Registry::new()));
        let mut w = LogWriter::open(&config(d.path(), Some("s")), Arc::clone(&metrics)).unwrap();
        for i in 0..6 {
            let a = aggregate(&mut w, i);
            w.write(a);
        }
        let before = list_segments(d.path()).unwrap();
        save_position(&d.path().join(LOCAL_CONSUMER_POSITION_FILE), w.seg.end()).unwrap();
        assert!(!w.release_consumed(true));
        assert_eq!(list_segments(d.path()).unwrap(), before, "Kinesis decides");
    }
}
