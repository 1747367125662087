//! The object store that readers (the local query engine) go through: it hides the files an
//! in-flight or interrupted compaction must hide (see [`crate::manifest`]) and counts the
//! bytes read, for `--stats` and the benchmark.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::layout::{file_name, is_hidden, parent, MANIFEST_NAME};
use crate::manifest::{self, Manifest};

/// Bytes and requests that went through a [`ReaderStore`].
#[derive(Debug, Default)]
pub struct ReadStats {
    pub bytes: AtomicU64,
    pub requests: AtomicU64,
}

impl ReadStats {
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
pub struct ReaderStore {
    inner: Arc<dyn ObjectStore>,
    pub stats: Arc<ReadStats>,
}

impl ReaderStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> ReaderStore {
        ReaderStore {
            inner,
            stats: Arc::default(),
        }
    }
}

impl fmt::Display for ReaderStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReaderStore({})", self.inner)
    }
}

/// Drop hidden names, and in each directory holding a compaction manifest, the data files
/// that manifest hides.
async fn reconcile(store: &dyn ObjectStore, objects: Vec<ObjectMeta>) -> Result<Vec<ObjectMeta>> {
    let mut by_dir: BTreeMap<Path, Vec<ObjectMeta>> = BTreeMap::new();
    for o in objects {
        by_dir.entry(parent(&o.location)).or_default().push(o);
    }
    let mut out = Vec::new();
    for (dir, objs) in by_dir {
        let manifest = objs
            .iter()
            .find(|o| file_name(&o.location) == MANIFEST_NAME);
        let hide = match manifest {
            None => Default::default(),
            Some(mo) => {
                let bytes = store.get(&mo.location).await?.bytes().await?;
                let m = Manifest::from_json(&bytes).map_err(|e| object_store::Error::Generic {
                    store: "lake",
                    source: format!("compaction manifest {}: {e}", mo.location).into(),
                })?;
                manifest::hidden(&m, objs.iter().map(|o| file_name(&o.location)))
            }
        };
        let _ = dir;
        out.extend(objs.into_iter().filter(|o| {
            let name = file_name(&o.location);
            !is_hidden(name) && !hide.contains(name)
        }));
    }
    Ok(out)
}

#[async_trait]
impl ObjectStore for ReaderStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let head = options.head;
        let r = self.inner.get_opts(location, options).await?;
        if !head {
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes
                .fetch_add(r.range.end - r.range.start, Ordering::Relaxed);
        }
        Ok(r)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let r = self.inner.get_ranges(location, ranges).await?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let n: u64 = r.iter().map(|b| b.len() as u64).sum();
        self.stats.bytes.fetch_add(n, Ordering::Relaxed);
        Ok(r)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let inner = Arc::clone(&self.inner);
        let listing = self.inner.list(prefix);
        stream::once(async move {
            let objects: Vec<ObjectMeta> = listing.try_collect().await?;
            reconcile(inner.as_ref(), objects).await
        })
        .map_ok(|v| stream::iter(v.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let mut r = self.inner.list_with_delimiter(prefix).await?;
        r.objects = reconcile(self.inner.as_ref(), r.objects).await?;
        r.common_prefixes.retain(|p| !is_hidden(file_name(p)));
        Ok(r)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
