//! Named queries: the `.sql` files in `lake/queries/`, compiled into the binary.
//!
//! Each file starts with comment lines: the first is the description, then one
//! `-- @param NAME DEFAULT  doc` per parameter. The body uses `{{NAME}}` placeholders. The SQL
//! is written in the subset that Athena (Trino) and DataFusion share, plus
//! `approx_percentile(x, p)`, which the local engine maps onto `approx_percentile_cont`.

use std::collections::BTreeMap;

use crate::LakeError;

macro_rules! queries {
    ($($name:literal),* $(,)?) => {
        /// (name, file text) of every named query.
        pub const FILES: &[(&str, &str)] = &[
            $( ($name, include_str!(concat!("../queries/", $name, ".sql"))), )*
        ];
    };
}

queries![
    "requests_by_route_hour",
    "latency_by_route",
    "latency_by_upstream",
    "top_clients",
    "top_subjects",
    "top_rate_limited",
    "auth_failures",
    "breakers_by_cluster",
    "traffic_by_shard",
    "cache_by_route",
    "slowest_requests",
    "errors_around_policy_changes",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub default: String,
    pub doc: String,
}

#[derive(Debug, Clone)]
pub struct NamedQuery {
    pub name: &'static str,
    pub description: String,
    pub params: Vec<Param>,
    body: String,
}

impl NamedQuery {
    fn parse(name: &'static str, text: &str) -> Result<NamedQuery, LakeError> {
        let bad = |m: String| LakeError::Usage(format!("named query {name}: {m}"));
        let mut description = None;
        let mut params = Vec::new();
        let mut body = Vec::new();
        let mut header = true;
        for line in text.lines() {
            match line.strip_prefix("--").map(str::trim) {
                Some(c) if header => {
                    if let Some(p) = c.strip_prefix("@param") {
                        let mut it = p.split_whitespace();
                        let (Some(n), Some(d)) = (it.next(), it.next()) else {
                            return Err(bad(format!("bad @param line {line:?}")));
                        };
                        params.push(Param {
                            name: n.into(),
                            default: d.into(),
                            doc: it.collect::<Vec<_>>().join(" "),
                        });
                    } else if description.is_none() {
                        description = Some(c.to_string());
                    }
                }
                _ => {
                    header = false;
                    body.push(line);
                }
            }
        }
        let q = NamedQuery {
            name,
            description: description.ok_or_else(|| bad("no description line".into()))?,
            params,
            body: body.join("\n").trim().to_string(),
        };
        // Every placeholder is declared, and every declared parameter is used.
        let used = placeholders(&q.body);
        for u in &used {
            if !q.params.iter().any(|p| &p.name == u) {
                return Err(bad(format!("placeholder {{{{{u}}}}} has no @param line")));
            }
        }
        for p in &q.params {
            if !used.contains(&p.name) {
                return Err(bad(format!("@param {} is never used", p.name)));
            }
        }
        Ok(q)
    }

    /// The SQL with `params` (others at their defaults). Values may hold letters, digits and
    /// `-_.:/ ` only: they are pasted into string literals and LIMIT clauses.
    pub fn render(&self, params: &[(String, String)]) -> Result<String, LakeError> {
        let mut values: BTreeMap<&str, &str> = self
            .params
            .iter()
            .map(|p| (p.name.as_str(), p.default.as_str()))
            .collect();
        for (k, v) in params {
            let Some(slot) = values.get_mut(k.as_str()) else {
                let known: Vec<_> = self.params.iter().map(|p| p.name.as_str()).collect();
                return Err(LakeError::Usage(format!(
                    "named query {}: unknown parameter {k:?}; it takes {known:?}",
                    self.name
                )));
            };
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:/ ".contains(c))
            {
                return Err(LakeError::Usage(format!(
                    "parameter {k}={v:?}: only letters, digits and -_.:/ and spaces are allowed"
                )));
            }
            *slot = v.as_str();
        }
        let mut sql = self.body.clone();
        for (k, v) in values {
            sql = sql.replace(&format!("{{{{{k}}}}}"), v);
        }
        Ok(sql)
    }
}

fn placeholders(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("{{") {
        let after = &rest[i + 2..];
        match after.find("}}") {
            Some(j) => {
                let name = after[..j].to_string();
                if !out.contains(&name) {
                    out.push(name);
                }
                rest = &after[j + 2..];
            }
            None => break,
        }
    }
    out
}

/// Every named query, parsed.
pub fn all() -> Result<Vec<NamedQuery>, LakeError> {
    FILES.iter().map(|(n, t)| NamedQuery::parse(n, t)).collect()
}

pub fn get(name: &str) -> Result<NamedQuery, LakeError> {
    match FILES.iter().find(|(n, _)| *n == name) {
        Some((n, t)) => NamedQuery::parse(n, t),
        None => Err(LakeError::Usage(format!(
            "no named query {name:?}; known: {}",
            FILES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Parse `k=v`.
pub fn parse_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected NAME=VALUE, found {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_parses_and_renders() {
        let all = all().unwrap();
        assert_eq!(all.len(), FILES.len());
        for q in &all {
            let sql = q.render(&[]).unwrap();
            assert!(!sql.contains("{{"), "{}", q.name);
            assert!(sql.contains("access_logs"), "{}", q.name);
        }
    }

    #[test]
    fn params_are_checked() {
        let q = get("slowest_requests").unwrap();
        assert!(q
            .render(&[("limit".into(), "5".into())])
            .unwrap()
            .contains("LIMIT 5"));
        assert!(q.render(&[("nope".into(), "5".into())]).is_err());
        assert!(q.render(&[("limit".into(), "5; DROP".into())]).is_err());
        assert!(q.render(&[("from".into(), "x' OR 1=1".into())]).is_err());
        assert!(get("nope").is_err());
        assert_eq!(parse_param("a=b").unwrap(), ("a".into(), "b".into()));
        assert!(parse_param("=b").is_err());
    }
}
