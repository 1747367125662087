//! `[issuer.<name>]`, `[auth.<name>]` and `[revocation]` as written in the policy files. The doc
//! comments are the reference documentation and end up in the generated JSON Schema.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// `[issuer.<name>]`: a token issuer the gateway trusts, and how to verify its tokens.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerFile {
    /// The exact `iss` claim of its tokens, e.g. `https://id.example.com/`.
    #[schemars(with = "String")]
    pub iss: Spanned<String>,
    /// Accepted `aud` values; a token must name at least one of them. At least one entry.
    #[schemars(with = "Vec<String>")]
    pub audiences: Spanned<Vec<String>>,
    /// Allowed signing algorithms: `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`,
    /// `ES256`, `ES384`, `EdDSA`, and `HS256`/`HS384`/`HS512` (only with `secret_file` or
    /// `secret_env`). A token signed with any other algorithm (or `none`) is rejected.
    #[schemars(with = "Vec<String>")]
    pub algorithms: Spanned<Vec<Spanned<String>>>,
    /// Public keys as a JWKS file, relative to the policy directory; re-read on every
    /// policy reload.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub jwks_file: Option<Spanned<String>>,
    /// Public keys fetched from an `https://` JWKS URL, in the background at start and then
    /// every `jwks_refresh` (or the response's `Cache-Control: max-age`, kept between
    /// `jwks_refresh_min` and `jwks_refresh_max`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub jwks_url: Option<Spanned<String>>,
    /// PEM file of CA certificates for the JWKS URL, relative to the policy directory.
    /// Default: the system roots.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub jwks_ca_file: Option<Spanned<String>>,
    /// Refresh interval of a JWKS URL when the response gives no `max-age`. Default `10m`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub jwks_refresh: Option<Spanned<String>>,
    /// Lower bound of the refresh interval taken from `max-age`. Default `1m`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub jwks_refresh_min: Option<Spanned<String>>,
    /// Upper bound of the refresh interval taken from `max-age`. Default `24h`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub jwks_refresh_max: Option<Spanned<String>>,
    /// A token whose `kid` is unknown triggers one immediate refetch of the JWKS URL, at most
    /// once per this interval, so a key rotation causes no 401s and a flood of random `kid`s
    /// no fetch storm. Default `10s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub jwks_refetch_interval: Option<Spanned<String>>,
    /// File holding the HMAC secret (raw bytes, trailing newline ignored), relative to the
    /// policy directory, for `HS*` algorithms.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub secret_file: Option<Spanned<String>>,
    /// Environment variable holding the HMAC secret, for `HS*` algorithms.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub secret_env: Option<Spanned<String>>,
    /// Not allowed: secrets are never written in policy files (use `secret_file` or
    /// `secret_env`). Listed only so that the error can say so.
    #[serde(default)]
    #[schemars(skip)]
    pub secret: Option<Spanned<toml::Value>>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`. Default `30s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub leeway: Option<Spanned<String>>,
    /// Longest accepted token lifetime (`exp - iat`, or `exp - now` without `iat`), e.g.
    /// `24h`. Default: no limit.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_lifetime: Option<Spanned<String>>,
    /// Claims a token must carry besides `exp` (always required), e.g. `["sub", "jti"]`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub required_claims: Vec<Spanned<String>>,
    /// Where the token is read from. Default: `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token: Option<TokenSourceFile>,
    /// Largest accepted token, in bytes, checked before any decoding. Default 8192.
    #[serde(default)]
    #[schemars(with = "Option<usize>")]
    pub max_token_bytes: Option<Spanned<usize>>,
    /// Keep verified tokens in the gateway's cache (until their `exp`), so a repeated token
    /// costs a lookup instead of a signature check. Default `true`.
    #[serde(default)]
    pub cache_tokens: Option<bool>,
}

/// `token = { header = "x-api-token" }`, `{ cookie = "session" }` or `{ query = "access_token" }`:
/// exactly one key.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSourceFile {
    /// A request header holding the bare token (or `Bearer <token>`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub header: Option<Spanned<String>>,
    /// A cookie holding the token.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cookie: Option<Spanned<String>>,
    /// A query parameter holding the token (it is never recorded: the access log keeps only
    /// allow-listed parameters).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub query: Option<Spanned<String>>,
}

/// `[auth.<name>]`: an authentication rule that routes refer to with `auth = "<name>"`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthRuleFile {
    /// `required` (default): no valid token, no entry (401). `optional`: a token, when
    /// present, must be valid; without one the request goes on anonymously.
    #[serde(default)]
    pub mode: AuthMode,
    /// The `[issuer.<name>]`s whose tokens this rule accepts. At least one.
    #[schemars(with = "Vec<String>")]
    pub issuers: Spanned<Vec<Spanned<String>>>,
    /// Scopes the token must carry, from its `scope` (space-separated string) or `scp`
    /// (array) claim. Missing scopes answer 403 `insufficient_scope`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub scopes: Vec<Spanned<String>>,
    /// `all` (default): every scope in `scopes` is needed; `any`: one is enough.
    #[serde(default)]
    pub scopes_match: ScopesMatch,
    /// Required claim values: `{ tenant = ["acme", "globex"], email_verified = true }`. The
    /// claim (dotted names walk into objects) must equal the value or one of the list; an
    /// array claim matches when any element does. Otherwise 403.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub claims: BTreeMap<String, Spanned<toml::Value>>,
    /// Claims copied to upstream request headers: `{ sub = "x-user-id" }`. Every header
    /// named here, in any rule, is removed from every client request on every route first, so
    /// a client can never set it itself.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub forward_claims: BTreeMap<String, Spanned<String>>,
    /// Pass the client's `Authorization` header to the upstream. Default `false`: it is
    /// removed, so upstreams never see (or log) the token.
    #[serde(default)]
    pub forward_authorization: bool,
    /// `realm` of the `WWW-Authenticate` challenge. Default `edgeway`.
    #[serde(default)]
    pub realm: Option<String>,
}

/// How a rule treats requests without a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Required,
    Optional,
}

/// How `scopes` combine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScopesMatch {
    #[default]
    All,
    Any,
}

/// `[revocation]`: tokens and subjects refused even when their signature is valid. At most
/// one file may set it. Checked on every request, verified-token cache hit or not.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevocationFile {
    /// Revoked token ids (`jti` claim).
    #[serde(default)]
    pub jti: Vec<String>,
    /// Revoked subjects (`sub` claim): every token of theirs.
    #[serde(default)]
    pub sub: Vec<String>,
    /// Fleet-wide deny-list in Redis, e.g. `redis://10.0.0.5:6379/0`: the sets
    /// `<redis_key>:jti` and `<redis_key>:sub`. A local copy is refreshed in the background;
    /// requests never wait on Redis.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub redis_url: Option<Spanned<String>>,
    /// Key prefix of the Redis sets. Default `edgeway:revoked`.
    #[serde(default)]
    pub redis_key: Option<String>,
    /// How often the local copy is refreshed from Redis. Default `1s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub refresh: Option<Spanned<String>>,
    /// While Redis is unreachable: `keep_last` (default) keeps using the last copy;
    /// `fail_closed` refuses authenticated requests (503) once the copy is older than
    /// `max_stale`.
    #[serde(default)]
    pub on_redis_error: OnRedisError,
    /// How old the copy may get under `fail_closed`. Default `10s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_stale: Option<Spanned<String>>,
}

/// What revocation does while Redis is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnRedisError {
    #[default]
    KeepLast,
    FailClosed,
}

/// Relative paths of the files an auth section refers to, for
/// [`crate::policy::attach::Attachments`].
pub fn referenced_files(f: &crate::policy::file::PolicyFile) -> Vec<&str> {
    f.issuers
        .values()
        .flat_map(|i| {
            let i = i.get_ref();
            [&i.jwks_file, &i.jwks_ca_file, &i.secret_file]
        })
        .filter_map(|p| p.as_ref().map(|s| s.get_ref().as_str()))
        .collect()
}
