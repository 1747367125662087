use std::collections::HashSet;
use std::time::Duration;

use pingora::http::RequestHeader;
use proptest::prelude::*;

use super::*;
use crate::policy::{self, PolicyErrors};
use crate::upstream::ClusterSpec;

const CLUSTERS: &str = r#"
[cluster.users-a]
endpoints = ["127.0.0.1:9"]
[cluster.users-a-r1]
endpoints = ["127.0.0.1:10"]
[cluster.users-b]
endpoints = ["127.0.0.1:11"]
[cluster.users-c]
endpoints = ["127.0.0.1:12"]
[cluster.v2]
endpoints = ["127.0.0.1:13"]
"#;

fn load(shards: &str, routes: &str) -> Result<policy::Snapshot, PolicyErrors> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("clusters.toml"), CLUSTERS).unwrap();
    std::fs::write(dir.path().join("shards.toml"), shards).unwrap();
    std::fs::write(dir.path().join("routes.toml"), routes).unwrap();
    policy::load_dir(dir.path())
}

fn errors(shards: &str, routes: &str) -> Vec<policy::PolicyError> {
    load(shards, routes).expect_err("invalid").0
}

async fn cluster(name: &str) -> Arc<Cluster> {
    let spec = ClusterSpec {
        name: Arc::from(name),
        endpoints: vec!["127.0.0.1:9".into()],
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        tls: None,
        health_check: None,
    };
    let gauge = crate::metrics::Metrics::new().upstream_healthy;
    Arc::new(Cluster::build(&spec, &gauge).await.unwrap())
}

async fn compiled(snapshot: &policy::Snapshot, name: &str) -> ShardMap {
    let mut clusters = HashMap::new();
    for c in &snapshot.clusters {
        clusters.insert(Arc::clone(&c.name), cluster(&c.name).await);
    }
    let spec = snapshot
        .shards
        .maps
        .iter()
        .find(|m| &*m.name == name)
        .unwrap();
    ShardMap::build(spec, &clusters).unwrap()
}

const RANGES: &str = r#"
[shard_map.users]
kind = "range"
shards.a = { primary = "users-a", replicas = ["users-a-r1"] }
shards.b = { primary = "users-b" }
shards.c = { primary = "users-c" }

[[shard_map.users.range]]
from = 1000
to = 1999
shard = "b"

[[shard_map.users.range]]
from = 0
to = 999
shard = "a"

[shard_map.users.pin]
"tenant-42" = "c"
"5" = "b"
"#;

const ROUTE: &str = r#"
[[route]]
name = "users"
shard_map = "users"
shard_key = "header:x-user"
"#;

fn shard_of<'m>(m: &'m ShardMap, key: &str) -> Result<&'m str, Miss> {
    m.lookup(key.as_bytes()).map(|i| &*m.shards[i].name)
}

#[tokio::test]
async fn range_boundaries_pins_and_the_explicit_catch_all() {
    let snap = load(RANGES, ROUTE).unwrap();
    let m = compiled(&snap, "users").await;
    assert_eq!(shard_of(&m, "0"), Ok("a"));
    assert_eq!(shard_of(&m, "999"), Ok("a"));
    assert_eq!(shard_of(&m, "1000"), Ok("b"));
    assert_eq!(shard_of(&m, "1999"), Ok("b"));
    assert_eq!(shard_of(&m, "2000"), Err(Miss::NoShard));
    assert_eq!(shard_of(&m, "18446744073709551615"), Err(Miss::NoShard));
    for bad in ["", "abc", "-1", "1e3", " 7", "18446744073709551616"] {
        assert_eq!(shard_of(&m, bad), Err(Miss::Malformed), "{bad:?}");
    }
    // The lookup table comes first, for ids as for other keys.
    assert_eq!(shard_of(&m, "tenant-42"), Ok("c"));
    assert_eq!(shard_of(&m, "5"), Ok("b"));
    assert_eq!(shard_of(&m, "6"), Ok("a"));

    // Ranges that start above 0, with a catch-all: below, above.
    let shards = r#"
[shard_map.users]
kind = "range"
catch_all = "c"
shards.a = { primary = "users-a" }
shards.c = { primary = "users-c" }
[[shard_map.users.range]]
from = 10
to = 19
shard = "a"
"#;
    let snap = load(shards, ROUTE).unwrap();
    let m = compiled(&snap, "users").await;
    assert_eq!(shard_of(&m, "9"), Ok("c"));
    assert_eq!(shard_of(&m, "10"), Ok("a"));
    assert_eq!(shard_of(&m, "19"), Ok("a"));
    assert_eq!(shard_of(&m, "20"), Ok("c"));
    assert_eq!(shard_of(&m, "x"), Err(Miss::Malformed));
}

#[test]
fn gaps_and_overlaps_name_both_lines() {
    let gap = RANGES.replace("from = 1000", "from = 1001");
    let e = errors(&gap, ROUTE);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].file.ends_with("shards.toml"));
    assert_eq!(
        (e[0].line, e[0].field.as_str()),
        (8, "shard_map.users.range[0]")
    );
    assert!(e[0].message.contains("gap: keys 1000..=1000"), "{}", e[0]);
    assert!(e[0].message.contains("shards.toml:13"), "{}", e[0]);

    let overlap = RANGES.replace("to = 999", "to = 1000");
    let e = errors(&overlap, ROUTE);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].line, 8, "{}", e[0]);
    assert!(e[0].message.contains("overlaps range 0..=1000"), "{}", e[0]);
    assert!(e[0].message.contains("shards.toml:13"), "{}", e[0]);
}

#[test]
fn references_and_shapes_are_checked() {
    let e = errors(&RANGES.replace("\"users-b\"", "\"users-bb\""), ROUTE);
    assert_eq!(e[0].field, "shard_map.users.shards.b.primary");
    assert!(e[0].message.contains("did you mean `users-b`?"), "{}", e[0]);

    let e = errors(&RANGES.replace("shard = \"b\"", "shard = \"d\""), ROUTE);
    assert_eq!(e[0].field, "shard_map.users.range[0].shard", "{}", e[0]);

    let e = errors(
        &RANGES.replace("kind = \"range\"", "kind = \"hash\""),
        ROUTE,
    );
    assert!(e.iter().all(
        |e| e.message.contains("kind = \\\"hash\\\"") || e.message.contains("kind = \"hash\"")
    ));
    assert_eq!(e.len(), 2, "{e:?}");

    let e = errors(
        RANGES,
        &ROUTE.replace("shard_map = \"users\"", "shard_map = \"user\""),
    );
    assert!(e[0].message.contains("did you mean `users`?"), "{}", e[0]);

    let e = errors(
        RANGES,
        &ROUTE.replace("shard_key = \"header:x-user\"\n", ""),
    );
    assert_eq!(e[0].field, "route[0].shard_key");

    let e = errors(RANGES, &format!("{ROUTE}cluster = \"users-a\"\n"));
    assert!(
        e[0].message.contains("both `cluster` and `shard_map`"),
        "{}",
        e[0]
    );

    let e = errors(RANGES, "[[route]]\nname = \"x\"\n");
    assert!(e[0].message.contains("neither"), "{}", e[0]);

    let e = errors(RANGES, &ROUTE.replace("header:x-user", "claim:sub"));
    assert_eq!(e[0].field, "route[0].shard_key");
    assert!(e[0].message.contains("without `auth`"), "{}", e[0]);

    let canary =
        |c: &str| format!("[[route]]\nname = \"x\"\ncluster = \"users-a\"\ncanary = {{ {c} }}\n");
    let e = errors(
        RANGES,
        &canary("cluster = \"v3\", percent = 5, key = \"ip\""),
    );
    assert_eq!(e[0].field, "route[0].canary.cluster");
    let e = errors(
        RANGES,
        &canary("cluster = \"v2\", percent = 101, key = \"ip\""),
    );
    assert_eq!(e[0].field, "route[0].canary.percent");
    let e = errors(
        RANGES,
        &canary("cluster = \"v2\", percent = 5, key = \"nope\""),
    );
    assert_eq!(e[0].field, "route[0].canary.key");
    let claim_canary = load(
        RANGES,
        &canary("cluster = \"v2\", percent = 5, key = \"claim:sub\""),
    );
    let warnings = claim_canary.unwrap().warnings;
    assert_eq!(warnings[0].field, "route[0].canary.key", "{warnings:?}");
    assert!(load(
        RANGES,
        &canary(
            "cluster = \"v2\", percent = 2.5, key = \"claim:sub\", force_header = \"x-canary\""
        )
    )
    .is_ok());
}

fn keys(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("user-{i}"))
}

#[test]
fn hashing_spreads_100000_keys_within_5_percent() {
    for n in [2usize, 3, 5, 8] {
        let seeds: Vec<u64> = (0..n).map(|i| seed(&format!("shard-{i}"))).collect();
        let mut counts = vec![0usize; n];
        for k in keys(100_000) {
            counts[rendezvous(hash(k.as_bytes()), &seeds)] += 1;
        }
        let expected = 100_000.0 / n as f64;
        for c in &counts {
            let off = (*c as f64 - expected).abs() / expected;
            assert!(off < 0.05, "{n} shards: {counts:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn adding_moves_about_one_in_n_plus_one_removing_only_its_keys(
        n in 2usize..16,
        removed in 0usize..16,
        salt in any::<u32>(),
    ) {
        let names: Vec<String> = (0..=n).map(|i| format!("s{salt}-{i}")).collect();
        let seeds: Vec<u64> = names.iter().map(|s| seed(s)).collect();
        let before = &seeds[..n];
        let hashes: Vec<u64> = keys(20_000).map(|k| hash(k.as_bytes())).collect();
        // Add shard n: only keys that now go to it move, about 1/(N+1) of them.
        let mut moved = 0;
        for h in &hashes {
            let (a, b) = (rendezvous(*h, before), rendezvous(*h, &seeds));
            if a != b {
                prop_assert_eq!(b, n);
                moved += 1;
            }
        }
        let share = moved as f64 / hashes.len() as f64;
        let expected = 1.0 / (n as f64 + 1.0);
        prop_assert!((share - expected).abs() < 0.02, "{} vs {}", share, expected);
        // Remove one: only its keys move.
        let removed = removed % n;
        let rest: Vec<u64> = before.iter().enumerate().filter(|(i, _)| *i != removed).map(|(_, s)| *s).collect();
        for h in &hashes {
            let a = before[rendezvous(*h, before)];
            let b = rest[rendezvous(*h, &rest)];
            if a != before[removed] {
                prop_assert_eq!(a, b);
            }
        }
    }
}

#[test]
fn canary_share_within_2_percent_and_sticky_when_raised() {
    let salt = seed("v2");
    let on = |per_10k: u32| -> HashSet<String> {
        keys(10_000)
            .filter(|k| bucket(salt, k.as_bytes()) < per_10k)
            .collect()
    };
    for pct in [1u32, 5, 10, 50] {
        let share = on(pct * 100).len() as f64 / 100.0;
        assert!((share - pct as f64).abs() <= 2.0, "{pct}%: {share}%");
    }
    let five = on(500);
    let ten = on(1000);
    assert!(
        five.is_subset(&ten),
        "raising 5% to 10% moved canary keys off"
    );
    assert!(on(0).is_empty());
    assert_eq!(on(10_000).len(), 10_000);
}

fn request(method: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut h = RequestHeader::build(method, b"/users/7", None).unwrap();
    for (k, v) in headers {
        h.append_header(k.to_string(), *v).unwrap();
    }
    h
}

#[tokio::test]
async fn pick_splits_reads_and_applies_the_canary() {
    let snap = load(RANGES, ROUTE).unwrap();
    let map = Arc::new(compiled(&snap, "users").await);
    let metrics = crate::metrics::Metrics::new();
    let mut maps = HashMap::new();
    maps.insert(Arc::from("users"), map);
    let mut clusters = HashMap::new();
    clusters.insert(Arc::from("v2"), cluster("v2").await);
    let rule = RouteShardSpec {
        map: Arc::from("users"),
        key: "header:x-user".parse().unwrap(),
        read_split: true,
    };
    let canary = CanarySpec {
        cluster: Arc::from("v2"),
        per_10k: 0,
        key: "header:x-user".parse().unwrap(),
        force_header: Some(HeaderName::from_static("x-canary")),
    };
    let (rs, rc) = plan(
        "r",
        Some(&rule),
        Some(&canary),
        &maps,
        &clusters,
        &metrics.shard,
    )
    .unwrap();
    let (rs, rc) = (rs.unwrap(), rc.unwrap());
    let go = |method: &str, headers: &[(&str, &str)]| {
        let h = request(method, headers);
        let req = key::Request {
            header: &h,
            path: "/users/7",
            client_ip: None,
            route: "r",
            identity: None,
        };
        pick(Some(&rs), Some(&rc), &req, &h.method).map(|p| {
            (
                p.cluster.map(|c| c.spec.name.to_string()),
                p.shard.map(|s| s.to_string()),
                p.arm,
            )
        })
    };
    let get = go("GET", &[("x-user", "7")]).unwrap();
    assert_eq!(
        get,
        (
            Some("users-a-r1".into()),
            Some("a".into()),
            Some(Arm::Stable)
        )
    );
    let post = go("POST", &[("x-user", "7")]).unwrap();
    assert_eq!(post.0.as_deref(), Some("users-a"));
    let b = go("GET", &[("x-user", "1500")]).unwrap();
    assert_eq!(b.0.as_deref(), Some("users-b"), "no replicas: the primary");
    let forced = go("GET", &[("x-user", "7"), ("x-canary", "canary")]).unwrap();
    assert_eq!(
        (forced.0.as_deref(), forced.2),
        (Some("v2"), Some(Arm::Canary))
    );

    let missing = go("GET", &[]).unwrap_err();
    assert_eq!(missing.class, ErrorClass::BadRequest);
    assert!(
        missing.message.contains("header:x-user"),
        "{}",
        missing.message
    );
    let malformed = go("GET", &[("x-user", "seven")]).unwrap_err();
    assert!(malformed
        .message
        .contains("malformed shard key `header:x-user`"));
    let outside = go("GET", &[("x-user", "5000")]).unwrap_err();
    assert_eq!((outside.class, outside.status), (ErrorClass::NoShard, 404));
    assert_eq!(metrics.shard.requests("r", "users", "a").get(), 3);
    assert_eq!(metrics.shard.canary("r", Arm::Canary).get(), 1);
}
