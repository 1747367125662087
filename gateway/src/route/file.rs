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
