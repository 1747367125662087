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
use crate::forwarding::ForwardingFile;
use crate::resilience::file::ResilienceFile;
use crate::route::file::RouteFile;
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

    /// Circuit breaker, outlier ejection, bulkhead and retries of a cluster, keyed by the
    /// cluster's name: `[resilience.<cluster>]`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ResilienceFile>")]
    pub resilience: BTreeMap<Spanned<String>, ResilienceFile>,
}
