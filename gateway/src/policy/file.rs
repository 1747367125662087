//! The on-disk policy schema: what security teams write in `policies/*.toml`.
//!
//! [`PolicyFile`] is the table of contents: one field per section, whose type lives in the
//! capability module that owns it (`route::file`, `upstream::file`, `forwarding`,
//! `access_log::policy`). The types mirror the files exactly (serde, `deny_unknown_fields`,
//! spans kept for every value that later validation may complain about). Nothing here is used
//! on the request path: [`super::validate`] turns a set of these into an immutable
//! [`super::Snapshot`]. The doc comments are the reference documentation and end up in the
//! generated JSON Schema.
//!
//! (The sections are listed here rather than `#[serde(flatten)]`ed in: serde cannot combine
//! `flatten` with `deny_unknown_fields`, and unknown keys must stay errors.)

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::access_log::policy::AccessLogFile;
use crate::auth::file::{AuthRuleFile, IssuerFile, RevocationFile};
use crate::cache::file::CachePolicyFile;
use crate::forwarding::ForwardingFile;
use crate::limit::file::{IpAccessFile, IpListFile, LimitFile, LoadSheddingFile, RateLimitsFile};
use crate::resilience::file::ResilienceFile;
use crate::route::file::RouteFile;
use crate::shard::file::ShardMapFile;
use crate::upstream::file::ClusterFile;

/// One policy file. A policy directory is the union of all its `*.toml` files; any file may
/// hold any section, and a name defined twice (in one file or across files) is an error.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// How client-supplied forwarding headers are treated. At most one file may set this.
    #[serde(default)]
    #[schemars(with = "Option<ForwardingFile>")]
    pub forwarding: Option<Spanned<ForwardingFile>>,

    /// What access-log records keep. At most one file may set this.
    #[serde(default)]
    #[schemars(with = "Option<AccessLogFile>")]
    pub access_log: Option<Spanned<AccessLogFile>>,

    /// Upstream clusters, keyed by name: `[cluster.<name>]`.
    #[serde(default, rename = "cluster")]
    #[schemars(with = "BTreeMap<String, ClusterFile>")]
    pub clusters: BTreeMap<String, Spanned<ClusterFile>>,

    /// Routes: `[[route]]`. A request picks the most specific host group (exact host, then the
    /// longest `*.` wildcard, then routes without `hosts`), then the longest matching
    /// `path_prefix` whose `methods` allow the request method.
    #[serde(default, rename = "route")]
    #[schemars(with = "Vec<RouteFile>")]
    pub routes: Vec<Spanned<RouteFile>>,

    /// Token issuers, keyed by name: `[issuer.<name>]`.
    #[serde(default, rename = "issuer")]
    #[schemars(with = "BTreeMap<String, IssuerFile>")]
    pub issuers: BTreeMap<String, Spanned<IssuerFile>>,

    /// Authentication rules, keyed by name: `[auth.<name>]`; a route names one with `auth`.
    #[serde(default, rename = "auth")]
    #[schemars(with = "BTreeMap<String, AuthRuleFile>")]
    pub auth_rules: BTreeMap<String, Spanned<AuthRuleFile>>,

    /// Cache header policies (and optional micro-caches), keyed by name: `[cache.<name>]`; a
    /// route names one with `cache`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, CachePolicyFile>")]
    pub cache: BTreeMap<String, Spanned<CachePolicyFile>>,

    /// Revoked tokens and subjects (file and Redis). At most one file may set this.
    #[serde(default)]
    #[schemars(with = "Option<RevocationFile>")]
    pub revocation: Option<Spanned<RevocationFile>>,
    /// Rate limits, keyed by name: `[limit.<name>]`. Routes pick them with `limits`.
    #[serde(default, rename = "limit")]
    #[schemars(with = "BTreeMap<String, LimitFile>")]
    pub limits: BTreeMap<String, Spanned<LimitFile>>,

    /// Settings shared by every rate limit (default set, Redis). At most one file may set it.
    #[serde(default)]
    #[schemars(with = "Option<RateLimitsFile>")]
    pub rate_limits: Option<Spanned<RateLimitsFile>>,

    /// Named IP address lists: `[ip_list.<name>]`.
    #[serde(default, rename = "ip_list")]
    #[schemars(with = "BTreeMap<String, IpListFile>")]
    pub ip_lists: BTreeMap<String, Spanned<IpListFile>>,

    /// IP lists checked for every request, before routing. At most one file may set it.
    #[serde(default)]
    #[schemars(with = "Option<IpAccessFile>")]
    pub ip_access: Option<Spanned<IpAccessFile>>,

    /// A cap on requests in flight, shed by route priority. At most one file may set it.
    #[serde(default)]
    #[schemars(with = "Option<LoadSheddingFile>")]
    pub load_shedding: Option<Spanned<LoadSheddingFile>>,
    /// Circuit breaker, outlier ejection, bulkhead and retries of a cluster, keyed by the
    /// cluster's name: `[resilience.<cluster>]`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ResilienceFile>")]
    pub resilience: BTreeMap<Spanned<String>, ResilienceFile>,

    /// Shard maps, keyed by name: `[shard_map.<name>]`; a route names one with `shard_map`.
    #[serde(default, rename = "shard_map")]
    #[schemars(with = "BTreeMap<String, ShardMapFile>")]
    pub shard_maps: BTreeMap<String, Spanned<ShardMapFile>>,
}
