//! `lake init`: the AWS side of the lake, created or brought up to date idempotently.
//!
//! - the Glue database and tables (`access_logs`, `policy_changes`), through the pipeline's
//!   [`edgeway_record::table::ensure`] (one definition of each table for both);
//! - the Athena workgroup with its result location;
//! - every named query, registered as an Athena named query in that workgroup.
//!
//! Each step reports whether it created, updated or left something unchanged; a second run
//! reports only "unchanged".

use aws_config::SdkConfig;
use edgeway_record::table::{self, TableStatus};

use crate::athena::{self, Change};
use crate::{named, LakeError};

#[derive(Debug, Clone)]
pub struct InitSettings {
    /// `s3://bucket/prefix`: the lake root the table points at.
    pub root: String,
    pub workgroup: String,
    /// Where Athena writes results; default `s3://<lake bucket>/athena-results/`.
    pub results: Option<String>,
    /// Skip the Glue table (when the pipeline manages it).
    pub skip_table: bool,
}

/// The default result location for a lake root.
pub fn default_results(root: &str) -> Option<String> {
    let bucket = root.strip_prefix("s3://")?.split('/').next()?;
    (!bucket.is_empty()).then(|| format!("s3://{bucket}/athena-results/"))
}

pub async fn run(sdk: &SdkConfig, s: &InitSettings) -> Result<Vec<Change>, LakeError> {
    if !s.root.starts_with("s3://") {
        return Err(LakeError::Usage(format!(
            "lake init registers the lake with Glue and Athena, so it needs an s3:// lake root \
             (got {:?}); a local lake needs no set-up",
            s.root
        )));
    }
    let results = match &s.results {
        Some(r) => r.clone(),
        None => default_results(&s.root).ok_or_else(|| {
            LakeError::Usage(format!("cannot derive a result location from {:?}", s.root))
        })?,
    };
    let mut changes = Vec::new();
    if !s.skip_table {
        let glue = aws_sdk_glue::Client::new(sdk);
        for t in table::Table::ALL {
            let location = t.location(&s.root);
            let what = format!("glue table {}.{} ({location})", table::DATABASE, t.name());
            let status = table::ensure(&glue, t, &location)
                .await
                .map_err(|e| LakeError::Aws {
                    op: "Glue",
                    message: e.to_string(),
                })?;
            changes.push(match status {
                TableStatus::Created => Change::Created(what),
                TableStatus::Unchanged => Change::Unchanged(what),
                TableStatus::Added(cols) => {
                    Change::Updated(format!("{what}: added columns {}", cols.join(", ")))
                }
            });
        }
    }
    let client = aws_sdk_athena::Client::new(sdk);
    changes.push(athena::ensure_workgroup(&client, &s.workgroup, &results).await?);
    let queries = named::all()?;
    changes.extend(
        athena::ensure_named_queries(&client, &s.workgroup, table::DATABASE, &queries).await?,
    );
    Ok(changes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn result_location() {
        assert_eq!(
            super::default_results("s3://b/lake").as_deref(),
            Some("s3://b/athena-results/")
        );
        assert_eq!(super::default_results("/tmp/lake"), None);
    }
}
