//! The access-log record contract, defined once and shared by the gateway, the pipeline and
//! the lake.
//!
//! [`AccessLogRecord`] is declared in one macro invocation ([`record.rs`](record)); from that
//! single list come the Rust type, its protobuf wire encoding (prost), the column list used for
//! the Glue table ([`COLUMNS`]) and, with the `arrow` feature, the Arrow schema and the batch
//! builder. Records travel in KPL-aggregated Kinesis records ([`kpl`]) and, on disk, in
//! checksummed segment files ([`segment`]) that serve both as the gateway's outage spool and
//! as the embedded local log.
//!
//! A second record type, [`policy_change::PolicyChangeRecord`] (one per policy load), travels
//! the same path in the same aggregates, told apart by its kind ([`kind`]), and lands in its
//! own table (`policy_changes`, see [`table::Table`]).
//!
//! Pieces that more than one binary needs live here too, each behind a feature so that a
//! binary compiles only what it uses: the lake layout and Glue table ([`table`]), the lake
//! root opener (`store`), PutRecords batching and retry (`kinesis`: `put_records`), the
//! synthetic record generator (`gen`), the AWS SDK configuration (`aws`) and the injectable
//! [`clock`].

#![forbid(unsafe_code)]

pub mod clock;
pub mod kind;
pub mod kpl;
pub mod outcome;
pub mod policy_change;
pub mod record;
pub mod segment;
pub mod table;

#[cfg(feature = "arrow")]
pub mod arrow;
#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "gen")]
pub mod gen;
#[cfg(feature = "arrow")]
pub mod merge;
#[cfg(feature = "parquet")]
pub mod parquet;
#[cfg(feature = "kinesis")]
pub mod put_records;
#[cfg(feature = "store")]
pub mod store;

pub use record::{
    AccessLogRecord, AccessLogRecordRef, Column, ColumnKind, RecordDecodeError, COLUMNS,
    RECORD_VERSION,
};
