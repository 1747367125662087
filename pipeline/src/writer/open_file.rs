//! The files a shard has open, one per slot (a table's partition), and the rows waiting in
//! them.
//!
//! In: decoded records ([`OpenFiles::append`]) with their position and slot. The first
//! record of a slot opens its file, keyed by the shard and that record's sequence number
//! (so a replay names it the same). Rows wait in Arrow builders, up to one row group per
//! file; [`OpenFiles::spill`] sorts them by event time and appends them as one run to the
//! file's spill file on local disk ([`Runs`]).
//! Out: [`OpenFiles::take`] removes a file for upload as a [`Sealed`] file: its key and one
//! time-ordered [`SortedMerge`] of its runs and the rows still in memory.
//! [`OpenFiles::roll_inputs`] gives the roll decision ([`super::roll`]) what it needs.
//!
//! Memory: the bytes of waiting rows count in the process-wide `buffered` total (the memory
//! budget covers every shard): added on append, removed on spill, take and drop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use edgeway_record::arrow::sort_by_time;
use edgeway_record::merge::SortedMerge;
use edgeway_record::policy_change::PolicyChangeBuilders;
use edgeway_record::record::ColumnBuilders;
use edgeway_record::table::Table;

use super::decode::{Row, Slot};
use super::roll::RollInputs;
use super::WriteError;
use crate::checkpoint::Pos;
use crate::spill::Runs;

/// Rows an open file's builders are first sized for (they grow up to `row_group_rows`).
const INITIAL_ROWS: usize = 1024;

/// Memory a waiting row takes in the builders: its string bytes plus offsets and values.
fn rec_bytes(data_len: usize) -> usize {
    data_len + 4 * edgeway_record::COLUMNS.len()
}

/// The Arrow builders of one table.
enum Rows {
    Access(Box<ColumnBuilders>),
    PolicyChange(Box<PolicyChangeBuilders>),
}

impl Rows {
    fn new(table: Table) -> Rows {
        match table {
            Table::AccessLogs => {
                Rows::Access(Box::new(ColumnBuilders::with_capacity(INITIAL_ROWS)))
            }
            Table::PolicyChanges => Rows::PolicyChange(Box::default()),
        }
    }

    fn schema(&self) -> SchemaRef {
        match self {
            Rows::Access(_) => edgeway_record::arrow::schema(),
            Rows::PolicyChange(_) => edgeway_record::policy_change::schema(),
        }
    }

    /// A slot holds one table's rows, so the row always matches the builders.
    fn append(&mut self, row: &Row<'_>) {
        match (self, row) {
            (Rows::Access(b), Row::Access(r)) => b.append_ref(r),
            (Rows::PolicyChange(b), Row::PolicyChange(r)) => b.append(r),
            _ => tracing::error!("a record reached another table's file; dropped"),
        }
    }

    fn finish(&mut self) -> Vec<arrow_array::ArrayRef> {
        match self {
            Rows::Access(b) => b.finish(),
            Rows::PolicyChange(b) => b.finish(),
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
    rows: Rows,
    rows_n: usize,
    rows_bytes: usize,
    runs: Runs,
    /// Protobuf bytes of every row so far, in memory or spilled.
    data_bytes: u64,
    rows_total: u64,
}

impl OpenFile {
    /// The waiting rows as one batch sorted by event time; the builders are left empty.
    fn sorted_rows(&mut self) -> Result<RecordBatch, WriteError> {
        Ok(sort_by_time(RecordBatch::try_new(
            self.rows.schema(),
            self.rows.finish(),
        )?)?)
    }
}

/// A file taken out of the open set, ready for upload.
pub(super) struct Sealed {
    pub key: String,
    /// The table's schema.
    pub schema: SchemaRef,
    /// Rows in it.
    pub rows: u64,
    /// Every row, in event-time order (ties in arrival order).
    pub merge: SortedMerge<'static>,
}

/// One shard's open files.
pub(super) struct OpenFiles {
    shard: String,
    spill_dir: Option<PathBuf>,
    /// Bytes of rows waiting in memory across all shards.
    buffered: Arc<AtomicUsize>,
    open: HashMap<Slot, OpenFile>,
}

impl OpenFiles {
    pub fn new(shard: &str, spill_dir: Option<PathBuf>, buffered: Arc<AtomicUsize>) -> OpenFiles {
        OpenFiles {
            shard: shard.to_string(),
            spill_dir,
            buffered,
            open: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Add one record to its slot's file, opening the file if needed.
    pub fn append(&mut self, p: Slot, pos: Pos, row: &Row<'_>, data_len: usize, now_ms: i64) {
        let shard = &self.shard;
        let spill_dir = &self.spill_dir;
        let f = self.open.entry(p).or_insert_with(|| OpenFile {
            key: p.table.file_key(&p.partition, shard, pos.seq.as_str()),
            first: pos.clone(),
            last: pos.clone(),
            opened_ms: now_ms,
            last_write_ms: now_ms,
            rows: Rows::new(p.table),
            rows_n: 0,
            rows_bytes: 0,
            runs: Runs::new(spill_dir.clone()),
            data_bytes: 0,
            rows_total: 0,
        });
        let b = rec_bytes(data_len);
        f.rows.append(row);
        f.rows_n += 1;
        f.rows_bytes += b;
        f.data_bytes += data_len as u64;
        f.rows_total += 1;
        f.last = pos;
        f.last_write_ms = now_ms;
        self.buffered.fetch_add(b, Ordering::Relaxed);
    }

    /// The last record in `p`'s file.
    pub fn last(&self, p: &Slot) -> Option<&Pos> {
        self.open.get(p).map(|f| &f.last)
    }

    /// The earliest first record of any open file: reading must resume there after a crash.
    pub fn first_open(&self) -> Option<Pos> {
        self.open.values().map(|f| &f.first).min().cloned()
    }

    /// Every open partition, in order.
    pub fn partitions(&self) -> Vec<Slot> {
        let mut all: Vec<Slot> = self.open.keys().copied().collect();
        all.sort();
        all
    }

    pub fn roll_inputs(&self) -> Vec<(Slot, RollInputs)> {
        self.open
            .iter()
            .map(|(p, f)| {
                (
                    *p,
                    RollInputs {
                        data_bytes: f.data_bytes,
                        opened_ms: f.opened_ms,
                        last_write_ms: f.last_write_ms,
                    },
                )
            })
            .collect()
    }

    /// Files holding at least `row_group_rows` rows in memory (due to spill a run), in order.
    pub fn full_row_groups(&self, row_group_rows: usize) -> Vec<Slot> {
        let mut full: Vec<Slot> = self
            .open
            .iter()
            .filter(|(_, f)| f.rows_n >= row_group_rows)
            .map(|(p, _)| *p)
            .collect();
        full.sort();
        full
    }

    /// The file with the most bytes waiting in memory (ties: the later partition).
    pub fn largest_waiting(&self) -> Option<Slot> {
        self.open
            .iter()
            .filter(|(_, f)| f.rows_n > 0)
            .max_by_key(|(p, f)| (f.rows_bytes, **p))
            .map(|(p, _)| *p)
    }

    /// Sort the waiting rows of `p` and spill them as one run. Returns whether it did (no
    /// file or no waiting rows: nothing to spill).
    pub fn spill(&mut self, p: Slot) -> Result<bool, WriteError> {
        let Some(f) = self.open.get_mut(&p) else {
            return Ok(false);
        };
        if f.rows_n == 0 {
            return Ok(false);
        }
        let batch = f.sorted_rows()?;
        f.runs.push(&batch)?;
        self.buffered.fetch_sub(f.rows_bytes, Ordering::Relaxed);
        f.rows_n = 0;
        f.rows_bytes = 0;
        Ok(true)
    }

    /// Remove `p`'s file from the open set and merge its runs and waiting rows.
    pub fn take(&mut self, p: Slot) -> Result<Option<Sealed>, WriteError> {
        let Some(mut f) = self.open.remove(&p) else {
            return Ok(None);
        };
        self.buffered.fetch_sub(f.rows_bytes, Ordering::Relaxed);
        let tail = if f.rows_n == 0 {
            None
        } else {
            Some(f.sorted_rows()?)
        };
        Ok(Some(Sealed {
            schema: f.rows.schema(),
            merge: f.runs.merge(tail)?,
            key: f.key,
            rows: f.rows_total,
        }))
    }
}

impl Drop for OpenFiles {
    /// A writer dropped with open files (a crash, a lost lease) gives their memory back.
    fn drop(&mut self) {
        let waiting: usize = self.open.values().map(|f| f.rows_bytes).sum();
        self.buffered.fetch_sub(waiting, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Seq;
    use edgeway_record::table::Partition;
    use edgeway_record::{AccessLogRecord, AccessLogRecordRef};

    const T0: i64 = 1_763_776_800_000; // 2025-11-22T02:00:00Z
    const HOUR: i64 = 3_600_000;

    fn pos(seq: u64, sub: u32) -> Pos {
        Pos {
            seq: Seq::parse(&seq.to_string()).unwrap(),
            sub,
        }
    }

    fn at(t: i64) -> Slot {
        Slot::access_logs(Partition::of(t))
    }

    fn add(files: &mut OpenFiles, p: &Pos, t: i64, id: &str) -> usize {
        let bytes = AccessLogRecord {
            event_time: t,
            request_id: id.into(),
            ..Default::default()
        }
        .to_bytes();
        let rec = AccessLogRecordRef::decode(&bytes).unwrap();
        files.append(
            Slot::access_logs(Partition::of(t)),
            p.clone(),
            &Row::Access(rec),
            bytes.len(),
            t,
        );
        rec_bytes(bytes.len())
    }

    fn ids(s: Sealed) -> Vec<String> {
        use arrow_array::cast::AsArray;
        let mut merge = s.merge;
        let mut out = Vec::new();
        while let Some(b) = merge.next_batch().unwrap() {
            let col = b.column_by_name("request_id").unwrap().as_string::<i32>();
            out.extend(col.iter().map(|v| v.unwrap().to_string()));
        }
        out
    }

    #[test]
    fn files_are_keyed_by_their_first_record_and_track_first_and_last() {
        let buffered = Arc::new(AtomicUsize::new(0));
        let mut f = OpenFiles::new("s1", None, buffered.clone());
        add(&mut f, &pos(10, 0), T0, "a");
        add(&mut f, &pos(10, 1), T0 - HOUR, "b");
        add(&mut f, &pos(11, 0), T0 + 5, "c");
        assert_eq!(f.len(), 2);
        let (h2, h1) = (at(T0), at(T0 - HOUR));
        assert_eq!(f.partitions(), vec![h1, h2]);
        assert_eq!(f.last(&h2), Some(&pos(11, 0)));
        assert_eq!(f.first_open(), Some(pos(10, 0)));
        let s = f.take(h2).unwrap().unwrap();
        assert_eq!(s.key, "access_logs/dt=2025-11-22/hour=02/s1-10.parquet");
        assert_eq!(s.rows, 2);
        assert_eq!(ids(s), vec!["a", "c"]);
        assert_eq!(f.first_open(), Some(pos(10, 1)));
        assert!(f.take(h2).unwrap().is_none());
    }

    #[test]
    fn waiting_rows_are_counted_until_spilled_taken_or_dropped() {
        let buffered = Arc::new(AtomicUsize::new(100)); // another shard's rows
        let mut f = OpenFiles::new("s1", None, buffered.clone());
        let a = add(&mut f, &pos(1, 0), T0 + 2, "a");
        let b = add(&mut f, &pos(1, 1), T0 + 1, "b");
        let c = add(&mut f, &pos(1, 2), T0 - HOUR, "c");
        assert_eq!(buffered.load(Ordering::Relaxed), 100 + a + b + c);
        let (h2, h1) = (at(T0), at(T0 - HOUR));
        assert_eq!(f.largest_waiting(), Some(h2));
        assert!(f.spill(h2).unwrap());
        assert!(!f.spill(h2).unwrap(), "nothing left to spill");
        assert_eq!(buffered.load(Ordering::Relaxed), 100 + c);
        assert_eq!(f.largest_waiting(), Some(h1));
        add(&mut f, &pos(2, 0), T0 + 3, "d");
        // The run and the rows in memory merge into one time-ordered file.
        assert_eq!(ids(f.take(h2).unwrap().unwrap()), vec!["b", "a", "d"]);
        assert_eq!(buffered.load(Ordering::Relaxed), 100 + c);
        drop(f);
        assert_eq!(buffered.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn a_row_group_is_full_at_its_row_count() {
        let mut f = OpenFiles::new("s1", None, Arc::new(AtomicUsize::new(0)));
        add(&mut f, &pos(1, 0), T0, "a");
        add(&mut f, &pos(1, 1), T0, "b");
        add(&mut f, &pos(1, 2), T0 - HOUR, "c");
        assert_eq!(f.full_row_groups(3), vec![]);
        assert_eq!(f.full_row_groups(2), vec![at(T0)]);
        assert_eq!(f.full_row_groups(1), vec![at(T0 - HOUR), at(T0)]);
        let inputs = f.roll_inputs();
        let (_, h2) = inputs.iter().find(|(p, _)| *p == at(T0)).unwrap();
        assert_eq!(h2.opened_ms, T0);
        assert!(h2.data_bytes > 0);
    }
}
