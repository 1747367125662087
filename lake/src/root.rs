//! Opening the lake root: a local directory or `s3://bucket/prefix`, as one `ObjectStore` and a
//! base path, so every command (query, compact, retain, generate) runs the same code on both.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

use crate::LakeError;

/// Where the AWS endpoint and region come from when the root is on S3. Both fall back to the
/// usual environment (`AWS_ENDPOINT_URL`, `AWS_REGION`) and credentials to the SDK variables.
#[derive(Debug, Clone, Default)]
pub struct StoreSettings {
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

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
        if let Some(rest) = root.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(LakeError::Usage(format!(
                    "lake root {root:?}: expected s3://bucket/prefix"
                )));
            }
            let region = settings
                .region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                .unwrap_or_else(|| "us-east-1".into());
            let endpoint = settings
                .endpoint
                .clone()
                .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
                .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
                .filter(|e| !e.is_empty());
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(region);
            if let Some(e) = endpoint {
                // Emulators (moto, LocalStack, MinIO) speak plain HTTP with path-style URLs.
                b = b
                    .with_endpoint(e)
                    .with_allow_http(true)
                    .with_virtual_hosted_style_request(false);
            }
            let store = b.build().map_err(|e| LakeError::Store(e.to_string()))?;
            let store_url = Url::parse(&format!("s3://{bucket}/"))
                .map_err(|e| LakeError::Usage(format!("lake root {root:?}: {e}")))?;
            return Ok(Lake {
                store: Arc::new(store),
                base: Path::from(prefix.trim_matches('/')),
                store_url,
                display: root.to_string(),
            });
        }
        let dir = std::path::Path::new(root.strip_prefix("file://").unwrap_or(root));
        if create {
            std::fs::create_dir_all(dir).map_err(|e| LakeError::Io(format!("{root}: {e}")))?;
        }
        let abs = std::fs::canonicalize(dir).map_err(|e| {
            LakeError::Usage(format!(
                "lake root {root}: {e} (point --lake at the pipeline's lake directory)"
            ))
        })?;
        let base = Path::from_absolute_path(&abs)
            .map_err(|e| LakeError::Usage(format!("lake root {root}: {e}")))?;
        Ok(Lake {
            store: Arc::new(LocalFileSystem::new()),
            base,
            store_url: Url::parse("file:///").expect("static url"),
            display: root.to_string(),
        })
    }

    /// URL of the table directory, as DataFusion's listing table wants it (trailing slash).
    pub fn table_url(&self) -> String {
        let mut s = self.store_url.to_string();
        let base = self.base.as_ref();
        if !base.is_empty() {
            s.push_str(base);
            s.push('/');
        }
        s.push_str(crate::layout::TABLE_DIR);
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
        assert!(Lake::open("s3:///x", &StoreSettings::default(), false).is_err());
        assert!(Lake::open("/does/not/exist/lake", &StoreSettings::default(), false).is_err());
    }
}
