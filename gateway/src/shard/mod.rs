//! Shard-aware routing: a route may name a shard map instead of a cluster, and any route may
//! send a sticky share of its traffic to a canary cluster.
//!
//! - [`file`]: `[shard_map.<name>]` and the route's `shard_map`, `shard_key`, `read_split`,
//!   `canary` as written;
//! - [`validate()`]: pure checks — clusters named by shards and canaries (with a "did you
//!   mean"), range overlaps and gaps naming both lines, a catch-all only when written, the
//!   keys parsed by [`crate::key::KeySpec`] (the one request-key syntax);
//! - [`ShardMapSpec`], [`RouteShardSpec`], [`CanarySpec`]: the immutable specs in the snapshot;
//! - [`ShardMap`]: the compiled map (pins in a hash table, checked first; ranges sorted for a
//!   binary search; rendezvous hashing with per-shard seeds), built with every runtime from
//!   the clusters of that runtime, so a request resolves against one policy version;
//! - phase step: [`pick`] in `request_filter`, after auth and limits: the cluster for this
//!   request (shard, read replica or primary, canary), 400 for a missing or malformed key
//!   (naming its source), 404 `no_shard` for a key outside every range.
//!
//! Hashing is rendezvous (highest random weight): each shard scores `mix(hash(key) ^
//! seed(shard))` and the highest wins. A shard's score does not depend on the other shards,
//! so adding one moves only the keys it now wins (about 1/(N+1)) and removing one moves only
//! its own keys, whatever its position; spread is that of the hash, with no virtual nodes to
//! tune. The cost is O(N) integer mixes per request (the key is hashed once), a few
//! nanoseconds for the shard counts a map has.

pub mod file;
pub mod metrics;
mod validate;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::header::HeaderName;
use http::Method;
use prometheus::IntCounter;

pub use validate::{route_rules, validate, RouteTarget};

use crate::key::{self, KeyBuf, KeySpec};
use crate::reject::Reject;
use crate::state::BuildError;
use crate::upstream::Cluster;
/// Which way the canary sent a request (the record's `canary` column).
pub use edgeway_record::outcome::CanaryArm as Arm;
use edgeway_record::outcome::ErrorClass;

/// Every shard map of the policy.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ShardPolicy {
    pub maps: Vec<Arc<ShardMapSpec>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Range,
    Hash,
}

/// A validated `[shard_map.<name>]`.
#[derive(Debug, PartialEq, Eq)]
pub struct ShardMapSpec {
    pub name: Arc<str>,
    pub kind: Kind,
    pub shards: Vec<ShardSpec>,
    /// Sorted by `from`, contiguous (validated).
    pub ranges: Vec<RangeSpec>,
    /// Index into `shards`.
    pub catch_all: Option<usize>,
    /// Key → index into `shards`.
    pub pins: Vec<(String, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSpec {
    pub name: Arc<str>,
    pub primary: Arc<str>,
    pub replicas: Vec<Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeSpec {
    pub from: u64,
    pub to: u64,
    /// Index into the map's shards.
    pub shard: usize,
}

/// A route's shard rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteShardSpec {
    pub map: Arc<str>,
    pub key: KeySpec,
    /// GET and HEAD to replicas (default true).
    pub read_split: bool,
}

/// A route's canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanarySpec {
    pub cluster: Arc<str>,
    /// Share of the key space on the canary, in 1/10,000.
    pub per_10k: u32,
    pub key: KeySpec,
    pub force_header: Option<HeaderName>,
}

/// Resolved cluster of a shard.
pub struct Shard {
    pub name: Arc<str>,
    pub primary: Arc<Cluster>,
    pub replicas: Vec<Arc<Cluster>>,
    next: AtomicUsize,
}

/// Why a key has no shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Miss {
    /// A range map got a key that is not a decimal integer.
    Malformed,
    /// Outside every range and no catch-all.
    NoShard,
}

/// A compiled shard map.
pub struct ShardMap {
    pub spec: Arc<ShardMapSpec>,
    pub shards: Vec<Shard>,
    /// `ranges[i].from`, for the binary search.
    starts: Vec<u64>,
    pins: HashMap<Box<[u8]>, usize>,
    /// Rendezvous seed of each shard, from its name (so a shard keeps its keys when others
    /// come and go).
    seeds: Vec<u64>,
}

impl ShardMap {
    /// Compile `spec` against the clusters of the runtime being built.
    pub fn build(
        spec: &Arc<ShardMapSpec>,
        clusters: &HashMap<Arc<str>, Arc<Cluster>>,
    ) -> Result<ShardMap, BuildError> {
        let get = |name: &Arc<str>| {
            clusters.get(name).cloned().ok_or_else(|| BuildError {
                field: format!("shard_map.{}", spec.name),
                message: format!("cluster `{name}` was not built"),
            })
        };
        let mut shards = Vec::with_capacity(spec.shards.len());
        for s in &spec.shards {
            shards.push(Shard {
                name: Arc::clone(&s.name),
                primary: get(&s.primary)?,
                replicas: s.replicas.iter().map(get).collect::<Result<_, _>>()?,
                next: AtomicUsize::new(0),
            });
        }
        Ok(ShardMap {
            starts: spec.ranges.iter().map(|r| r.from).collect(),
            pins: spec
                .pins
                .iter()
                .map(|(k, i)| (k.as_bytes().into(), *i))
                .collect(),
            seeds: spec.shards.iter().map(|s| seed(&s.name)).collect(),
            shards,
            spec: Arc::clone(spec),
        })
    }

    /// The shard (index) of `key`: a pin, else the range or the rendezvous winner.
    pub fn lookup(&self, key: &[u8]) -> Result<usize, Miss> {
        if !self.pins.is_empty() {
            if let Some(i) = self.pins.get(key) {
                return Ok(*i);
            }
        }
        match self.spec.kind {
            Kind::Range => {
                let id = parse_id(key).ok_or(Miss::Malformed)?;
                let at = self.starts.partition_point(|&s| s <= id);
                at.checked_sub(1)
                    .and_then(|i| self.spec.ranges.get(i))
                    .filter(|r| id <= r.to)
                    .map(|r| r.shard)
                    .or(self.spec.catch_all)
                    .ok_or(Miss::NoShard)
            }
            Kind::Hash => Ok(rendezvous(hash(key), &self.seeds)),
        }
    }
}

/// The index of the highest `mix(h ^ seed)`; ties (never in practice) go to the first.
pub fn rendezvous(h: u64, seeds: &[u64]) -> usize {
    let mut best = 0;
    let mut best_score = 0;
    for (i, s) in seeds.iter().enumerate() {
        let score = mix(h ^ s);
        if i == 0 || score > best_score {
            best = i;
            best_score = score;
        }
    }
    best
}

/// A decimal id: ASCII digits only (no sign, no spaces), fitting in u64.
fn parse_id(key: &[u8]) -> Option<u64> {
    if key.is_empty() || key.len() > 20 || !key.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(key).ok()?.parse().ok()
}

/// FNV-1a 64: stable across processes, versions and machines (assignments must not move
/// when a gateway restarts or another instance answers), and finalised by [`mix`].
pub fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// The MurmurHash3 64-bit finaliser: every input bit flips about half the output bits.
pub fn mix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn seed(name: &str) -> u64 {
    hash(name.as_bytes())
}

/// A route's shard rule, compiled.
pub struct RouteShard {
    pub map: Arc<ShardMap>,
    pub key: KeySpec,
    pub read_split: bool,
    /// Requests by shard (index as in the map).
    requests: Vec<IntCounter>,
}

/// A route's canary, compiled.
pub struct RouteCanary {
    pub cluster: Arc<Cluster>,
    pub per_10k: u32,
    pub key: KeySpec,
    pub force_header: Option<HeaderName>,
    salt: u64,
    /// Requests by arm: stable, canary.
    arms: [IntCounter; 2],
}

impl RouteCanary {
    /// Whether a key with these bytes is on the canary: its bucket (0..10,000) is below the
    /// share, so raising the share only adds keys.
    pub fn is_canary_key(&self, key: &[u8]) -> bool {
        bucket(self.salt, key) < self.per_10k
    }
}

/// The key's bucket in 0..10,000 for a canary salted with `salt`.
pub fn bucket(salt: u64, key: &[u8]) -> u32 {
    (mix(hash(key) ^ salt) % 10_000) as u32
}

/// Compile a route's shard rule and canary. Called in `Runtime::build`.
pub fn plan(
    route: &str,
    shard: Option<&RouteShardSpec>,
    canary: Option<&CanarySpec>,
    maps: &HashMap<Arc<str>, Arc<ShardMap>>,
    clusters: &HashMap<Arc<str>, Arc<Cluster>>,
    metrics: &metrics::ShardMetrics,
) -> Result<(Option<RouteShard>, Option<RouteCanary>), BuildError> {
    let err = |message: String| BuildError {
        field: format!("route.{route}"),
        message,
    };
    let shard = match shard {
        Some(s) => {
            let map = maps
                .get(&s.map)
                .cloned()
                .ok_or_else(|| err(format!("shard map `{}` was not built", s.map)))?;
            let requests = map
                .shards
                .iter()
                .map(|sh| metrics.requests(route, &s.map, &sh.name))
                .collect();
            Some(RouteShard {
                map,
                key: s.key.clone(),
                read_split: s.read_split,
                requests,
            })
        }
        None => None,
    };
    let canary = match canary {
        Some(c) => Some(RouteCanary {
            cluster: clusters
                .get(&c.cluster)
                .cloned()
                .ok_or_else(|| err(format!("cluster `{}` was not built", c.cluster)))?,
            per_10k: c.per_10k,
            key: c.key.clone(),
            force_header: c.force_header.clone(),
            salt: seed(&c.cluster),
            arms: [
                metrics.canary(route, Arm::Stable),
                metrics.canary(route, Arm::Canary),
            ],
        }),
        None => None,
    };
    Ok((shard, canary))
}

/// What the shard step decided.
#[derive(Default)]
pub struct Picked {
    /// The cluster for this request (`None`: the route's own).
    pub cluster: Option<Arc<Cluster>>,
    pub shard: Option<Arc<str>>,
    pub arm: Option<Arm>,
}

/// `request_filter` step (after auth and limits): the shard of the request's key, its
/// replica or primary by method, then the canary arm. 400 when the shard key is missing or
/// malformed, 404 `no_shard` outside every range.
pub fn pick(
    shard: Option<&RouteShard>,
    canary: Option<&RouteCanary>,
    req: &key::Request<'_>,
    method: &Method,
) -> Result<Picked, Reject> {
    let mut out = Picked::default();
    let mut buf = KeyBuf::new();
    if let Some(rs) = shard {
        if !rs.key.write(req, &mut buf) {
            return Err(Reject::new(ErrorClass::BadRequest)
                .message(format!("missing shard key `{}`", rs.key)));
        }
        let i = match rs.map.lookup(buf.as_bytes()) {
            Ok(i) => i,
            Err(Miss::Malformed) => {
                return Err(Reject::new(ErrorClass::BadRequest).message(format!(
                    "malformed shard key `{}`: expected a decimal id",
                    rs.key
                )))
            }
            Err(Miss::NoShard) => {
                return Err(Reject::new(ErrorClass::NoShard)
                    .message(format!("no shard holds this `{}`", rs.key)))
            }
        };
        let Some(s) = rs.map.shards.get(i) else {
            return Err(Reject::new(ErrorClass::Internal));
        };
        if let Some(c) = rs.requests.get(i) {
            c.inc();
        }
        let read = *method == Method::GET || *method == Method::HEAD;
        let cluster = if read && rs.read_split {
            healthy_replica(s).unwrap_or(&s.primary)
        } else {
            &s.primary
        };
        out.cluster = Some(Arc::clone(cluster));
        out.shard = Some(Arc::clone(&s.name));
    }
    if let Some(c) = canary {
        let forced = c
            .force_header
            .as_ref()
            .and_then(|h| req.header.headers.get(h))
            .and_then(|v| match v.as_bytes() {
                b"canary" => Some(Arm::Canary),
                b"stable" => Some(Arm::Stable),
                _ => None,
            });
        let arm = forced.unwrap_or_else(|| {
            buf.clear();
            if c.per_10k > 0 && c.key.write(req, &mut buf) && c.is_canary_key(buf.as_bytes()) {
                Arm::Canary
            } else {
                Arm::Stable
            }
        });
        c.arms[(arm == Arm::Canary) as usize].inc();
        if arm == Arm::Canary {
            out.cluster = Some(Arc::clone(&c.cluster));
        }
        out.arm = Some(arm);
    }
    Ok(out)
}

/// The next replica (round-robin from this shard's counter) with a healthy endpoint.
fn healthy_replica(s: &Shard) -> Option<&Arc<Cluster>> {
    let n = s.replicas.len();
    if n == 0 {
        return None;
    }
    let start = s.next.fetch_add(1, Ordering::Relaxed);
    (0..n)
        .filter_map(|k| s.replicas.get((start + k) % n))
        .find(|c| c.has_healthy())
}

#[cfg(test)]
mod tests;
