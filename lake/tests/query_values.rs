//! The named queries compare outcome columns with string literals (`auth_result NOT IN ('ok',
//! 'none')`, `breaker_state = 'open'`, `cache_status = 'public'`). Those literals must be
//! values the gateway actually writes: each is checked against the enums in
//! `edgeway_record::outcome`, so renaming a value without updating the queries fails here.

use std::path::Path;

use edgeway_record::outcome::{allowed_values, OUTCOME_COLUMNS};

/// `(column, literal)` for every `col = 'x'`, `col <> 'x'`, `col != 'x'`, `col IN ('x', …)` and
/// `col NOT IN ('x', …)` in `sql`.
fn compared_literals<'a>(sql: &'a str, column: &'a str) -> Vec<String> {
    let lower = sql.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = lower[from..].find(column) {
        let start = from + pos;
        from = start + column.len();
        let before_ok = start == 0
            || !lower.as_bytes()[start - 1].is_ascii_alphanumeric()
                && lower.as_bytes()[start - 1] != b'_';
        // A longer name that starts with `column` (`auth_result_x`) is another column.
        let name_continues =
            lower[from..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        if !before_ok || name_continues {
            continue;
        }
        let after = lower[from..].trim_start();
        let rest = if let Some(r) = after.strip_prefix("not in") {
            r
        } else if let Some(r) = after.strip_prefix("in") {
            r
        } else if let Some(r) = after
            .strip_prefix("<>")
            .or_else(|| after.strip_prefix("!="))
            .or_else(|| after.strip_prefix('='))
        {
            // One literal.
            if let Some(lit) = quoted(r.trim_start()) {
                out.push(lit);
            }
            continue;
        } else {
            continue;
        };
        let Some(list) = rest.trim_start().strip_prefix('(') else {
            continue;
        };
        let list = &list[..list.find(')').unwrap_or(list.len())];
        out.extend(list.split(',').filter_map(|item| quoted(item.trim())));
    }
    out
}

fn quoted(s: &str) -> Option<String> {
    let s = s.strip_prefix('\'')?;
    Some(s[..s.find('\'')?].to_string())
}

#[test]
fn parser_finds_every_comparison_form() {
    let sql = "WHERE auth_result NOT IN ('ok', 'none') AND x_auth_result = 'no' \
               AND breaker_state = 'open' OR cache_status <> 'public' OR auth_result IN ('a')";
    assert_eq!(compared_literals(sql, "auth_result"), ["ok", "none", "a"]);
    assert_eq!(compared_literals(sql, "breaker_state"), ["open"]);
    assert_eq!(compared_literals(sql, "cache_status"), ["public"]);
}

#[test]
fn every_outcome_literal_in_the_named_queries_is_a_value_the_gateway_writes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries");
    let mut checked = 0;
    let mut per_file = std::collections::HashMap::new();
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("lake/queries") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|x| x != "sql") {
            continue;
        }
        let sql = std::fs::read_to_string(&path).expect("read query");
        let sql: String = sql
            .lines()
            .filter(|l| !l.trim_start().starts_with("--"))
            .collect::<Vec<_>>()
            .join("\n");
        for column in OUTCOME_COLUMNS {
            let allowed = allowed_values(column).expect("known column");
            for lit in compared_literals(&sql, column) {
                checked += 1;
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                *per_file.entry(name.to_string()).or_insert(0) += 1;
                if !allowed.contains(&lit.as_str()) {
                    problems.push(format!(
                        "{}: {column} compared with `{lit}`, expected one of {allowed:?}",
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // At the time of writing: auth_failures 2 (`NOT IN ('ok', 'none')`), breakers_by_cluster 2
    // (`breaker_state = 'open'` twice), cache_by_route 4. Finding fewer would mean the parser,
    // not the queries, broke.
    for (file, at_least) in [
        ("auth_failures.sql", 2),
        ("breakers_by_cluster.sql", 2),
        ("cache_by_route.sql", 4),
    ] {
        let found = per_file.get(file).copied().unwrap_or(0);
        assert!(
            found >= at_least,
            "only {found} outcome literals found in {file}, expected {at_least} or more"
        );
    }
    assert!(
        checked >= 8,
        "only {checked} literals found in {}",
        dir.display()
    );
}
