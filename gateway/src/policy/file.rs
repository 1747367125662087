//! The on-disk policy schema: what security teams write in `policies/*.toml`.
//!
//! These types mirror the files exactly (serde, `deny_unknown_fields`, spans kept for every
//! value that later validation may complain about). Nothing here is used on the request path:
//! [`super::validate`] turns a set of these into an immutable [`super::Snapshot`]. The doc
//! comments are the reference documentation and end up in the generated JSON Schema.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

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
}

/// `[forwarding]`: trust in `X-Forwarded-*` headers sent by the client.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardingFile {
    /// CIDR blocks (e.g. `10.0.0.0/8`) of proxies in front of the gateway whose
    /// `X-Forwarded-For` is kept and appended to. From any other peer the header is replaced.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub trusted_proxies: Vec<Spanned<String>>,
}

/// `[access_log]`: what the per-request record may contain.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessLogFile {
    /// Query parameter names whose values are recorded (`query` column). Every other
    /// parameter is dropped, so tokens and personal data in URLs never reach the lake.
    /// Default: none.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub query_params: Vec<Spanned<String>>,
}

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
    /// Path prefix, starting with `/`. The longest matching prefix wins. Default `/`.
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
}

/// `[cluster.<name>]`: a set of equivalent upstream endpoints.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Endpoints as `host:port`; traffic is balanced round-robin over the healthy ones.
    #[schemars(with = "Vec<String>")]
    pub endpoints: Vec<Spanned<String>>,
    /// TCP (and TLS) connect timeout, e.g. `500ms`, `2s`. Default `1s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub connect_timeout: Option<Spanned<String>>,
    /// Longest wait for the upstream between reads (response header or body), e.g. `30s`.
    /// Default `30s`. Expiry answers 504.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub read_timeout: Option<Spanned<String>>,
    /// Speak TLS to the endpoints.
    #[serde(default)]
    pub tls: Option<UpstreamTlsFile>,
    /// Active HTTP health checking. Without it every endpoint is always considered healthy.
    #[serde(default)]
    pub health_check: Option<HealthCheckFile>,
}

/// `[cluster.<name>.tls]`: TLS towards the upstream.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsFile {
    /// Server name sent in SNI and verified against the certificate.
    #[schemars(with = "String")]
    pub sni: Spanned<String>,
    /// PEM file of CA certificates to trust, relative to the policy directory. Default: the
    /// system roots.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ca_file: Option<Spanned<String>>,
}

/// `[cluster.<name>.health_check]`: active HTTP checks that take endpoints out and back in.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    /// Path requested with `GET`; a `200` is healthy. Default `/`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    /// `Host` header of the check. Default: the cluster's TLS `sni`, else `localhost`.
    #[serde(default)]
    pub host: Option<String>,
    /// Time between checks, e.g. `5s`. Default `5s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub interval: Option<Spanned<String>>,
    /// Timeout of one check. Default `1s`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// Consecutive failures that take an endpoint out. Default 2.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub unhealthy_threshold: Option<Spanned<u32>>,
    /// Consecutive successes that put it back. Default 1.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub healthy_threshold: Option<Spanned<u32>>,
}
