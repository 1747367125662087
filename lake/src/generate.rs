//! Synthetic access logs for tests and benchmarks: the shared generator
//! ([`edgeway_record::gen`]) written as Parquet files in the pipeline's layout. Tests call
//! [`file_records`] to compute expected answers from exactly the records that were written.

use chrono::DateTime;
use object_store::{ObjectStoreExt, PutPayload};

use crate::layout::{partition_path, Partition};
use crate::root::Lake;
use crate::LakeError;

pub use edgeway_record::gen::{breaker_at, file_records, Spec, ROUTES};

/// What [`write`] produced.
#[derive(Debug, Default)]
pub struct Report {
    pub files: u64,
    pub records: u64,
    pub bytes: u64,
}

/// Write the whole generated lake under `lake`'s root, using every core.
pub async fn write(lake: &Lake, spec: &Spec) -> Result<Report, LakeError> {
    let jobs: Vec<(u32, u32)> = (0..spec.hours)
        .flat_map(|h| (0..spec.files_per_hour).map(move |f| (h, f)))
        .filter(|&(h, f)| spec.count(h, f) > 0)
        .collect();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut report = Report::default();
    for chunk in jobs.chunks(threads) {
        let mut tasks = Vec::new();
        for &(h, f) in chunk {
            let spec = spec.clone();
            tasks.push(tokio::task::spawn_blocking(move || {
                let recs = file_records(&spec, h, f);
                let batch = edgeway_record::arrow::to_sorted_batch(&recs)
                    .map_err(|e| LakeError::Parquet(e.to_string()))?;
                let bytes = crate::writer::encode(&[batch])?;
                Ok::<_, LakeError>((h, f, recs.len() as u64, bytes))
            }));
        }
        for t in tasks {
            let (h, f, rows, bytes) = t
                .await
                .map_err(|e| LakeError::Io(format!("generator task: {e}")))??;
            let part = Partition::of(spec.hour_start(h));
            let path = partition_path(&lake.base, &part).join(spec.file_name(h, f).as_str());
            report.files += 1;
            report.records += rows;
            report.bytes += bytes.len() as u64;
            lake.store
                .put(&path, PutPayload::from(bytes))
                .await
                .map_err(|e| LakeError::Store(format!("{path}: {e}")))?;
        }
    }
    Ok(report)
}

/// Parse `2025-01-01` or `2025-01-01T05:00:00Z` into UTC milliseconds.
pub fn parse_start(s: &str) -> Option<i64> {
    if let Some(d) = crate::layout::parse_dt(s) {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    let t = DateTime::parse_from_rfc3339(s).ok()?;
    Some(t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_parse_as_dates_or_rfc3339() {
        assert_eq!(parse_start("2025-03-01"), Some(1_740_787_200_000));
        assert_eq!(parse_start("2025-03-01T05:30:00Z"), Some(1_740_807_000_000));
        assert_eq!(
            parse_start("2025-03-01T06:30:00+01:00"),
            Some(1_740_807_000_000)
        );
        assert_eq!(parse_start("2025-02-30"), None);
        assert_eq!(parse_start("yesterday"), None);
    }

    #[tokio::test]
    async fn writes_each_file_into_its_hour() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), &Default::default(), false).unwrap();
        let spec = Spec {
            records: 30,
            start_ms: parse_start("2025-03-01T05:30:00Z").unwrap(),
            hours: 2,
            files_per_hour: 2,
            seed: 1,
        };
        let r = write(&lake, &spec).await.unwrap();
        assert_eq!((r.files, r.records), (4, 30));
        for (hour, h) in [("05", 0), ("06", 1)] {
            for f in 0..2 {
                let p = dir
                    .path()
                    .join(format!("access_logs/dt=2025-03-01/hour={hour}"))
                    .join(spec.file_name(h, f));
                assert!(p.is_file(), "{}", p.display());
            }
        }
    }
}
