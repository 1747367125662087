//! `[cluster.<name>]` as written in the policy files. The doc comments are the reference
//! documentation and end up in the generated JSON Schema.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

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
