//! `gateway check`: every error names file, line, column and field; exit status tells.

use std::process::Command;

fn check(files: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new(e2e::bin("gateway"))
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", dir.path().display()), "");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

const CLUSTER: &str = "[cluster.api]\nendpoints = [\"127.0.0.1:9001\"]\n";

#[test]
fn example_policies_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let out = Command::new(e2e::bin("gateway"))
        .arg("check")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
}

#[test]
fn unknown_key_names_file_line_and_field() {
    let routes = "[[route]]\nname = \"a\"\ncluster = \"api\"\npath_prefx = \"/v1\"\n";
    let (ok, _, err) = check(&[("c.toml", CLUSTER), ("routes.toml", routes)]);
    assert!(!ok);
    assert!(
        err.contains(
            "routes.toml:4:1: route[0].path_prefx: unknown field `path_prefx`, expected one of"
        ),
        "{err}"
    );
}

#[test]
fn wrong_type_names_file_line_and_field() {
    let bad = "[cluster.api]\nendpoints = \"127.0.0.1:9001\"\n";
    let (ok, _, err) = check(&[("c.toml", bad)]);
    assert!(!ok);
    assert!(err.contains("c.toml:2:13: cluster.api.endpoints: invalid type: string \"127.0.0.1:9001\", expected a sequence"), "{err}");
}

#[test]
fn missing_cluster_and_bad_values_are_all_reported() {
    let routes = "[[route]]\nname = \"a\"\ncluster = \"nope\"\n\n[[route]]\nname = \"b\"\npath_prefix = \"v1\"\nmethods = [\"GET\", \"get me\"]\ncluster = \"api\"\n";
    let clusters = "[cluster.api]\nendpoints = [\"127.0.0.1:9001\"]\nread_timeout = \"soon\"\n";
    let (ok, _, err) = check(&[("c.toml", clusters), ("r.toml", routes)]);
    assert!(!ok);
    assert!(
        err.contains("c.toml:3:16: cluster.api.read_timeout: found `soon`"),
        "{err}"
    );
    assert!(err.contains("r.toml:3:11: route[0].cluster: found `nope`, expected one of the defined clusters: [api]"), "{err}");
    assert!(
        err.contains("r.toml:7:15: route[1].path_prefix: found `v1`"),
        "{err}"
    );
    assert!(
        err.contains("r.toml:8:19: route[1].methods[1]: found `get me`"),
        "{err}"
    );
    assert!(err.contains("4 error(s)"), "{err}");
}

#[test]
fn a_close_cluster_name_gets_a_suggestion() {
    let clusters = "[cluster.api]\nendpoints = [\"127.0.0.1:9001\"]\n[cluster.static]\nendpoints = [\"127.0.0.1:9002\"]\n";
    let routes = "[[route]]\nname = \"a\"\ncluster = \"statc\"\n";
    let (ok, _, err) = check(&[("c.toml", clusters), ("r.toml", routes)]);
    assert!(!ok);
    assert!(
        err.contains("r.toml:3:11: route[0].cluster: found `statc`, expected one of the defined clusters: [api, static] (did you mean `static`?)"),
        "{err}"
    );
}

#[test]
fn duplicate_route_is_reported_with_both_places() {
    let r1 =
        "[[route]]\nname = \"a\"\nhosts = [\"x.test\"]\npath_prefix = \"/v1\"\ncluster = \"api\"\n";
    let r2 = "# second file\n[[route]]\nname = \"b\"\nhosts = [\"x.test\"]\npath_prefix = \"/v1\"\nmethods = [\"GET\"]\ncluster = \"api\"\n\n[[route]]\nname = \"a\"\ncluster = \"api\"\n";
    let (ok, _, err) = check(&[("a.toml", CLUSTER), ("r1.toml", r1), ("r2.toml", r2)]);
    assert!(!ok);
    assert!(err.contains("r2.toml:3:8: route[0]: duplicate route: same hosts, path_prefix `/v1` and methods as route `a`"), "{err}");
    assert!(
        err.contains("r2.toml:10:8: route[1].name: duplicate route name `a`, already used in"),
        "{err}"
    );
    // A different method set on the same host and prefix is not a duplicate.
    let r3 = "[[route]]\nname = \"c\"\nhosts = [\"x.test\"]\npath_prefix = \"/v1\"\nmethods = [\"POST\"]\ncluster = \"api\"\n[[route]]\nname = \"d\"\nhosts = [\"x.test\"]\npath_prefix = \"/v1\"\nmethods = [\"GET\"]\ncluster = \"api\"\n";
    let (ok, out, err) = check(&[("a.toml", CLUSTER), ("r.toml", r3)]);
    assert!(ok, "{err}");
    assert!(out.contains("2 routes"));
}

#[test]
fn duplicate_cluster_across_files_and_syntax_error() {
    let (ok, _, err) = check(&[("a.toml", CLUSTER), ("b.toml", CLUSTER)]);
    assert!(!ok);
    assert!(
        err.contains("b.toml:1:1: cluster.api: duplicate cluster `api`, already defined in"),
        "{err}"
    );
    let (ok, _, err) = check(&[("a.toml", "[cluster.api\n")]);
    assert!(!ok);
    assert!(err.starts_with("a.toml:1:"), "{err}");
}

#[test]
fn schema_is_generated_from_the_same_types() {
    let out = Command::new(e2e::bin("gateway"))
        .arg("schema")
        .output()
        .unwrap();
    let schema: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert!(schema["definitions"]["RouteFile"]["properties"]["path_prefix"].is_object());
    assert_eq!(
        schema["definitions"]["ClusterFile"]["additionalProperties"],
        false
    );
}

#[test]
fn auth_mistakes_name_file_line_and_field() {
    let routes = "[[route]]\nname = \"a\"\ncluster = \"api\"\nauth = \"user\"\n";
    let auth = r#"[issuer.main]
iss = "https://id.test/"
audiences = ["api"]
algorithms = []
jwks_file = "main.jwks.json"

[issuer.hs]
iss = "https://hs.test/"
audiences = ["api"]
algorithms = ["HS256"]
secret = "do-not-write-secrets-here-ever-0123456789"

[auth.users]
issuers = ["mian"]
"#;
    let (ok, _, err) = check(&[
        ("c.toml", CLUSTER),
        ("r.toml", routes),
        ("auth.toml", auth),
        (
            "main.jwks.json",
            "{\"keys\": [{\"kty\": \"RSA\", \"n\": \"!!\"}]}",
        ),
    ]);
    assert!(!ok);
    assert!(
        err.contains("auth.toml:4:14: issuer.main.algorithms: found an empty list"),
        "{err}"
    );
    assert!(
        err.contains("auth.toml:5:13: issuer.main.jwks_file: the JWKS has no usable signature key"),
        "{err}"
    );
    assert!(
        err.contains("auth.toml:11:10: issuer.hs.secret: found an inline secret"),
        "{err}"
    );
    assert!(
        !err.contains("do-not-write-secrets-here"),
        "the secret is never echoed: {err}"
    );
    assert!(err.contains("auth.toml:14:12: auth.users.issuers[0]: found `mian`, expected one of the defined issuers: [hs, main] (did you mean `main`?)"), "{err}");
    assert!(err.contains("r.toml:4:8: route[0].auth: found `user`, expected one of the defined auth rules: [users] (did you mean `users`?)"), "{err}");
}

#[test]
fn a_jwks_file_that_is_not_json_is_refused() {
    let auth = "[issuer.main]\niss = \"x\"\naudiences = [\"api\"]\nalgorithms = [\"ES256\"]\njwks_file = \"k.json\"\n";
    let (ok, _, err) = check(&[
        ("c.toml", CLUSTER),
        ("auth.toml", auth),
        ("k.json", "-----BEGIN PUBLIC KEY-----"),
    ]);
    assert!(!ok);
    assert!(
        err.contains("auth.toml:5:13: issuer.main.jwks_file: not a JWKS document"),
        "{err}"
    );
}

#[test]
fn shard_range_gaps_and_overlaps_name_both_lines() {
    let shards = |second_from: u32| {
        format!(
            "[shard_map.users]\nkind = \"range\"\nshards.a = {{ primary = \"api\" }}\nshards.b = {{ primary = \"apl\" }}\n\n[[shard_map.users.range]]\nfrom = 0\nto = 999\nshard = \"a\"\n\n[[shard_map.users.range]]\nfrom = {second_from}\nto = 1999\nshard = \"b\"\n"
        )
    };
    let routes = "[[route]]\nname = \"u\"\nshard_map = \"users\"\nshard_key = \"path:2\"\n";
    let (ok, _, err) = check(&[
        ("c.toml", CLUSTER),
        ("s.toml", &shards(1001)),
        ("r.toml", routes),
    ]);
    assert!(!ok);
    assert!(
        err.contains("s.toml:4:24: shard_map.users.shards.b.primary: found `apl`, expected one of the defined clusters: [api] (did you mean `api`?)"),
        "{err}"
    );
    assert!(
        err.contains("s.toml:11:1: shard_map.users.range[1]: gap: keys 1000..=1000 are in no range (between this range and range 0..=999 at s.toml:6)"),
        "{err}"
    );
    let (ok, _, err) = check(&[
        ("c.toml", CLUSTER),
        ("s.toml", &shards(999).replace("\"apl\"", "\"api\"")),
        ("r.toml", routes),
    ]);
    assert!(!ok);
    assert!(
        err.contains("s.toml:11:1: shard_map.users.range[1]: range 999..=1999 overlaps range 0..=999 at s.toml:6"),
        "{err}"
    );
}

#[test]
fn an_unknown_request_id_choice_names_file_line_and_field() {
    let bad = "[forwarding]\nuntrusted_request_id = \"drop\"\n";
    let (ok, _, err) = check(&[("c.toml", CLUSTER), ("f.toml", bad)]);
    assert!(!ok);
    assert!(
        err.contains("f.toml:2:24: forwarding.untrusted_request_id: unknown variant `drop`, expected `keep` or `replace`"),
        "{err}"
    );
}
