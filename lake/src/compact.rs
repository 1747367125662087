//! `lake compact`: merge the small files of a partition into files near a target size, rows
//! sorted by `event_time`, without a reader ever seeing a record twice or not at all.
//!
//! The protocol and the reconciliation rule are in [`crate::manifest`]. In short: outputs are
//! written under hidden temporary names, a manifest records the commit, then outputs are
//! renamed into place and only then are the inputs deleted. Every step is a single object
//! operation, so a crash leaves a state that [`crate::store::ReaderStore`] reads correctly and
//! that the next `lake compact` of that partition finishes (committed) or undoes (pending).
//!
//! Memory stays bounded whatever the partition's size: inputs are copied to local temp files
//! and k-way merged ([`edgeway_record::merge`]) row group by row group (every edgeway file
//! declares its row groups sorted by `event_time`), and the output streams up in parts.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::error::ArrowError;
use datafusion::parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ParquetRecordBatchReaderBuilder,
};
use datafusion::parquet::arrow::AsyncArrowWriter;
use edgeway_record::merge::{SortedMerge, Source};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::layout::{
    file_name, is_data_file, parse_hour, partition_path, segment_value, Partition, MANIFEST_NAME,
};
use crate::manifest::{temp_name, Manifest, State, MANIFEST_VERSION};
use crate::root::Lake;
use crate::LakeError;

/// Default output size: the size Athena reads best and the pipeline aims at.
pub const DEFAULT_TARGET_BYTES: u64 = 128 * 1024 * 1024;
/// Hours younger than this are left alone: the pipeline may still be writing (or replaying
/// into) them, and a replay must not recreate an input after compaction deleted it.
pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(2 * 3600);

/// Points where a compaction can be stopped on purpose to test crash safety.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Step {
    /// The pending manifest is written.
    Manifest,
    /// The first temporary output is written.
    Output,
    /// Every temporary output is written.
    Outputs,
    /// The manifest says committed.
    Commit,
    /// The first output is renamed into place.
    Rename,
    /// Every output is renamed into place.
    Renames,
    /// The first input is deleted.
    Delete,
    /// Every input is deleted (the manifest is still there).
    Deletes,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub dt: NaiveDate,
    pub hour: Option<u8>,
    pub target_bytes: u64,
    pub min_age: Duration,
    pub now: DateTime<Utc>,
    pub crash_after: Option<Step>,
}

/// What happened to one partition.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub partition: String,
    /// How an interrupted compaction found there was finished or undone.
    pub recovered: Option<String>,
    pub skipped: Option<String>,
    pub inputs: usize,
    pub outputs: usize,
    pub rows: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

fn store_err(what: &str, e: object_store::Error) -> LakeError {
    LakeError::Store(format!("{what}: {e}"))
}

fn crash(opts: &Options, step: Step) -> Result<(), LakeError> {
    if opts.crash_after == Some(step) {
        return Err(LakeError::InjectedCrash(format!("{step:?}").to_lowercase()));
    }
    Ok(())
}

/// Compact one date (every hour, or one).
pub async fn compact(lake: &Lake, opts: &Options) -> Result<Vec<Report>, LakeError> {
    let hours: Vec<u8> = match opts.hour {
        Some(h) => vec![h],
        None => {
            let dir = crate::layout::dt_path(&lake.base, opts.dt);
            let l = lake
                .store
                .list_with_delimiter(Some(&dir))
                .await
                .map_err(|e| store_err(dir.as_ref(), e))?;
            let mut hs: Vec<u8> = l
                .common_prefixes
                .iter()
                .filter_map(|p| segment_value(file_name(p), "hour").and_then(parse_hour))
                .collect();
            hs.sort_unstable();
            hs
        }
    };
    let mut reports = Vec::new();
    for hour in hours {
        let part = Partition::new(opts.dt, hour)
            .ok_or_else(|| LakeError::Usage(format!("hour {hour}: expected 00-23")))?;
        reports.push(compact_partition(lake, &part, opts).await?);
    }
    Ok(reports)
}

async fn list_dir(store: &dyn ObjectStore, dir: &Path) -> Result<Vec<ObjectMeta>, LakeError> {
    Ok(store
        .list_with_delimiter(Some(dir))
        .await
        .map_err(|e| store_err(dir.as_ref(), e))?
        .objects)
}

async fn read_manifest(
    store: &dyn ObjectStore,
    path: &Path,
) -> Result<Option<Manifest>, LakeError> {
    match store.get(path).await {
        Ok(r) => {
            let b = r.bytes().await.map_err(|e| store_err(path.as_ref(), e))?;
            Manifest::from_json(&b)
                .map(Some)
                .map_err(|e| LakeError::Store(format!("{path}: bad compaction manifest: {e}")))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_err(path.as_ref(), e)),
    }
}

async fn delete_if_present(store: &dyn ObjectStore, path: &Path) -> Result<(), LakeError> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_err(path.as_ref(), e)),
    }
}

async fn exists(store: &dyn ObjectStore, path: &Path) -> Result<bool, LakeError> {
    match store.head(path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(store_err(path.as_ref(), e)),
    }
}

/// Finish (committed) or undo (pending) an interrupted compaction of `dir`.
async fn recover(
    lake: &Lake,
    dir: &Path,
    m: &Manifest,
    opts: &Options,
) -> Result<String, LakeError> {
    let store = lake.store.as_ref();
    let at = |n: &str| dir.clone().join(n);
    match m.state {
        State::Pending => {
            for o in &m.outputs {
                delete_if_present(store, &at(&temp_name(o))).await?;
                delete_if_present(store, &at(o)).await?;
            }
            delete_if_present(store, &at(MANIFEST_NAME)).await?;
            Ok(format!("rolled back pending compaction {}", m.id))
        }
        State::Committed => {
            for (i, o) in m.outputs.iter().enumerate() {
                let tmp = at(&temp_name(o));
                if exists(store, &tmp).await? {
                    store
                        .rename(&tmp, &at(o))
                        .await
                        .map_err(|e| store_err(tmp.as_ref(), e))?;
                    if i == 0 {
                        crash(opts, Step::Rename)?;
                    }
                } else if !exists(store, &at(o)).await? {
                    // Never delete inputs whose replacement is gone.
                    return Err(LakeError::Store(format!(
                        "{dir}: committed compaction {} lost output {o}; inputs kept, manifest \
                         left for inspection",
                        m.id
                    )));
                }
            }
            crash(opts, Step::Renames)?;
            for (i, input) in m.inputs.iter().enumerate() {
                delete_if_present(store, &at(input)).await?;
                if i == 0 {
                    crash(opts, Step::Delete)?;
                }
            }
            crash(opts, Step::Deletes)?;
            delete_if_present(store, &at(MANIFEST_NAME)).await?;
            Ok(format!("finished committed compaction {}", m.id))
        }
    }
}

/// A batch in the contract's schema: columns a file lacks (from an older contract) become
/// nulls, and differently typed ones are cast.
fn conform(b: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let schema = edgeway_record::arrow::schema();
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match b.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => cast(c, f.data_type()),
            None => Ok(new_null_array(f.data_type(), b.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema, cols)
}

/// Rows per batch read from an input row group: the merge holds one per row group.
const READ_BATCH_ROWS: usize = 4096;

/// The sorted sources of one local input file: each row group on its own when the file
/// declares its row groups sorted by `event_time` (every edgeway writer does), otherwise the
/// whole file read and sorted in memory (a file from elsewhere).
fn file_sources(file: &std::fs::File, name: &str) -> Result<Vec<Source<'static>>, LakeError> {
    let err = |e: String| LakeError::Parquet(format!("{name}: {e}"));
    // The footer is parsed once and shared by every row group's reader.
    let meta =
        ArrowReaderMetadata::load(file, Default::default()).map_err(|e| err(e.to_string()))?;
    let open = || -> Result<ParquetRecordBatchReaderBuilder<std::fs::File>, LakeError> {
        let f = file.try_clone().map_err(|e| err(e.to_string()))?;
        Ok(ParquetRecordBatchReaderBuilder::new_with_metadata(
            f,
            meta.clone(),
        ))
    };
    let md = meta.metadata();
    let time_col = meta
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.name() == "event_time")
        .ok_or_else(|| err("no event_time column".into()))? as i32;
    let sorted = (0..md.num_row_groups()).all(|i| {
        md.row_group(i).sorting_columns().is_some_and(|s| {
            s.first()
                .is_some_and(|c| c.column_idx == time_col && !c.descending)
        })
    });
    if sorted {
        return (0..md.num_row_groups())
            .map(|i| {
                let r = open()?
                    .with_row_groups(vec![i])
                    .with_batch_size(READ_BATCH_ROWS)
                    .build()
                    .map_err(|e| err(e.to_string()))?;
                Ok(Box::new(r.map(|b| b.and_then(conform))) as Source<'static>)
            })
            .collect();
    }
    let batches = open()?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(|e| err(e.to_string()))?
        .map(|b| b.and_then(conform))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    let all = concat_batches(&edgeway_record::arrow::schema(), &batches)
        .and_then(edgeway_record::arrow::sort_by_time)
        .map_err(|e| err(e.to_string()))?;
    Ok(vec![Box::new(std::iter::once(Ok(all)))])
}

/// Copy an object into an unnamed local temp file, chunk by chunk.
async fn download(store: &dyn ObjectStore, o: &ObjectMeta) -> Result<std::fs::File, LakeError> {
    use futures::StreamExt;
    use std::io::{Seek, Write};
    let io = |e: std::io::Error| LakeError::Io(format!("{}: {e}", o.location));
    let mut file = std::io::BufWriter::new(tempfile::tempfile().map_err(io)?);
    let mut stream = store
        .get(&o.location)
        .await
        .map_err(|e| store_err(o.location.as_ref(), e))?
        .into_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| store_err(o.location.as_ref(), e))?;
        file.write_all(&chunk).map_err(io)?;
    }
    let mut file = file.into_inner().map_err(|e| io(e.into_error()))?;
    file.rewind().map_err(io)?;
    Ok(file)
}

/// Merge `group`'s files, in name order, into one time-sorted Parquet object at `out`,
/// streaming: one read batch per input row group is in memory, and the output goes up in
/// parts. Returns the rows written and the object's size.
async fn merge_group(
    store: &Arc<dyn ObjectStore>,
    group: &[ObjectMeta],
    out: &Path,
) -> Result<(u64, u64), LakeError> {
    let mut sources = Vec::new();
    for o in group {
        let file = download(store.as_ref(), o).await?;
        sources.extend(file_sources(&file, file_name(&o.location))?);
    }
    let perr = |e: String| LakeError::Parquet(format!("{out}: {e}"));
    let mut merge = SortedMerge::new(sources).map_err(|e| perr(e.to_string()))?;
    let mut w = AsyncArrowWriter::try_new(
        BufWriter::new(Arc::clone(store), out.clone()),
        edgeway_record::arrow::schema(),
        Some(edgeway_record::parquet::writer_properties()),
    )
    .map_err(|e| perr(e.to_string()))?;
    let mut rows = 0u64;
    while let Some(b) = merge.next_batch().map_err(|e| perr(e.to_string()))? {
        rows += b.num_rows() as u64;
        w.write(&b).await.map_err(|e| perr(e.to_string()))?;
    }
    w.close().await.map_err(|e| perr(e.to_string()))?;
    let size = store
        .head(out)
        .await
        .map_err(|e| store_err(out.as_ref(), e))?
        .size;
    Ok((rows, size))
}

/// Group inputs (in name order) into bins of about `target` bytes each.
fn bins(inputs: &[ObjectMeta], target: u64) -> Vec<Vec<ObjectMeta>> {
    let mut out: Vec<Vec<ObjectMeta>> = Vec::new();
    let mut size = 0;
    for o in inputs {
        if out.is_empty() || size + o.size > target {
            out.push(Vec::new());
            size = 0;
        }
        size += o.size;
        out.last_mut().expect("a bin").push(o.clone());
    }
    out
}

async fn compact_partition(
    lake: &Lake,
    part: &Partition,
    opts: &Options,
) -> Result<Report, LakeError> {
    let store = lake.store.as_ref();
    let dir = partition_path(&lake.base, part);
    let at = |n: &str| dir.clone().join(n);
    let mut report = Report {
        partition: part.path(),
        ..Default::default()
    };
    if let Some(m) = read_manifest(store, &at(MANIFEST_NAME)).await? {
        report.recovered = Some(recover(lake, &dir, &m, opts).await?);
    }
    let hour_end = chrono::DateTime::from_timestamp_millis(part.start_ms() + 3_600_000)
        .ok_or_else(|| LakeError::Usage(format!("bad partition {}", report.partition)))?;
    let age = opts.now.signed_duration_since(hour_end);
    if age < chrono::Duration::from_std(opts.min_age).unwrap_or(chrono::Duration::MAX) {
        report.skipped = Some(format!(
            "the hour closed less than {} s ago (the pipeline may still write it; see --min-age)",
            opts.min_age.as_secs()
        ));
        return Ok(report);
    }
    let mut files: Vec<ObjectMeta> = list_dir(store, &dir)
        .await?
        .into_iter()
        .filter(|o| is_data_file(file_name(&o.location)))
        .collect();
    files.sort_by(|a, b| a.location.cmp(&b.location));
    // Files already near the target stay as they are.
    let small: Vec<ObjectMeta> = files
        .into_iter()
        .filter(|o| o.size < opts.target_bytes * 3 / 4)
        .collect();
    if small.len() < 2 {
        report.skipped = Some(format!("{} small file(s): nothing to merge", small.len()));
        return Ok(report);
    }
    let groups: Vec<Vec<ObjectMeta>> = bins(&small, opts.target_bytes)
        .into_iter()
        .filter(|g| g.len() > 1)
        .collect();
    if groups.is_empty() {
        report.skipped = Some("no two small files fit in one target-size file".into());
        return Ok(report);
    }
    let id = format!(
        "{}-{:04x}",
        opts.now.format("%Y%m%dT%H%M%S"),
        std::process::id() & 0xffff
    );
    let inputs: Vec<&ObjectMeta> = groups.iter().flatten().collect();
    let outputs: Vec<String> = (0..groups.len())
        .map(|i| format!("compacted-{id}-{i:04}.parquet"))
        .collect();
    let mut manifest = Manifest {
        version: MANIFEST_VERSION,
        id: id.clone(),
        state: State::Pending,
        inputs: inputs
            .iter()
            .map(|o| file_name(&o.location).to_string())
            .collect(),
        outputs: outputs.clone(),
        rows: 0,
        started: opts.now.to_rfc3339(),
    };
    // Create-only: if another compaction got here first, stop rather than interleave.
    store
        .put_opts(
            &at(MANIFEST_NAME),
            PutPayload::from(manifest.to_json()),
            PutMode::Create.into(),
        )
        .await
        .map_err(|e| match e {
            object_store::Error::AlreadyExists { .. } => LakeError::Usage(format!(
                "{}: another compaction is in progress (a manifest appeared)",
                report.partition
            )),
            e => store_err(MANIFEST_NAME, e),
        })?;
    crash(opts, Step::Manifest)?;

    let mut rows_in = 0u64;
    for (i, group) in groups.iter().enumerate() {
        report.bytes_before += group.iter().map(|o| o.size).sum::<u64>();
        let tmp = at(&temp_name(&outputs[i]));
        let (rows, size) = merge_group(&lake.store, group, &tmp).await?;
        rows_in += rows;
        report.bytes_after += size;
        if i == 0 {
            crash(opts, Step::Output)?;
        }
    }
    crash(opts, Step::Outputs)?;

    // The commit point: from here on the outputs are the truth.
    manifest.state = State::Committed;
    manifest.rows = rows_in;
    store
        .put(&at(MANIFEST_NAME), PutPayload::from(manifest.to_json()))
        .await
        .map_err(|e| store_err(MANIFEST_NAME, e))?;
    crash(opts, Step::Commit)?;
    recover(lake, &dir, &manifest, opts).await?;

    report.inputs = manifest.inputs.len();
    report.outputs = outputs.len();
    report.rows = rows_in;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, size: u64) -> ObjectMeta {
        ObjectMeta {
            location: Path::from(name),
            last_modified: Utc::now(),
            size,
            e_tag: None,
            version: None,
        }
    }

    #[test]
    fn bins_fill_to_target() {
        let files: Vec<_> = (0..7).map(|i| meta(&format!("f{i}"), 40)).collect();
        let b = bins(&files, 100);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![2, 2, 2, 1]);
        assert_eq!(bins(&files, 1000).len(), 1);
    }

    /// Times of every row a merge of `files` yields.
    fn merged_times(files: &[std::fs::File]) -> Vec<i64> {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::TimestampMillisecondType;
        let sources = files
            .iter()
            .flat_map(|f| file_sources(f, "t").unwrap())
            .collect();
        SortedMerge::new(sources)
            .unwrap()
            .flat_map(|b| {
                let b = b.unwrap();
                b.column_by_name("event_time")
                    .unwrap()
                    .as_primitive::<TimestampMillisecondType>()
                    .values()
                    .to_vec()
            })
            .collect()
    }

    fn parquet_file(times: &[i64], declared_sorted: bool, row_group_rows: usize) -> std::fs::File {
        use datafusion::parquet::arrow::ArrowWriter;
        let recs: Vec<_> = times
            .iter()
            .map(|&t| edgeway_record::AccessLogRecord {
                event_time: t,
                request_id: format!("r{t}"),
                ..Default::default()
            })
            .collect();
        let mut props = edgeway_record::parquet::writer_properties_builder()
            .set_max_row_group_row_count(Some(row_group_rows));
        if !declared_sorted {
            props = props.set_sorting_columns(None);
        }
        let file = tempfile::tempfile().unwrap();
        let mut w = ArrowWriter::try_new(
            file.try_clone().unwrap(),
            edgeway_record::arrow::schema(),
            Some(props.build()),
        )
        .unwrap();
        // Rows as given: sorted per row group only when the caller sorted them.
        for chunk in recs.chunks(row_group_rows) {
            let b = if declared_sorted {
                edgeway_record::arrow::to_sorted_batch(chunk).unwrap()
            } else {
                let mut bl = edgeway_record::record::ColumnBuilders::with_capacity(chunk.len());
                chunk.iter().for_each(|r| bl.append(r));
                RecordBatch::try_new(edgeway_record::arrow::schema(), bl.finish()).unwrap()
            };
            w.write(&b).unwrap();
            w.flush().unwrap();
        }
        w.close().unwrap();
        file
    }

    #[test]
    fn merges_sorted_row_groups_and_sorts_undeclared_files_in_memory() {
        // File a: row groups of 3, each sorted and declared so (times interleave across
        // groups); file b: from elsewhere, unsorted and undeclared.
        let a = parquet_file(&[5, 1, 9, 2, 8, 3, 7, 4], true, 3);
        let b = parquet_file(&[6, 0, 10, 5], false, 100);
        let t = merged_times(&[a, b]);
        assert_eq!(t, vec![0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10]);
    }
}
