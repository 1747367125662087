//! The lake's object store: a local directory or `s3://bucket/prefix`, opened by the shared
//! [`edgeway_record::store`] (the `lake` command opens it the same way), plus what only the
//! writer needs: making a local file durable before a checkpoint depends on it.

use std::sync::Arc;

use edgeway_record::store::{LakeStore, StoreSettings};
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;

pub use edgeway_record::store::StoreError as LakeError;

/// Where lake objects live: a store and the root inside it.
#[derive(Debug, Clone)]
pub struct Lake {
    pub store: Arc<dyn ObjectStore>,
    /// `s3://bucket/prefix`, or a local root as the user gave it (for Glue's table location).
    pub root: String,
    pub is_s3: bool,
    opened: LakeStore,
}

impl Lake {
    /// Open (and, when local, create) the lake root. `region` and `endpoint` override the
    /// environment; with an endpoint (moto, LocalStack) S3 is path-style over plain HTTP.
    pub fn open(
        root: &str,
        region: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<Lake, LakeError> {
        let settings = StoreSettings {
            region: region.map(str::to_string),
            endpoint: endpoint.map(str::to_string),
        };
        let opened = LakeStore::open(root, &settings, true)?;
        Ok(Lake {
            store: opened.store.clone(),
            root: if opened.is_s3() {
                opened.root_url()
            } else {
                root.to_string()
            },
            is_s3: opened.is_s3(),
            opened,
        })
    }

    /// Make a completed object durable before a checkpoint may depend on it. S3 has already
    /// acknowledged it durably; `object_store`'s local store renames a staged file into place
    /// without fsync, so here the file and every directory up to the lake root are synced
    /// (a power loss must not take away a file whose records were checkpointed).
    pub async fn sync(&self, key: &str) -> std::io::Result<()> {
        let Some(root) = self.opened.local_dir().map(|d| d.to_path_buf()) else {
            return Ok(());
        };
        let key = key.to_string();
        tokio::task::spawn_blocking(move || {
            let file = root.join(&key);
            std::fs::File::open(&file)?.sync_all()?;
            let mut dir = file.parent();
            while let Some(d) = dir {
                std::fs::File::open(d)?.sync_all()?;
                if d == root {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
        .map_err(std::io::Error::other)?
    }

    /// The object path of `key` (relative to the lake root).
    pub fn path(&self, key: &str) -> ObjPath {
        self.opened.path(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_lake_writes_below_its_root_and_syncs() {
        use object_store::{ObjectStoreExt, PutPayload};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        let lake = Lake::open(root.to_str().unwrap(), None, None).unwrap();
        assert!(!lake.is_s3);
        assert_eq!(lake.root, root.to_str().unwrap());
        let key = "access_logs/dt=2025-11-22/hour=02/a.parquet";
        lake.store
            .put(&lake.path(key), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        lake.sync(key).await.unwrap();
        assert_eq!(std::fs::read(root.join(key)).unwrap(), b"x");
        assert!(lake.sync("missing").await.is_err());
    }

    #[test]
    fn s3_root_is_normalised_for_glue() {
        let lake = Lake::open(
            "s3://b/lake/",
            Some("us-east-1"),
            Some("http://127.0.0.1:1"),
        )
        .unwrap();
        assert!(lake.is_s3);
        assert_eq!(lake.root, "s3://b/lake");
        assert_eq!(lake.path("k").as_ref(), "lake/k");
    }
}
