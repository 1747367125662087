//! Merging time-sorted batch streams into one time-sorted stream, holding one batch per
//! stream. The pipeline merges a file's spilled runs with it, and `lake compact` merges the
//! row groups of the files it combines: every lake file is sorted by `event_time`, so neither
//! ever needs a whole file in memory.
//!
//! Equal times come out in source order (then in each source's own order): with sources in
//! arrival order, the result is a stable sort of the concatenation, whatever the cuts between
//! sources were.

use arrow_array::RecordBatch;
use arrow_schema::ArrowError;

use crate::arrow::{event_time_index, event_times};

/// Rows per merged batch.
pub const OUT_BATCH_ROWS: usize = 8192;

/// One sorted input: batches in order, each sorted by `event_time`, and sorted across.
pub type Source<'a> = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send + 'a>;

struct Cursor<'a> {
    src: Source<'a>,
    batch: Option<RecordBatch>,
    row: usize,
}

pub struct SortedMerge<'a> {
    cursors: Vec<Cursor<'a>>,
}

impl<'a> SortedMerge<'a> {
    /// Merge `sources` (batches in the contract's [`crate::arrow::schema`]), given in
    /// arrival order.
    pub fn new(sources: Vec<Source<'a>>) -> Result<Self, ArrowError> {
        let mut m = SortedMerge {
            cursors: sources
                .into_iter()
                .map(|src| Cursor {
                    src,
                    batch: None,
                    row: 0,
                })
                .collect(),
        };
        for i in 0..m.cursors.len() {
            m.load(i)?;
        }
        Ok(m)
    }

    /// Point cursor `i` at a row, pulling its next non-empty batch when needed.
    fn load(&mut self, i: usize) -> Result<(), ArrowError> {
        let c = &mut self.cursors[i];
        while c.batch.as_ref().is_none_or(|b| c.row >= b.num_rows()) {
            c.row = 0;
            match c.src.next().transpose()? {
                Some(b) => {
                    if b.column(event_time_index()).null_count() > 0 {
                        return Err(ArrowError::InvalidArgumentError(
                            "null event_time in a merge input".into(),
                        ));
                    }
                    c.batch = Some(b);
                }
                None => {
                    c.batch = None;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    fn head(&self, i: usize) -> Option<(i64, usize)> {
        let c = &self.cursors[i];
        let b = c.batch.as_ref()?;
        Some((event_times(b)[c.row], i))
    }

    /// The next batch of up to [`OUT_BATCH_ROWS`] rows, or `None` at the end.
    pub fn next_batch(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        // Slices (batch slot, start, len) in output order; a cursor may move on to its next
        // batch meanwhile, so each batch used keeps a slot until the output is assembled.
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut slot_of: Vec<Option<usize>> = vec![None; self.cursors.len()];
        let mut slices: Vec<(usize, usize, usize)> = Vec::new();
        let mut out = 0;
        while out < OUT_BATCH_ROWS {
            let mut best: Option<(i64, usize)> = None;
            let mut second: Option<(i64, usize)> = None;
            for i in 0..self.cursors.len() {
                let Some(h) = self.head(i) else { continue };
                if best.is_none_or(|b| h < b) {
                    second = best;
                    best = Some(h);
                } else if second.is_none_or(|s| h < s) {
                    second = Some(h);
                }
            }
            let Some((_, i)) = best else { break };
            let c = &mut self.cursors[i];
            let Some(b) = c.batch.clone() else { break };
            let ts = &event_times(&b)[c.row..];
            // Every row that sorts before the other sources' smallest head: an earlier time,
            // or the same time from an earlier source.
            let take = match second {
                None => ts.len(),
                Some((t2, i2)) => ts.partition_point(|&t| t < t2 || (t == t2 && i < i2)),
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
                slot_of[i] = None;
                self.load(i)?;
            }
        }
        match slices[..] {
            [] => Ok(None),
            [(slot, start, len)] => Ok(Some(batches[slot].slice(start, len))),
            _ => {
                let idx: Vec<(usize, usize)> = slices
                    .iter()
                    .flat_map(|&(slot, start, len)| (start..start + len).map(move |r| (slot, r)))
                    .collect();
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                arrow_select::interleave::interleave_record_batch(&refs, &idx).map(Some)
            }
        }
    }
}

impl Iterator for SortedMerge<'_> {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrow::to_sorted_batch;
    use crate::AccessLogRecord;
    use arrow_array::cast::AsArray;

    fn batch(items: &[(i64, &str)]) -> RecordBatch {
        let recs: Vec<_> = items
            .iter()
            .map(|(t, id)| AccessLogRecord {
                event_time: *t,
                request_id: id.to_string(),
                ..Default::default()
            })
            .collect();
        to_sorted_batch(&recs).unwrap()
    }

    #[test]
    fn merges_stably_across_sources_and_batches() {
        let a = vec![
            batch(&[(1, "a1"), (5, "a5")]),
            batch(&[]),
            batch(&[(5, "a5b"), (9, "a9")]),
        ];
        let b = vec![batch(&[(5, "b5"), (6, "b6")])];
        let c: Vec<RecordBatch> = vec![];
        let sources: Vec<Source> = [a, b, c]
            .into_iter()
            .map(|v| Box::new(v.into_iter().map(Ok)) as Source)
            .collect();
        let got: Vec<String> = SortedMerge::new(sources)
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                let ids = b.column_by_name("request_id").unwrap().as_string::<i32>();
                ids.iter()
                    .map(|v| v.unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(got, ["a1", "a5", "a5b", "b5", "b6", "a9"]);
    }
}
