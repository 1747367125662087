//! The analysts' side of the access-log lake.
//!
//! Data enters as the Parquet files the pipeline writes under
//! `<root>/access_logs/dt=YYYY-MM-DD/hour=HH/` (a local directory or `s3://bucket/prefix`) and
//! leaves as query results: locally through DataFusion ([`engine`]) or on AWS through Athena
//! ([`athena`]), running the same SQL, including the named queries shipped in `lake/queries/`
//! ([`named`]). Maintenance rewrites the files in place: [`compact`] merges small files of a
//! partition without ever showing a reader a record twice or not at all (see [`manifest`]),
//! and [`retain`] drops old partitions. [`init`] registers the Athena workgroup and the named
//! queries (and the Glue table) idempotently.

#![forbid(unsafe_code)]

pub mod athena;
pub mod compact;
pub mod engine;
pub mod generate;
pub mod init;
pub mod layout;
pub mod manifest;
pub mod named;
pub mod output;
pub mod retain;
pub mod root;
pub mod store;
pub mod writer;

/// Errors at the edges of the lake command. Each message says what failed and on what.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// The SQL was rejected or failed; the message is the engine's, with its position.
    #[error("{0}")]
    Sql(String),
    /// The query engine failed for another reason.
    #[error("engine: {0}")]
    Engine(String),
    /// Bad arguments or a missing lake.
    #[error("{0}")]
    Usage(String),
    #[error("object store: {0}")]
    Store(String),
    #[error("parquet: {0}")]
    Parquet(String),
    #[error("{0}")]
    Io(String),
    /// An AWS API call failed: the operation and the service's message.
    #[error("aws {op}: {message}")]
    Aws { op: &'static str, message: String },
    /// Athena ran the query and it failed.
    #[error("athena query {id} {state}: {reason}")]
    AthenaQuery {
        id: String,
        state: String,
        reason: String,
    },
    /// A compaction was interrupted on purpose (crash-safety tests).
    #[error("compaction stopped after step {0} (injected crash)")]
    InjectedCrash(String),
}

impl LakeError {
    /// Process exit status: 1 for a failed query or operation, 2 for usage errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            LakeError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Wrap an AWS SDK error with the operation name and the service's own message.
pub(crate) fn aws_err<E>(op: &'static str, e: E) -> LakeError
where
    E: std::error::Error + 'static,
{
    let mut message = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        message.push_str(": ");
        message.push_str(&s.to_string());
        src = s.source();
    }
    LakeError::Aws { op, message }
}
