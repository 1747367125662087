//! The lake tables: where files go and how Glue/Athena see them. One definition for the
//! pipeline (which writes the files and ensures the tables on start) and `lake init`.
//!
//! Layout, by event time (UTC):
//!
//! ```text
//! <root>/access_logs/dt=YYYY-MM-DD/hour=HH/<shard>-<first sequence>.parquet
//! <root>/policy_changes/dt=YYYY-MM-DD/hour=HH/<shard>-<first sequence>.parquet
//! <root>/errors/<shard>/<sequence>-<sub>.json          undecodable records, with the reason
//! ```
//!
//! Each [`Table`] has its own directory, columns and Glue table; both are partitioned and
//! projected the same way. What follows describes `access_logs`; `policy_changes` (one row per
//! policy load, [`crate::policy_change`]) works the same.
//!
//! The Glue table is an external table over `<root>/access_logs/` with ParquetHiveSerDe,
//! partition keys `dt` and `hour` (strings) and partition projection, so Athena finds new
//! partitions without any registration. Columns come from [`COLUMNS`]: a field added to the
//! contract becomes a column on the next [`ensure_table`]; a removed or retyped field is
//! refused ([`TableError::Incompatible`]) because old files would no longer read.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, Timelike, Utc};

use crate::COLUMNS;

pub const DATABASE: &str = "edgeway";
pub const TABLE: &str = "access_logs";
/// The Glue table (and directory) of policy loads.
pub const POLICY_CHANGES_TABLE: &str = "policy_changes";
/// Directory of the table under the lake root.
pub const TABLE_DIR: &str = "access_logs";
/// Directory of undecodable records under the lake root.
pub const ERRORS_DIR: &str = "errors";
pub const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
pub const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
pub const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
/// Partition keys, in path order; both are strings.
pub const PARTITION_KEYS: [&str; 2] = ["dt", "hour"];
/// First day the `dt` projection covers.
pub const PROJECTION_START: &str = "2020-01-01";

/// A table of the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// One row per request ([`crate::AccessLogRecord`]).
    AccessLogs,
    /// One row per policy load ([`crate::policy_change::PolicyChangeRecord`]).
    PolicyChanges,
}

impl Table {
    pub const ALL: [Table; 2] = [Table::AccessLogs, Table::PolicyChanges];

    /// The Glue table name, which is also its directory under the lake root.
    pub const fn name(self) -> &'static str {
        match self {
            Table::AccessLogs => TABLE,
            Table::PolicyChanges => POLICY_CHANGES_TABLE,
        }
    }

    /// Directory of the table under the lake root.
    pub const fn dir(self) -> &'static str {
        self.name()
    }

    /// The contract's columns, in record order.
    pub fn contract(self) -> &'static [crate::Column] {
        match self {
            Table::AccessLogs => COLUMNS,
            Table::PolicyChanges => crate::policy_change::COLUMNS,
        }
    }

    /// The data columns as Glue sees them.
    pub fn columns(self) -> Vec<TableColumn> {
        self.contract()
            .iter()
            .map(|c| TableColumn {
                name: c.name.to_string(),
                glue_type: c.kind.glue_type().to_string(),
                // Glue limits comments to 255 characters.
                comment: c.doc.chars().take(255).collect(),
            })
            .collect()
    }

    pub const fn description(self) -> &'static str {
        match self {
            Table::AccessLogs => {
                "Gateway access logs (one row per request), written by the edgeway pipeline"
            }
            Table::PolicyChanges => {
                "Gateway policy loads (one row per applied or rejected load), written by the edgeway pipeline"
            }
        }
    }

    /// `<root>/<table>/` for a lake root such as `s3://bucket/prefix`.
    pub fn location(self, root: &str) -> String {
        format!("{}/{}/", root.trim_end_matches('/'), self.dir())
    }

    /// Key of a data file relative to the lake root.
    pub fn file_key(self, p: &Partition, shard: &str, first_seq: &str) -> String {
        format!("{}/{}/{shard}-{first_seq}.parquet", self.dir(), p.path())
    }
}

/// One hour of the lake: the `dt=YYYY-MM-DD/hour=HH` partition, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    pub date: NaiveDate,
    /// 0–23.
    pub hour: u8,
}

impl Partition {
    /// The partition `date`, `hour`; `None` for an hour outside 0–23.
    pub fn new(date: NaiveDate, hour: u8) -> Option<Partition> {
        (hour < 24).then_some(Partition { date, hour })
    }

    /// The partition holding `event_time_ms` (UTC milliseconds since the epoch). Times beyond
    /// the calendar's range (±262,000 years) go to its first or last hour.
    pub fn of(event_time_ms: i64) -> Partition {
        let t = DateTime::from_timestamp_millis(event_time_ms).unwrap_or(if event_time_ms < 0 {
            DateTime::<Utc>::MIN_UTC
        } else {
            DateTime::<Utc>::MAX_UTC
        });
        Partition {
            date: t.date_naive(),
            hour: t.hour() as u8,
        }
    }

    /// UTC milliseconds of the partition's first instant.
    pub fn start_ms(&self) -> i64 {
        self.date
            .and_time(NaiveTime::MIN)
            .and_utc()
            .timestamp_millis()
            + i64::from(self.hour) * 3_600_000
    }

    /// `YYYY-MM-DD`.
    pub fn dt(&self) -> String {
        format_dt(self.date)
    }

    /// `HH`.
    pub fn hour(&self) -> String {
        format!("{:02}", self.hour)
    }

    /// `dt=YYYY-MM-DD/hour=HH`.
    pub fn path(&self) -> String {
        format!("dt={}/hour={}", self.dt(), self.hour())
    }

    /// `access_logs/dt=YYYY-MM-DD/hour=HH`, relative to the lake root.
    pub fn dir(&self) -> String {
        format!("{TABLE_DIR}/{}", self.path())
    }
}

/// A partition date as the `dt` key spells it: `YYYY-MM-DD`.
pub fn format_dt(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// `access_logs/dt=YYYY-MM-DD`, relative to the lake root.
pub fn dt_dir(date: NaiveDate) -> String {
    format!("{TABLE_DIR}/dt={}", format_dt(date))
}

/// Parse a `dt` value: exactly `YYYY-MM-DD`, a real date.
pub fn parse_dt(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Parse an `hour` value: `HH` (or `H`), 0–23.
pub fn parse_hour(s: &str) -> Option<u8> {
    s.parse::<u8>().ok().filter(|h| *h < 24)
}

/// Key of a data file relative to the lake root.
pub fn data_file_key(p: &Partition, shard: &str, first_seq: &str) -> String {
    Table::AccessLogs.file_key(p, shard, first_seq)
}

/// Key of an error record relative to the lake root.
pub fn error_key(shard: &str, seq: &str, sub: u32) -> String {
    format!("{ERRORS_DIR}/{shard}/{seq}-{sub}.json")
}

/// `<root>/access_logs/` for a lake root such as `s3://bucket/prefix`.
pub fn table_location(root: &str) -> String {
    Table::AccessLogs.location(root)
}

/// A table column as Glue sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    pub name: String,
    pub glue_type: String,
    pub comment: String,
}

/// The data columns of the access-log table, from the contract.
pub fn columns() -> Vec<TableColumn> {
    Table::AccessLogs.columns()
}

/// Table parameters: external Parquet table with partition projection on `dt` and `hour`.
pub fn table_parameters(location: &str) -> BTreeMap<String, String> {
    let loc = location.trim_end_matches('/');
    [
        ("EXTERNAL", "TRUE".to_string()),
        ("classification", "parquet".to_string()),
        ("parquet.compression", "ZSTD".to_string()),
        ("projection.enabled", "true".to_string()),
        ("projection.dt.type", "date".to_string()),
        ("projection.dt.format", "yyyy-MM-dd".to_string()),
        ("projection.dt.range", format!("{PROJECTION_START},NOW")),
        ("projection.dt.interval", "1".to_string()),
        ("projection.dt.interval.unit", "DAYS".to_string()),
        ("projection.hour.type", "integer".to_string()),
        ("projection.hour.range", "0,23".to_string()),
        ("projection.hour.digits", "2".to_string()),
        (
            "storage.location.template",
            format!("{loc}/dt=${{dt}}/hour=${{hour}}"),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error(
        "table {DATABASE}.{} is incompatible with the record contract: {}. Removing or \
         retyping a column would make existing files unreadable; add a new field instead, or \
         migrate the table explicitly",
        .table.name(),
        describe_incompatible(.removed, .retyped, .partition_keys)
    )]
    Incompatible {
        table: Table,
        /// Columns in the table that the contract no longer has.
        removed: Vec<String>,
        /// (column, type in the table, type in the contract).
        retyped: Vec<(String, String, String)>,
        /// The table's partition keys, when they are not `dt`, `hour`.
        partition_keys: Option<Vec<String>>,
    },
    #[error("glue {op}: {message}")]
    Glue { op: &'static str, message: String },
}

fn describe_incompatible(
    removed: &[String],
    retyped: &[(String, String, String)],
    partition_keys: &Option<Vec<String>>,
) -> String {
    let mut parts = Vec::new();
    if !removed.is_empty() {
        parts.push(format!(
            "column(s) {} are in the table but not in the contract",
            removed.join(", ")
        ));
    }
    for (name, had, want) in retyped {
        parts.push(format!(
            "column {name} is `{had}` in the table but `{want}` in the contract"
        ));
    }
    if let Some(keys) = partition_keys {
        parts.push(format!(
            "partition keys are [{}], expected [dt, hour]",
            keys.join(", ")
        ));
    }
    parts.join("; ")
}

/// What [`plan_columns`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnPlan {
    Unchanged,
    /// The contract has these new columns; the table gets them appended.
    Add(Vec<TableColumn>),
}

/// Compare the table's (name, type) columns and partition keys with the contract. Pure.
pub fn plan_columns(
    table: Table,
    existing: &[(String, String)],
    partition_keys: &[String],
) -> Result<ColumnPlan, TableError> {
    let wanted = table.columns();
    let mut removed = Vec::new();
    let mut retyped = Vec::new();
    for (name, ty) in existing {
        match wanted.iter().find(|c| c.name.eq_ignore_ascii_case(name)) {
            None => removed.push(name.clone()),
            Some(c) if !c.glue_type.eq_ignore_ascii_case(ty) => {
                retyped.push((name.clone(), ty.clone(), c.glue_type.clone()))
            }
            Some(_) => {}
        }
    }
    let keys_ok = partition_keys.len() == PARTITION_KEYS.len()
        && partition_keys
            .iter()
            .zip(PARTITION_KEYS)
            .all(|(a, b)| a.eq_ignore_ascii_case(b));
    if !removed.is_empty() || !retyped.is_empty() || !keys_ok {
        return Err(TableError::Incompatible {
            table,
            removed,
            retyped,
            partition_keys: (!keys_ok).then(|| partition_keys.to_vec()),
        });
    }
    let added: Vec<TableColumn> = wanted
        .into_iter()
        .filter(|c| {
            !existing
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(&c.name))
        })
        .collect();
    Ok(if added.is_empty() {
        ColumnPlan::Unchanged
    } else {
        ColumnPlan::Add(added)
    })
}

/// What [`ensure_table`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableStatus {
    Created,
    Unchanged,
    /// Columns appended for new contract fields.
    Added(Vec<String>),
}

#[cfg(feature = "glue")]
mod glue {
    use super::*;
    use aws_sdk_glue::error::ProvideErrorMetadata;
    use aws_sdk_glue::types::{
        Column, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput,
    };

    fn glue_err<E: ProvideErrorMetadata + std::fmt::Debug>(op: &'static str, e: E) -> TableError {
        TableError::Glue {
            op,
            message: match (e.code(), e.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => format!("{e:?}"),
            },
        }
    }

    fn build_err(what: &'static str, e: aws_sdk_glue::error::BuildError) -> TableError {
        TableError::Glue {
            op: what,
            message: e.to_string(),
        }
    }

    fn column(c: &TableColumn) -> Result<Column, TableError> {
        Column::builder()
            .name(&c.name)
            .r#type(&c.glue_type)
            .comment(&c.comment)
            .build()
            .map_err(|e| build_err("build column", e))
    }

    fn storage_descriptor(
        location: &str,
        cols: &[TableColumn],
    ) -> Result<StorageDescriptor, TableError> {
        let serde = SerDeInfo::builder()
            .serialization_library(SERDE)
            .parameters("serialization.format", "1")
            .build();
        Ok(StorageDescriptor::builder()
            .set_columns(Some(cols.iter().map(column).collect::<Result<_, _>>()?))
            .location(location)
            .input_format(INPUT_FORMAT)
            .output_format(OUTPUT_FORMAT)
            .compressed(true)
            .serde_info(serde)
            .build())
    }

    /// BatchCreatePartition: at most 100 partitions per call.
    pub const MAX_PARTITIONS_PER_CALL: usize = 100;

    /// Register `partitions` of the table over `location` in the Glue catalog, for engines
    /// that do not read partition projection (Spark, Presto/Trino on Hive, Redshift
    /// Spectrum). Partitions that already exist count as registered. Returns how many were
    /// created.
    pub async fn register_partitions(
        client: &aws_sdk_glue::Client,
        location: &str,
        partitions: &[Partition],
    ) -> Result<usize, TableError> {
        let cols = columns();
        let mut created = 0;
        for chunk in partitions.chunks(MAX_PARTITIONS_PER_CALL) {
            let inputs = chunk
                .iter()
                .map(|p| {
                    Ok(PartitionInput::builder()
                        .values(p.dt())
                        .values(p.hour())
                        .storage_descriptor(storage_descriptor(
                            &format!("{}/{}/", location.trim_end_matches('/'), p.path()),
                            &cols,
                        )?)
                        .build())
                })
                .collect::<Result<Vec<_>, TableError>>()?;
            let out = client
                .batch_create_partition()
                .database_name(DATABASE)
                .table_name(TABLE)
                .set_partition_input_list(Some(inputs))
                .send()
                .await
                .map_err(|e| glue_err("BatchCreatePartition", e))?;
            let mut existed = 0;
            for e in out.errors() {
                let detail = e.error_detail();
                let code = detail.and_then(|d| d.error_code()).unwrap_or("");
                if code != "AlreadyExistsException" {
                    return Err(TableError::Glue {
                        op: "BatchCreatePartition",
                        message: format!(
                            "{:?}: {code}: {}",
                            e.partition_values(),
                            detail.and_then(|d| d.error_message()).unwrap_or("")
                        ),
                    });
                }
                existed += 1;
            }
            created += chunk.len() - existed;
        }
        Ok(created)
    }

    fn table_input(
        table: Table,
        location: &str,
        cols: &[TableColumn],
    ) -> Result<TableInput, TableError> {
        let sd = storage_descriptor(location, cols)?;
        let keys = PARTITION_KEYS
            .iter()
            .map(|k| {
                column(&TableColumn {
                    name: k.to_string(),
                    glue_type: "string".into(),
                    comment: if *k == "dt" {
                        "UTC date of event_time, YYYY-MM-DD".into()
                    } else {
                        "UTC hour of event_time, 00-23".into()
                    },
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        TableInput::builder()
            .name(table.name())
            .description(table.description())
            .table_type("EXTERNAL_TABLE")
            .set_parameters(Some(table_parameters(location).into_iter().collect()))
            .set_partition_keys(Some(keys))
            .storage_descriptor(sd)
            .build()
            .map_err(|e| build_err("build table", e))
    }

    /// Create the `edgeway` database and the `access_logs` table over `location`
    /// (`s3://bucket/prefix/access_logs/`, see [`table_location`]) if missing; add columns for
    /// new contract fields; refuse removed or retyped ones. Idempotent.
    pub async fn ensure_table(
        client: &aws_sdk_glue::Client,
        location: &str,
    ) -> Result<TableStatus, TableError> {
        ensure(client, Table::AccessLogs, location).await
    }

    /// [`ensure_table`] for any [`Table`]: `location` is its directory
    /// ([`Table::location`]).
    pub async fn ensure(
        client: &aws_sdk_glue::Client,
        table: Table,
        location: &str,
    ) -> Result<TableStatus, TableError> {
        match client
            .create_database()
            .database_input(
                DatabaseInput::builder()
                    .name(DATABASE)
                    .description("edgeway access-log lake")
                    .build()
                    .map_err(|e| build_err("build database", e))?,
            )
            .send()
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) => {}
            Err(e) => return Err(glue_err("CreateDatabase", e)),
        }
        let existing = match client
            .get_table()
            .database_name(DATABASE)
            .name(table.name())
            .send()
            .await
        {
            Ok(out) => out.table,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                None
            }
            Err(e) => return Err(glue_err("GetTable", e)),
        };
        let Some(found) = existing else {
            let input = table_input(table, location, &table.columns())?;
            return match client
                .create_table()
                .database_name(DATABASE)
                .table_input(input)
                .send()
                .await
            {
                Ok(_) => Ok(TableStatus::Created),
                // Another worker won the race: check what it created.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_already_exists_exception()) =>
                {
                    Box::pin(ensure(client, table, location)).await
                }
                Err(e) => Err(glue_err("CreateTable", e)),
            };
        };
        let cols: Vec<(String, String)> = found
            .storage_descriptor()
            .map(|sd| sd.columns())
            .unwrap_or_default()
            .iter()
            .map(|c| (c.name().to_string(), c.r#type().unwrap_or("").to_string()))
            .collect();
        let keys: Vec<String> = found
            .partition_keys()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        match plan_columns(table, &cols, &keys)? {
            ColumnPlan::Unchanged => Ok(TableStatus::Unchanged),
            ColumnPlan::Add(added) => {
                // Keep the table's column order and append the new ones.
                let mut all: Vec<TableColumn> = cols
                    .iter()
                    .filter_map(|(n, _)| table.columns().into_iter().find(|c| &c.name == n))
                    .collect();
                all.extend(added.iter().cloned());
                client
                    .update_table()
                    .database_name(DATABASE)
                    .table_input(table_input(table, location, &all)?)
                    .send()
                    .await
                    .map_err(|e| glue_err("UpdateTable", e))?;
                Ok(TableStatus::Added(
                    added.into_iter().map(|c| c.name).collect(),
                ))
            }
        }
    }
}

#[cfg(feature = "glue")]
pub use glue::{ensure, ensure_table, register_partitions};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_by_utc_hour() {
        // 2025-11-22T02:00:00.123Z
        let p = Partition::of(1_763_776_800_123);
        assert_eq!(p.path(), "dt=2025-11-22/hour=02");
        assert_eq!(Partition::of(0).path(), "dt=1970-01-01/hour=00");
        assert_eq!(Partition::of(-1).path(), "dt=1969-12-31/hour=23");
        // Leap day and year ends.
        assert_eq!(Partition::of(951_782_400_000).dt(), "2000-02-29");
        assert_eq!(
            Partition::of(1_735_689_599_999).path(),
            "dt=2024-12-31/hour=23"
        );
        assert_eq!(
            Partition::of(1_735_689_600_000).path(),
            "dt=2025-01-01/hour=00"
        );
        assert_eq!(p.dir(), "access_logs/dt=2025-11-22/hour=02");
        assert_eq!(p.start_ms(), 1_763_776_800_000);
        assert_eq!(Partition::of(-1).start_ms(), -3_600_000);
        assert_eq!(Partition::of(p.start_ms() + 3_599_999), p);
        // Beyond the calendar: the first or last hour, never a panic.
        assert_eq!(Partition::of(i64::MIN), Partition::of(i64::MIN + 1));
        assert_eq!(Partition::of(i64::MAX).hour, 23);
        assert_eq!(
            data_file_key(&p, "shardId-000000000001", "4960"),
            "access_logs/dt=2025-11-22/hour=02/shardId-000000000001-4960.parquet"
        );
    }

    #[test]
    fn partition_values_parse_strictly() {
        let d = parse_dt("2024-02-29").unwrap();
        assert_eq!(format_dt(d), "2024-02-29");
        assert_eq!(dt_dir(d), "access_logs/dt=2024-02-29");
        assert!(parse_dt("2025-02-29").is_none());
        assert!(parse_dt("2025-1-3").is_none());
        assert!(parse_dt("2025-01-03T00").is_none());
        assert_eq!(parse_hour("07"), Some(7));
        assert_eq!(parse_hour("7"), Some(7));
        assert_eq!(parse_hour("24"), None);
        assert_eq!(parse_hour("-1"), None);
        assert_eq!(Partition::new(d, 24), None);
        assert_eq!(
            Partition::new(d, 23).unwrap().path(),
            "dt=2024-02-29/hour=23"
        );
    }

    proptest::proptest! {
        /// The partition of an instant contains it, and its hour is the UTC hour.
        #[test]
        fn partition_contains_its_instant(ms in -62_000_000_000_000i64..253_000_000_000_000i64) {
            let p = Partition::of(ms);
            proptest::prop_assert!(p.start_ms() <= ms && ms < p.start_ms() + 3_600_000);
            proptest::prop_assert_eq!(i64::from(p.hour), ms.div_euclid(3_600_000).rem_euclid(24));
            proptest::prop_assert_eq!(parse_dt(&p.dt()), Some(p.date));
        }
    }

    #[test]
    fn parameters_project_dt_and_hour() {
        let p = table_parameters("s3://b/lake/access_logs/");
        assert_eq!(p["projection.enabled"], "true");
        assert_eq!(p["projection.hour.range"], "0,23");
        assert_eq!(
            p["storage.location.template"],
            "s3://b/lake/access_logs/dt=${dt}/hour=${hour}"
        );
        assert_eq!(table_location("s3://b/lake/"), "s3://b/lake/access_logs/");
    }

    #[test]
    fn the_policy_changes_table_has_its_own_directory_and_columns() {
        let t = Table::PolicyChanges;
        assert_eq!(t.location("s3://b/lake"), "s3://b/lake/policy_changes/");
        let p = Partition::of(1_763_776_800_123);
        assert_eq!(
            t.file_key(&p, "local", "42"),
            "policy_changes/dt=2025-11-22/hour=02/local-42.parquet"
        );
        let cols = t.columns();
        assert!(cols
            .iter()
            .any(|c| c.name == "files_changed" && c.glue_type == "array<string>"));
        let existing: Vec<(String, String)> =
            cols.into_iter().map(|c| (c.name, c.glue_type)).collect();
        let keys = vec!["dt".to_string(), "hour".to_string()];
        assert_eq!(plan_columns(t, &existing, &keys), Ok(ColumnPlan::Unchanged));
        // Each table is checked against its own contract.
        let err = plan_columns(Table::AccessLogs, &existing, &keys).unwrap_err();
        assert!(err.to_string().contains("edgeway.access_logs"), "{err}");
        let err = plan_columns(t, &existing[..3], &["day".to_string()]).unwrap_err();
        assert!(err.to_string().contains("edgeway.policy_changes"), "{err}");
    }

    #[test]
    fn columns_added_are_planned_and_removals_refused() {
        let keys = vec!["dt".to_string(), "hour".to_string()];
        let all: Vec<(String, String)> = columns()
            .into_iter()
            .map(|c| (c.name, c.glue_type))
            .collect();
        assert_eq!(
            plan_columns(Table::AccessLogs, &all, &keys),
            Ok(ColumnPlan::Unchanged)
        );
        let fewer = &all[..all.len() - 2];
        match plan_columns(Table::AccessLogs, fewer, &keys).unwrap() {
            ColumnPlan::Add(cols) => assert_eq!(cols.len(), 2),
            other => panic!("{other:?}"),
        }
        let mut extra = all.clone();
        extra.push(("legacy".into(), "string".into()));
        extra[2].1 = "bigint".into();
        let err = plan_columns(Table::AccessLogs, &extra, &keys).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("legacy") && msg.contains("request_id is `bigint`"),
            "{msg}"
        );
        assert!(plan_columns(Table::AccessLogs, &all, &["day".to_string()]).is_err());
    }
}
