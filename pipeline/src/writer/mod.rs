//! One shard's records → Parquet files, one open file per event-time partition.
//!
//! In: Kinesis records (or local log frames) in shard order, through [`ShardWriter::ingest`],
//! and the passing of time, through [`ShardWriter::maintain`]. Out: Parquet files under
//! `access_logs/dt=…/hour=…/` and `policy_changes/dt=…/hour=…/` (each record's kind picks its
//! table; one open file per table and partition, a [`Slot`]) and error objects under
//! `errors/` in the lake, and the shard's [`Checkpoint`], which moves only past records in
//! durable files, whatever their table: both tables share the checkpoint, the replay rules
//! and the dedupe window.
//!
//! The writer is a short orchestration of one part per concern:
//! - `decode`: a Kinesis record → its user records, after the resume position and the
//!   repeated-batch check (the dedupe window, [`crate::dedupe`]); pure;
//! - `open_file`: the open file of each partition (late records open their own hour's
//!   file), rows waiting in memory up to one row group, then sorted and spilled as runs
//!   ([`crate::spill`]), so every file is sorted by event time as a whole;
//! - [`roll`]: when a file is complete (size, age, open-file count); pure;
//! - `upload`: a completed file streamed to a multipart upload and made durable;
//! - `commit`: the checkpoint protocol around each roll;
//! - `error_object`: undecodable records, one JSON object each;
//! - `catalog`: Glue partitions for new files (`--register-partitions`).
//!
//! Exactly-once files: a file's key is its shard and its first record's sequence number. The
//! checkpoint advances only after a file is complete; a replay skips records already in files
//! and cuts the file that was being completed at the same record, so it rewrites the same
//! keys with the same records.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use edgeway_record::table::Table;

use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointSink, Pos, Seq};
use crate::clock::Clock;
use crate::lake::Lake;
use crate::metrics::{inc, Metrics};
use crate::spill::SpillError;

mod catalog;
mod commit;
mod decode;
mod error_object;
mod open_file;
pub mod roll;
mod upload;

pub use catalog::PartitionRegistry;
pub use decode::{validate, Slot, MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS};
pub use error_object::MAX_ERROR_DATA_BYTES;

use commit::Progress;
use decode::{Blob, Record, Refused, Row};
use error_object::Rejected;
use open_file::OpenFiles;
use roll::{RollLimits, RollReason};

/// Default file size target: Athena and S3 work best with files of 128 MB or more.
pub const DEFAULT_TARGET_FILE_BYTES: u64 = 128 * 1024 * 1024;
/// Default age limit of an open file (Firehose allows 60–900 s).
pub const DEFAULT_MAX_FILE_AGE_MS: i64 = 300_000;
/// Default open files per shard before the least recently written one is rolled.
pub const DEFAULT_MAX_OPEN_FILES: usize = 32;
/// Default memory for rows waiting in row groups, all shards together.
pub const DEFAULT_MEMORY_BUDGET: usize = 512 * 1024 * 1024;

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

pub struct ShardWriter {
    shard: String,
    ctx: WriterContext,
    files: OpenFiles,
    progress: Progress,
}

impl ShardWriter {
    /// Load the shard's checkpoint and get ready to read from [`ShardWriter::resume`].
    pub async fn open(
        shard: &str,
        ctx: WriterContext,
        sink: CheckpointSink,
    ) -> Result<ShardWriter, WriteError> {
        let progress = Progress::load(sink, ctx.clock.clone(), ctx.metrics.clone()).await?;
        Ok(ShardWriter {
            shard: shard.to_string(),
            files: OpenFiles::new(shard, ctx.cfg.spill_dir.clone(), ctx.buffered.clone()),
            progress,
            ctx,
        })
    }

    pub fn shard(&self) -> &str {
        &self.shard
    }

    /// Where reading must start: every record before it is durable.
    pub fn resume(&self) -> Option<&Pos> {
        self.progress.resume()
    }

    /// Like [`ShardWriter::resume`], but only as far as the saved checkpoint: what a
    /// restart would resume from. Safe to delete input before it.
    pub fn durable_resume(&self) -> Option<&Pos> {
        self.progress.saved_resume()
    }

    pub fn ended(&self) -> bool {
        self.progress.checkpoint().ended
    }

    /// The last read position (for re-creating an expired shard iterator).
    pub fn read_end(&self) -> Option<&Pos> {
        self.progress.read_end()
    }

    pub fn sink_mut(&mut self) -> &mut CheckpointSink {
        self.progress.sink_mut()
    }

    /// One Kinesis record (or local log frame): de-aggregate, decode, buffer. Undecodable
    /// data goes to the error prefix at once.
    pub async fn ingest(&mut self, seq: &Seq, blob: &[u8]) -> Result<(), WriteError> {
        inc(&self.ctx.metrics.blobs_in, 1);
        let resume = self.progress.resume().cloned();
        match decode::open(seq, blob, resume.as_ref(), self.progress.batches_mut()) {
            Blob::Durable => {}
            Blob::Repeat {
                batch,
                first,
                records,
            } => {
                inc(&self.ctx.metrics.duplicates, records);
                tracing::info!(shard = %self.shard, %batch, seq = %seq.as_str(), first = %first.as_str(), records, "repeated batch dropped (a producer retry)");
            }
            Blob::Undecodable { reason } => self.reject(seq, None, &reason, blob).await?,
            Blob::Records(records) => {
                for item in records {
                    match item {
                        Ok(Record {
                            pos,
                            slot,
                            row,
                            data_len,
                        }) => self.add(slot, pos, &row, data_len).await?,
                        Err(Refused {
                            sub,
                            reason,
                            unknown_kind,
                            data,
                        }) => {
                            if unknown_kind {
                                inc(&self.ctx.metrics.unknown_kind, 1);
                            }
                            self.reject(seq, Some(sub), &reason, data).await?
                        }
                    }
                }
            }
        }
        self.progress.read_to(Pos::after(seq));
        Ok(())
    }

    /// Buffer one decoded record unless a replay finds it in a file already; roll its file
    /// right after it if the crashed worker was completing the file there.
    async fn add(
        &mut self,
        p: Slot,
        pos: Pos,
        row: &Row<'_>,
        data_len: usize,
    ) -> Result<(), WriteError> {
        if self.progress.in_a_file(&p, &pos) {
            inc(&self.ctx.metrics.records_replayed, 1);
            return Ok(());
        }
        inc(&self.ctx.metrics.records_in, 1);
        if p.table == Table::PolicyChanges {
            inc(&self.ctx.metrics.policy_changes_in, 1);
        }
        let cut = self.progress.cut_after(&p, &pos);
        self.files
            .append(p, pos, row, data_len, self.ctx.clock.now_ms());
        if cut {
            self.roll(p, RollReason::ReplayCut).await?;
        }
        Ok(())
    }

    /// Write an undecodable record to the error prefix.
    async fn reject(
        &self,
        seq: &Seq,
        sub: Option<u32>,
        reason: &str,
        data: &[u8],
    ) -> Result<(), WriteError> {
        let rejected = Rejected {
            shard: &self.shard,
            seq,
            sub,
            reason,
            data,
        };
        rejected.write(&self.ctx.lake).await?;
        inc(&self.ctx.metrics.errors, 1);
        tracing::warn!(shard = %self.shard, seq = %seq.as_str(), ?sub, %reason, "undecodable record written to the error prefix");
        Ok(())
    }

    /// Sort the waiting rows of `p` and spill them as one run.
    fn spill(&mut self, p: Slot) -> Result<(), WriteError> {
        if self.files.spill(p)? {
            inc(&self.ctx.metrics.runs_spilled, 1);
        }
        Ok(())
    }

    /// Complete `p`'s file and checkpoint: pending first (so a replay cuts at the same
    /// record), then the durable file, then the advanced checkpoint.
    async fn roll(&mut self, p: Slot, reason: RollReason) -> Result<(), WriteError> {
        let Some(last) = self.files.last(&p).cloned() else {
            return Ok(());
        };
        self.progress.begin(&p, &last).await?;
        let Some(file) = self.files.take(p)? else {
            return Ok(());
        };
        let (key, rows) = (file.key.clone(), file.rows);
        let written = upload::upload(&self.ctx.lake, file).await?;
        let m = &self.ctx.metrics;
        inc(&m.files_written, 1);
        inc(&m.records_out, written.rows);
        inc(&m.bytes_written, written.bytes);
        tracing::info!(shard = %self.shard, table = p.table.name(), %key, rows, bytes = written.bytes, reason = reason.as_str(), "file written");
        if let (Some(r), Table::AccessLogs) = (&self.ctx.partitions, p.table) {
            r.ensure(p.partition, &self.ctx.metrics).await;
        }
        self.progress
            .complete(&p, &last, self.files.first_open())
            .await
    }

    /// Roll what is due: by size, by age, by open-file count, and under memory pressure.
    /// Also saves the checkpoint when reading moved it without any file (errors only, or
    /// replayed records) at most every age period.
    pub async fn maintain(&mut self) -> Result<(), WriteError> {
        let now = self.ctx.clock.now_ms();
        let cfg = self.ctx.cfg.clone();
        // Full row groups become sorted runs on disk.
        for p in self.files.full_row_groups(cfg.row_group_rows) {
            self.spill(p)?;
        }
        let due = roll::plan(&self.files.roll_inputs(), now, &RollLimits::from(&*cfg));
        for (p, reason) in due {
            self.roll(p, reason).await?;
        }
        // Memory pressure: spill this shard's largest waiting rows as a run.
        while self.ctx.buffered.load(Ordering::Relaxed) > cfg.memory_budget {
            let Some(p) = self.files.largest_waiting() else {
                break;
            };
            self.spill(p)?;
        }
        if self.files.is_empty() {
            self.progress.idle(now, cfg.max_file_age_ms).await?;
        }
        Ok(())
    }

    /// Roll every open file and checkpoint (shutdown; `ended` at SHARD_END).
    pub async fn finish(&mut self, ended: bool) -> Result<(), WriteError> {
        let reason = if ended {
            RollReason::ShardEnd
        } else {
            RollReason::Shutdown
        };
        for p in self.files.partitions() {
            self.roll(p, reason).await?;
        }
        self.progress.finish(ended).await
    }

    /// Open files (tests, metrics).
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        self.progress.checkpoint()
    }
}

#[cfg(test)]
mod tests;
