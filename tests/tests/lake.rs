//! The `lake` command end to end: real `lake` processes over generated lakes (local and on S3
//! in moto), named queries checked against figures computed here from the very records that
//! were written, DuckDB as an independent reader, compaction interrupted at every step, and
//! `lake init` / `lake query --athena` against moto.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use e2e::aws::Moto;
use e2e::pipeline_util::{boto, python, unique};
use edgeway_record::AccessLogRecord;
use lake::generate::{file_records, parse_start, Spec};
use serde_json::{json, Value};

const START: &str = "2025-11-22T00:00:00Z";

fn spec(records: u64, hours: u32, files_per_hour: u32, seed: u64) -> Spec {
    Spec {
        records,
        start_ms: parse_start(START).unwrap(),
        hours,
        files_per_hour,
        seed,
    }
}

fn lake_cmd(args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(e2e::bin("lake"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("LAKE_COMPACT_CRASH_AFTER")
        .output()
        .expect("run lake")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Generate `spec` under `root` with the binary; return the records it wrote.
fn generate(root: &str, s: &Spec, env: &[(&str, String)]) -> Vec<AccessLogRecord> {
    ok(
        lake_cmd(
            &[
                "generate",
                "--out",
                root,
                "--records",
                &s.records.to_string(),
                "--start",
                START,
                "--hours",
                &s.hours.to_string(),
                "--files-per-hour",
                &s.files_per_hour.to_string(),
                "--seed",
                &s.seed.to_string(),
            ],
            env,
        ),
        "lake generate",
    );
    (0..s.hours)
        .flat_map(|h| (0..s.files_per_hour).map(move |f| (h, f)))
        .flat_map(|(h, f)| file_records(s, h, f))
        .collect()
}

/// `lake query` (SQL or `--named`) as JSON rows.
fn query(root: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--lake", root, "query", "--format", "json", "-q"];
    all.extend(args);
    let text = ok(lake_cmd(&all, &[]), &format!("lake query {args:?}"));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn named(root: &str, name: &str) -> Vec<Value> {
    query(root, &["--named", name])
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {s}")),
        other => panic!("not a number: {other}"),
    }
}

/// Compare rows field by field: numbers within 1e-6, everything else exactly. Only the
/// fields present in `expected` are compared.
fn assert_rows(what: &str, got: &[Value], expected: &[Value]) {
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: row count\n got {got:#?}\n expected {expected:#?}"
    );
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        for (k, ev) in e.as_object().unwrap() {
            let gv = g.get(k).unwrap_or(&Value::Null);
            let same = match ev {
                Value::Number(_) => (num(gv) - num(ev)).abs() < 1e-6,
                _ => gv == ev,
            };
            assert!(
                same,
                "{what} row {i} field {k}: got {gv}, expected {ev}\n row {g}"
            );
        }
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

fn ratio(a: usize, b: usize) -> f64 {
    round(a as f64 / b as f64, 4)
}

fn dt_hour(r: &AccessLogRecord) -> (String, String) {
    let p = edgeway_record::table::Partition::of(r.event_time);
    (p.dt(), p.hour())
}

fn or<'a>(v: &'a Option<String>, d: &'a str) -> &'a str {
    v.as_deref().unwrap_or(d)
}

/// The value at fraction `p` of sorted `v` (nearest rank).
fn quantile(v: &[f64], p: f64) -> f64 {
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// An approximate percentile is right when its rank is within one percentage point.
fn assert_percentile(what: &str, got: f64, sorted: &[f64], p: f64) {
    let lo = quantile(sorted, (p - 0.01).max(0.0));
    let hi = quantile(sorted, (p + 0.01).min(1.0));
    assert!(
        got >= lo - 1e-3 && got <= hi + 1e-3,
        "{what} p{}: {got} not within [{lo}, {hi}]",
        p * 100.0
    );
}

fn top<K: Ord + Clone>(counts: BTreeMap<K, usize>, n: usize) -> Vec<(K, usize)> {
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

#[derive(Default)]
struct Agg {
    n: usize,
    c4: usize,
    c5: usize,
    c429: usize,
    errors: usize,
    c503: usize,
    public: usize,
    private: usize,
    no_store: usize,
    c304: usize,
    bytes_in: i64,
    bytes_out: i64,
    clients: BTreeSet<String>,
}

impl Agg {
    fn add(&mut self, r: &AccessLogRecord) {
        self.n += 1;
        self.c4 += usize::from((400..500).contains(&r.status));
        self.c5 += usize::from(r.status >= 500);
        self.c429 += usize::from(r.status == 429);
        self.c503 += usize::from(r.status == 503);
        self.c304 += usize::from(r.status == 304);
        self.errors += usize::from(r.status >= 400);
        match r.cache_status.as_deref() {
            Some("public") => self.public += 1,
            Some("private") => self.private += 1,
            Some("no-store") => self.no_store += 1,
            _ => {}
        }
        self.bytes_in += r.bytes_in;
        self.bytes_out += r.bytes_out;
        self.clients.insert(r.client_ip.clone());
    }
}

fn group<K: Ord>(
    recs: &[AccessLogRecord],
    key: impl Fn(&AccessLogRecord) -> Option<K>,
) -> BTreeMap<K, Agg> {
    let mut m: BTreeMap<K, Agg> = BTreeMap::new();
    for r in recs {
        if let Some(k) = key(r) {
            m.entry(k).or_default().add(r);
        }
    }
    m
}

#[tokio::test]
async fn every_named_query_returns_the_figures_of_the_generated_records() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let root = root.to_str().unwrap();
    let recs = generate(root, &spec(24_000, 3, 4, 11), &[]);
    assert_eq!(recs.len(), 24_000);

    // Requests and error rate by route and hour.
    let exp: Vec<Value> = group(&recs, |r| {
        let (dt, hour) = dt_hour(r);
        Some((dt, hour, or(&r.route, "(none)").to_string()))
    })
    .into_iter()
    .map(|((dt, hour, route), a)| {
        json!({"dt": dt, "hour": hour, "route": route, "requests": a.n,
               "errors_4xx": a.c4, "errors_5xx": a.c5, "error_rate_5xx": ratio(a.c5, a.n)})
    })
    .collect();
    assert_eq!(exp.len(), 3 * 6);
    assert_rows(
        "requests_by_route_hour",
        &named(root, "requests_by_route_hour"),
        &exp,
    );

    // Latency by route: counts and max exactly, percentiles within one rank percent.
    let by_route = group(&recs, |r| Some(or(&r.route, "(none)").to_string()));
    let got = named(root, "latency_by_route");
    assert_eq!(got.len(), by_route.len());
    for (row, (route, a)) in got.iter().zip(&by_route) {
        assert_eq!(row["route"], json!(route));
        assert_eq!(num(&row["requests"]) as usize, a.n);
        let mut d: Vec<f64> = recs
            .iter()
            .filter(|r| or(&r.route, "(none)") == route)
            .map(|r| r.duration_ms)
            .collect();
        d.sort_by(f64::total_cmp);
        assert!((num(&row["max_ms"]) - round(*d.last().unwrap(), 3)).abs() < 1e-9);
        for (col, p) in [("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)] {
            assert_percentile(&format!("route {route}"), num(&row[col]), &d, p);
        }
    }

    // Latency by upstream endpoint.
    let up = |r: &AccessLogRecord| {
        (r.upstream_addr.is_some() && r.upstream_response_ms.is_some()).then(|| {
            (
                r.upstream_cluster.clone().unwrap_or_default(),
                r.upstream_addr.clone().unwrap(),
            )
        })
    };
    let by_up = group(&recs, up);
    let got = named(root, "latency_by_upstream");
    assert_eq!(got.len(), by_up.len());
    assert!(got.len() >= 12, "4 clusters × 3 endpoints");
    for (row, (key, a)) in got.iter().zip(&by_up) {
        assert_eq!(
            (row["cluster"].clone(), row["endpoint"].clone()),
            (json!(key.0), json!(key.1))
        );
        assert_eq!(num(&row["requests"]) as usize, a.n);
        assert_eq!(num(&row["errors_5xx"]) as usize, a.c5);
        let mut d: Vec<f64> = recs
            .iter()
            .filter(|r| up(r).as_ref() == Some(key))
            .map(|r| r.upstream_response_ms.unwrap())
            .collect();
        d.sort_by(f64::total_cmp);
        for (col, p) in [("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)] {
            assert_percentile(&format!("upstream {key:?}"), num(&row[col]), &d, p);
        }
    }

    // Top clients by requests.
    let by_ip = group(&recs, |r| Some(r.client_ip.clone()));
    let exp: Vec<Value> = top(by_ip.iter().map(|(k, a)| (k.clone(), a.n)).collect(), 20)
        .into_iter()
        .map(|(ip, n)| {
            let a = &by_ip[&ip];
            json!({"client_ip": ip, "requests": n, "rate_limited": a.c429, "errors": a.errors})
        })
        .collect();
    assert_rows("top_clients", &named(root, "top_clients"), &exp);

    // Top subjects by requests.
    let by_sub = group(&recs, |r| r.auth_subject.clone());
    let exp: Vec<Value> = top(by_sub.iter().map(|(k, a)| (k.clone(), a.n)).collect(), 20)
        .into_iter()
        .map(|(s, n)| {
            let a = &by_sub[&s];
            json!({"subject": s, "requests": n, "rate_limited": a.c429, "clients": a.clients.len()})
        })
        .collect();
    assert_rows("top_subjects", &named(root, "top_subjects"), &exp);

    // Top clients and subjects by 429s.
    let limited = group(&recs, |r| {
        (r.status == 429).then(|| {
            (
                r.client_ip.clone(),
                or(&r.auth_subject, "(anonymous)").to_string(),
            )
        })
    });
    let exp: Vec<Value> = top(limited.iter().map(|(k, a)| (k.clone(), a.n)).collect(), 20)
        .into_iter()
        .map(|((ip, s), n)| json!({"client_ip": ip, "subject": s, "rate_limited": n}))
        .collect();
    assert!(!exp.is_empty());
    assert_rows("top_rate_limited", &named(root, "top_rate_limited"), &exp);

    // Auth failures by reason and issuer.
    let fails = group(&recs, |r| {
        (!matches!(r.auth_result.as_str(), "ok" | "none")).then(|| {
            (
                r.auth_result.clone(),
                or(&r.auth_issuer, "(unknown)").to_string(),
            )
        })
    });
    let mut exp: Vec<_> = fails.iter().collect();
    exp.sort_by(|a, b| b.1.n.cmp(&a.1.n).then(a.0.cmp(b.0)));
    let exp: Vec<Value> = exp
        .into_iter()
        .map(|((reason, issuer), a)| {
            json!({"reason": reason, "issuer": issuer, "failures": a.n, "clients": a.clients.len()})
        })
        .collect();
    assert!(
        exp.len() >= 5,
        "missing, invalid, expired ×2 issuers, denied"
    );
    assert_rows("auth_failures", &named(root, "auth_failures"), &exp);

    // Breaker openings (transitions into open per cluster and instance) and 503s by cluster.
    let mut seq: BTreeMap<(String, String), Vec<&AccessLogRecord>> = BTreeMap::new();
    for r in recs.iter().filter(|r| r.upstream_cluster.is_some()) {
        seq.entry((
            r.upstream_cluster.clone().unwrap(),
            r.gateway_instance.clone(),
        ))
        .or_default()
        .push(r);
    }
    let mut openings: BTreeMap<String, usize> = BTreeMap::new();
    for ((cluster, _), mut v) in seq {
        v.sort_by(|a, b| (a.event_time, &a.request_id).cmp(&(b.event_time, &b.request_id)));
        let mut prev: Option<&str> = None;
        let e = openings.entry(cluster).or_default();
        for r in v {
            let s = r.breaker_state.as_deref();
            if s == Some("open") && prev != Some("open") {
                *e += 1;
            }
            prev = s;
        }
    }
    let by_cluster = group(&recs, |r| r.upstream_cluster.clone());
    let exp: Vec<Value> = by_cluster
        .iter()
        .map(|(c, a)| {
            let open = recs
                .iter()
                .filter(|r| r.upstream_cluster.as_ref() == Some(c))
                .filter(|r| r.breaker_state.as_deref() == Some("open"))
                .count();
            json!({"cluster": c, "requests": a.n, "openings": openings[c],
                   "rejected_while_open": open, "status_503": a.c503})
        })
        .collect();
    // search opens once an hour on each of the two gateway instances.
    assert_eq!(openings["search"], 3 * 2);
    assert_rows(
        "breakers_by_cluster",
        &named(root, "breakers_by_cluster"),
        &exp,
    );

    // Traffic by shard.
    let exp: Vec<Value> = group(&recs, |r| Some(or(&r.shard, "(none)").to_string()))
        .into_iter()
        .map(|(s, a)| {
            json!({"shard": s, "requests": a.n, "bytes_in": a.bytes_in,
                   "bytes_out": a.bytes_out, "errors_5xx": a.c5})
        })
        .collect();
    assert_eq!(exp.len(), 9, "8 shards and (none)");
    assert_rows("traffic_by_shard", &named(root, "traffic_by_shard"), &exp);

    // Cache ratio by route.
    let exp: Vec<Value> = by_route
        .iter()
        .map(|(route, a)| {
            json!({"route": route, "requests": a.n, "cache_public": a.public,
                   "cache_private": a.private, "cache_no_store": a.no_store,
                   "revalidated_304": a.c304, "cacheable_ratio": ratio(a.public, a.n),
                   "hit_ratio_304": ratio(a.c304, a.n)})
        })
        .collect();
    assert_rows("cache_by_route", &named(root, "cache_by_route"), &exp);

    // Slowest requests with their ids.
    let mut slow: Vec<&AccessLogRecord> = recs.iter().collect();
    slow.sort_by(|a, b| {
        b.duration_ms
            .total_cmp(&a.duration_ms)
            .then(a.request_id.cmp(&b.request_id))
    });
    let exp: Vec<Value> = slow[..5]
        .iter()
        .map(|r| json!({"request_id": r.request_id, "duration_ms": r.duration_ms, "status": r.status}))
        .collect();
    assert_rows(
        "slowest_requests",
        &query(root, &["--named", "slowest_requests", "--param", "limit=5"]),
        &exp,
    );

    // Parameters prune partitions: one hour's date range.
    let day = query(
        root,
        &[
            "--named",
            "traffic_by_shard",
            "--param",
            "from=2025-11-23",
            "--param",
            "to=2025-11-30",
        ],
    );
    assert!(day.is_empty(), "{day:?}");
}

#[tokio::test]
async fn partition_filters_prune_files_and_bad_sql_reports_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let root = root.to_str().unwrap();
    let recs = generate(root, &spec(6_000, 3, 2, 12), &[]);
    let count = |sql: &str| -> (u64, u64) {
        let out = lake_cmd(&["--lake", root, "query", "--format", "csv", sql], &[]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = ok(out, sql);
        let n: u64 = stdout.lines().nth(1).unwrap().trim().parse().unwrap();
        // "N rows in T s; read B bytes"
        let bytes: u64 = stderr
            .split("; read ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no bytes in {stderr}"));
        (n, bytes)
    };
    let (all, all_bytes) = count("SELECT count(*) FROM access_logs WHERE status >= 0");
    assert_eq!(all as usize, recs.len());
    let (one, one_bytes) =
        count("SELECT count(*) FROM edgeway.access_logs WHERE dt = '2025-11-22' AND hour = '01' AND status >= 0");
    let expected = recs.iter().filter(|r| dt_hour(r).1 == "01").count();
    assert_eq!(one as usize, expected);
    assert!(
        one_bytes * 2 < all_bytes,
        "one hour of three read {one_bytes} of {all_bytes} bytes"
    );

    for (sql, needle) in [
        ("SELECT count(* FROMM access_logs", "Line: 1, Column: 16"),
        ("SELECT\n  nope\nFROM access_logs", "line 2, column 3"),
        ("SELECT * FROM no_such_table", "no_such_table"),
    ] {
        let out = lake_cmd(&["--lake", root, "query", sql], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{sql}: {err}");
        assert!(err.contains(needle), "{sql}: {err}");
        assert!(
            err.contains('^') || needle == "no_such_table",
            "{sql}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = lake_cmd(&["--lake", root, "query", "--named", "nope"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = lake_cmd(
        &[
            "--lake",
            root,
            "query",
            "--named",
            "top_clients",
            "--param",
            "limit=1;drop",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
}

/// DuckDB, an independent engine, gives the same answers on the same files.
#[tokio::test]
async fn duckdb_agrees_on_two_named_queries() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let root_s = root.to_str().unwrap();
    generate(root_s, &spec(15_000, 2, 3, 13), &[]);
    for name in ["requests_by_route_hour", "top_clients", "traffic_by_shard"] {
        let sql = lake::named::get(name).unwrap().render(&[]).unwrap();
        let sql_file = dir.path().join(format!("{name}.sql"));
        std::fs::write(&sql_file, &sql).unwrap();
        let script = format!(
            "import duckdb, json\n\
             con = duckdb.connect()\n\
             con.execute(\"CREATE VIEW access_logs AS SELECT * FROM read_parquet('{root}/access_logs/*/*/*.parquet', hive_partitioning=true, hive_types={{'dt': VARCHAR, 'hour': VARCHAR}})\")\n\
             cur = con.execute(open('{sql}').read())\n\
             cols = [d[0] for d in cur.description]\n\
             print(json.dumps([dict(zip(cols, row)) for row in cur.fetchall()], default=str))\n",
            root = root.display(),
            sql = sql_file.display()
        );
        let duck: Vec<Value> = serde_json::from_str(python(&script, &[]).trim()).unwrap();
        let ours = named(root_s, name);
        assert!(!duck.is_empty());
        assert_rows(&format!("{name}: lake vs duckdb"), &ours, &duck);
    }
}

fn request_ids(root: &str) -> Vec<String> {
    query(
        root,
        &["SELECT request_id FROM access_logs ORDER BY request_id"],
    )
    .into_iter()
    .map(|v| v["request_id"].as_str().unwrap().to_string())
    .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn compaction_keeps_every_record_once_even_when_interrupted_at_any_step() {
    let steps = [
        "manifest", "output", "outputs", "commit", "rename", "renames", "delete", "deletes",
    ];
    for (i, step) in steps.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        let root = root.to_str().unwrap();
        // 2 hours × 6 small files; compact hour 00, leave hour 01 alone.
        let recs = generate(root, &spec(4_000, 2, 6, 100 + i as u64), &[]);
        let mut expected: Vec<String> = recs.iter().map(|r| r.request_id.clone()).collect();
        expected.sort();
        let part = dir.path().join("lake/access_logs/dt=2025-11-22/hour=00");
        assert_eq!(files_in(&part).len(), 6);

        let out = lake_cmd(
            &[
                "--lake",
                root,
                "compact",
                "--dt",
                "2025-11-22",
                "--hour",
                "00",
                "--crash-after",
                step,
            ],
            &[],
        );
        assert_eq!(
            out.status.code(),
            Some(86),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            files_in(&part).contains(&"_compaction.json".to_string()),
            "{step}"
        );
        // A reader in the middle of the interrupted compaction sees every record once.
        assert_eq!(request_ids(root), expected, "reader after crash at {step}");

        // The next run finishes or undoes it, then compacts.
        let text = ok(
            lake_cmd(&["--lake", root, "compact", "--dt", "2025-11-22"], &[]),
            "compact re-run",
        );
        assert!(text.contains("dt=2025-11-22/hour=00"), "{text}");
        assert_eq!(request_ids(root), expected, "reader after re-run ({step})");
        let files = files_in(&part);
        assert_eq!(files.len(), 1, "{step}: {files:?}");
        assert!(files[0].starts_with("compacted-"), "{files:?}");
        // Hour 01 was compacted by the re-run (every hour of the date).
        let files01 = files_in(&dir.path().join("lake/access_logs/dt=2025-11-22/hour=01"));
        assert_eq!(files01.len(), 1, "{files01:?}");

        // Rows stay sorted by time in the merged file, with the lake's Parquet settings.
        let script = format!(
            "import pyarrow.parquet as pq\n\
             f = pq.ParquetFile('{}')\n\
             t = f.read().column('event_time').to_pylist()\n\
             assert t == sorted(t), 'not sorted'\n\
             c = f.metadata.row_group(0).column(1)\n\
             print(f.metadata.num_rows, c.compression, f.schema_arrow.field('event_time').type)\n",
            part.join(&files[0]).display()
        );
        let info = python(&script, &[]);
        let rows_00 = recs.iter().filter(|r| dt_hour(r).1 == "00").count();
        assert_eq!(info.trim(), format!("{rows_00} ZSTD timestamp[ms, tz=UTC]"));
    }
}

#[tokio::test]
async fn retain_prints_the_plan_and_deletes_only_with_yes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let root = root.to_str().unwrap();
    // Three days: 2025-11-22, -23, -24.
    let recs = generate(root, &spec(7_200, 72, 1, 14), &[]);
    let args = [
        "--lake",
        root,
        "retain",
        "--days",
        "1",
        "--today",
        "2025-11-24",
    ];
    let text = ok(lake_cmd(&args, &[]), "retain dry run");
    assert!(text.contains("would delete dt=2025-11-22"), "{text}");
    assert!(
        !text.contains("dt=2025-11-23") && !text.contains("dt=2025-11-24"),
        "{text}"
    );
    assert!(text.contains("--yes"), "{text}");
    assert_eq!(request_ids(root).len(), recs.len());

    let mut yes = args.to_vec();
    yes.push("--yes");
    let text = ok(lake_cmd(&yes, &[]), "retain --yes");
    assert!(text.contains("deleting dt=2025-11-22"), "{text}");
    let left = recs.iter().filter(|r| dt_hour(r).0 != "2025-11-22").count();
    assert_eq!(request_ids(root).len(), left);
    assert!(!dir.path().join("lake/access_logs/dt=2025-11-22").exists());
    let text = ok(lake_cmd(&yes, &[]), "retain again");
    assert!(text.contains("nothing older"), "{text}");
}

#[tokio::test]
async fn init_against_moto_creates_table_workgroup_and_named_queries_once() {
    let moto = Moto::shared().await;
    let bucket = unique("lake-init");
    let workgroup = unique("wg");
    boto(&moto, &format!("s3.create_bucket(Bucket='{bucket}')\n"));
    let root = format!("s3://{bucket}/lake");
    let env = moto.env();
    let args = [
        "--lake",
        root.as_str(),
        "init",
        "--workgroup",
        workgroup.as_str(),
    ];
    let first = ok(lake_cmd(&args, &env), "lake init");
    assert!(
        first.contains(&format!(
            "created   athena workgroup {workgroup} (results s3://{bucket}/athena-results/)"
        )),
        "{first}"
    );
    assert!(first.contains("glue table edgeway.access_logs"), "{first}");
    assert!(
        first.contains("glue table edgeway.policy_changes"),
        "{first}"
    );
    let n = lake::named::FILES.len();
    assert_eq!(
        first.matches("created   athena named query").count(),
        n,
        "{first}"
    );
    let second = ok(lake_cmd(&args, &env), "lake init again");
    assert!(second.contains("nothing changed"), "{second}");
    assert!(
        !second.contains("created") && !second.contains("updated"),
        "{second}"
    );

    // What moto holds, read back with boto3.
    let check = boto(
        &moto,
        &format!(
            "athena = boto3.client('athena', **kw)\n\
             wg = athena.get_work_group(WorkGroup='{workgroup}')['WorkGroup']\n\
             print(wg['Configuration']['ResultConfiguration']['OutputLocation'])\n\
             ids = athena.list_named_queries(WorkGroup='{workgroup}')['NamedQueryIds']\n\
             names = sorted(athena.get_named_query(NamedQueryId=i)['NamedQuery']['Name'] for i in ids)\n\
             print(','.join(names))\n\
             q = [athena.get_named_query(NamedQueryId=i)['NamedQuery'] for i in ids]\n\
             print(all(x['Database'] == 'edgeway' and 'access_logs' in x['QueryString'] for x in q))\n\
             t = glue.get_table(DatabaseName='edgeway', Name='access_logs')['Table']\n\
             print(t['TableType'], t['StorageDescriptor']['SerdeInfo']['SerializationLibrary'])\n\
             print(len(t['StorageDescriptor']['Columns']), [k['Name'] for k in t['PartitionKeys']], t['Parameters']['projection.enabled'])\n\
             p = glue.get_table(DatabaseName='edgeway', Name='policy_changes')['Table']\n\
             cols = dict((c['Name'], c['Type']) for c in p['StorageDescriptor']['Columns'])\n\
             print(p['StorageDescriptor']['Location'], cols['files_changed'], cols['errors'], [k['Name'] for k in p['PartitionKeys']], p['Parameters']['storage.location.template'])\n"
        ),
    );
    let lines: Vec<&str> = check.lines().collect();
    assert_eq!(lines[0], format!("s3://{bucket}/athena-results/"));
    let mut names: Vec<&str> = lake::named::FILES.iter().map(|(n, _)| *n).collect();
    names.sort();
    assert_eq!(lines[1], names.join(","));
    assert_eq!(lines[2], "True");
    assert_eq!(
        lines[3],
        "EXTERNAL_TABLE org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    );
    assert_eq!(
        lines[4],
        format!("{} ['dt', 'hour'] true", edgeway_record::COLUMNS.len())
    );
    // The second table: its own location, list columns, the same partitioning.
    assert_eq!(
        lines[5],
        format!(
            "s3://{bucket}/lake/policy_changes/ array<string> array<string> ['dt', 'hour'] \
             s3://{bucket}/lake/policy_changes/dt=${{dt}}/hour=${{hour}}"
        )
    );
}

/// Athena mode against moto (which runs no SQL: it answers with results seeded here), and the
/// same lake on S3 queried locally through object_store.
#[tokio::test]
async fn athena_query_api_and_local_query_of_an_s3_lake_against_moto() {
    let moto = Moto::shared().await;
    let bucket = unique("lake-q");
    let workgroup = unique("wg-q");
    boto(&moto, &format!("s3.create_bucket(Bucket='{bucket}')\n"));
    let root = format!("s3://{bucket}/lake");
    let env = moto.env();
    let recs = generate(&root, &spec(3_000, 2, 2, 15), &env);
    ok(
        lake_cmd(
            &[
                "--lake",
                &root,
                "init",
                "--workgroup",
                &workgroup,
                "--skip-table",
            ],
            &env,
        ),
        "lake init",
    );

    // Local engine over the S3 prefix: the true figures.
    let out = lake_cmd(
        &[
            "--lake",
            &root,
            "query",
            "--format",
            "json",
            "--named",
            "traffic_by_shard",
        ],
        &env,
    );
    let local: Vec<Value> = serde_json::from_str(ok(out, "local query on s3").trim()).unwrap();
    let total: f64 = local.iter().map(|r| num(&r["requests"])).sum();
    assert_eq!(total as usize, recs.len());

    // Seed moto with what Athena would answer (header row first, as Athena does), then run
    // the same named query through the Athena API.
    let mut rows = vec![json!({"Data": [{"VarCharValue": "shard"}, {"VarCharValue": "requests"}]})];
    for r in &local {
        rows.push(json!({"Data": [
            {"VarCharValue": r["shard"].as_str().unwrap()},
            {"VarCharValue": num(&r["requests"]).to_string()}
        ]}));
    }
    let col = |n: &str, t: &str| {
        json!({"Name": n, "Label": n, "Type": t, "CatalogName": "hive",
        "SchemaName": "", "TableName": "", "Precision": 0, "Scale": 0, "Nullable": "UNKNOWN",
        "CaseSensitive": false})
    };
    let seed = json!({"results": [{"rows": rows, "column_info": [col("shard", "varchar"), col("requests", "bigint")]}]});
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/moto-api/static/athena/query-results",
            moto.endpoint
        ))
        .json(&seed)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let out = lake_cmd(
        &[
            "--lake",
            &root,
            "query",
            "--athena",
            "--workgroup",
            &workgroup,
            "--format",
            "csv",
            "--named",
            "traffic_by_shard",
        ],
        &env,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let csv = ok(out, "athena query");
    assert!(
        stderr.contains("scanned") && stderr.contains("query id"),
        "{stderr}"
    );
    assert!(stderr.contains("athena: SUCCEEDED"), "progress: {stderr}");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("shard,requests"));
    let athena_total: f64 = lines
        .map(|l| l.split(',').nth(1).unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(athena_total as usize, recs.len());

    // An unknown workgroup is the service's error, not a panic.
    let out = lake_cmd(
        &[
            "query",
            "--athena",
            "--workgroup",
            "no-such-wg-x",
            "SELECT 1",
        ],
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("StartQueryExecution"));
}

/// The whole path: requests through a real gateway → its local access log → `pipeline` (local
/// mode) → Parquet lake → `lake query`. Counts by route and status match what was sent.
#[tokio::test]
async fn gateway_to_pipeline_to_lake_query_counts_match_what_was_sent() {
    use e2e::origin::Origin;
    use e2e::pipeline_util::run_local_to_idle;
    use e2e::{eventually, free_port, Gateway};

    let origin = Origin::start("app").await;
    let dead = free_port();
    let clusters = format!(
        "[cluster.app]\nendpoints = [\"{}\"]\n\n\
         [cluster.dead]\nendpoints = [\"127.0.0.1:{dead}\"]\nconnect_timeout = \"200ms\"\n",
        origin.addr
    );
    let routes = "[[route]]\nname = \"app\"\nhosts = [\"app.test\"]\ncluster = \"app\"\n\n\
                  [[route]]\nname = \"dead\"\nhosts = [\"dead.test\"]\ncluster = \"dead\"\n";
    let gw = Gateway::start(&[("c.toml", clusters.as_str()), ("r.toml", routes)]).await;
    let client = reqwest::Client::new();
    let mut sent: BTreeMap<(String, i64), usize> = BTreeMap::new();
    let plan = [
        ("app.test", "/v1/items", Some("app"), 40),
        ("app.test", "/static", Some("app"), 7),
        ("dead.test", "/x", Some("dead"), 6),
        ("nowhere.test", "/y", None, 5),
    ];
    let mut total = 0;
    for (host, path, route, n) in plan {
        for i in 0..n {
            let status = client
                .get(gw.url(&format!("{path}?i={i}")))
                .header("host", host)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16();
            *sent
                .entry((route.unwrap_or("(none)").to_string(), i64::from(status)))
                .or_default() += 1;
            total += 1;
        }
    }
    assert!(sent.len() >= 3, "{sent:?}");
    eventually(
        "access log written",
        std::time::Duration::from_secs(30),
        || {
            let m = gw.metrics();
            async move {
                // `total` requests and the gateway's start event (a policy-change record).
                (e2e::metric_value(&m.await, "accesslog_records_written_total", &[])
                    >= (total + 1) as f64)
                    .then_some(())
            }
        },
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    run_local_to_idle(
        &gw.access_log_dir(),
        &lake_dir,
        &["--threads", "1"],
        dir.path().join("pipeline.log"),
    );
    let rows = query(
        lake_dir.to_str().unwrap(),
        &[
            "SELECT coalesce(route, '(none)') AS route, status, count(*) AS n \
           FROM access_logs GROUP BY coalesce(route, '(none)'), status ORDER BY 1, 2",
        ],
    );
    let got: BTreeMap<(String, i64), usize> = rows
        .iter()
        .map(|r| {
            (
                (
                    r["route"].as_str().unwrap().to_string(),
                    num(&r["status"]) as i64,
                ),
                num(&r["n"]) as usize,
            )
        })
        .collect();
    assert_eq!(got, sent);
    // And a named query over the same lake agrees on the totals per route.
    let by_route: BTreeMap<String, usize> = named(lake_dir.to_str().unwrap(), "cache_by_route")
        .iter()
        .map(|r| {
            (
                r["route"].as_str().unwrap().to_string(),
                num(&r["requests"]) as usize,
            )
        })
        .collect();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for ((route, _), n) in &sent {
        *expected.entry(route.clone()).or_default() += n;
    }
    assert_eq!(by_route, expected);
}
