//! Rows sorted by event time across a whole file, in bounded memory.
//!
//! An open file keeps at most one row group of rows in memory. When that fills (or memory
//! runs short), the rows are sorted and appended as a *run* to a local spill file (Arrow IPC,
//! LZ4, unnamed so the OS removes it with the process). When the file rolls, [`Merge`] reads
//! the runs back batch by batch and merges them with the rows still in memory into one
//! time-ordered stream for the Parquet writer. A file that never outgrew one row group is
//! written straight from memory.
//!
//! Equal event times keep their arrival order (runs are consecutive in arrival order and
//! each is sorted stably, and ties go to the earlier run), so the order does not depend on
//! where runs were cut: a replay after a crash rewrites a file with the same rows in the same
//! order even when memory pressure cut its runs elsewhere.

use std::fs::File;
use std::io::{BufReader, BufWriter, Seek};
use std::path::PathBuf;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::RecordBatch;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::CompressionType;
use arrow_schema::ArrowError;

/// Rows per batch in the spill file: the merge holds one such batch per run.
pub const SPILL_BATCH_ROWS: usize = 8192;
/// Rows per batch handed to the Parquet writer.
pub const OUT_BATCH_ROWS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("spill file in {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("spill file: {0}")]
    Arrow(#[from] ArrowError),
}

fn time_col(b: &RecordBatch) -> &[i64] {
    b.column(time_idx())
        .as_primitive::<TimestampMillisecondType>()
        .values()
}

/// Position of `event_time` in the contract's columns.
fn time_idx() -> usize {
    static IDX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *IDX.get_or_init(|| {
        edgeway_record::COLUMNS
            .iter()
            .position(|c| c.name == "event_time")
            .unwrap_or(0)
    })
}

/// A batch of the contract's columns, sorted by event time. The sort is stable (equal times
/// keep arrival order) and skipped when the rows already arrived in order.
pub fn sorted(columns: Vec<arrow_array::ArrayRef>) -> Result<RecordBatch, ArrowError> {
    let batch = RecordBatch::try_new(edgeway_record::arrow::schema(), columns)?;
    let times = time_col(&batch);
    if times.windows(2).all(|w| w[0] <= w[1]) {
        return Ok(batch);
    }
    let mut order: Vec<u32> = (0..times.len() as u32).collect();
    order.sort_by_key(|&i| times[i as usize]);
    let idx = arrow_array::UInt32Array::from(order);
    arrow_select::take::take_record_batch(&batch, &idx)
}

/// The spilled runs of one open file.
pub struct Runs {
    dir: Option<PathBuf>,
    writer: Option<FileWriter<BufWriter<File>>>,
    /// Per run: its first batch index and its batch count in the spill file.
    runs: Vec<(usize, usize)>,
    batches: usize,
    rows: u64,
}

impl Runs {
    pub fn new(dir: Option<PathBuf>) -> Runs {
        Runs {
            dir,
            writer: None,
            runs: Vec::new(),
            batches: 0,
            rows: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn io_err(&self, source: std::io::Error) -> SpillError {
        SpillError::Io {
            dir: self
                .dir
                .clone()
                .unwrap_or_else(std::env::temp_dir)
                .display()
                .to_string(),
            source,
        }
    }

    /// Append one run: `batch` must be sorted by event time.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), SpillError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.writer.is_none() {
            let file = match &self.dir {
                Some(d) => tempfile::tempfile_in(d),
                None => tempfile::tempfile(),
            }
            .map_err(|e| self.io_err(e))?;
            let opts = IpcWriteOptions::default()
                .try_with_compression(Some(CompressionType::LZ4_FRAME))?;
            self.writer = Some(FileWriter::try_new_with_options(
                BufWriter::with_capacity(1 << 20, file),
                &batch.schema(),
                opts,
            )?);
        }
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let first = self.batches;
        let mut off = 0;
        while off < batch.num_rows() {
            let len = SPILL_BATCH_ROWS.min(batch.num_rows() - off);
            w.write(&batch.slice(off, len))?;
            off += len;
            self.batches += 1;
        }
        self.runs.push((first, self.batches - first));
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Merge the runs with `tail` (the rows still in memory, sorted; they came last).
    pub fn merge(self, tail: Option<RecordBatch>) -> Result<Merge, SpillError> {
        let mut cursors = Vec::new();
        let mut reader = None;
        if let Some(w) = self.writer {
            let mut file = w.into_inner()?.into_inner().map_err(|e| SpillError::Io {
                dir: "spill".into(),
                source: e.into_error(),
            })?;
            file.rewind().map_err(|e| SpillError::Io {
                dir: "spill".into(),
                source: e,
            })?;
            reader = Some(FileReader::try_new(BufReader::new(file), None)?);
            for (run, &(first, n)) in self.runs.iter().enumerate() {
                cursors.push(Cursor {
                    run,
                    next: first,
                    end: first + n,
                    batch: None,
                    row: 0,
                });
            }
        }
        let tail_run = cursors.len();
        if let Some(t) = tail.filter(|t| t.num_rows() > 0) {
            cursors.push(Cursor {
                run: tail_run,
                next: 0,
                end: 0,
                batch: Some(t),
                row: 0,
            });
        }
        let mut m = Merge { reader, cursors };
        for i in 0..m.cursors.len() {
            m.load(i)?;
        }
        Ok(m)
    }
}

struct Cursor {
    run: usize,
    /// Next spill batch to load, and the end of this run's batches.
    next: usize,
    end: usize,
    batch: Option<RecordBatch>,
    row: usize,
}

impl Cursor {
    fn head(&self) -> Option<(i64, usize)> {
        let b = self.batch.as_ref()?;
        Some((time_col(b)[self.row], self.run))
    }
}

/// A time-ordered stream over runs and the in-memory tail.
pub struct Merge {
    reader: Option<FileReader<BufReader<File>>>,
    cursors: Vec<Cursor>,
}

impl Merge {
    /// Make cursor `i` point at a row, loading its next spilled batch when needed.
    fn load(&mut self, i: usize) -> Result<(), SpillError> {
        let c = &mut self.cursors[i];
        if c.batch.as_ref().is_some_and(|b| c.row < b.num_rows()) {
            return Ok(());
        }
        c.batch = None;
        c.row = 0;
        if c.next < c.end {
            if let Some(r) = self.reader.as_mut() {
                r.set_index(c.next)?;
                c.next += 1;
                c.batch = r.next().transpose()?;
            }
        }
        Ok(())
    }

    /// The next batch of up to [`OUT_BATCH_ROWS`] rows, or `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, SpillError> {
        // Slices (batch, start, len) in output order; batches are kept until the output is
        // assembled because a cursor may move on to its next batch meanwhile.
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut slices: Vec<(usize, usize, usize)> = Vec::new();
        let mut slot_of: Vec<Option<usize>> = vec![None; self.cursors.len()];
        let mut out = 0;
        while out < OUT_BATCH_ROWS {
            let mut best: Option<(usize, (i64, usize))> = None;
            let mut second: Option<(i64, usize)> = None;
            for (i, c) in self.cursors.iter().enumerate() {
                let Some(h) = c.head() else { continue };
                match best {
                    Some((_, b)) if h >= b => {
                        if second.is_none_or(|s| h < s) {
                            second = Some(h);
                        }
                    }
                    _ => {
                        if let Some((_, b)) = best {
                            second = Some(b);
                        }
                        best = Some((i, h));
                    }
                }
            }
            let Some((i, _)) = best else { break };
            let c = &mut self.cursors[i];
            let Some(b) = c.batch.clone() else { break };
            let times = &time_col(&b)[c.row..];
            // Take every row that sorts before the other runs' smallest head: earlier time,
            // or the same time from an earlier run.
            let take = match second {
                None => times.len(),
                Some((t2, r2)) => times.partition_point(|&t| t < t2 || (t == t2 && c.run < r2)),
            }
            .clamp(1, OUT_BATCH_ROWS - out);
            let slot = match slot_of[i] {
                Some(s) => s,
                None => {
                    batches.push(b.clone());
                    slot_of[i] = Some(batches.len() - 1);
                    batches.len() - 1
                }
            };
            slices.push((slot, c.row, take));
            c.row += take;
            out += take;
            if c.row >= b.num_rows() {
                // The cursor moves to its next batch: a new slot next time.
                slot_of[i] = None;
            }
            self.load(i)?;
        }
        if slices.is_empty() {
            return Ok(None);
        }
        if let [(slot, start, len)] = slices[..] {
            return Ok(Some(batches[slot].slice(start, len)));
        }
        let idx: Vec<(usize, usize)> = slices
            .iter()
            .flat_map(|&(slot, start, len)| (start..start + len).map(move |r| (slot, r)))
            .collect();
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        Ok(Some(arrow_select::interleave::interleave_record_batch(
            &refs, &idx,
        )?))
    }
}
