//! The reload audit trail end to end: a real gateway in local mode and a real local pipeline.
//! The load at start, a valid edit and an invalid edit of the policy directory each become
//! one policy-change event, in the gateway's log and, through the access log's durable path,
//! in the lake's `policy_changes` table; `lake query` joins it to the requests each version
//! served (`errors_around_policy_changes`).

use std::process::Command;
use std::time::Duration;

use e2e::origin::Origin;
use e2e::pipeline_util::PipelineProc;
use e2e::{eventually, Gateway};
use serde_json::Value;

const ROUTES: &str = "[[route]]\nname = \"app\"\nhosts = [\"app.test\"]\ncluster = \"app\"\n";

fn lake_query(root: &str, args: &[&str]) -> Result<Vec<Value>, String> {
    let out = Command::new(e2e::bin("lake"))
        .args(["--lake", root, "query", "--format", "json", "-q"])
        .args(args)
        .output()
        .expect("run lake");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).map_err(|e| format!("{e}: {text}"))
}

async fn send(client: &reqwest::Client, gw: &Gateway, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        let r = client
            .get(gw.url("/items"))
            .header("host", "app.test")
            .send()
            .await
            .expect("request");
        statuses.push(r.status().as_u16());
    }
    statuses
}

async fn wait_reloads(gw: &Gateway, result: &str, n: f64) {
    eventually(
        &format!("{n} reload(s) with result {result}"),
        Duration::from_secs(20),
        || async {
            (gw.metric("gateway_policy_reloads_total", &[("result", result)])
                .await
                >= n)
                .then_some(())
        },
    )
    .await;
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| text(s).to_string())
        .collect()
}

#[tokio::test]
async fn applied_and_rejected_reloads_reach_the_lake_and_join_the_requests() {
    let origin = Origin::start("app").await;
    let clusters = format!("[cluster.app]\nendpoints = [\"{}\"]\n", origin.addr);
    let gw = Gateway::start_with(
        &[("c.toml", &clusters), ("r.toml", ROUTES)],
        &["--access-log-linger", "20ms", "--instance-id", "gw-audit"],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let root = lake.to_str().unwrap().to_string();
    let _pipeline = PipelineProc::start(
        &[
            "--local-log",
            gw.access_log_dir().to_str().unwrap(),
            "--lake",
            &root,
            "--max-file-age",
            "1s",
            "--idle-poll",
            "50ms",
        ],
        &[],
        dir.path().join("pipeline.log"),
    );
    let client = reqwest::Client::new();

    // Version 1 serves: five good requests.
    assert_eq!(send(&client, &gw, 5).await, [200; 5]);

    // A valid edit: the cluster moves to a port nothing listens on, so the same route fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    gw.write_policy(
        "c.toml",
        &format!("[cluster.app]\nendpoints = [\"{dead_addr}\"]\n"),
    );
    wait_reloads(&gw, "success", 1.0).await;
    let after = send(&client, &gw, 5).await;
    assert!(after.iter().all(|s| *s >= 500), "{after:?}");

    // An invalid edit: rejected, version 2 keeps serving.
    gw.write_policy(
        "r.toml",
        "[[route]]\nname = \"app\"\nhosts = [\"app.test\"]\ncluster = \"nope\"\n",
    );
    wait_reloads(&gw, "failure", 1.0).await;

    // All three events reach the lake's policy_changes table, in order.
    let changes = eventually(
        "three policy changes in the lake",
        Duration::from_secs(30),
        || {
            let root = root.clone();
            async move {
                let rows = lake_query(
                    &root,
                    &[
                        "SELECT cause, result, old_version, new_version, serving_version, \
                   files_changed, errors, gateway_instance, dt, hour \
                   FROM policy_changes ORDER BY event_time",
                    ],
                )
                .ok()?;
                (rows.len() == 3).then_some(rows)
            }
        },
    )
    .await;
    let (start, applied, rejected) = (&changes[0], &changes[1], &changes[2]);
    assert_eq!(
        (text(&start["cause"]), text(&start["result"])),
        ("start", "applied")
    );
    assert!(start["old_version"].is_null(), "{start}");
    assert_eq!(strings(&start["files_changed"]), ["c.toml", "r.toml"]);
    let v1 = text(&start["new_version"]);
    assert_eq!(text(&start["serving_version"]), v1);

    assert_eq!(
        (text(&applied["cause"]), text(&applied["result"])),
        ("reload", "applied")
    );
    assert_eq!(text(&applied["old_version"]), v1);
    let v2 = text(&applied["new_version"]);
    assert_ne!(v1, v2);
    assert_eq!(text(&applied["serving_version"]), v2);
    assert_eq!(strings(&applied["files_changed"]), ["c.toml"]);
    assert!(strings(&applied["errors"]).is_empty());

    assert_eq!(text(&rejected["result"]), "rejected");
    assert_eq!(text(&rejected["old_version"]), v2);
    assert_ne!(text(&rejected["new_version"]), v2);
    assert_eq!(
        text(&rejected["serving_version"]),
        v2,
        "the last good version serves"
    );
    assert_eq!(strings(&rejected["files_changed"]), ["r.toml"]);
    let errors = strings(&rejected["errors"]);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("r.toml:4:11: route[0].cluster: ") && errors[0].contains("nope"),
        "{errors:?}"
    );
    for row in &changes {
        assert_eq!(text(&row["gateway_instance"]), "gw-audit");
        assert!(!text(&row["dt"]).is_empty() && !text(&row["hour"]).is_empty());
    }

    // The same events in the gateway's log, as structured fields.
    let log = gw.log();
    let events: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "policy change")
        .collect();
    assert_eq!(events.len(), 3, "{log}");
    assert_eq!(events[2]["level"], "WARN");
    assert_eq!(events[2]["fields"]["result"], "rejected");
    assert_eq!(events[2]["fields"]["serving_version"], v2);
    assert!(
        text(&events[2]["fields"]["errors"]).contains("route[0].cluster"),
        "{}",
        events[2]
    );

    // The requests join the change: version 1 served the five before it, version 2 the five
    // after, on the same route.
    let rows = eventually("ten requests in the lake", Duration::from_secs(30), || {
        let root = root.clone();
        async move {
            let rows = lake_query(&root, &["--named", "errors_around_policy_changes"]).ok()?;
            let done = rows.len() == 1
                && rows[0]["requests_before"].as_f64() == Some(5.0)
                && rows[0]["requests_after"].as_f64() == Some(5.0);
            done.then_some(rows)
        }
    })
    .await;
    let r = &rows[0];
    assert_eq!(text(&r["route"]), "app");
    assert_eq!((text(&r["old_version"]), text(&r["new_version"])), (v1, v2));
    assert_eq!(text(&r["files_changed"]), "c.toml");
    assert_eq!(text(&r["gateway_instance"]), "gw-audit");
    assert_eq!(r["error_rate_before"].as_f64(), Some(0.0));
    assert_eq!(r["error_rate_after"].as_f64(), Some(1.0));
    assert_eq!(r["server_error_rate_after"].as_f64(), Some(1.0));
}
