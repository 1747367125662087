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
    /// Name of the `[cluster.<name>]` that serves this route.
    #[schemars(with = "String")]
    pub cluster: Spanned<String>,
    /// `segment` (default): the prefix ends at a `/` boundary. `raw`: plain string prefix.
    #[serde(default)]
    pub prefix_match: PrefixMatch,
    /// Which path the upstream receives: `normalized` (default; the canonical path the route
    /// matched) or `original` (the bytes the client sent, for upstreams that need them).
    #[serde(default)]
    pub forward_path: ForwardPath,
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
