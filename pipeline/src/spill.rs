//! Rows sorted by event time across a whole file, in bounded memory.
//!
//! An open file keeps at most one row group of rows in memory. When that fills (or memory
//! runs short), the rows are sorted and appended as a *run* to a local spill file (Arrow IPC,
//! LZ4, unnamed so the OS removes it with the process). When the file rolls, a [`SortedMerge`] reads
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

use arrow_array::RecordBatch;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_ipc::CompressionType;
use arrow_schema::ArrowError;
use edgeway_record::merge::{SortedMerge, Source};
use std::sync::{Arc, Mutex};

/// Rows per batch in the spill file: the merge holds one such batch per run.
pub const SPILL_BATCH_ROWS: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    #[error("spill file in {dir}: {source}")]
    Io { dir: String, source: std::io::Error },
    #[error("spill file: {0}")]
    Arrow(#[from] ArrowError),
}

/// The spilled runs of one open file.
pub struct Runs {
    dir: Option<PathBuf>,
    writer: Option<FileWriter<BufWriter<File>>>,
    /// Per run: its first batch index and its batch count in the spill file.
    runs: Vec<(usize, usize)>,
    batches: usize,
}

impl Runs {
    pub fn new(dir: Option<PathBuf>) -> Runs {
        Runs {
            dir,
            writer: None,
            runs: Vec::new(),
            batches: 0,
        }
    }

    fn io_err(dir: &Option<PathBuf>, source: std::io::Error) -> SpillError {
        SpillError::Io {
            dir: dir
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
            .map_err(|e| Self::io_err(&self.dir, e))?;
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
        Ok(())
    }

    /// Merge the runs with `tail` (the rows still in memory, sorted; they came last).
    pub fn merge(self, tail: Option<RecordBatch>) -> Result<SortedMerge<'static>, SpillError> {
        let mut sources: Vec<Source<'static>> = Vec::new();
        if let Some(w) = self.writer {
            let mut file = w
                .into_inner()?
                .into_inner()
                .map_err(|e| Self::io_err(&self.dir, e.into_error()))?;
            file.rewind().map_err(|e| Self::io_err(&self.dir, e))?;
            // One reader for every run: each source seeks to its next batch before reading.
            let reader = Arc::new(Mutex::new(FileReader::try_new(BufReader::new(file), None)?));
            for &(first, n) in &self.runs {
                let reader = Arc::clone(&reader);
                sources.push(Box::new((first..first + n).map(move |i| {
                    let mut r = reader
                        .lock()
                        .map_err(|_| ArrowError::IpcError("spill reader poisoned".into()))?;
                    r.set_index(i)?;
                    r.next().unwrap_or_else(|| {
                        Err(ArrowError::IpcError(format!("spill batch {i} missing")))
                    })
                })));
            }
        }
        if let Some(t) = tail {
            sources.push(Box::new(std::iter::once(Ok(t))));
        }
        Ok(SortedMerge::new(sources)?)
    }
}
