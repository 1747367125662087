//! `[cache.<name>]` as written in the policy files. The doc comments are the reference
//! documentation and end up in the generated JSON Schema.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// `[cache.<name>]`: the cache headers a route's responses get, and optionally an edge
/// micro-cache. A route names one with `cache = "<name>"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CachePolicyFile {
    /// `Cache-Control` for every cache (browsers and the CDN), written as the header:
    /// `"public, max-age=60, stale-while-revalidate=30"`. Directives: `public`, `private`,
    /// `no-store`, `no-cache`, `max-age`, `s-maxage`, `stale-while-revalidate`,
    /// `stale-if-error`, `immutable`, `must-revalidate`, `proxy-revalidate`, `no-transform`.
    /// Lifetimes are seconds or durations (`10m`, `1d`, `365d`); they are sent in seconds.
    /// Default: none (the origin's header, if any, is what is sent).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cache_control: Option<Spanned<String>>,
    /// `CDN-Cache-Control` (RFC 9213): read by the CDN only, so the CDN and browsers can keep
    /// different lifetimes. Same syntax as `cache_control`. Default: none.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cdn_cache_control: Option<Spanned<String>>,
    /// Also send `cdn_cache_control` under a CDN's own header name, e.g.
    /// `Cloudflare-CDN-Cache-Control` or `Surrogate-Control`. Default: none.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cdn_header: Option<Spanned<String>>,
    /// What to do with the origin's own `Cache-Control` / `CDN-Cache-Control`: `override`
    /// (send the policy's), `keep` (send the origin's when it sent one, else the policy's) or
    /// `stricter` (default: per directive the stricter of the two: the shorter lifetime,
    /// `private` over `public`, `no-store` over everything).
    #[serde(default)]
    pub origin: OriginMode,
    /// Request header names added to `Vary` (merged with the origin's `Vary`). For a
    /// micro-cache they are also part of the cache key.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub vary: Vec<Spanned<String>>,
    /// Response statuses the top-level directives apply to. Other statuses (unless a `rule`
    /// matches them) get `Cache-Control: no-store` and no CDN headers, so a 5xx is never
    /// cached by default. Default: `[200, 203, 204, 300, 301, 308, 404, 410]`.
    #[serde(default)]
    #[schemars(with = "Option<Vec<u16>>")]
    pub statuses: Option<Spanned<Vec<Spanned<u16>>>>,
    /// Request cookies that are credentials (a session cookie): a request carrying one is
    /// treated like one with `Authorization`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub credential_cookies: Vec<Spanned<String>>,
    /// What responses to requests with credentials (and responses setting a cookie) may be:
    /// `private` (default: `public` becomes `private`, `s-maxage`, `proxy-revalidate` and
    /// the CDN headers are dropped, `Vary: Authorization` is added when the credential was
    /// an `Authorization` header or the route has an auth rule) or `public` (sent as for any
    /// other request; `gateway check` warns, as the CDN may then serve one user's response
    /// to another).
    #[serde(default)]
    #[schemars(with = "Option<AuthenticatedMode>")]
    pub authenticated: Option<Spanned<AuthenticatedMode>>,
    /// Cache tags for purging at the CDN by tag.
    #[serde(default)]
    #[schemars(with = "Option<TagsFile>")]
    pub tags: Option<Spanned<TagsFile>>,
    /// Rules matched against the response, in order; the first that matches replaces the
    /// top-level `cache_control` and `cdn_cache_control`.
    #[serde(default, rename = "rule")]
    #[schemars(with = "Vec<RuleFile>")]
    pub rules: Vec<Spanned<RuleFile>>,
    /// An edge micro-cache in the gateway's memory for this policy's routes. Default: none.
    #[serde(default)]
    #[schemars(with = "Option<MicroCacheFile>")]
    pub micro_cache: Option<Spanned<MicroCacheFile>>,
}

/// How the origin's own cache headers are treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OriginMode {
    Keep,
    Override,
    #[default]
    Stricter,
}

/// What responses to credentialed requests may be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthenticatedMode {
    #[default]
    Private,
    Public,
}

/// `[cache.<name>.tags]`: `Surrogate-Key` / `Cache-Tag` values.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagsFile {
    /// Headers to send the tags in: `Surrogate-Key` (space-separated; Fastly, and the
    /// micro-cache's purge index) and/or `Cache-Tag` (comma-separated; Cloudflare, Akamai).
    /// Default `["Surrogate-Key"]`.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub headers: Option<Vec<Spanned<String>>>,
    /// Add the route name as a tag. Default `true`.
    #[serde(default = "yes")]
    pub route: bool,
    /// Add one tag per leading path segment, up to this many: with 2, `/shop/42/reviews`
    /// gets `/shop` and `/shop/42`. Default 0.
    #[serde(default)]
    pub path_segments: u8,
    /// Fixed tags added to every response.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub fixed: Vec<Spanned<String>>,
}

fn yes() -> bool {
    true
}

/// `[[cache.<name>.rule]]`: directives for responses matching all of the given conditions.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Statuses this rule matches. Default: the policy's `statuses`.
    #[serde(default)]
    #[schemars(with = "Option<Vec<u16>>")]
    pub statuses: Option<Spanned<Vec<Spanned<u16>>>>,
    /// Path patterns (canonical request path) this rule matches: `*` matches within one
    /// segment, `**` across segments: `/static/*.js`, `/assets/**`. Default: any path.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub paths: Vec<Spanned<String>>,
    /// Response media types this rule matches (`image/png`, or `image/*`; parameters such as
    /// `charset` are ignored). Default: any.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub content_types: Vec<Spanned<String>>,
    /// `Cache-Control` for matching responses (syntax as the policy's).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cache_control: Option<Spanned<String>>,
    /// `CDN-Cache-Control` for matching responses.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cdn_cache_control: Option<Spanned<String>>,
}

/// `[cache.<name>.micro_cache]`: keep responses in the gateway's memory for a short time,
/// so a hot key costs the origin one request per `ttl`, and concurrent misses on one key
/// make one origin request (the others wait for it).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MicroCacheFile {
    /// Memory bound of this policy's cache in bytes (an integer, or `"64MiB"`, `"512KiB"`,
    /// `"1GB"`); least recently used entries are evicted beyond it. Required.
    #[serde(default)]
    #[schemars(with = "Option<ByteSizeFile>")]
    pub max_bytes: Option<Spanned<ByteSizeFile>>,
    /// Largest response stored, in bytes. Default: an eighth of `max_bytes`.
    #[serde(default)]
    #[schemars(with = "Option<ByteSizeFile>")]
    pub max_object_bytes: Option<Spanned<ByteSizeFile>>,
    /// How long an entry is fresh. Default `1s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ttl: Option<Spanned<String>>,
    /// After `ttl`, how long the stale entry is still served while one background request
    /// refreshes it. Default: none.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub stale_while_revalidate: Option<Spanned<String>>,
    /// After `ttl`, how long the stale entry is served when the origin fails (connection
    /// error, timeout, 5xx, or its breaker is open). Default: none.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub stale_if_error: Option<Spanned<String>>,
    /// How long requests wait for the one request filling a missing key before they go to
    /// the origin themselves. Default `3s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub lock_timeout: Option<Spanned<String>>,
    /// Query parameters that are part of the cache key (others are ignored by the key, not
    /// removed from the request). Default: none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub query_params: Vec<Spanned<String>>,
    /// Requests with credentials bypass the micro-cache, unless this is `true` and the route
    /// has an auth rule: then each verified subject gets its own entries (the key includes
    /// issuer and subject). Default `false`.
    #[serde(default)]
    pub per_subject: bool,
}

/// A byte size: an integer or a string with a unit (`B`, `KB`, `KiB`, `MB`, `MiB`, `GB`,
/// `GiB`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ByteSizeFile {
    Bytes(i64),
    Text(String),
}
