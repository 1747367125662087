//! The verified-token cache: a repeated token costs a SHA-256 and a map lookup instead of a
//! signature check.
//!
//! Keyed by the SHA-256 of the token (a collision-resistant hash: a forged token cannot land
//! on a cached entry), bounded in entries (LRU per shard), and an entry never outlives its
//! token's `exp` (plus the issuer's leeway). An entry remembers the issuer runtime that
//! verified it: after a reload that changed the issuer (keys, audiences, algorithms), its
//! entries no longer match and tokens are verified afresh. Revocation and the route's rules
//! are checked on every request, hit or miss.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use sha2::{Digest, Sha256};

use super::identity::Identity;

const SHARDS: usize = 16;

/// A token's cache key.
pub type TokenHash = [u8; 32];

pub fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[derive(Clone)]
pub struct Entry {
    /// Generation of the issuer runtime that verified it (unique per build, never reused).
    pub issuer_id: u64,
    /// Valid until (ms since the epoch): `exp` plus leeway.
    pub until_ms: i64,
    pub identity: Arc<Identity>,
}

pub struct TokenCache {
    shards: Vec<Mutex<LruCache<TokenHash, Entry>>>,
}

impl TokenCache {
    /// A cache of about `capacity` entries (at least one per shard).
    pub fn new(capacity: usize) -> TokenCache {
        let per_shard =
            NonZeroUsize::new(capacity.div_ceil(SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        TokenCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per_shard)))
                .collect(),
        }
    }

    fn shard(&self, key: &TokenHash) -> &Mutex<LruCache<TokenHash, Entry>> {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// The entry for `key` if it is still valid at `now_ms`; an expired one is dropped.
    pub fn get(&self, key: &TokenHash, now_ms: i64) -> Option<Entry> {
        let mut shard = self.shard(key).lock().ok()?;
        match shard.get(key) {
            Some(e) if e.until_ms >= now_ms => Some(e.clone()),
            Some(_) => {
                shard.pop(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: TokenHash, entry: Entry) {
        if let Ok(mut shard) = self.shard(&key).lock() {
            shard.put(key, entry);
        }
    }

    /// Drop every entry a given issuer runtime verified (its keys changed).
    pub fn forget_issuer(&self, issuer_id: u64) {
        for shard in &self.shards {
            if let Ok(mut s) = shard.lock() {
                let stale: Vec<TokenHash> = s
                    .iter()
                    .filter(|(_, e)| e.issuer_id == issuer_id)
                    .map(|(k, _)| *k)
                    .collect();
                for k in stale {
                    s.pop(&k);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.len()).unwrap_or(0))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(issuer_id: u64, until_ms: i64) -> Entry {
        Entry {
            issuer_id,
            until_ms,
            identity: Arc::new(Identity {
                issuer: "i".into(),
                subject: None,
                claims: Default::default(),
            }),
        }
    }

    #[test]
    fn entries_expire_with_the_token_and_capacity_is_bounded() {
        let c = TokenCache::new(32);
        let k = hash("a.b.c");
        c.insert(k, entry(1, 1_000));
        assert!(c.get(&k, 999).is_some());
        assert!(c.get(&k, 1_000).is_some());
        assert!(c.get(&k, 1_001).is_none());
        assert!(c.get(&k, 0).is_none(), "an expired entry is dropped");
        for i in 0..10_000 {
            c.insert(hash(&format!("t{i}")), entry(1, i64::MAX));
        }
        assert!(c.len() <= 32, "bounded: {}", c.len());
    }

    #[test]
    fn forgetting_an_issuer_keeps_the_others() {
        let c = TokenCache::new(64);
        c.insert(hash("x"), entry(1, i64::MAX));
        c.insert(hash("y"), entry(2, i64::MAX));
        c.forget_issuer(1);
        assert!(c.get(&hash("x"), 0).is_none());
        assert!(c.get(&hash("y"), 0).is_some());
    }
}
