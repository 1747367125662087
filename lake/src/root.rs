//! Opening the lake root: a local directory or `s3://bucket/prefix`, through the opener the
//! pipeline uses too ([`edgeway_record::store`]), so every command (query, compact, retain,
//! generate) runs the same code on both.

use std::sync::Arc;

use edgeway_record::store::{LakeStore, StoreError};
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

use crate::LakeError;

pub use edgeway_record::store::StoreSettings;

/// An opened lake root.
#[derive(Debug, Clone)]
pub struct Lake {
    /// The store holding the lake (unwrapped: compaction and retention see every object).
    pub store: Arc<dyn ObjectStore>,
    /// The root inside the store (a key prefix, or an absolute directory for local roots).
    pub base: Path,
    /// `file:///` or `s3://bucket/`: the URL the store is registered under in DataFusion.
    pub store_url: Url,
    /// The root as the user wrote it, for messages.
    pub display: String,
}

impl Lake {
    /// Open `root`. A local directory is created when `create` is set; otherwise it must exist.
    pub fn open(root: &str, settings: &StoreSettings, create: bool) -> Result<Lake, LakeError> {
        let opened = LakeStore::open(root, settings, create).map_err(|e| match e {
            StoreError::S3Root { .. } => LakeError::Usage(e.to_string()),
            StoreError::Local { .. } => LakeError::Usage(format!(
                "{e} (point --lake at the pipeline's lake directory)"
            )),
            StoreError::Create { .. } => LakeError::Io(e.to_string()),
            StoreError::Build { .. } => LakeError::Store(e.to_string()),
        })?;
        let store_url = Url::parse(&opened.store_url())
            .map_err(|e| LakeError::Usage(format!("lake root {root:?}: {e}")))?;
        Ok(Lake {
            store: opened.store,
            base: opened.base,
            store_url,
            display: opened.display,
        })
    }

    /// URL of the access-log table directory, as DataFusion's listing table wants it
    /// (trailing slash).
    pub fn table_url(&self) -> String {
        self.table_url_of(edgeway_record::table::Table::AccessLogs)
    }

    /// URL of `table`'s directory (trailing slash).
    pub fn table_url_of(&self, table: edgeway_record::table::Table) -> String {
        let mut s = self.store_url.to_string();
        let base = self.base.as_ref();
        if !base.is_empty() {
            s.push_str(base);
            s.push('/');
        }
        s.push_str(table.dir());
        s.push('/');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let dir = tempfile::tempdir().unwrap();
        let l = Lake::open(
            dir.path().to_str().unwrap(),
            &StoreSettings::default(),
            false,
        )
        .unwrap();
        assert!(l.table_url().starts_with("file:///"));
        assert!(l.table_url().ends_with("/access_logs/"));
        let s = Lake::open(
            "s3://bkt/some/prefix/",
            &StoreSettings {
                region: Some("us-east-1".into()),
                endpoint: Some("http://127.0.0.1:1".into()),
            },
            false,
        )
        .unwrap();
        assert_eq!(s.table_url(), "s3://bkt/some/prefix/access_logs/");
        assert_eq!(
            s.table_url_of(edgeway_record::table::Table::PolicyChanges),
            "s3://bkt/some/prefix/policy_changes/"
        );
        let e = Lake::open("s3:///x", &StoreSettings::default(), false).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Lake::open("/does/not/exist/lake", &StoreSettings::default(), false).unwrap_err();
        assert!(e.to_string().contains("point --lake"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}
