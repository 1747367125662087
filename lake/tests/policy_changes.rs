//! The `policy_changes` table in the embedded engine, and the named query that joins it to
//! the access logs (`errors_around_policy_changes`), on a small lake whose answer is known.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use edgeway_record::policy_change::{self, PolicyChangeBuilders, PolicyChangeRecord};
use edgeway_record::table::{Partition, Table};
use edgeway_record::AccessLogRecord;
use lake::engine::LocalEngine;
use lake::root::{Lake, StoreSettings};

/// 2025-11-22T02:00:00Z.
const T0: i64 = 1_763_776_800_000;

fn request(instance: &str, version: &str, t: i64, status: i32) -> AccessLogRecord {
    AccessLogRecord {
        event_time: t,
        request_id: format!("{instance}-{t}"),
        route: Some("users".into()),
        status,
        policy_version: version.into(),
        gateway_instance: instance.into(),
        ..Default::default()
    }
}

fn change(
    t: i64,
    result: &str,
    old: Option<&str>,
    new: &str,
    errors: &[&str],
) -> PolicyChangeRecord {
    let serving = if result == "applied" {
        new
    } else {
        old.unwrap_or("")
    };
    PolicyChangeRecord {
        record_version: policy_change::POLICY_CHANGE_VERSION,
        event_time: t,
        gateway_instance: "gw-1".into(),
        cause: if old.is_none() { "start" } else { "reload" }.into(),
        result: result.into(),
        old_version: old.map(str::to_string),
        new_version: new.into(),
        serving_version: serving.into(),
        files_changed: vec!["routes.toml".into()],
        errors: errors.iter().map(|e| e.to_string()).collect(),
    }
}

fn write(root: &std::path::Path, table: Table, batch: RecordBatch) {
    let key = table.file_key(&Partition::of(T0), "test", "1");
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lake::writer::encode(&[batch]).unwrap()).unwrap();
}

async fn query(lake: &Lake, sql: &str) -> Vec<RecordBatch> {
    let engine = LocalEngine::open(lake).await.unwrap();
    engine.query(sql, |_, _| {}).await.unwrap().batches
}

#[tokio::test]
async fn the_named_query_compares_each_change_with_the_version_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut requests = Vec::new();
    // v1 serves from the start (T0): 10 requests, two 500s and one 401.
    for i in 0..10 {
        let status = match i {
            0 | 1 => 500,
            2 => 401,
            _ => 200,
        };
        requests.push(request("gw-1", "v1", T0 + 1 + i, status));
    }
    // Another instance on v1 is not part of gw-1's change.
    requests.push(request("gw-2", "v1", T0 + 50, 500));
    // v2 from T0+100: four 401s out of five, then two 200s after a rejected edit.
    for i in 0..5 {
        requests.push(request(
            "gw-1",
            "v2",
            T0 + 101 + i,
            if i < 4 { 401 } else { 200 },
        ));
    }
    requests.push(request("gw-1", "v2", T0 + 300, 200));
    requests.push(request("gw-1", "v2", T0 + 301, 200));
    write(
        dir.path(),
        Table::AccessLogs,
        edgeway_record::arrow::to_sorted_batch(&requests).unwrap(),
    );
    let mut b = PolicyChangeBuilders::default();
    for c in [
        change(T0, "applied", None, "v1", &[]),
        change(T0 + 100, "applied", Some("v1"), "v2", &[]),
        change(
            T0 + 200,
            "rejected",
            Some("v2"),
            "v3",
            &["routes.toml:2:1: route[0].cluster: unknown cluster `nope`"],
        ),
    ] {
        b.append(&c);
    }
    write(
        dir.path(),
        Table::PolicyChanges,
        RecordBatch::try_new(policy_change::schema(), b.finish()).unwrap(),
    );
    let lake = Lake::open(
        dir.path().to_str().unwrap(),
        &StoreSettings::default(),
        false,
    )
    .unwrap();

    // The table itself, in both schemas, with its list columns.
    let rows = query(
        &lake,
        "SELECT result, new_version, serving_version, cardinality(errors) AS n, dt \
         FROM edgeway.policy_changes ORDER BY event_time",
    )
    .await;
    let b = &rows[0];
    assert_eq!(b.num_rows(), 3);
    let s = |c: &str, i: usize| {
        b.column_by_name(c)
            .unwrap()
            .as_string::<i32>()
            .value(i)
            .to_string()
    };
    assert_eq!(
        (s("result", 2), s("new_version", 2), s("serving_version", 2)),
        ("rejected".into(), "v3".into(), "v2".into())
    );
    assert_eq!(s("dt", 0), "2025-11-22");

    let sql = lake::named::get("errors_around_policy_changes")
        .unwrap()
        .render(&[])
        .unwrap();
    let out = query(&lake, &sql).await;
    let rows: usize = out.iter().map(|b| b.num_rows()).sum();
    assert_eq!(
        rows, 1,
        "one applied change with a version before it, one route"
    );
    let b = &out[0];
    let int = |c: &str| {
        b.column_by_name(c)
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0)
    };
    let rate = |c: &str| {
        let a = b.column_by_name(c).unwrap();
        (!a.is_null(0)).then(|| a.as_primitive::<Float64Type>().value(0))
    };
    assert_eq!(s_of(b, "old_version"), "v1");
    assert_eq!(s_of(b, "new_version"), "v2");
    assert_eq!(s_of(b, "route"), "users");
    assert_eq!(s_of(b, "files_changed"), "routes.toml");
    assert_eq!((int("requests_before"), int("requests_after")), (10, 7));
    assert_eq!(rate("error_rate_before"), Some(0.3));
    assert_eq!(rate("error_rate_after"), Some(0.5714));
    assert_eq!(rate("server_error_rate_before"), Some(0.2));
    assert_eq!(rate("server_error_rate_after"), Some(0.0));
}

fn s_of(b: &RecordBatch, c: &str) -> String {
    b.column_by_name(c)
        .unwrap()
        .as_string::<i32>()
        .value(0)
        .to_string()
}
