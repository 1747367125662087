//! `lake retain --days N`: drop whole `dt=` partitions older than N days. The plan is always
//! printed; nothing is deleted without `--yes`.

use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStore;

use crate::layout::{dt_path, file_name, parse_dt, segment_value, TABLE_DIR};
use crate::root::Lake;
use crate::LakeError;

/// One partition date to drop.
#[derive(Debug, Clone)]
pub struct Expired {
    pub dt: NaiveDate,
    pub files: usize,
    pub bytes: u64,
    objects: Vec<Path>,
}

fn store_err(e: object_store::Error) -> LakeError {
    LakeError::Store(e.to_string())
}

/// Partitions with `dt` before `today - days`.
pub async fn plan(lake: &Lake, days: u32, today: NaiveDate) -> Result<Vec<Expired>, LakeError> {
    let cutoff = today - chrono::Days::new(u64::from(days));
    let table = lake.base.clone().join(TABLE_DIR);
    let listing = lake
        .store
        .list_with_delimiter(Some(&table))
        .await
        .map_err(store_err)?;
    let mut out = Vec::new();
    for prefix in listing.common_prefixes {
        let Some(dt) = segment_value(file_name(&prefix), "dt").and_then(parse_dt) else {
            continue;
        };
        if dt >= cutoff {
            continue;
        }
        let objects: Vec<_> = lake
            .store
            .list(Some(&dt_path(&lake.base, dt)))
            .try_collect()
            .await
            .map_err(store_err)?;
        out.push(Expired {
            dt,
            files: objects
                .iter()
                .filter(|o| crate::layout::is_data_file(file_name(&o.location)))
                .count(),
            bytes: objects.iter().map(|o| o.size).sum(),
            objects: objects.into_iter().map(|o| o.location).collect(),
        });
    }
    out.sort_by_key(|e| e.dt);
    Ok(out)
}

/// Delete every object of the planned partitions, oldest first.
pub async fn delete(lake: &Lake, plan: &[Expired]) -> Result<u64, LakeError> {
    let mut deleted = 0;
    for e in plan {
        let paths = futures::stream::iter(e.objects.clone().into_iter().map(Ok)).boxed();
        let done: Vec<Path> = lake
            .store
            .delete_stream(paths)
            .try_collect()
            .await
            .map_err(store_err)?;
        deleted += done.len() as u64;
        // Local roots keep empty directories; remove them so listings stay clean.
        if lake.store_url.scheme() == "file" {
            // remove_dir only removes empty directories: nothing else can go.
            let dir = std::path::PathBuf::from(format!("/{}", dt_path(&lake.base, e.dt)));
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
    Ok(deleted)
}
