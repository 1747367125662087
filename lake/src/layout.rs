//! Where things live in the lake: `<root>/access_logs/dt=YYYY-MM-DD/hour=HH/<file>.parquet`.
//!
//! The pipeline writes the same layout (its keys are `<shard>-<firstSeq>.parquet`); the lake
//! adds compacted files named `compacted-<id>-<n>.parquet`, temporary files that readers never
//! see (a leading `_` and a `.tmp` suffix, which Athena/Hive and DataFusion both skip), and
//! one `_compaction.json` manifest per partition while a compaction is in flight.

use chrono::NaiveDate;
use edgeway_record::store::under;
use object_store::path::Path;

pub use edgeway_record::table::{parse_dt, parse_hour, Partition, TABLE_DIR};

/// Data file suffix.
pub const PARQUET_EXT: &str = ".parquet";
/// Manifest of an in-flight compaction, one per partition (hidden from every reader).
pub const MANIFEST_NAME: &str = "_compaction.json";

/// `access_logs/dt=…/hour=…` under `base`.
pub fn partition_path(base: &Path, p: &Partition) -> Path {
    under(base, &p.dir())
}

/// `access_logs/dt=…` under `base`.
pub fn dt_path(base: &Path, dt: NaiveDate) -> Path {
    under(base, &edgeway_record::table::dt_dir(dt))
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
        let p = Partition::of(1_763_776_800_123);
        assert_eq!(
            partition_path(&Path::from("lake"), &p).as_ref(),
            "lake/access_logs/dt=2025-11-22/hour=02"
        );
        assert_eq!(
            partition_path(&Path::default(), &p).as_ref(),
            "access_logs/dt=2025-11-22/hour=02"
        );
        assert_eq!(
            dt_path(&Path::from("/abs/lake"), p.date).as_ref(),
            "abs/lake/access_logs/dt=2025-11-22"
        );
    }

    #[test]
    fn parsing() {
        assert_eq!(segment_value("dt=2025-01-01", "dt"), Some("2025-01-01"));
        assert!(is_data_file("shard-0001-49.parquet"));
        assert!(!is_data_file("_compacting-x-0.parquet.tmp"));
        assert!(!is_data_file("_x.parquet"));
        assert_eq!(parent(&Path::from("a/b/c")).as_ref(), "a/b");
    }
}
