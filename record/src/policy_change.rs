//! The policy-change record: one per policy load of a gateway (the load at start, and every
//! reload that was applied or rejected; a reload that found nothing changed is not an event).
//! The `policy_changes` table holds them, next to `access_logs`, with the same `dt`/`hour`
//! partitioning, so an analyst joins requests (`access_logs.policy_version`,
//! `gateway_instance`) to the change that put their policy version in place.
//!
//! The record travels exactly as access-log records do (same queue, aggregates, segment log,
//! Kinesis stream and pipeline checkpoints), framed as kind [`RecordKind::PolicyChange`]
//! ([`crate::kind`]). Its columns ([`COLUMNS`]) give the Glue table and, with the `arrow`
//! feature, the Arrow schema and builders; like the access-log table, `event_time` is the
//! second column, which the lake's sort and merge rely on.
//!
//! No secret ever goes in: `errors` are the located validation messages
//! (`file:line:col: field: message`), which name fields and say what was expected, never
//! a secret's value.

use std::fmt;
use std::str::FromStr;

use crate::kind::{self, RecordKind};
use crate::outcome::{outcome_enum, UnknownValue};
use crate::{Column, ColumnKind};

/// Version of this record's contract, stamped on every record. Bump on additions.
pub const POLICY_CHANGE_VERSION: i32 = 1;

outcome_enum! {
    /// What became of a policy load.
    ReloadResult, column = "result" {
        /// Validated and built; it serves from now on.
        Applied => "applied",
        /// Invalid (or a part failed to build); the previous policy keeps serving.
        Rejected => "rejected",
    }
}

outcome_enum! {
    /// What started a policy load.
    ReloadCause, column = "cause" {
        /// The gateway process started.
        Start => "start",
        /// A change in the policy directory or SIGHUP.
        Reload => "reload",
    }
}

/// One policy load, as the gateway saw it. See the module docs.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct PolicyChangeRecord {
    /// Contract version of this record (POLICY_CHANGE_VERSION when written).
    #[prost(int32, tag = "1")]
    pub record_version: i32,
    /// When the load finished, UTC milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub event_time: i64,
    /// Gateway instance id (as in access_logs.gateway_instance).
    #[prost(string, tag = "3")]
    pub gateway_instance: String,
    /// `start` (process start) or `reload`.
    #[prost(string, tag = "4")]
    pub cause: String,
    /// `applied` or `rejected`.
    #[prost(string, tag = "5")]
    pub result: String,
    /// Policy version serving before the load; absent at start.
    #[prost(string, optional, tag = "6")]
    pub old_version: Option<String>,
    /// Content version of the policy files that were loaded (applied or rejected).
    #[prost(string, tag = "7")]
    pub new_version: String,
    /// Policy version serving after the load: new_version when applied, old_version when rejected.
    #[prost(string, tag = "8")]
    pub serving_version: String,
    /// Policy files (and files they refer to) added, removed or edited since the serving version, by name.
    #[prost(string, repeated, tag = "9")]
    pub files_changed: Vec<String>,
    /// Why the load was rejected: `file:line:col: field: message`, one per problem.
    #[prost(string, repeated, tag = "10")]
    pub errors: Vec<String>,
}

/// Every column of the `policy_changes` table, in record order (the partition keys `dt` and
/// `hour` come from `event_time`, as for access logs).
pub const COLUMNS: &[Column] = &[
    col("record_version", ColumnKind::Int32, "Contract version of this record (POLICY_CHANGE_VERSION when written)."),
    col("event_time", ColumnKind::TimestampMs, "When the policy load finished, UTC."),
    col("gateway_instance", ColumnKind::Str, "Gateway instance id (as in access_logs.gateway_instance)."),
    col("cause", ColumnKind::Str, "What started the load: `start` (process start) or `reload` (file change, SIGHUP)."),
    col("result", ColumnKind::Str, "`applied` (serving from now on) or `rejected` (the previous policy keeps serving)."),
    col("old_version", ColumnKind::OptStr, "Policy version serving before the load; absent at start."),
    col("new_version", ColumnKind::Str, "Content version of the policy files that were loaded (applied or rejected)."),
    col("serving_version", ColumnKind::Str, "Policy version serving after the load (access_logs.policy_version of the requests that follow)."),
    col("files_changed", ColumnKind::StrList, "Policy files and files they refer to that were added, removed or edited since the serving version."),
    col("errors", ColumnKind::StrList, "Why the load was rejected: `file:line:col: field: message`, one per problem; empty when applied."),
];

const fn col(name: &'static str, kind: ColumnKind, doc: &'static str) -> Column {
    Column { name, kind, doc }
}

impl PolicyChangeRecord {
    /// The framed wire form: kind header, then protobuf.
    pub fn to_framed_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(2 + prost::Message::encoded_len(self));
        kind::put_header(RecordKind::PolicyChange, &mut buf);
        prost::Message::encode_raw(self, &mut buf);
        buf
    }

    /// Decode the protobuf body (after [`kind::split`]); unknown, newer fields are skipped.
    pub fn from_body(body: &[u8]) -> Result<Self, prost::DecodeError> {
        prost::Message::decode(body)
    }
}

#[cfg(feature = "arrow")]
pub use self::arrow::{schema, PolicyChangeBuilders};

#[cfg(feature = "arrow")]
mod arrow {
    use std::sync::Arc;

    use arrow_array::builder::{
        Int32Builder, ListBuilder, StringBuilder, TimestampMillisecondBuilder,
    };
    use arrow_array::ArrayRef;
    use arrow_schema::SchemaRef;

    use super::{PolicyChangeRecord, COLUMNS};

    /// The Arrow schema of the `policy_changes` table (without `dt`/`hour`).
    pub fn schema() -> SchemaRef {
        crate::arrow::schema_of(COLUMNS)
    }

    /// Arrow builders for [`schema`], one per column.
    pub struct PolicyChangeBuilders {
        record_version: Int32Builder,
        event_time: TimestampMillisecondBuilder,
        gateway_instance: StringBuilder,
        cause: StringBuilder,
        result: StringBuilder,
        old_version: StringBuilder,
        new_version: StringBuilder,
        serving_version: StringBuilder,
        files_changed: ListBuilder<StringBuilder>,
        errors: ListBuilder<StringBuilder>,
    }

    impl Default for PolicyChangeBuilders {
        fn default() -> Self {
            PolicyChangeBuilders {
                record_version: Int32Builder::new(),
                event_time: TimestampMillisecondBuilder::new(),
                gateway_instance: StringBuilder::new(),
                cause: StringBuilder::new(),
                result: StringBuilder::new(),
                old_version: StringBuilder::new(),
                new_version: StringBuilder::new(),
                serving_version: StringBuilder::new(),
                files_changed: ListBuilder::new(StringBuilder::new()),
                errors: ListBuilder::new(StringBuilder::new()),
            }
        }
    }

    impl PolicyChangeBuilders {
        pub fn append(&mut self, r: &PolicyChangeRecord) {
            self.record_version.append_value(r.record_version);
            self.event_time.append_value(r.event_time);
            self.gateway_instance.append_value(&r.gateway_instance);
            self.cause.append_value(&r.cause);
            self.result.append_value(&r.result);
            self.old_version.append_option(r.old_version.as_deref());
            self.new_version.append_value(&r.new_version);
            self.serving_version.append_value(&r.serving_version);
            for (list, values) in [
                (&mut self.files_changed, &r.files_changed),
                (&mut self.errors, &r.errors),
            ] {
                for v in values {
                    list.values().append_value(v);
                }
                list.append(true);
            }
        }

        /// Finished arrays in column order; the builders are left empty.
        pub fn finish(&mut self) -> Vec<ArrayRef> {
            vec![
                Arc::new(self.record_version.finish()),
                Arc::new(self.event_time.finish().with_timezone("UTC")),
                Arc::new(self.gateway_instance.finish()),
                Arc::new(self.cause.finish()),
                Arc::new(self.result.finish()),
                Arc::new(self.old_version.finish()),
                Arc::new(self.new_version.finish()),
                Arc::new(self.serving_version.finish()),
                Arc::new(self.files_changed.finish()),
                Arc::new(self.errors.finish()),
            ]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::split;

    pub(crate) fn rejected() -> PolicyChangeRecord {
        PolicyChangeRecord {
            record_version: POLICY_CHANGE_VERSION,
            event_time: 1_763_776_800_123,
            gateway_instance: "gw-1".into(),
            cause: ReloadCause::Reload.as_str().into(),
            result: ReloadResult::Rejected.as_str().into(),
            old_version: Some("aaaaaaaaaaaa".into()),
            new_version: "bbbbbbbbbbbb".into(),
            serving_version: "aaaaaaaaaaaa".into(),
            files_changed: vec!["routes.toml".into(), "lists/deny.txt".into()],
            errors: vec!["routes.toml:3:10: route[0].cluster: unknown cluster `nope`".into()],
        }
    }

    #[test]
    fn the_framed_record_round_trips_and_is_told_apart_from_access_logs() {
        let r = rejected();
        let bytes = r.to_framed_bytes();
        let (kind, body) = split(&bytes).unwrap();
        assert_eq!(kind, RecordKind::PolicyChange);
        assert_eq!(PolicyChangeRecord::from_body(body).unwrap(), r);
        let start = PolicyChangeRecord {
            old_version: None,
            files_changed: vec![],
            errors: vec![],
            ..r.clone()
        };
        let (_, body) = split(&start.to_framed_bytes())
            .map(|(k, b)| (k, b.to_vec()))
            .unwrap();
        assert_eq!(PolicyChangeRecord::from_body(&body).unwrap(), start);
        // Truncated bodies are refused, never misread.
        for cut in 1..body.len() {
            if let Ok(d) = PolicyChangeRecord::from_body(&body[..cut]) {
                assert_ne!(d, start, "cut at {cut}");
            }
        }
    }

    #[test]
    fn columns_follow_the_struct_and_keep_event_time_second() {
        let names: Vec<_> = COLUMNS.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "record_version",
                "event_time",
                "gateway_instance",
                "cause",
                "result",
                "old_version",
                "new_version",
                "serving_version",
                "files_changed",
                "errors"
            ]
        );
        // The lake's sort and merge find event_time by position, the same for both tables.
        assert_eq!(COLUMNS[1].name, crate::COLUMNS[1].name);
        assert_eq!(COLUMNS[8].kind.glue_type(), "array<string>");
        assert!(COLUMNS.iter().all(|c| c.doc.len() <= 255));
        for v in ReloadResult::ALL {
            assert_eq!(v.as_str().parse::<ReloadResult>(), Ok(*v));
        }
        assert!("unchanged".parse::<ReloadResult>().is_err());
    }

    #[cfg(feature = "arrow")]
    #[test]
    fn builders_match_the_schema() {
        use arrow_array::cast::AsArray;
        use arrow_array::RecordBatch;
        let mut b = PolicyChangeBuilders::default();
        b.append(&rejected());
        b.append(&PolicyChangeRecord {
            old_version: None,
            files_changed: vec![],
            ..rejected()
        });
        let batch = RecordBatch::try_new(schema(), b.finish()).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let files = batch
            .column_by_name("files_changed")
            .unwrap()
            .as_list::<i32>();
        assert_eq!(files.value(0).len(), 2);
        assert_eq!(files.value(1).len(), 0);
        assert_eq!(batch.column_by_name("old_version").unwrap().null_count(), 1);
        assert_eq!(
            crate::arrow::event_times(&batch),
            &[1_763_776_800_123, 1_763_776_800_123]
        );
    }
}
