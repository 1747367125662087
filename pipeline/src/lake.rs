//! The lake's object store: a local directory or `s3://bucket/prefix`, both through
//! `object_store`, so local mode and AWS mode write files through the same code path.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjPath;
use object_store::ObjectStore;

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("lake root {root}: {message}")]
    Root { root: String, message: String },
}

/// Where lake objects live: a store and the prefix inside it.
#[derive(Debug, Clone)]
pub struct Lake {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: String,
    /// The root as the user gave it (for Glue's table location).
    pub root: String,
    pub is_s3: bool,
    /// The directory of a local lake (for fsync; S3 acknowledges writes durably).
    local_dir: Option<std::path::PathBuf>,
}

impl Lake {
    /// `endpoint` overrides the S3 endpoint (moto, LocalStack): path-style, HTTP allowed.
    pub fn open(
        root: &str,
        region: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<Lake, LakeError> {
        let err = |message: String| LakeError::Root {
            root: root.to_string(),
            message,
        };
        if let Some(rest) = root.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(err("expected s3://bucket/prefix".into()));
            }
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(r) = region {
                b = b.with_region(r);
            }
            if let Some(e) = endpoint {
                b = b
                    .with_endpoint(e)
                    .with_allow_http(true)
                    .with_virtual_hosted_style_request(false);
            }
            let store = b.build().map_err(|e| err(e.to_string()))?;
            Ok(Lake {
                store: Arc::new(store),
                prefix: prefix.trim_matches('/').to_string(),
                root: format!("s3://{}", rest.trim_end_matches('/')),
                is_s3: true,
                local_dir: None,
            })
        } else {
            let dir = root.strip_prefix("file://").unwrap_or(root);
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| err(e.to_string()))?;
            Ok(Lake {
                store: Arc::new(store),
                prefix: String::new(),
                root: root.to_string(),
                is_s3: false,
                local_dir: Some(std::path::PathBuf::from(dir)),
            })
        }
    }

    /// Make a completed object durable before a checkpoint may depend on it. S3 has already
    /// acknowledged it durably; `object_store`'s local store renames a staged file into place
    /// without fsync, so here the file and every directory up to the lake root are synced
    /// (a power loss must not take away a file whose records were checkpointed).
    pub async fn sync(&self, key: &str) -> std::io::Result<()> {
        let Some(root) = self.local_dir.clone() else {
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
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.prefix))
        }
    }
}
