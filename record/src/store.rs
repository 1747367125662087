//! Opening the lake root, for the pipeline (which writes it) and the `lake` command (which
//! reads and compacts it): a local directory or `s3://bucket/prefix`, both as one
//! `object_store` store and a base path inside it, so every caller runs the same code on both.
//!
//! On S3 the region and endpoint come from the caller, then the usual environment
//! (`AWS_REGION`, `AWS_DEFAULT_REGION`; `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`); with an
//! endpoint (moto, LocalStack, MinIO) requests are path-style and plain HTTP is allowed.
//! Credentials come from the `AWS_*` variables that `object_store` reads.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;

/// The region used when neither the caller nor the environment names one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where the AWS endpoint and region come from when the root is on S3. Each falls back to the
/// environment (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct StoreSettings {
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

/// Why a lake root could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lake root {root:?}: expected s3://bucket/prefix")]
    S3Root { root: String },
    /// The local directory is missing (and was not to be created) or unreadable.
    #[error("lake root {root}: {source}")]
    Local {
        root: String,
        source: std::io::Error,
    },
    /// Creating the local directory failed.
    #[error("{root}: {source}")]
    Create {
        root: String,
        source: std::io::Error,
    },
    /// `object_store` refused the settings.
    #[error("lake root {root}: {message}")]
    Build { root: String, message: String },
}

/// What a root names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    S3 {
        bucket: String,
        prefix: String,
    },
    /// An absolute, canonical directory.
    Local(PathBuf),
}

/// An opened lake root.
#[derive(Debug, Clone)]
pub struct LakeStore {
    /// The store holding the lake (every object of it, not only the lake's prefix).
    pub store: Arc<dyn ObjectStore>,
    /// The root inside the store: a key prefix on S3, the absolute directory locally.
    pub base: Path,
    pub location: Location,
    /// The root as the user wrote it, for messages.
    pub display: String,
}

/// Split `s3://bucket/prefix` into the bucket and the prefix (without slashes at its ends).
pub fn parse_s3_root(root: &str) -> Option<Result<(String, String), StoreError>> {
    let rest = root.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    Some(if bucket.is_empty() {
        Err(StoreError::S3Root {
            root: root.to_string(),
        })
    } else {
        Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
    })
}

fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok())
        .filter(|v| !v.is_empty())
}

impl LakeStore {
    /// Open `root`: `s3://bucket/prefix`, `file:///dir` or a directory. A local directory is
    /// created when `create` is set; otherwise it must exist.
    pub fn open(
        root: &str,
        settings: &StoreSettings,
        create: bool,
    ) -> Result<LakeStore, StoreError> {
        if let Some(parsed) = parse_s3_root(root) {
            let (bucket, prefix) = parsed?;
            let region = settings
                .region
                .clone()
                .or_else(|| env_first(&["AWS_REGION", "AWS_DEFAULT_REGION"]))
                .unwrap_or_else(|| DEFAULT_REGION.into());
            let endpoint = settings
                .endpoint
                .clone()
                .filter(|e| !e.is_empty())
                .or_else(|| env_first(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]));
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(&bucket)
                .with_region(region);
            if let Some(e) = endpoint {
                // Emulators speak plain HTTP with path-style URLs.
                b = b
                    .with_endpoint(e)
                    .with_allow_http(true)
                    .with_virtual_hosted_style_request(false);
            }
            let store = b.build().map_err(|e| StoreError::Build {
                root: root.to_string(),
                message: e.to_string(),
            })?;
            return Ok(LakeStore {
                store: Arc::new(store),
                base: Path::from(prefix.as_str()),
                location: Location::S3 { bucket, prefix },
                display: root.to_string(),
            });
        }
        let dir = std::path::Path::new(root.strip_prefix("file://").unwrap_or(root));
        if create {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Create {
                root: root.to_string(),
                source,
            })?;
        }
        let local = |source| StoreError::Local {
            root: root.to_string(),
            source,
        };
        let abs = std::fs::canonicalize(dir).map_err(local)?;
        let base = Path::from_absolute_path(&abs).map_err(|e| StoreError::Build {
            root: root.to_string(),
            message: e.to_string(),
        })?;
        Ok(LakeStore {
            store: Arc::new(LocalFileSystem::new()),
            base,
            location: Location::Local(abs),
            display: root.to_string(),
        })
    }

    pub fn is_s3(&self) -> bool {
        matches!(self.location, Location::S3 { .. })
    }

    /// The directory of a local lake.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        match &self.location {
            Location::Local(d) => Some(d),
            Location::S3 { .. } => None,
        }
    }

    /// The object path of `key`, a `/`-separated key relative to the lake root.
    pub fn path(&self, key: &str) -> Path {
        under(&self.base, key)
    }

    /// `s3://bucket/` or `file:///`: the URL of the store itself (query engines register the
    /// store under it).
    pub fn store_url(&self) -> String {
        match &self.location {
            Location::S3 { bucket, .. } => format!("s3://{bucket}/"),
            Location::Local(_) => "file:///".into(),
        }
    }

    /// The root as a URL without a trailing slash: `s3://bucket/prefix` or `file:///dir`
    /// (Glue's table location is built from it).
    pub fn root_url(&self) -> String {
        let base = self.base.as_ref();
        let mut s = self.store_url();
        s.push_str(base);
        s.trim_end_matches('/').to_string()
    }
}

/// `key` (`/`-separated, relative) below `base`. Empty segments are dropped.
pub fn under(base: &Path, key: &str) -> Path {
    key.split('/')
        .filter(|s| !s.is_empty())
        .fold(base.clone(), |p, seg| p.join(seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(root: &str) -> LakeStore {
        let settings = StoreSettings {
            region: Some("eu-west-1".into()),
            endpoint: Some("http://127.0.0.1:1".into()),
        };
        LakeStore::open(root, &settings, false).unwrap()
    }

    #[test]
    fn s3_roots_split_into_bucket_and_prefix() {
        let l = s3("s3://bkt/some/prefix/");
        assert!(l.is_s3());
        assert_eq!(
            l.location,
            Location::S3 {
                bucket: "bkt".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(l.base.as_ref(), "some/prefix");
        assert_eq!(l.store_url(), "s3://bkt/");
        assert_eq!(l.root_url(), "s3://bkt/some/prefix");
        assert_eq!(l.path("a/b.parquet").as_ref(), "some/prefix/a/b.parquet");
        assert_eq!(l.local_dir(), None);
        let bare = s3("s3://bkt");
        assert_eq!(bare.base.as_ref(), "");
        assert_eq!(bare.root_url(), "s3://bkt");
        assert_eq!(bare.path("x/y").as_ref(), "x/y");
        for bad in ["s3://", "s3:///x"] {
            let e = LakeStore::open(bad, &StoreSettings::default(), false).unwrap_err();
            assert!(matches!(e, StoreError::S3Root { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("expected s3://bucket/prefix"));
        }
    }

    #[tokio::test]
    async fn local_roots_are_created_only_when_asked_and_written_below_the_root() {
        use object_store::{ObjectStoreExt, PutPayload};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        let root_s = root.to_str().unwrap();
        let e = LakeStore::open(root_s, &StoreSettings::default(), false).unwrap_err();
        assert!(matches!(e, StoreError::Local { .. }), "{e}");
        assert!(!root.exists());

        let l =
            LakeStore::open(&format!("file://{root_s}"), &StoreSettings::default(), true).unwrap();
        assert!(!l.is_s3());
        let canonical = std::fs::canonicalize(&root).unwrap();
        assert_eq!(l.local_dir(), Some(canonical.as_path()));
        assert_eq!(l.store_url(), "file:///");
        assert_eq!(
            l.root_url(),
            format!(
                "file:///{}",
                canonical.to_str().unwrap().trim_start_matches('/')
            )
        );
        l.store
            .put(
                &l.path("access_logs/x.parquet"),
                PutPayload::from_static(b"data"),
            )
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(canonical.join("access_logs/x.parquet")).unwrap(),
            b"data"
        );
        // Opening an existing directory without `create` works.
        LakeStore::open(root_s, &StoreSettings::default(), false).unwrap();
    }

    #[test]
    fn keys_join_below_the_base() {
        assert_eq!(under(&Path::from("a/b"), "c/d").as_ref(), "a/b/c/d");
        assert_eq!(under(&Path::default(), "/c//d/").as_ref(), "c/d");
    }
}
