//! Parquet writer properties for lake files, shared by the pipeline and `lake compact` so that
//! every file in the lake is written the same way:
//!
//! - ZSTD compression (arrow-rs defaults to UNCOMPRESSED);
//! - dictionary encoding, except for columns that are unique per row (ids, times), where a
//!   dictionary only costs memory before the writer falls back to plain;
//! - page-level statistics (min/max per page and per row group) so time ranges prune;
//! - writer version 1.0, which every Hive/Athena reader understands;
//! - `event_time` declared as the sorting column (writers sort each row group by it; see
//!   [`crate::arrow::to_sorted_batch`]).
//!
//! Timestamps come from the Arrow schema as `Timestamp(Millisecond, "UTC")`, which arrow-rs
//! writes as INT64 `TIMESTAMP(MILLIS, isAdjustedToUTC=true)`.

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder, WriterVersion,
};
use parquet::schema::types::ColumnPath;

use crate::COLUMNS;

/// ZSTD level: 3 is zstd's own default, a good ratio at a few hundred MB/s per core.
pub const ZSTD_LEVEL: i32 = 3;
/// Rows per row group. Bounded so a writer holds at most this many rows in memory per open
/// file; Athena splits work by row group, and 128 Ki rows of ~40 bytes compressed is a few MB.
pub const MAX_ROW_GROUP_ROWS: usize = 128 * 1024;
/// Columns whose values are (nearly) unique per row: no dictionary.
pub const NO_DICTIONARY: &[&str] = &["event_time", "request_id", "trace_id", "client_port"];
/// `created_by` written into the file footer.
pub const CREATED_BY: &str = concat!("edgeway ", env!("CARGO_PKG_VERSION"));

/// The builder with every lake setting applied, for callers that tune one more knob.
pub fn writer_properties_builder() -> WriterPropertiesBuilder {
    let level = ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default();
    let time_idx = COLUMNS
        .iter()
        .position(|c| c.name == "event_time")
        .unwrap_or(0) as i32;
    let mut b = WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::ZSTD(level))
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_created_by(CREATED_BY.to_string())
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: time_idx,
            descending: false,
            nulls_first: false,
        }]));
    for name in NO_DICTIONARY {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*name), false);
    }
    b
}

/// The lake's writer properties.
pub fn writer_properties() -> WriterProperties {
    writer_properties_builder().build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrow::{schema, to_sorted_batch};
    use crate::AccessLogRecord;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Type as PhysicalType;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    #[test]
    fn files_carry_the_lake_settings() {
        let recs: Vec<_> = (0..100)
            .map(|i| AccessLogRecord {
                event_time: 1_763_776_800_000 + (100 - i),
                request_id: format!("r{i}"),
                method: "GET".into(),
                ..Default::default()
            })
            .collect();
        let batch = to_sorted_batch(&recs).unwrap();
        let file = tempfile::tempfile().unwrap();
        let mut w = ArrowWriter::try_new(
            file.try_clone().unwrap(),
            schema(),
            Some(writer_properties()),
        )
        .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let r = SerializedFileReader::new(file).unwrap();
        let md = r.metadata();
        assert_eq!(md.file_metadata().version(), 1);
        let rg = md.row_group(0);
        let t = rg.column(1);
        assert_eq!(t.column_descr().physical_type(), PhysicalType::INT64);
        let lt = format!("{:?}", t.column_descr().logical_type_ref());
        assert!(
            lt.contains("Timestamp") && lt.contains("true") && lt.contains("MILLIS"),
            "{lt}"
        );
        assert!(matches!(t.compression(), Compression::ZSTD(_)));
        assert!(t.statistics().is_some());
        let method = rg
            .columns()
            .iter()
            .find(|c| c.column_path().string() == "method")
            .unwrap();
        assert!(method.dictionary_page_offset().is_some());
    }
}
