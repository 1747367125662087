//! Encoding Parquet for files the lake writes (compaction outputs, generated lakes) with the
//! pipeline's writer properties ([`edgeway_record::parquet`]), so every file in the lake is
//! written the same way: ZSTD, dictionary, page statistics, writer version 1.0, INT64
//! TIMESTAMP(MILLIS, UTC), sorted by `event_time`.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;

use crate::LakeError;

/// Encode sorted batches of one table as one Parquet file in memory (no batches: an empty
/// access-log file).
pub fn encode(batches: &[RecordBatch]) -> Result<Vec<u8>, LakeError> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(edgeway_record::arrow::schema);
    let props = edgeway_record::parquet::writer_properties();
    let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(props))
        .map_err(|e| LakeError::Parquet(e.to_string()))?;
    for b in batches {
        w.write(b).map_err(|e| LakeError::Parquet(e.to_string()))?;
    }
    w.into_inner()
        .map_err(|e| LakeError::Parquet(e.to_string()))
}
