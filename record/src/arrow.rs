//! Arrow view of the contract: the schema and record-batch building, generated from the same
//! field list as [`AccessLogRecord`] (see `record.rs`).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{RecordBatch, UInt32Array};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::record::ColumnBuilders;
use crate::{AccessLogRecord, ColumnKind, COLUMNS};

pub fn data_type(kind: ColumnKind) -> DataType {
    match kind {
        ColumnKind::TimestampMs => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        ColumnKind::Str | ColumnKind::OptStr => DataType::Utf8,
        ColumnKind::Int32 | ColumnKind::OptInt32 => DataType::Int32,
        ColumnKind::Int64 => DataType::Int64,
        ColumnKind::Float64 | ColumnKind::OptFloat64 => DataType::Float64,
        ColumnKind::StrList => {
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
        }
        ColumnKind::OptBool => DataType::Boolean,
    }
}

/// The Arrow schema of the access-log table (without the `dt`/`hour` partition columns).
pub fn schema() -> SchemaRef {
    schema_of(COLUMNS)
}

/// The Arrow schema of a table with `columns` (in order, without `dt`/`hour`).
pub fn schema_of(columns: &[crate::Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name, data_type(c.kind), c.kind.nullable()))
            .collect::<Vec<_>>(),
    ))
}

/// Position of `event_time` in [`schema`].
pub fn event_time_index() -> usize {
    COLUMNS
        .iter()
        .position(|c| c.name == "event_time")
        .unwrap_or(0)
}

/// The `event_time` values of a batch in [`schema`] (UTC milliseconds).
pub fn event_times(batch: &RecordBatch) -> &[i64] {
    batch
        .column(event_time_index())
        .as_primitive::<TimestampMillisecondType>()
        .values()
}

/// `batch` (in [`schema`]) sorted by `event_time`. The sort is stable (equal times keep their
/// order), so the result does not depend on how a stream was cut into batches, and it is
/// skipped when the rows are already in order; Parquet min/max statistics then prune time
/// ranges.
pub fn sort_by_time(batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
    let times = event_times(&batch);
    if times.windows(2).all(|w| w[0] <= w[1]) {
        return Ok(batch);
    }
    let mut order: Vec<u32> = (0..times.len() as u32).collect();
    order.sort_by_key(|&i| times[i as usize]);
    arrow_select::take::take_record_batch(&batch, &UInt32Array::from(order))
}

/// Build a batch from records, sorted by `event_time` ([`sort_by_time`]).
pub fn to_sorted_batch(records: &[AccessLogRecord]) -> Result<RecordBatch, ArrowError> {
    let mut b = ColumnBuilders::with_capacity(records.len());
    for r in records {
        b.append(r);
    }
    sort_by_time(RecordBatch::try_new(schema(), b.finish())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMillisecondType;

    #[test]
    fn batch_matches_schema_and_is_sorted() {
        let mk = |t: i64, id: &str| AccessLogRecord {
            event_time: t,
            request_id: id.into(),
            route: (t != 20).then(|| "r".into()),
            ..Default::default()
        };
        let recs = vec![mk(30, "c"), mk(10, "a"), mk(20, "b")];
        let batch = to_sorted_batch(&recs).unwrap();
        assert_eq!(batch.num_columns(), COLUMNS.len());
        assert_eq!(batch.num_rows(), 3);
        let t = batch.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(t.values(), &[10, 20, 30]);
        let ids = batch
            .column_by_name("request_id")
            .unwrap()
            .as_string::<i32>();
        assert_eq!(ids.value(0), "a");
        let route = batch.column_by_name("route").unwrap();
        assert_eq!(route.null_count(), 1);
    }
}
