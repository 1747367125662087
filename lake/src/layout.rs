//! Where things live in the lake: `<root>/access_logs/dt=YYYY-MM-DD/hour=HH/<file>.parquet`.
//!
//! The pipeline writes the same layout (its keys are `<shard>-<firstSeq>.parquet`); the lake
//! adds compacted files named `compacted-<id>-<n>.parquet`, temporary files that readers never
//! see (a leading `_` and a `.tmp` suffix, which Athena/Hive and DataFusion both skip), and
//! one `_compaction.json` manifest per partition while a compaction is in flight.

use chrono::NaiveDate;
use object_store::path::Path;

/// Directory of the table under the lake root.
pub const TABLE_DIR: &str = edgeway_record::table::TABLE_DIR;
/// Data file suffix.
pub const PARQUET_EXT: &str = ".parquet";
/// Manifest of an in-flight compaction, one per partition (hidden from every reader).
pub const MANIFEST_NAME: &str = "_compaction.json";

/// One `dt=…/hour=…` partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    pub dt: NaiveDate,
    pub hour: u8,
}

impl Partition {
    pub fn dt_string(&self) -> String {
        self.dt.format("%Y-%m-%d").to_string()
    }

    pub fn hour_string(&self) -> String {
        format!("{:02}", self.hour)
    }

    /// `access_logs/dt=…/hour=…` under `base`.
    pub fn path(&self, base: &Path) -> Path {
        base.clone()
            .join(TABLE_DIR)
            .join(format!("dt={}", self.dt_string()).as_str())
            .join(format!("hour={}", self.hour_string()).as_str())
    }

    /// The partition of an event time (UTC milliseconds).
    pub fn of_millis(ms: i64) -> Option<Partition> {
        use chrono::{DateTime, Timelike};
        let t = DateTime::from_timestamp_millis(ms)?;
        Some(Partition {
            dt: t.date_naive(),
            hour: t.hour() as u8,
        })
    }
}

/// `access_logs/dt=…` under `base`.
pub fn dt_path(base: &Path, dt: NaiveDate) -> Path {
    base.clone()
        .join(TABLE_DIR)
        .join(format!("dt={}", dt.format("%Y-%m-%d")).as_str())
}

/// Parse a `YYYY-MM-DD` partition date.
pub fn parse_dt(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// Parse an `HH` (or `H`) partition hour.
pub fn parse_hour(s: &str) -> Option<u8> {
    s.parse::<u8>().ok().filter(|h| *h < 24)
}

/// The value of a `key=value` path segment.
pub fn segment_value<'a>(segment: &'a str, key: &str) -> Option<&'a str> {
    segment.strip_prefix(key)?.strip_prefix('=')
}

/// True for a file name that readers should see as data: `*.parquet` and not hidden.
pub fn is_data_file(name: &str) -> bool {
    name.ends_with(PARQUET_EXT) && !is_hidden(name)
}

/// Hive/Athena convention: names starting with `_` or `.` are not data.
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

/// The last segment of a path.
pub fn file_name(p: &Path) -> &str {
    p.filename().unwrap_or("")
}

/// The directory part of a path.
pub fn parent(p: &Path) -> Path {
    let parts: Vec<_> = p.parts().collect();
    match parts.len() {
        0 => Path::default(),
        n => Path::from_iter(parts.into_iter().take(n - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_paths() {
        let p = Partition::of_millis(1_763_776_800_123).unwrap();
        assert_eq!(p.dt_string(), "2025-11-22");
        assert_eq!(p.hour_string(), "02");
        assert_eq!(
            p.path(&Path::from("lake")).as_ref(),
            "lake/access_logs/dt=2025-11-22/hour=02"
        );
        assert_eq!(
            p.path(&Path::default()).as_ref(),
            "access_logs/dt=2025-11-22/hour=02"
        );
    }

    #[test]
    fn parsing() {
        assert!(parse_dt("2025-02-30").is_none());
        assert!(parse_dt("2025-1-3").is_none());
        assert_eq!(parse_hour("07"), Some(7));
        assert_eq!(parse_hour("24"), None);
        assert_eq!(segment_value("dt=2025-01-01", "dt"), Some("2025-01-01"));
        assert!(is_data_file("shard-0001-49.parquet"));
        assert!(!is_data_file("_compacting-x-0.parquet.tmp"));
        assert!(!is_data_file("_x.parquet"));
        assert_eq!(parent(&Path::from("a/b/c")).as_ref(), "a/b");
    }
}
