//! The protection sections as written in the policy files: `[limit.<name>]`,
//! `[rate_limits]`, `[ip_list.<name>]`, `[ip_access]`, `[load_shedding]`, and the fields a
//! `[[route]]` uses to pick them. The doc comments are the reference documentation and end
//! up in the generated JSON Schema; `policies/limits.toml` shows every option.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// `[limit.<name>]`: one token bucket (GCRA) per key. A request spends `cost` tokens; the
/// bucket holds at most `burst` and refills `rate` tokens every `per`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitFile {
    /// What a bucket belongs to: `ip`, `ip/24` (IPv4 /24, IPv6 /64), `ip/24/48`,
    /// `header:<name>`, `cookie:<name>`, `query:<name>`, `path:<n>` (the n-th path segment,
    /// from 1), `claim:<name>` (of the verified token), `route`, or several joined with `+`
    /// (`claim:sub + route`). A request without the key (no such header, no token) is not
    /// counted by this limit.
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// Tokens added every `per`. A positive integer.
    #[schemars(with = "i64")]
    pub rate: Spanned<i64>,
    /// The refill period: `1s` (default), `1m`, `1h`...
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub per: Option<Spanned<String>>,
    /// The most tokens a bucket holds: how many requests may arrive at once. Default: `rate`.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub burst: Option<Spanned<i64>>,
    /// Tokens one request spends, by method (`POST = 5`); methods not listed spend 1.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, i64>")]
    pub cost: BTreeMap<String, Spanned<i64>>,
    /// `enforce` (default): over the limit is 429. `shadow`: over the limit is let through,
    /// recorded as `shadow` and counted, to try a limit on real traffic first.
    #[serde(default)]
    pub mode: Mode,
    /// `local` (default): each gateway instance counts on its own. `cluster`: every instance
    /// shares one bucket per key in Redis (`[rate_limits] redis_url`).
    #[serde(default)]
    pub scope: Scope,
    /// The tier key: its value picks a row of `tiers` (`claim:plan`, `header:x-plan`). A
    /// request whose value is not in `tiers`, or that has none, gets `rate`/`burst`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub tier: Option<Spanned<String>>,
    /// Rates by tier value: `[limit.<name>.tiers.pro] rate = 100`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, TierFile>")]
    pub tiers: BTreeMap<String, Spanned<TierFile>>,
    /// Cluster scope: tokens taken from Redis at a time and spent locally (a lease), so that
    /// most requests do not wait on Redis. Larger leases save round trips and cost accuracy
    /// (up to `lease` tokens per instance may go unused). Default: `burst / 10`, at least 1.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub lease: Option<Spanned<i64>>,
    /// Most keys held in memory (local scope) before idle ones are swept at once; idle keys
    /// are also swept every few seconds. Default 1,000,000.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub max_keys: Option<Spanned<i64>>,
}

/// One tier's rate.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TierFile {
    #[schemars(with = "i64")]
    pub rate: Spanned<i64>,
    /// Default: the limit's `per`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub per: Option<Spanned<String>>,
    /// Default: this tier's `rate`.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub burst: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Local,
    Cluster,
}

/// `[rate_limits]`: settings shared by every limit. At most one file may set this.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsFile {
    /// Limits for routes that do not list their own `limits`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub default: Vec<Spanned<String>>,
    /// Redis for `scope = "cluster"` limits: `redis://[:password@]host:port/[db]` (AUTH with
    /// user and password: `redis://user:password@host/`); `rediss://` for TLS.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub redis_url: Option<Spanned<String>>,
    /// `redis_url` is one node of a Redis Cluster (or ElastiCache's configuration endpoint
    /// with cluster mode enabled): the other nodes and the slot map are read from it, and
    /// each bucket goes to the node that owns its slot. Default false.
    #[serde(default)]
    pub redis_cluster: bool,
    /// PEM file of the CA certificates that sign the Redis server's certificate, for a
    /// `rediss://` URL (relative to the policy directory). Default: the system's roots.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub redis_ca_file: Option<Spanned<String>>,
    /// The longest a request waits for Redis before deciding without it. Default `5ms`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub redis_budget: Option<Spanned<String>>,
    /// What cluster limits do while Redis is unreachable: `local` (default; each instance
    /// enforces the cluster rate divided by `instances`), `allow` (let everything through)
    /// or `deny` (429 everything).
    #[serde(default)]
    pub on_redis_down: OnRedisDown,
    /// How many gateway instances share the cluster limits (for the `local` fallback).
    /// Default 1.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub instances: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisDown {
    #[default]
    Local,
    Allow,
    Deny,
}

/// `[ip_list.<name>]`: a named set of IPv4/IPv6 addresses and CIDR blocks, inline and from
/// files (one per line, `#` comments), for `[ip_access]` and routes' `ip_allow`/`ip_deny`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpListFile {
    /// Addresses or blocks: `203.0.113.0/24`, `2001:db8::/32`, `198.51.100.7`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub cidrs: Vec<Spanned<String>>,
    /// Files of one address or block per line, relative to the policy directory. Blank
    /// lines and `#` comments are ignored. Read again on every reload.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub files: Vec<Spanned<String>>,
}

/// `[ip_access]`: lists checked for every request, before routing. At most one file may set
/// this. Deny wins: an address in any deny list is refused (403) even if an allow list holds
/// it; when allow lists are given, an address in none of them is refused too.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpAccessFile {
    /// Names of `[ip_list.<name>]` whose addresses may connect (empty: everyone).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allow: Vec<Spanned<String>>,
    /// Names of `[ip_list.<name>]` whose addresses are refused.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub deny: Vec<Spanned<String>>,
}

/// `[load_shedding]`: a cap on requests in flight. At most one file may set this. A route
/// with priority `p` (percent) is shed (503 `overloaded`, `Retry-After`) once `p`% of
/// `max_in_flight` requests are in flight, so the lowest priority is shed first.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadSheddingFile {
    /// Requests in flight (through the proxy listeners) at which even `critical` routes are
    /// shed.
    #[schemars(with = "i64")]
    pub max_in_flight: Spanned<i64>,
    /// `Retry-After` on a shed response. Default `1s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub retry_after: Option<Spanned<String>>,
}
