//! The shard sections as written in the policy files: `[shard_map.<name>]` and the fields a
//! `[[route]]` uses to name one (`shard_map`, `shard_key`, `read_split`) or to send a share
//! of its traffic to a canary (`canary`). The doc comments are the reference documentation
//! and end up in the generated JSON Schema; `policies/shards.toml` shows every option.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// `[shard_map.<name>]`: which shard serves a key. A pinned key (`pin`) wins; otherwise
/// `kind = "range"` looks the integer key up in `range`, and `kind = "hash"` spreads string
/// keys over every shard by rendezvous hashing.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShardMapFile {
    /// `range` (integer keys, `[[shard_map.<name>.range]]`) or `hash` (any key, consistent
    /// hashing over every shard of the map).
    #[schemars(with = "String")]
    pub kind: Spanned<String>,
    /// The shards, by name: `[shard_map.<name>.shards.<shard>] primary = "<cluster>"`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ShardFile>")]
    pub shards: BTreeMap<String, Spanned<ShardFile>>,
    /// Range maps: `[[shard_map.<name>.range]] from = 0, to = 999999, shard = "a"`. Ranges are
    /// inclusive; they may be written in any order but must neither overlap nor leave a gap.
    #[serde(default)]
    #[schemars(with = "Vec<RangeFile>")]
    pub range: Vec<Spanned<RangeFile>>,
    /// Range maps: the shard of a key below, above or between no range. Without it such a
    /// key answers 404 `no_shard`: nothing is routed by default unless written here.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub catch_all: Option<Spanned<String>>,
    /// Explicit keys pinned to a shard (`"tenant-42" = "b"`), checked before ranges or
    /// hashing. The key is compared as the request sends it.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub pin: BTreeMap<String, Spanned<String>>,
}

/// One shard: a primary cluster and optional read replicas.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShardFile {
    /// The `[cluster.<name>]` that takes writes (and reads when no replica is healthy).
    #[schemars(with = "String")]
    pub primary: Spanned<String>,
    /// `[cluster.<name>]`s that serve GET and HEAD, round-robin across the healthy ones.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub replicas: Vec<Spanned<String>>,
}

/// One inclusive range of integer keys.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeFile {
    /// First key of the range (0 or more).
    #[schemars(with = "i64")]
    pub from: Spanned<i64>,
    /// Last key of the range, included.
    #[schemars(with = "i64")]
    pub to: Spanned<i64>,
    /// The shard (a key of `shards`).
    #[schemars(with = "String")]
    pub shard: Spanned<String>,
}

/// `canary = { cluster = "api-v2", percent = 5, key = "claim:sub" }` on a `[[route]]`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryFile {
    /// The `[cluster.<name>]` that serves the canary share.
    #[schemars(with = "String")]
    pub cluster: Spanned<String>,
    /// Share of keys sent to the canary, 0 to 100 (two decimals count: `0.25`). Raising it
    /// keeps every key already on the canary there.
    #[schemars(with = "f64")]
    pub percent: Spanned<toml::Value>,
    /// What makes the assignment sticky: `claim:sub`, `ip`, `header:x-user-id`... (as a
    /// limit's `key`). A request without the key goes to the stable arm.
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// A request header that forces the arm: `canary` or `stable` (any other value is
    /// ignored). For testing; anyone can send it, so leave it out where that matters.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub force_header: Option<Spanned<String>>,
}
