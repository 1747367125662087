//! One shard's records → Parquet files, one open file per event-time partition.
//!
//! Records arrive in shard order with their position ([`Pos`]). Each goes to the open file of
//! its hour (late records open their own hour's file). A file is rolled (completed in the
//! object store) when it reaches the size target, when it is older than the age limit, when
//! the shard has too many files open, or at shutdown and SHARD_END. Rows wait in memory only
//! up to one row group per file: a full row group is sorted by event time and spilled as a run
//! to a local file ([`crate::spill`]). Rolling merges the runs and the rows in memory into one
//! time-ordered stream for the Parquet writer, which streams it to a multipart upload, so every
//! file is sorted by event time as a whole.
//!
//! Exactly-once files: a file's key is its shard and its first record's sequence number. The
//! checkpoint ([`Checkpoint`]) advances only after a file is complete; a replay skips records
//! already in files and cuts the file that was being completed at the same record, so it
//! rewrites the same keys with the same records.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use edgeway_record::arrow::{schema, sort_by_time};
use edgeway_record::kpl;
use edgeway_record::record::ColumnBuilders;
use edgeway_record::table::{self, Partition};
use edgeway_record::AccessLogRecordRef;
use object_store::buffered::BufWriter;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::AsyncArrowWriter;

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointSink, Pos, Seq};
use crate::clock::Clock;
use crate::dedupe::BatchIds;
use crate::lake::Lake;
use crate::metrics::{inc, Metrics};
use crate::spill::{Runs, SpillError};

/// Default file size target: Athena and S3 work best with files of 128 MB or more.
pub const DEFAULT_TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;
/// Default age limit of an open file (Firehose allows 60–900 s).
pub const DEFAULT_MAX_FILE_AGE_MS: i64 = 300_000;
/// Default open files per shard before the least recently written one is rolled.
pub const DEFAULT_MAX_OPEN_FILES: usize = 32;
/// Default memory for rows waiting in row groups, all shards together.
pub const DEFAULT_MEMORY_BUDGET: usize = 512 * 1024 * 1024;
/// Records whose event time falls outside this range are errors, not 1970 partitions.
pub const MIN_EVENT_TIME_MS: i64 = 946_684_800_000; // 2000-01-01
pub const MAX_EVENT_TIME_MS: i64 = 4_102_444_800_000; // 2100-01-01
/// Bytes of an undecodable record kept in its error object.
pub const MAX_ERROR_DATA_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub target_file_bytes: u64,
    pub max_file_age_ms: i64,
    pub row_group_rows: usize,
    pub max_open_files: usize,
    pub memory_budget: usize,
    /// Where sorted runs of large files wait for the merge (default: the system temp dir).
    pub spill_dir: Option<std::path::PathBuf>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            target_file_bytes: DEFAULT_TARGET_FILE_BYTES,
            max_file_age_ms: DEFAULT_MAX_FILE_AGE_MS,
            row_group_rows: edgeway_record::parquet::MAX_ROW_GROUP_ROWS,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            spill_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("parquet {key}: {source}")]
    Parquet {
        key: String,
        source: parquet::errors::ParquetError,
    },
    #[error("arrow batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Spill(#[from] SpillError),
    #[error("fsync: {0}")]
    Sync(std::io::Error),
}

/// Shared by every shard of a process.
#[derive(Clone)]
pub struct WriterContext {
    pub lake: Lake,
    pub cfg: Arc<WriterConfig>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    /// Bytes of rows waiting in memory across all shards.
    pub buffered: Arc<AtomicUsize>,
    /// Register each partition a file lands in with Glue (`--register-partitions`).
    pub partitions: Option<Arc<PartitionRegistry>>,
}

/// Registers the partitions files land in with BatchCreatePartition, once per partition and
/// process, for engines that do not read Athena's partition projection. A failure is logged
/// and retried with the partition's next file; it never holds up the data.
pub struct PartitionRegistry {
    glue: aws_sdk_glue::Client,
    location: String,
    known: std::sync::Mutex<std::collections::HashSet<Partition>>,
}

impl PartitionRegistry {
    pub fn new(glue: aws_sdk_glue::Client, location: String) -> PartitionRegistry {
        PartitionRegistry {
            glue,
            location,
            known: Default::default(),
        }
    }

    async fn ensure(&self, p: Partition, metrics: &Metrics) {
        if self.known.lock().is_ok_and(|k| k.contains(&p)) {
            return;
        }
        match table::register_partitions(&self.glue, &self.location, &[p]).await {
            Ok(n) => {
                inc(&metrics.partitions_registered, n as u64);
                if let Ok(mut k) = self.known.lock() {
                    k.insert(p);
                }
            }
            Err(e) => {
                inc(&metrics.retries, 1);
                tracing::warn!(partition = %p.path(), error = %e, "partition registration failed; retried with the partition's next file");
            }
        }
    }
}

struct OpenFile {
    key: String,
    first: Pos,
    last: Pos,
    opened_ms: i64,
    last_write_ms: i64,
    /// Rows waiting in memory, decoded straight into Arrow builders.
    rows: ColumnBuilders,
    rows_n: usize,
    rows_bytes: usize,
    runs: Runs,
    /// Protobuf bytes of every row so far, in memory or spilled.
    data_bytes: u64,
    rows_total: u64,
}

impl OpenFile {
    /// Estimated size of the finished file: protobuf bytes shrink about 8× in ZSTD Parquet
    /// (`bench/pipeline` measures the ratio).
    fn estimated_bytes(&self) -> u64 {
        self.data_bytes / 8
    }
}

pub struct ShardWriter {
    shard: String,
    ctx: WriterContext,
    sink: CheckpointSink,
    ckpt: Checkpoint,
    open: HashMap<Partition, OpenFile>,
    /// From a checkpoint's `pending`: cut that partition's file right after this record.
    cut: Option<(String, Pos)>,
    /// Just after the last record read.
    read_end: Option<Pos>,
    /// `ckpt.resume` as last saved, to save again only when it moved.
    saved_resume: Option<Pos>,
    last_save_ms: i64,
    batches: BatchIds,
}

/// How to write a sequence number in an object key.
fn label(seq: &Seq) -> &str {
    seq.as_str()
}

/// Memory a waiting row takes in the builders: its string bytes plus offsets and values.
fn rec_bytes(data_len: usize) -> usize {
    data_len + 4 * edgeway_record::COLUMNS.len()
}

/// Rows an open file's builders are first sized for (they grow up to `row_group_rows`).
const INITIAL_ROWS: usize = 1024;

/// Why a decoded record is refused.
pub fn validate(r: &AccessLogRecordRef<'_>) -> Result<(), String> {
    if !(MIN_EVENT_TIME_MS..MAX_EVENT_TIME_MS).contains(&r.event_time) {
        return Err(format!(
            "event_time {} ms is outside 2000-01-01..2100-01-01",
            r.event_time
        ));
    }
    Ok(())
}

impl ShardWriter {
    /// Load the shard's checkpoint and get ready to read from [`ShardWriter::resume`].
    pub async fn open(
        shard: &str,
        ctx: WriterContext,
        mut sink: CheckpointSink,
    ) -> Result<ShardWriter, WriteError> {
        let ckpt = sink.load().await?;
        Ok(ShardWriter {
            shard: shard.to_string(),
            cut: ckpt.pending.clone(),
            batches: BatchIds::new(&ckpt.batches),
            saved_resume: ckpt.resume.clone(),
            read_end: ckpt.resume.clone(),
            ckpt,
            ctx,
            sink,
            open: HashMap::new(),
            last_save_ms: 0,
        })
    }

    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// Where reading must start: every record before it is durable.
    pub fn resume(&self) -> Option<&Pos> {
        self.ckpt.resume.as_ref()
    }

    pub fn ended(&self) -> bool {
        self.ckpt.ended
    }

    /// The last read position (for re-creating an expired shard iterator).
    pub fn read_end(&self) -> Option<&Pos> {
        self.read_end.as_ref()
    }

    pub fn sink_mut(&mut self) -> &mut CheckpointSink {
        &mut self.sink
    }

    /// One Kinesis record (or local log frame): de-aggregate, decode, buffer. Undecodable
    /// data goes to the error prefix at once.
    pub async fn ingest(&mut self, seq: &Seq, blob: &[u8]) -> Result<(), WriteError> {
        inc(&self.ctx.metrics.blobs_in, 1);
        let end = Pos::after(seq);
        let resume = self.ckpt.resume.clone();
        if resume.as_ref().is_some_and(|r| end <= *r) {
            self.read_end = Some(end);
            return Ok(());
        }
        if let Some(id) = kpl::partition_key(blob) {
            if let Some(first) = self.batches.repeat_of(seq, &id) {
                let n = kpl::count_records(blob);
                inc(&self.ctx.metrics.duplicates, n);
                tracing::info!(shard = %self.shard, batch = %id, seq = %seq.as_str(), first = %first.as_str(), records = n, "repeated batch dropped (a producer retry)");
                self.read_end = Some(end);
                return Ok(());
            }
        }
        let records = match kpl::records(blob) {
            Ok(r) => r,
            Err(e) => {
                self.write_error(seq, None, &e.to_string(), blob).await?;
                self.read_end = Some(end);
                return Ok(());
            }
        };
        for (sub, data) in records.iter().enumerate() {
            let pos = Pos {
                seq: seq.clone(),
                sub: sub as u32,
            };
            if resume.as_ref().is_some_and(|r| pos < *r) {
                continue;
            }
            let rec = match AccessLogRecordRef::decode(data)
                .map_err(|e| format!("not an AccessLogRecord: {e}"))
                .and_then(|r| validate(&r).map(|()| r))
            {
                Ok(r) => r,
                Err(reason) => {
                    self.write_error(seq, Some(sub as u32), &reason, data)
                        .await?;
                    continue;
                }
            };
            let p = Partition::of(rec.event_time);
            if !self.ckpt.flushed.is_empty() {
                if let Some(f) = self.ckpt.flushed.get(&p.path()) {
                    if pos < *f {
                        inc(&self.ctx.metrics.records_replayed, 1);
                        continue;
                    }
                }
            }
            inc(&self.ctx.metrics.records_in, 1);
            self.buffer(p, pos.clone(), &rec, data.len());
            let cut_here = matches!(&self.cut, Some((cp, cpos)) if *cpos == pos && *cp == p.path());
            if cut_here {
                self.cut = None;
                self.roll(p).await?;
            }
        }
        self.read_end = Some(end);
        Ok(())
    }

    fn buffer(&mut self, p: Partition, pos: Pos, rec: &AccessLogRecordRef<'_>, data_len: usize) {
        let now = self.ctx.clock.now_ms();
        let shard = &self.shard;
        let spill_dir = self.ctx.cfg.spill_dir.clone();
        let f = self.open.entry(p).or_insert_with(|| OpenFile {
            key: table::data_file_key(&p, shard, label(&pos.seq)),
            first: pos.clone(),
            last: pos.clone(),
            opened_ms: now,
            last_write_ms: now,
            rows: ColumnBuilders::with_capacity(INITIAL_ROWS),
            rows_n: 0,
            rows_bytes: 0,
            runs: Runs::new(spill_dir),
            data_bytes: 0,
            rows_total: 0,
        });
        let b = rec_bytes(data_len);
        f.rows.append_ref(rec);
        f.rows_n += 1;
        f.rows_bytes += b;
        f.data_bytes += data_len as u64;
        f.rows_total += 1;
        f.last = pos;
        f.last_write_ms = now;
        self.ctx.buffered.fetch_add(b, Ordering::Relaxed);
    }

    /// Sort the waiting rows of `p` and spill them as one run.
    fn spill_run(&mut self, p: Partition) -> Result<(), WriteError> {
        let Some(f) = self.open.get_mut(&p) else {
            return Ok(());
        };
        if f.rows_n == 0 {
            return Ok(());
        }
        let batch = sort_by_time(RecordBatch::try_new(schema(), f.rows.finish())?)?;
        f.runs.push(&batch)?;
        self.ctx.buffered.fetch_sub(f.rows_bytes, Ordering::Relaxed);
        f.rows_n = 0;
        f.rows_bytes = 0;
        inc(&self.ctx.metrics.runs_spilled, 1);
        Ok(())
    }

    /// Merge `f`'s runs and waiting rows into its Parquet file in the lake.
    async fn write_file(&self, mut f: OpenFile) -> Result<(), WriteError> {
        let lake = &self.ctx.lake;
        let tail = if f.rows_n == 0 {
            None
        } else {
            Some(sort_by_time(RecordBatch::try_new(
                schema(),
                f.rows.finish(),
            )?)?)
        };
        self.ctx.buffered.fetch_sub(f.rows_bytes, Ordering::Relaxed);
        let perr = |source| WriteError::Parquet {
            key: f.key.clone(),
            source,
        };
        let mut merge = f.runs.merge(tail)?;
        let out = BufWriter::new(lake.store.clone(), lake.path(&f.key));
        let mut w = AsyncArrowWriter::try_new(
            out,
            schema(),
            Some(edgeway_record::parquet::writer_properties()),
        )
        .map_err(perr)?;
        while let Some(batch) = merge.next_batch()? {
            w.write(&batch).await.map_err(perr)?;
        }
        let md = w.close().await.map_err(perr)?;
        lake.sync(&f.key).await.map_err(WriteError::Sync)?;
        let size = lake
            .store
            .head(&lake.path(&f.key))
            .await
            .map(|m| m.size)
            .unwrap_or(0);
        let m = &self.ctx.metrics;
        inc(&m.files_written, 1);
        inc(&m.records_out, md.file_metadata().num_rows() as u64);
        inc(&m.bytes_written, size);
        tracing::info!(shard = %self.shard, key = %f.key, rows = f.rows_total, bytes = size, "file written");
        Ok(())
    }

    /// Complete `p`'s file and checkpoint: pending first (so a replay cuts at the same
    /// record), then the file, then the advanced checkpoint.
    async fn roll(&mut self, p: Partition) -> Result<(), WriteError> {
        let Some(last) = self.open.get(&p).map(|f| f.last.clone()) else {
            return Ok(());
        };
        self.ckpt.pending = Some((p.path(), last.clone()));
        self.save().await?;
        let Some(f) = self.open.remove(&p) else {
            return Ok(());
        };
        self.write_file(f).await?;
        if let Some(r) = &self.ctx.partitions {
            r.ensure(p, &self.ctx.metrics).await;
        }
        self.ckpt.flushed.insert(p.path(), last.next());
        self.ckpt.pending = None;
        self.advance_resume();
        self.save().await
    }

    fn advance_resume(&mut self) {
        let min_open = self.open.values().map(|f| &f.first).min().cloned();
        let resume = min_open.or_else(|| self.read_end.clone());
        if let Some(r) = resume {
            if self.ckpt.resume.as_ref().is_none_or(|c| r > *c) {
                self.ckpt.resume = Some(r);
            }
        }
        if let Some(r) = self.ckpt.resume.clone() {
            self.ckpt.flushed.retain(|_, f| *f > r);
            self.batches.commit(&r);
        }
    }

    async fn save(&mut self) -> Result<(), WriteError> {
        // The dedupe window as of `ckpt.resume` (advance_resume commits up to it).
        self.ckpt.batches = self.batches.committed();
        self.sink.save(&self.ckpt).await?;
        inc(&self.ctx.metrics.checkpoints, 1);
        self.saved_resume = self.ckpt.resume.clone();
        self.last_save_ms = self.ctx.clock.now_ms();
        Ok(())
    }

    async fn write_error(
        &mut self,
        seq: &Seq,
        sub: Option<u32>,
        reason: &str,
        data: &[u8],
    ) -> Result<(), WriteError> {
        let key = table::error_key(&self.shard, label(seq), sub.unwrap_or(0));
        let kept = &data[..data.len().min(MAX_ERROR_DATA_BYTES)];
        let hex: String = kept.iter().map(|b| format!("{b:02x}")).collect();
        let body = serde_json::json!({
            "shard": self.shard,
            "sequence_number": seq.as_str(),
            "sub_sequence": sub,
            "whole_kinesis_record": sub.is_none(),
            "reason": reason,
            "data_bytes": data.len(),
            "data_hex": hex,
            "data_truncated": kept.len() < data.len(),
        });
        self.ctx
            .lake
            .store
            .put(
                &self.ctx.lake.path(&key),
                PutPayload::from(body.to_string().into_bytes()),
            )
            .await?;
        self.ctx.lake.sync(&key).await.map_err(WriteError::Sync)?;
        inc(&self.ctx.metrics.errors, 1);
        tracing::warn!(shard = %self.shard, seq = %seq.as_str(), ?sub, %reason, "undecodable record written to the error prefix");
        Ok(())
    }

    /// Roll what is due: by size, by age, by open-file count, and under memory pressure.
    /// Also saves the checkpoint when reading moved it without any file (errors only, or
    /// replayed records) at most every age period.
    pub async fn maintain(&mut self) -> Result<(), WriteError> {
        let now = self.ctx.clock.now_ms();
        let cfg = self.ctx.cfg.clone();
        // Full row groups become sorted runs on disk.
        let full: Vec<Partition> = self
            .open
            .iter()
            .filter(|(_, f)| f.rows_n >= cfg.row_group_rows)
            .map(|(p, _)| *p)
            .collect();
        for p in full {
            self.spill_run(p)?;
        }
        let mut due: Vec<Partition> = self
            .open
            .iter()
            .filter(|(_, f)| {
                f.estimated_bytes() >= cfg.target_file_bytes
                    || now - f.opened_ms >= cfg.max_file_age_ms
            })
            .map(|(p, _)| *p)
            .collect();
        due.sort();
        for p in due {
            self.roll(p).await?;
        }
        while self.open.len() > cfg.max_open_files {
            let Some(p) = self
                .open
                .iter()
                .min_by_key(|(p, f)| (f.last_write_ms, **p))
                .map(|(p, _)| *p)
            else {
                break;
            };
            self.roll(p).await?;
        }
        // Memory pressure: spill this shard's largest waiting rows as a run.
        while self.ctx.buffered.load(Ordering::Relaxed) > cfg.memory_budget {
            let Some(p) = self
                .open
                .iter()
                .filter(|(_, f)| f.rows_n > 0)
                .max_by_key(|(p, f)| (f.rows_bytes, **p))
                .map(|(p, _)| *p)
            else {
                break;
            };
            self.spill_run(p)?;
        }
        if self.open.is_empty() {
            self.advance_resume();
            if self.ckpt.resume != self.saved_resume
                && now - self.last_save_ms >= cfg.max_file_age_ms.min(10_000)
            {
                self.save().await?;
            }
        }
        Ok(())
    }

    /// Roll every open file and checkpoint (shutdown; `ended` at SHARD_END).
    pub async fn finish(&mut self, ended: bool) -> Result<(), WriteError> {
        let mut all: Vec<Partition> = self.open.keys().copied().collect();
        all.sort();
        for p in all {
            self.roll(p).await?;
        }
        self.advance_resume();
        self.ckpt.ended = ended;
        if ended || self.ckpt.resume != self.saved_resume {
            self.save().await?;
        }
        Ok(())
    }

    /// Open files (tests, metrics).
    pub fn open_files(&self) -> usize {
        self.open.len()
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.ckpt
    }
}

impl Drop for ShardWriter {
    fn drop(&mut self) {
        let waiting: usize = self.open.values().map(|f| f.rows_bytes).sum();
        self.ctx.buffered.fetch_sub(waiting, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use edgeway_record::kpl::Aggregator;

    const T0: i64 = 1_763_776_800_000; // 2025-11-22T02:00:00Z

    use edgeway_record::AccessLogRecord;

    fn rec(i: u64, t: i64) -> AccessLogRecord {
        AccessLogRecord {
            event_time: t,
            request_id: format!("r{i}"),
            method: "GET".into(),
            ..Default::default()
        }
    }

    fn blob(recs: &[AccessLogRecord]) -> Vec<u8> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let key = format!("gw-test-{}", N.fetch_add(1, Ordering::Relaxed));
        keyed_blob(&key, recs)
    }

    fn keyed_blob(key: &str, recs: &[AccessLogRecord]) -> Vec<u8> {
        let mut a = Aggregator::new(key, 1 << 20);
        for r in recs {
            assert!(a.try_push(&r.to_bytes()));
        }
        a.finish()
    }

    struct Fixture {
        dir: tempfile::TempDir,
        clock: ManualClock,
        ctx: WriterContext,
        saved: Arc<std::sync::Mutex<Vec<Checkpoint>>>,
    }

    fn fixture(cfg: WriterConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), None, None).unwrap();
        let clock = ManualClock::new(T0);
        let ctx = WriterContext {
            lake,
            cfg: Arc::new(cfg),
            clock: Arc::new(clock.clone()),
            metrics: Arc::new(Metrics::default()),
            buffered: Arc::new(AtomicUsize::new(0)),
            partitions: None,
        };
        Fixture {
            dir,
            clock,
            ctx,
            saved: Default::default(),
        }
    }

    impl Fixture {
        async fn writer(&self) -> ShardWriter {
            ShardWriter::open(
                "s1",
                self.ctx.clone(),
                CheckpointSink::Memory(self.saved.clone()),
            )
            .await
            .unwrap()
        }

        fn files(&self) -> Vec<String> {
            let mut out = Vec::new();
            let mut stack = vec![self.dir.path().to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(d).unwrap() {
                    let p = e.unwrap().path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if p.extension().is_some_and(|x| x == "parquet") {
                        out.push(
                            p.strip_prefix(self.dir.path())
                                .unwrap()
                                .to_string_lossy()
                                .into_owned(),
                        );
                    }
                }
            }
            out.sort();
            out
        }

        fn ids(&self) -> Vec<String> {
            use arrow_array::cast::AsArray;
            let mut ids = Vec::new();
            for f in self.files() {
                let file = std::fs::File::open(self.dir.path().join(f)).unwrap();
                let r =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                        .unwrap()
                        .build()
                        .unwrap();
                for b in r {
                    let b = b.unwrap();
                    let col = b.column_by_name("request_id").unwrap().as_string::<i32>();
                    ids.extend(col.iter().map(|v| v.unwrap().to_string()));
                }
            }
            ids.sort();
            ids
        }
    }

    fn seq(n: u64) -> Seq {
        Seq::parse(&n.to_string()).unwrap()
    }

    #[tokio::test]
    async fn rolls_by_age_under_the_injected_clock() {
        let fx = fixture(WriterConfig {
            max_file_age_ms: 60_000,
            ..Default::default()
        });
        let mut w = fx.writer().await;
        w.ingest(&seq(1), &blob(&[rec(1, T0), rec(2, T0 + 5)]))
            .await
            .unwrap();
        w.maintain().await.unwrap();
        assert!(fx.files().is_empty());
        fx.clock.advance_ms(59_999);
        w.maintain().await.unwrap();
        assert!(fx.files().is_empty(), "not yet 60 s old");
        fx.clock.advance_ms(1);
        w.maintain().await.unwrap();
        assert_eq!(
            fx.files(),
            vec!["access_logs/dt=2025-11-22/hour=02/s1-1.parquet".to_string()]
        );
        assert_eq!(w.checkpoint().resume, Some(Pos::after(&seq(1))));
        assert_eq!(fx.ids(), vec!["r1", "r2"]);
    }

    /// (event_time, request_id) of every row of `file`, in file order.
    fn rows_in_order(path: &std::path::Path) -> Vec<(i64, String)> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::TimestampMillisecondType;
        let file = std::fs::File::open(path).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let mut out = Vec::new();
        for b in r {
            let b = b.unwrap();
            let t = b
                .column_by_name("event_time")
                .unwrap()
                .as_primitive::<TimestampMillisecondType>();
            let id = b.column_by_name("request_id").unwrap().as_string::<i32>();
            for k in 0..b.num_rows() {
                out.push((t.value(k), id.value(k).to_string()));
            }
        }
        out
    }

    #[tokio::test]
    async fn a_file_is_sorted_as_a_whole_across_spilled_runs_and_rewrites_identically() {
        // 1,000 records of one hour, times jumping back and forth with many ties, through
        // files that keep 100 (then 37, under memory pressure) rows in memory: the rows spill
        // as sorted runs and the roll merges them.
        let blobs: Vec<Vec<u8>> = (0..25u64)
            .map(|b| {
                let recs: Vec<_> = (0..40u64)
                    .map(|k| {
                        let i = b * 40 + k;
                        rec(i, T0 + ((i * 7919) % 500) as i64)
                    })
                    .collect();
                blob(&recs)
            })
            .collect();
        let mut expected: Vec<(i64, String)> = (0..1000u64)
            .map(|i| (T0 + ((i * 7919) % 500) as i64, format!("r{i}")))
            .collect();
        // Equal times keep arrival order.
        expected.sort_by_key(|(t, _)| *t);
        let mut bytes = Vec::new();
        for (rows, budget) in [(100, DEFAULT_MEMORY_BUDGET), (37, 1)] {
            let fx = fixture(WriterConfig {
                row_group_rows: rows,
                memory_budget: budget,
                max_file_age_ms: 600_000,
                ..Default::default()
            });
            let mut w = fx.writer().await;
            for (i, b) in blobs.iter().enumerate() {
                w.ingest(&seq(1 + i as u64), b).await.unwrap();
                w.maintain().await.unwrap();
            }
            assert!(fx.files().is_empty(), "nothing rolled yet");
            w.finish(false).await.unwrap();
            let files = fx.files();
            assert_eq!(
                files,
                vec!["access_logs/dt=2025-11-22/hour=02/s1-1.parquet".to_string()]
            );
            let path = fx.dir.path().join(&files[0]);
            assert_eq!(rows_in_order(&path), expected, "row group size {rows}");
            let spilled = fx.ctx.metrics.runs_spilled.get();
            assert!(spilled >= 5, "{spilled} runs spilled");
            assert_eq!(fx.ctx.buffered.load(Ordering::Relaxed), 0);
            bytes.push(std::fs::read(&path).unwrap());
        }
        assert!(
            bytes[0] == bytes[1],
            "same rows, same bytes, whatever the runs"
        );
    }

    #[tokio::test]
    async fn a_batch_sent_twice_is_written_once_even_across_a_restart() {
        let fx = fixture(WriterConfig::default());
        let first = keyed_blob("gw-1-0000abcd-7", &[rec(1, T0), rec(2, T0 + 1)]);
        let mut w = fx.writer().await;
        w.ingest(&seq(1), &first).await.unwrap();
        w.ingest(&seq(2), &first).await.unwrap(); // the producer's retry, soon after
        w.finish(false).await.unwrap();
        assert_eq!(fx.ids(), vec!["r1", "r2"]);
        drop(w);
        // A new worker resumes from the checkpoint; the retry arrives much later.
        let mut w = fx.writer().await;
        w.ingest(&seq(3), &keyed_blob("gw-1-0000abcd-8", &[rec(3, T0 + 2)]))
            .await
            .unwrap();
        w.ingest(&seq(4), &first).await.unwrap();
        w.finish(false).await.unwrap();
        assert_eq!(fx.ids(), vec!["r1", "r2", "r3"]);
        assert_eq!(fx.ctx.metrics.duplicates.get(), 4);
        assert_eq!(fx.ctx.metrics.records_out.get(), 3);
    }

    #[tokio::test]
    async fn rolls_by_size_and_late_records_get_their_own_hour() {
        let fx = fixture(WriterConfig {
            target_file_bytes: 1,
            ..Default::default()
        });
        let mut w = fx.writer().await;
        w.ingest(&seq(10), &blob(&[rec(1, T0), rec(2, T0 - 3_600_000)]))
            .await
            .unwrap();
        w.maintain().await.unwrap();
        assert_eq!(
            fx.files(),
            vec![
                "access_logs/dt=2025-11-22/hour=01/s1-10.parquet".to_string(),
                "access_logs/dt=2025-11-22/hour=02/s1-10.parquet".to_string()
            ]
        );
        assert_eq!(w.open_files(), 0);
    }

    #[tokio::test]
    async fn undecodable_records_go_to_the_error_prefix() {
        let fx = fixture(WriterConfig::default());
        let mut w = fx.writer().await;
        let mut a = Aggregator::new("gw-bad", 1 << 20);
        a.try_push(&rec(1, T0).to_bytes());
        a.try_push(&[0xff, 0xff, 0xff]);
        a.try_push(&rec(3, 5).to_bytes()); // 1970: refused
        w.ingest(&seq(7), &a.finish()).await.unwrap();
        let mut corrupt = blob(&[rec(4, T0)]);
        let n = corrupt.len();
        corrupt[n - 1] ^= 1;
        w.ingest(&seq(8), &corrupt).await.unwrap();
        w.finish(false).await.unwrap();
        let errs = fx.dir.path().join("errors/s1");
        let mut names: Vec<String> = std::fs::read_dir(&errs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["7-1.json", "7-2.json", "8-0.json"]);
        let e: serde_json::Value =
            serde_json::from_slice(&std::fs::read(errs.join("7-2.json")).unwrap()).unwrap();
        assert_eq!(e["sequence_number"], "7");
        assert!(e["reason"].as_str().unwrap().contains("event_time"));
        assert_eq!(fx.ids(), vec!["r1"]);
    }

    #[tokio::test]
    async fn replay_after_a_crash_rewrites_the_same_files() {
        // Two partitions interleaved; hour 01 rolls by size while hour 02 stays open, then
        // the worker dies. The replay from the checkpoint must not duplicate hour 01.
        let cfg = WriterConfig {
            target_file_bytes: 1_000, // ≈ 400 of these small records
            max_file_age_ms: 600_000,
            ..Default::default()
        };
        let fx = fixture(cfg);
        let blobs: Vec<Vec<u8>> = (0..40u64)
            .map(|b| {
                let recs: Vec<_> = (0..50u64)
                    .map(|k| {
                        let i = b * 50 + k;
                        let hour = if k % 3 == 0 { T0 } else { T0 - 3_600_000 };
                        rec(i, hour + i as i64)
                    })
                    .collect();
                blob(&recs)
            })
            .collect();
        let mut w = fx.writer().await;
        for (i, b) in blobs.iter().enumerate().take(30) {
            w.ingest(&seq(100 + i as u64), b).await.unwrap();
            w.maintain().await.unwrap();
        }
        let before = fx.files();
        assert!(before.len() >= 2, "{before:?}");
        drop(w); // crash: open files are lost, checkpoint stays where it was
        let mut w = fx.writer().await;
        let resume = w.resume().cloned();
        for (i, b) in blobs.iter().enumerate() {
            let s = seq(100 + i as u64);
            if resume.as_ref().is_some_and(|r| Pos::after(&s) <= *r) {
                continue;
            }
            w.ingest(&s, b).await.unwrap();
            w.maintain().await.unwrap();
        }
        w.finish(false).await.unwrap();
        let ids = fx.ids();
        let mut dedup = ids.clone();
        dedup.dedup();
        assert_eq!(ids.len(), 2000, "every record once");
        assert_eq!(dedup.len(), 2000);
        for f in before {
            assert!(fx.files().contains(&f));
        }
    }
}
