//! Shard-aware routing end to end: a real gateway, real origins (each answer names the
//! origin that served it), real health checks, tokens signed per run. What a client sees
//! (status, JSON error, which origin answered), the access-log record (`shard`,
//! `upstream_cluster`, `error_class`, `policy_version`) and the metrics.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use e2e::jwt::{claims, jwks, SigningKey};
use e2e::origin::Origin;
use e2e::{eventually, read_access_log, Gateway};
use jsonwebtoken::Algorithm;
use serde_json::Value;

const ISS: &str = "https://id.test/";
const AUD: &str = "api.test";

/// `[cluster.<name>]` for each origin, with a fast health check when `checked`.
fn clusters(origins: &[(&str, &Origin, bool)]) -> String {
    let mut s = String::new();
    for (name, o, checked) in origins {
        s.push_str(&format!(
            "[cluster.{name}]\nendpoints = [\"{}\"]\nconnect_timeout = \"300ms\"\n",
            o.addr
        ));
        if *checked {
            s.push_str(&format!(
                "[cluster.{name}.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\ntimeout = \"2s\"\nunhealthy_threshold = 1\nhealthy_threshold = 1\n"
            ));
        }
    }
    s
}

struct Answer {
    status: u16,
    body: Value,
}

impl Answer {
    fn origin(&self) -> &str {
        self.body["origin"].as_str().unwrap_or("-")
    }
}

async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Answer {
    let mut req = client.request(method.parse().unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    Answer {
        status: r.status().as_u16(),
        body: r.json().await.unwrap_or(Value::Null),
    }
}

/// The gateway's records by request id, once every one of `ids` is written.
async fn records(gw: &Gateway, ids: &[&str]) -> HashMap<String, edgeway_record::AccessLogRecord> {
    eventually("access-log records", Duration::from_secs(10), || async {
        let all: HashMap<_, _> = read_access_log(&gw.access_log_dir())
            .into_iter()
            .flat_map(|(_, r)| r)
            .map(|r| (r.request_id.clone(), r))
            .collect();
        ids.iter().all(|id| all.contains_key(*id)).then_some(all)
    })
    .await
}

const USERS: &str = r#"
[shard_map.users]
kind = "range"
shards.a = { primary = "a" }
shards.b = { primary = "b" }
[[shard_map.users.range]]
from = 0
to = 999
shard = "a"
[[shard_map.users.range]]
from = 1000
to = 1999
shard = "b"
[shard_map.users.pin]
vip = "b"
"#;

#[tokio::test]
async fn the_key_from_a_header_a_path_segment_a_query_parameter_or_a_claim_picks_the_shard() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let rsa = SigningKey::rsa("rsa-1", Algorithm::RS256);
    let auth = format!(
        r#"
[issuer.main]
iss = "{ISS}"
audiences = ["{AUD}"]
algorithms = ["RS256"]
jwks_file = "main.jwks.json"

[auth.users]
issuers = ["main"]
"#
    );
    let routes = r#"
[[route]]
name = "by-header"
path_prefix = "/h"
shard_map = "users"
shard_key = "header:x-user-id"

[[route]]
name = "by-path"
path_prefix = "/p"
shard_map = "users"
shard_key = "path:2"

[[route]]
name = "by-query"
path_prefix = "/q"
shard_map = "users"
shard_key = "query:user"

[[route]]
name = "by-claim"
path_prefix = "/j"
shard_map = "users"
shard_key = "claim:sub"
auth = "users"
"#;
    let gw = Gateway::start(&[
        ("c.toml", &clusters(&[("a", &a, false), ("b", &b, false)])),
        ("shards.toml", USERS),
        ("routes.toml", routes),
        ("auth.toml", &auth),
        ("main.jwks.json", &jwks(&[&rsa])),
    ])
    .await;
    let c = reqwest::Client::new();
    let token = |sub: &str| format!("Bearer {}", rsa.sign(&claims(ISS, AUD, sub)));
    for (id, origin) in [
        ("0", "a"),
        ("999", "a"),
        ("1000", "b"),
        ("1999", "b"),
        ("vip", "b"),
    ] {
        let h = send(&c, "GET", &gw.url("/h/x"), &[("x-user-id", id)]).await;
        assert_eq!((h.status, h.origin()), (200, origin), "header {id}");
        let p = send(&c, "GET", &gw.url(&format!("/p/{id}/orders")), &[]).await;
        assert_eq!((p.status, p.origin()), (200, origin), "path {id}");
        let q = send(&c, "GET", &gw.url(&format!("/q?x=1&user={id}")), &[]).await;
        assert_eq!((q.status, q.origin()), (200, origin), "query {id}");
        let j = send(&c, "GET", &gw.url("/j"), &[("authorization", &token(id))]).await;
        assert_eq!((j.status, j.origin()), (200, origin), "claim {id}");
    }

    // Missing and malformed keys: 400 naming the key source; outside every range: 404.
    let hits_before =
        a.state.requests.load(Ordering::SeqCst) + b.state.requests.load(Ordering::SeqCst);
    let missing = send(&c, "GET", &gw.url("/h/x"), &[("x-request-id", "missing")]).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["error"], "bad_request");
    assert_eq!(
        missing.body["message"],
        "missing shard key `header:x-user-id`"
    );
    let bad = send(&c, "GET", &gw.url("/q?user=12ab"), &[]).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body["message"]
            .as_str()
            .unwrap()
            .contains("malformed shard key `query:user`"),
        "{}",
        bad.body
    );
    let no_path = send(&c, "GET", &gw.url("/p"), &[]).await;
    assert_eq!(no_path.status, 400);
    assert!(no_path.body["message"]
        .as_str()
        .unwrap()
        .contains("`path:2`"));
    let outside = send(
        &c,
        "GET",
        &gw.url("/h/x"),
        &[("x-user-id", "2000"), ("x-request-id", "outside")],
    )
    .await;
    assert_eq!(outside.status, 404);
    assert_eq!(outside.body["error"], "no_shard");
    let hits_after =
        a.state.requests.load(Ordering::SeqCst) + b.state.requests.load(Ordering::SeqCst);
    assert_eq!(
        hits_before, hits_after,
        "a refused request reached an origin"
    );

    let sent = send(
        &c,
        "GET",
        &gw.url("/h/x"),
        &[("x-user-id", "1500"), ("x-request-id", "to-b")],
    )
    .await;
    assert_eq!(sent.origin(), "b");
    let recs = records(&gw, &["to-b", "outside", "missing"]).await;
    assert_eq!(recs["to-b"].shard.as_deref(), Some("b"));
    assert_eq!(recs["to-b"].upstream_cluster.as_deref(), Some("b"));
    assert_eq!(recs["to-b"].canary, None, "no canary on this route");
    assert_eq!(recs["outside"].error_class.as_deref(), Some("no_shard"));
    assert_eq!(recs["outside"].status, 404);
    assert_eq!(recs["missing"].error_class.as_deref(), Some("bad_request"));
    assert_eq!(
        gw.metric(
            "gateway_shard_requests_total",
            &[("route", "by-header"), ("shard", "b")]
        )
        .await,
        4.0
    );
}

#[tokio::test]
async fn reads_go_to_healthy_replicas_and_fall_back_to_the_primary() {
    let primary = Origin::start("primary").await;
    let (r1, r2) = (Origin::start("r1").await, Origin::start("r2").await);
    let shards = r#"
[shard_map.users]
kind = "hash"
shards.one = { primary = "primary", replicas = ["r1", "r2"] }
"#;
    let routes = r#"
[[route]]
name = "split"
path_prefix = "/split"
shard_map = "users"
shard_key = "header:x-user-id"

[[route]]
name = "primary-only"
path_prefix = "/primary"
shard_map = "users"
shard_key = "header:x-user-id"
read_split = false
"#;
    let cl = clusters(&[
        ("primary", &primary, false),
        ("r1", &r1, true),
        ("r2", &r2, true),
    ]);
    let gw = Gateway::start(&[
        ("c.toml", &cl),
        ("shards.toml", shards),
        ("routes.toml", routes),
    ])
    .await;
    let c = reqwest::Client::new();
    let user = [("x-user-id", "alice")];
    let mut seen = HashSet::new();
    for _ in 0..6 {
        let r = send(&c, "GET", &gw.url("/split/x"), &user).await;
        assert_eq!(r.status, 200);
        seen.insert(r.origin().to_string());
    }
    assert_eq!(
        seen,
        HashSet::from(["r1".to_string(), "r2".to_string()]),
        "round-robin over replicas"
    );
    let head = c
        .head(gw.url("/split/x"))
        .header("x-user-id", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = send(&c, method, &gw.url("/split/x"), &user).await;
        assert_eq!(r.origin(), "primary", "{method}");
    }
    let r = send(&c, "GET", &gw.url("/primary/x"), &user).await;
    assert_eq!(r.origin(), "primary", "read_split = false");
    assert_eq!(primary.state.requests.load(Ordering::SeqCst), 5);

    // One replica down: reads stay on the other.
    r1.set_healthy(false);
    eventually("r1 out of rotation", Duration::from_secs(10), || async {
        (gw.metric("gateway_upstream_endpoint_healthy", &[("cluster", "r1")])
            .await
            == 0.0)
            .then_some(())
    })
    .await;
    for _ in 0..4 {
        assert_eq!(
            send(&c, "GET", &gw.url("/split/x"), &user).await.origin(),
            "r2"
        );
    }
    // Every replica down: reads fall back to the primary.
    r2.set_healthy(false);
    eventually("reads on the primary", Duration::from_secs(10), || async {
        (send(&c, "GET", &gw.url("/split/x"), &user).await.origin() == "primary").then_some(())
    })
    .await;
    for _ in 0..4 {
        assert_eq!(
            send(&c, "GET", &gw.url("/split/x"), &user).await.origin(),
            "primary"
        );
    }
    // Back again.
    r1.set_healthy(true);
    eventually("reads on r1 again", Duration::from_secs(10), || async {
        (send(&c, "GET", &gw.url("/split/x"), &user).await.origin() == "r1").then_some(())
    })
    .await;
}

fn canary_routes(percent: u32) -> String {
    format!(
        r#"
[[route]]
name = "app"
cluster = "stable"
canary = {{ cluster = "v2", percent = {percent}, key = "header:x-user-id", force_header = "x-canary" }}
"#
    )
}

#[tokio::test]
async fn the_canary_is_sticky_per_key_forced_by_header_and_keeps_its_keys_when_raised() {
    let (stable, v2) = (Origin::start("stable").await, Origin::start("v2").await);
    let cl = clusters(&[("stable", &stable, false), ("v2", &v2, false)]);
    let gw = Gateway::start(&[("c.toml", &cl), ("routes.toml", &canary_routes(10))]).await;
    let c = reqwest::Client::new();
    let users: Vec<String> = (0..300).map(|i| format!("user-{i}")).collect();
    let mut arm = HashMap::new();
    for u in &users {
        let r = send(&c, "GET", &gw.url("/x"), &[("x-user-id", u)]).await;
        assert_eq!(r.status, 200);
        arm.insert(u.clone(), r.origin().to_string());
    }
    let on_canary: HashSet<&String> = users.iter().filter(|u| arm[*u] == "v2").collect();
    assert!(
        (10..=60).contains(&on_canary.len()),
        "{} of 300 on a 10% canary",
        on_canary.len()
    );
    // Sticky across requests.
    for u in users.iter().take(60) {
        let r = send(&c, "GET", &gw.url("/x"), &[("x-user-id", u)]).await;
        assert_eq!(r.origin(), arm[u], "{u} flipped");
    }
    // The forcing header, both ways; no key: stable.
    let stable_user = users.iter().find(|u| arm[*u] == "stable").unwrap();
    let canary_user = *on_canary.iter().next().unwrap();
    let forced = send(
        &c,
        "GET",
        &gw.url("/x"),
        &[
            ("x-user-id", stable_user),
            ("x-canary", "canary"),
            ("x-request-id", "forced-canary"),
        ],
    )
    .await;
    assert_eq!(forced.origin(), "v2");
    let forced = send(
        &c,
        "GET",
        &gw.url("/x"),
        &[
            ("x-user-id", canary_user),
            ("x-canary", "stable"),
            ("x-request-id", "forced-stable"),
        ],
    )
    .await;
    assert_eq!(forced.origin(), "stable");
    // The arm and the cluster that served it are in the record.
    let recs = records(&gw, &["forced-canary", "forced-stable"]).await;
    let rec = |id: &str| (recs[id].canary.clone(), recs[id].upstream_cluster.clone());
    assert_eq!(
        rec("forced-canary"),
        (Some("canary".into()), Some("v2".into()))
    );
    assert_eq!(
        rec("forced-stable"),
        (Some("stable".into()), Some("stable".into()))
    );
    assert_eq!(
        send(&c, "GET", &gw.url("/x"), &[("x-canary", "canary")])
            .await
            .origin(),
        "v2"
    );
    assert_eq!(send(&c, "GET", &gw.url("/x"), &[]).await.origin(), "stable");
    let canary_count = gw
        .metric(
            "gateway_canary_requests_total",
            &[("route", "app"), ("arm", "canary")],
        )
        .await;
    assert!(
        canary_count >= on_canary.len() as f64 + 2.0,
        "{canary_count}"
    );

    // 10% → 30%: every key on the canary stays there, more join.
    gw.write_policy("routes.toml", &canary_routes(30));
    eventually("30% canary", Duration::from_secs(10), || async {
        let mut n = 0;
        for u in users.iter().take(100) {
            if send(&c, "GET", &gw.url("/x"), &[("x-user-id", u)])
                .await
                .origin()
                == "v2"
            {
                n += 1;
            }
        }
        (n > on_canary
            .iter()
            .filter(|u| users[..100].contains(u))
            .count())
        .then_some(())
    })
    .await;
    for u in &on_canary {
        let r = send(&c, "GET", &gw.url("/x"), &[("x-user-id", u)]).await;
        assert_eq!(r.origin(), "v2", "{u} left the canary when it grew");
    }
}

#[tokio::test]
async fn a_shard_map_change_under_traffic_answers_each_request_from_one_version() {
    let (a, b) = (Origin::start("a").await, Origin::start("b").await);
    let v1 = "[shard_map.m]\nkind = \"hash\"\nshards.s = { primary = \"a\" }\n";
    let v2 = "[shard_map.m]\nkind = \"hash\"\nshards.t = { primary = \"b\" }\n";
    let routes = "[[route]]\nname = \"r\"\nshard_map = \"m\"\nshard_key = \"header:x-user-id\"\n";
    let cl = clusters(&[("a", &a, false), ("b", &b, false)]);
    let gw = Arc::new(
        Gateway::start(&[
            ("c.toml", &cl),
            ("shards.toml", v1),
            ("routes.toml", routes),
        ])
        .await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (gw, stop) = (Arc::clone(&gw), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let c = reqwest::Client::new();
            let mut answers = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("t{t}-{i}");
                i += 1;
                let r = send(
                    &c,
                    "GET",
                    &gw.url("/x"),
                    &[("x-user-id", "u1"), ("x-request-id", &id)],
                )
                .await;
                assert_eq!(r.status, 200, "{id}: {}", r.body);
                answers.push((id, r.origin().to_string()));
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.write_policy("shards.toml", v2);
    let c = reqwest::Client::new();
    eventually("the new map serving", Duration::from_secs(10), || async {
        (send(&c, "GET", &gw.url("/x"), &[("x-user-id", "u1")])
            .await
            .origin()
            == "b")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let mut answers = Vec::new();
    for t in tasks {
        answers.extend(t.await.unwrap());
    }
    // Other requests (the poll above) make records too: wait for these very ones.
    let ids: Vec<&str> = answers.iter().map(|(id, _)| id.as_str()).collect();
    let recs = records(&gw, &ids).await;
    let mut shard_by_version: HashMap<String, HashSet<String>> = HashMap::new();
    for (id, origin) in &answers {
        let r = &recs[id];
        let (shard, cluster) = (
            r.shard.clone().unwrap(),
            r.upstream_cluster.clone().unwrap(),
        );
        // The shard, the cluster and the origin that answered all come from one map.
        assert_eq!(
            (shard.as_str(), cluster.as_str()),
            if origin == "a" {
                ("s", "a")
            } else {
                ("t", "b")
            },
            "{id}"
        );
        shard_by_version
            .entry(r.policy_version.clone())
            .or_default()
            .insert(shard);
    }
    assert_eq!(
        shard_by_version.len(),
        2,
        "both versions served: {shard_by_version:?}"
    );
    // The removed shard leaves the metrics; the new one is counted.
    assert_eq!(
        gw.metric("gateway_shard_requests_total", &[("shard", "s")])
            .await,
        0.0
    );
    assert!(
        gw.metric("gateway_shard_requests_total", &[("shard", "t")])
            .await
            >= 1.0
    );
    assert!(
        shard_by_version.values().all(|s| s.len() == 1),
        "{shard_by_version:?}"
    );
}
