//! The edge micro-cache: Pingora's HTTP cache state machine (`pingora-cache`) over its
//! in-memory storage, with an LRU eviction manager bounding the bytes and the cache lock
//! coalescing concurrent misses, plus a purge index (primary key and surrogate tag → stored
//! entries) for `PURGE` on the admin listener.
//!
//! One [`MicroCache`] per `[cache.<name>.micro_cache]`, kept across reloads while its spec is
//! unchanged. Pingora wants `&'static` storage, eviction manager and lock, so a new build
//! leaks three small objects; the entries themselves are purged when the part is dropped
//! (a reload that changes the spec), so what stays leaked is their empty shells.
//!
//! Keys: the primary key is `host + canonical path + ?allow-listed query` (the purge key);
//! the variance is the configured `Vary` request headers, the origin's own `Vary` headers,
//! and, with `per_subject`, the verified issuer and subject.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::cache::eviction::{simple_lru, EvictionManager};
use pingora::cache::key::{CompactCacheKey, HashBinary};
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};
use pingora::cache::storage::{PurgeTarget, PurgeType};
use pingora::cache::trace::Span;
use pingora::cache::{
    CacheEntryKey, CacheEntryKeyRef, CacheKey, CacheMeta, CacheOptionOverrides, MemCache,
    RespCacheable, Storage, VarianceBuilder,
};
use pingora::http::{RequestHeader, ResponseHeader};

use super::spec::MicroSpec;
use crate::state::{BuildError, Part};

/// Most lock retries of a waiting request before it goes to the origin itself.
const MAX_LOCK_RETRIES: usize = 3;

/// A micro-cache: storage, LRU, lock and purge index.
pub struct MicroCache {
    pub spec: MicroSpec,
    storage: &'static MemCache,
    eviction: &'static Eviction,
    lock: &'static CacheKeyLockImpl,
    index: Arc<Mutex<Index>>,
}

impl Part for MicroCache {
    type Spec = MicroSpec;
    fn spec(&self) -> &MicroSpec {
        &self.spec
    }
}

impl std::fmt::Debug for MicroCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicroCache")
            .field("spec", &self.spec)
            .finish()
    }
}

/// Counters for `/cache/stats`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    pub bytes: usize,
    pub items: usize,
    pub evicted_items: usize,
    pub max_bytes: usize,
}

impl MicroCache {
    pub async fn build(spec: &MicroSpec) -> Result<MicroCache, BuildError> {
        let index = Arc::new(Mutex::new(Index::default()));
        let eviction: &'static Eviction = Box::leak(Box::new(Eviction {
            inner: simple_lru::Manager::new(spec.max_bytes),
            index: Arc::clone(&index),
        }));
        let lock: &'static CacheKeyLockImpl = Box::leak(CacheLock::new_boxed(spec.lock_timeout));
        Ok(MicroCache {
            spec: spec.clone(),
            storage: Box::leak(Box::new(MemCache::new())),
            eviction,
            lock,
            index,
        })
    }

    /// Turn Pingora's cache on for this request.
    pub fn enable(&self, cache: &mut pingora::cache::HttpCache) {
        let mut overrides = CacheOptionOverrides::default();
        overrides.wait_timeout = Some(self.spec.lock_timeout);
        overrides.max_lock_retries = Some(MAX_LOCK_RETRIES);
        cache.enable(
            self.storage,
            Some(self.eviction),
            None,
            Some(self.lock),
            Some(overrides),
        );
        cache.set_max_file_size_bytes(self.spec.max_object_bytes);
    }

    /// The primary key: host, canonical path and the allow-listed query parameters (sorted).
    pub fn primary_key(&self, host: &str, path: &str, query: Option<&str>) -> String {
        let mut key = String::with_capacity(host.len() + path.len() + 16);
        key.push_str(&host.to_ascii_lowercase());
        key.push_str(path);
        if let Some(q) = query {
            if !self.spec.query_params.is_empty() {
                let mut kept: Vec<&str> = q
                    .split('&')
                    .filter(|kv| {
                        let name = kv.split('=').next().unwrap_or_default();
                        self.spec.query_params.iter().any(|p| p == name)
                    })
                    .collect();
                kept.sort_unstable();
                if !kept.is_empty() {
                    key.push('?');
                    key.push_str(&kept.join("&"));
                }
            }
        }
        key
    }

    pub fn cache_key(&self, primary: String) -> CacheKey {
        CacheKey::new(primary, "")
    }

    /// The variance of a request against a stored response: the policy's `Vary` headers,
    /// the origin's `Vary` headers, and the subject when caching per subject.
    pub fn variance(
        &self,
        meta: &CacheMeta,
        req: &RequestHeader,
        subject: Option<(&str, &str)>,
    ) -> Option<HashBinary> {
        let mut b = VarianceBuilder::new();
        for name in &self.spec.vary {
            b.add_value(name.as_str(), header_bytes(req, name.as_str()));
        }
        let mut origin: Vec<String> = Vec::new();
        for v in meta.headers().get_all(http::header::VARY) {
            for t in v.to_str().unwrap_or_default().split(',') {
                let t = t.trim().to_ascii_lowercase();
                if !t.is_empty() && !self.spec.vary.iter().any(|n| n.as_str() == t) {
                    origin.push(t);
                }
            }
        }
        for name in origin {
            let value = header_bytes(req, &name).to_vec();
            b.add_owned_name_value(name, value);
        }
        if let Some((issuer, subject)) = subject {
            b.add_value("\0issuer", issuer);
            b.add_value("\0subject", subject);
        }
        b.finalize()
    }

    /// Whether a response may be stored, with its meta: fresh for `ttl`, with the stale
    /// windows of the policy. `storable` is the header policy's verdict (shareable, or
    /// private but cached per subject).
    pub fn cacheable(&self, resp: &ResponseHeader, storable: bool) -> RespCacheable {
        use pingora::cache::NoCacheReason;
        if !storable {
            return RespCacheable::Uncacheable(NoCacheReason::OriginNotCache);
        }
        if resp.headers.contains_key(http::header::SET_COOKIE) {
            return RespCacheable::Uncacheable(NoCacheReason::Custom("set-cookie"));
        }
        let vary_star = resp.headers.get_all(http::header::VARY).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii() == b"*")
        });
        if vary_star {
            return RespCacheable::Uncacheable(NoCacheReason::Custom("vary-star"));
        }
        // pingora-cache decides freshness with the system clock itself, so the meta must use
        // the same clock (an injected test clock would disagree with it).
        #[allow(clippy::disallowed_methods)]
        let now = SystemTime::now();
        RespCacheable::Cacheable(CacheMeta::new(
            now + self.spec.ttl,
            now,
            secs(self.spec.stale_while_revalidate),
            secs(self.spec.stale_if_error),
            resp.clone(),
        ))
    }

    /// Remember a stored entry (its full key, with variance) under its primary key and tags.
    pub fn remember(&self, primary: &str, key: CompactCacheKey, tags: Vec<String>) {
        let mut index = lock(&self.index);
        index.insert(primary, key, tags);
        // Entries whose fill failed never reach the LRU; drop them once the index has grown
        // well past what the LRU holds.
        if index.primary_of.len() > 2 * self.eviction.total_items() + 1024 {
            let gone: Vec<CompactCacheKey> = index
                .primary_of
                .keys()
                .filter(|k| !self.eviction.peek(&CacheEntryKey::key_only((*k).clone())))
                .cloned()
                .collect();
            for k in gone {
                index.forget(&k);
            }
        }
    }

    /// Purge every entry with this tag. Returns how many were removed.
    pub async fn purge_tag(&self, tag: &str) -> usize {
        let keys = lock(&self.index).take_tag(tag);
        self.purge_keys(keys).await
    }

    /// Purge every variant of a primary key (`host/path?query` as [`Self::primary_key`]
    /// builds it).
    pub async fn purge_key(&self, primary: &str) -> usize {
        let mut keys = lock(&self.index).take_primary(primary);
        // The primary slot itself (an entry stored without variance, or a fill under way).
        let bare = self.cache_key(primary.to_string()).to_compact();
        if !keys.contains(&bare) {
            keys.push(bare);
        }
        self.purge_keys(keys).await
    }

    async fn purge_keys(&self, keys: Vec<CompactCacheKey>) -> usize {
        let span = Span::inactive().handle();
        let mut n = 0;
        for k in keys {
            let purged = self
                .storage
                .purge(PurgeTarget::Active(&k), PurgeType::Invalidation, &span)
                .await;
            if matches!(purged, Ok(pingora::cache::storage::PurgeOutcome::Purged(_))) {
                n += 1;
            }
            self.eviction.inner.remove(CacheEntryKeyRef::KeyOnly(&k));
        }
        n
    }

    pub fn stats(&self) -> Stats {
        Stats {
            bytes: self.eviction.total_size(),
            items: self.eviction.total_items(),
            evicted_items: self.eviction.evicted_items(),
            max_bytes: self.spec.max_bytes,
        }
    }
}

impl Drop for MicroCache {
    /// The storage is leaked (Pingora needs `&'static`): empty it, so a replaced cache keeps
    /// no bodies. MemCache's purge never waits, so one poll completes it.
    fn drop(&mut self) {
        let keys: Vec<CompactCacheKey> = lock(&self.index).primary_of.keys().cloned().collect();
        let span = Span::inactive().handle();
        for k in keys {
            let fut = self
                .storage
                .purge(PurgeTarget::Active(&k), PurgeType::Invalidation, &span);
            let mut fut = std::pin::pin!(fut);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            let _ = std::future::Future::poll(fut.as_mut(), &mut cx);
            self.eviction.inner.remove(CacheEntryKeyRef::KeyOnly(&k));
        }
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

fn header_bytes<'r>(req: &'r RequestHeader, name: &str) -> &'r [u8] {
    req.headers
        .get(name)
        .map(|v| v.as_bytes())
        .unwrap_or_default()
}

fn lock(m: &Mutex<Index>) -> std::sync::MutexGuard<'_, Index> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stored entries by primary key and by tag.
#[derive(Default)]
struct Index {
    by_primary: HashMap<String, Entry>,
    by_tag: HashMap<String, HashSet<String>>,
    primary_of: HashMap<CompactCacheKey, String>,
}

#[derive(Default)]
struct Entry {
    keys: HashSet<CompactCacheKey>,
    tags: Vec<String>,
}

impl Index {
    fn insert(&mut self, primary: &str, key: CompactCacheKey, tags: Vec<String>) {
        for t in &tags {
            self.by_tag
                .entry(t.clone())
                .or_default()
                .insert(primary.to_string());
        }
        let entry = self.by_primary.entry(primary.to_string()).or_default();
        entry.keys.insert(key.clone());
        if entry.tags.is_empty() {
            entry.tags = tags;
        }
        self.primary_of.insert(key, primary.to_string());
    }

    fn forget(&mut self, key: &CompactCacheKey) {
        let Some(primary) = self.primary_of.remove(key) else {
            return;
        };
        let empty = match self.by_primary.get_mut(&primary) {
            Some(e) => {
                e.keys.remove(key);
                e.keys.is_empty()
            }
            None => false,
        };
        if empty {
            self.remove_primary(&primary);
        }
    }

    fn remove_primary(&mut self, primary: &str) -> Vec<CompactCacheKey> {
        let Some(entry) = self.by_primary.remove(primary) else {
            return Vec::new();
        };
        for t in &entry.tags {
            if let Some(set) = self.by_tag.get_mut(t) {
                set.remove(primary);
                if set.is_empty() {
                    self.by_tag.remove(t);
                }
            }
        }
        for k in &entry.keys {
            self.primary_of.remove(k);
        }
        entry.keys.into_iter().collect()
    }

    fn take_primary(&mut self, primary: &str) -> Vec<CompactCacheKey> {
        self.remove_primary(primary)
    }

    fn take_tag(&mut self, tag: &str) -> Vec<CompactCacheKey> {
        let Some(primaries) = self.by_tag.remove(tag) else {
            return Vec::new();
        };
        primaries
            .into_iter()
            .flat_map(|p| self.remove_primary(&p))
            .collect()
    }
}

/// Pingora's simple LRU, telling the purge index what it evicts.
struct Eviction {
    inner: simple_lru::Manager,
    index: Arc<Mutex<Index>>,
}

impl Eviction {
    fn forget(&self, evicted: &[CacheEntryKey]) {
        if evicted.is_empty() {
            return;
        }
        let mut index = lock(&self.index);
        for e in evicted {
            index.forget(e.key());
        }
    }
}

#[async_trait]
impl EvictionManager for Eviction {
    fn total_size(&self) -> usize {
        self.inner.total_size()
    }
    fn total_items(&self) -> usize {
        self.inner.total_items()
    }
    fn evicted_size(&self) -> usize {
        self.inner.evicted_size()
    }
    fn evicted_items(&self) -> usize {
        self.inner.evicted_items()
    }
    fn admit(
        &self,
        item: CacheEntryKey,
        size: usize,
        fresh_until: SystemTime,
    ) -> Vec<CacheEntryKey> {
        let evicted = self.inner.admit(item, size, fresh_until);
        self.forget(&evicted);
        evicted
    }
    fn increment_weight(
        &self,
        item: &CacheEntryKey,
        delta: usize,
        max_weight: Option<usize>,
    ) -> Vec<CacheEntryKey> {
        let evicted = self.inner.increment_weight(item, delta, max_weight);
        self.forget(&evicted);
        evicted
    }
    fn remove(&self, item: CacheEntryKeyRef<'_>) {
        self.inner.remove(item);
        lock(&self.index).forget(item.key());
    }
    fn access(&self, item: &CacheEntryKey, size: usize, fresh_until: SystemTime) -> bool {
        self.inner.access(item, size, fresh_until)
    }
    fn peek(&self, item: &CacheEntryKey) -> bool {
        self.inner.peek(item)
    }
    async fn save(&self, _dir_path: &str) -> pingora::Result<()> {
        Ok(())
    }
    async fn load(&self, _dir_path: &str) -> pingora::Result<()> {
        Ok(())
    }
}
