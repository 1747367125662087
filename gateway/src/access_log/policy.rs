//! `[access_log]`: what the per-request record may keep. The access-log capability's
//! policy part (file type, pure validation, spec); the sink itself is process settings.

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

use crate::policy::validate::{at_most_one, Errors, Files};

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

/// The validated `[access_log]` section.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AccessLogPolicy {
    /// Allow-listed query parameter names (exact, case-sensitive).
    pub query_params: Vec<String>,
}

/// `[access_log]`, from at most one file.
pub fn validate(errs: &mut Errors, files: &Files) -> AccessLogPolicy {
    let mut access_log = AccessLogPolicy::default();
    let Some((fi, al)) = at_most_one(errs, files, "access_log", |f| f.access_log.as_ref()) else {
        return access_log;
    };
    for (k, p) in al.get_ref().query_params.iter().enumerate() {
        let name = p.get_ref();
        if name.is_empty() || name.contains(['&', '=', ' ']) {
            errs.at(
                fi,
                p.span(),
                &format!("access_log.query_params[{k}]"),
                format!("found `{name}`, expected a query parameter name"),
            );
        } else if !access_log.query_params.contains(name) {
            access_log.query_params.push(name.clone());
        }
    }
    access_log
}
