//! The access-log pipeline: Kinesis (or, in local mode, the gateway's durable local log) →
//! de-aggregation → decoded [`AccessLogRecord`](edgeway_record::AccessLogRecord)s → Parquet
//! files in the lake (S3 or a local directory, both through `object_store`), partitioned by
//! event time, with checkpoints that advance only after a file is durable.
//!
//! - [`kinesis`]: shard discovery, per-shard readers within the Kinesis read limits,
//!   resharding, and shard leases ([`lease`]) when several workers share a stream;
//! - [`local`]: the local log as one shard;
//! - [`writer`]: partitioned, size/age-rolled Parquet files and the checkpoint protocol that
//!   makes replays rewrite the same files ([`checkpoint`]); [`spill`] keeps each file sorted
//!   by event time in bounded memory;
//! - [`dedupe`]: drops batches a producer sent twice;
//! - [`metrics`]: Prometheus text.

#![forbid(unsafe_code)]
#![recursion_limit = "256"]

pub mod checkpoint;
pub mod clock;
pub mod dedupe;
pub mod gen;
pub mod kinesis;
pub mod lake;
pub mod lease;
pub mod local;
pub mod metrics;
pub mod spill;
pub mod writer;
