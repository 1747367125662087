//! `[[route]]` as written in the policy files. The doc comments are the reference
//! documentation and end up in the generated JSON Schema.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// `[[route]]`: which requests go to which cluster.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Unique name; it labels metrics and access-log records.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Host names this route serves: exact (`api.example.com`) or wildcard (`*.example.com`,
    /// which matches any subdomain but not the bare domain). Empty means any host.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub hosts: Vec<Spanned<String>>,
    /// Path prefix, starting with `/`, matched against the canonical path (dot segments
    /// removed, slashes merged, unreserved escapes decoded). It matches on a segment boundary
    /// (`/api` matches `/api` and `/api/x`, not `/apix`) unless `prefix_match = "raw"`. The
    /// longest matching prefix wins; if its routes do not allow the method, the answer is 405
    /// with `Allow` (a shorter prefix is not tried). Default `/`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub path_prefix: Option<Spanned<String>>,
    /// Allowed methods (`GET`, `POST`, ...). Empty means any method.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub methods: Vec<Spanned<String>>,
    /// Name of the `[cluster.<name>]` that serves this route. Exactly one of `cluster` and
    /// `shard_map`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cluster: Option<Spanned<String>>,
    /// Name of the `[shard_map.<name>]` that picks this route's cluster per request, by
    /// `shard_key`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub shard_map: Option<Spanned<String>>,
    /// The key a shard is chosen by, as a limit's `key`: `header:x-user-id`, `path:2`,
    /// `query:user`, `claim:sub`... A request without it answers 400.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub shard_key: Option<Spanned<String>>,
    /// With `shard_map`: GET and HEAD go to the shard's healthy replicas (round-robin), other
    /// methods to its primary (default true). `false` sends everything to the primary.
    #[serde(default = "yes")]
    pub read_split: bool,
    /// Send a sticky share of this route's requests to a canary cluster:
    /// `canary = { cluster = "api-v2", percent = 5, key = "claim:sub", force_header = "x-canary" }`.
    #[serde(default)]
    #[schemars(with = "Option<crate::shard::file::CanaryFile>")]
    pub canary: Option<Spanned<crate::shard::file::CanaryFile>>,
    /// `segment` (default): the prefix ends at a `/` boundary. `raw`: plain string prefix.
    #[serde(default)]
    pub prefix_match: PrefixMatch,
    /// Which path the upstream receives: `normalized` (default; the canonical path the route
    /// matched) or `original` (the bytes the client sent, for upstreams that need them).
    #[serde(default)]
    pub forward_path: ForwardPath,
    /// Name of the `[auth.<name>]` rule that authenticates this route's requests. Default:
    /// none (the route is open; identity headers are still stripped).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub auth: Option<Spanned<String>>,
    /// Names of the `[limit.<name>]` that apply to this route, replacing `[rate_limits]
    /// default`; `[]` for none.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub limits: Option<Vec<Spanned<String>>>,
    /// Tokens a request on this route spends from each of its limits, times the limit's
    /// `cost` for the method (default 1): an upload route can cost 10 of a shared budget.
    #[serde(default)]
    #[schemars(with = "Option<i64>")]
    pub limit_cost: Option<Spanned<i64>>,
    /// Send the `RateLimit`, `RateLimit-Policy` and `X-RateLimit-*` headers (default true).
    #[serde(default = "yes")]
    pub rate_limit_headers: bool,
    /// Load-shedding priority: `critical` (shed only at `max_in_flight`), `normal`
    /// (default; at 80%), `bulk` (at 50%), or a number from 1 to 100 (percent).
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub priority: Option<Spanned<toml::Value>>,
    /// `[ip_list.<name>]`s allowed on this route (empty: everyone not denied).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub ip_allow: Vec<Spanned<String>>,
    /// `[ip_list.<name>]`s refused on this route (deny wins over allow).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub ip_deny: Vec<Spanned<String>>,
    /// Name of the `[cache.<name>]` policy that sets this route's cache headers (and
    /// micro-cache). Default: none (the origin's cache headers pass through untouched).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cache: Option<Spanned<String>>,
    /// Deadline of the upstream exchange for this route, every retry included, e.g. `2s`,
    /// for a route that needs less than its cluster's `request_timeout`
    /// (`[resilience.<cluster>]`). Expiry answers 504. Default: the cluster's.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// `true`: this route's upstream makes PUT and DELETE idempotent, so they are retried
    /// like GET under the cluster's `[resilience.<cluster>.retry]` settings (never when a
    /// body byte may have gone upstream). Default `false`: PUT and DELETE are sent once.
    #[serde(default)]
    pub retry_idempotent_writes: bool,
}

fn yes() -> bool {
    true
}

/// How `path_prefix` matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PrefixMatch {
    #[default]
    Segment,
    Raw,
}

/// Which path is forwarded upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ForwardPath {
    #[default]
    Normalized,
    Original,
}
