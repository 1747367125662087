//! `gateway explain` and `gateway test` against the example policies: the real binary, run
//! offline (no origin, no network).
//!
//! The explain outputs are compared with golden files in `tests/golden/explain/`, which are
//! reviewed by hand. After a deliberate change, `EDGEWAY_BLESS=1 cargo test -p e2e --test
//! policy_tools` rewrites them; review the diff before committing it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn gateway(args: &[&str]) -> Output {
    Command::new(e2e::bin("gateway"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The policy version changes with every edit of the example files; the goldens do not
/// depend on it.
fn normalise(out: &str) -> String {
    out.lines()
        .map(|l| match l.strip_prefix("policy ") {
            Some(rest) => match rest.split_once(';') {
                Some((_, tail)) => format!("policy <version>;{tail}"),
                None => l.to_string(),
            },
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn golden(name: &str, args: &[&str]) {
    let mut all = vec!["explain", "policies"];
    all.extend_from_slice(args);
    let out = gateway(&all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let actual = normalise(&text(&out.stdout));
    let path = root()
        .join("tests/golden/explain")
        .join(format!("{name}.txt"));
    if std::env::var_os("EDGEWAY_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}\nactual output:\n{actual}", path.display()));
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines().chain(std::iter::repeat("")))
            .filter(|(e, a)| e != a)
            .map(|(e, a)| format!("- {e}\n+ {a}"))
            .collect();
        panic!(
            "explain {args:?} differs from {}:\n{}\nwhole output:\n{actual}",
            path.display(),
            diff.join("\n")
        );
    }
}

#[test]
fn explain_routing_and_a_405() {
    golden("route_405", &["PATCH http://api.localhost/v1/orders/7"]);
}

#[test]
fn explain_an_ip_deny_list() {
    golden(
        "ip_denied",
        &[
            "GET",
            "http://api.localhost/v1/orders/7",
            "--client-ip",
            "198.51.100.66",
        ],
    );
}

#[test]
fn explain_a_missing_token() {
    golden("auth_missing", &["GET http://api.localhost/v1/account/me"]);
}

#[test]
fn explain_claims_limits_cluster_resilience_and_cache() {
    golden(
        "auth_ok",
        &[
            "GET http://api.localhost/v1/account/me",
            "--claims",
            r#"{"sub":"u1","scope":"account:read","email_verified":true,"tenant":"t1"}"#,
            "-H",
            "X-User-Id: spoofed",
            "-H",
            "X-Real-IP: 10.0.0.1",
        ],
    );
}

#[test]
fn explain_shard_routing() {
    golden("shard", &["GET http://api.localhost/v1/users/1234"]);
}

#[test]
fn explain_a_canary() {
    golden(
        "canary",
        &[
            "GET http://api.localhost/v1/feed",
            "-H",
            "X-Canary: canary",
            "--claims",
            r#"{"sub":"u1","scope":"account:read","email_verified":true}"#,
        ],
    );
}

#[test]
fn explain_cache_headers() {
    golden(
        "cache",
        &[
            "GET http://www.example.com/static/app.js",
            "--response-header",
            "Content-Type: application/javascript",
        ],
    );
}

#[test]
fn explain_json_names_every_step_and_its_source() {
    let out = gateway(&[
        "explain",
        "policies",
        "GET http://api.localhost/v1/users/42",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "ip_access",
            "route",
            "auth",
            "limits",
            "shard",
            "cluster",
            "resilience"
        ]
    );
    let route = &v["steps"][1];
    assert_eq!(route["verdict"], "users");
    assert!(
        route["source"]
            .as_str()
            .unwrap()
            .starts_with("policies/shards.toml:"),
        "{route}"
    );
    assert_eq!(v["steps"][4]["verdict"], "shard b → cluster users-b");
    assert_eq!(v["result"]["status"], 200);
    assert_eq!(v["result"]["upstream"]["cluster"], "users-b");
    assert_eq!(v["result"]["upstream"]["endpoint"], "127.0.0.1:9001");
}

#[test]
fn explain_refuses_bad_input_clearly() {
    for (args, message) in [
        (vec!["GET"], "expected `METHOD URL`"),
        (
            vec!["GET", "ftp://api.localhost/"],
            "`ftp://` is not supported",
        ),
        (
            vec!["GET http://api.localhost/v1/x", "-H", "NoColon"],
            "-H `NoColon`: expected `Name: value`",
        ),
        (
            vec!["GET http://api.localhost/v1/x", "-H", "Bad Name: x"],
            "`Bad Name` is not a valid header name",
        ),
        (
            vec!["GET http://api.localhost/v1/account/me", "--claims", "[1]"],
            "--claims `[1]`: expected a JSON object",
        ),
        (
            vec!["GET http://api.localhost/v1/orders/1", "--claims", "{}"],
            "route `api-v1` has no auth rule",
        ),
    ] {
        let mut all = vec!["explain", "policies"];
        all.extend(args.iter().copied());
        let out = gateway(&all);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = text(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn explain_reports_an_invalid_policy_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("r.toml"),
        "[[route]]\nname = \"a\"\npath_prefix = \"/\"\ncluster = \"nope\"\n",
    )
    .unwrap();
    let out = Command::new(e2e::bin("gateway"))
        .args(["explain"])
        .arg(dir.path())
        .arg("GET http://x/")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("r.toml:4:11: route[0].cluster"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_shipped_policy_tests_pass_and_write_junit() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("report.xml");
    let out = gateway(&["test", "policies", "--junit", junit.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let summary = stdout.lines().last().unwrap();
    let passed: usize = summary.split(' ').next().unwrap().parse().unwrap();
    assert!(passed >= 25, "{summary}");
    assert!(summary.ends_with(" 0 failed"), "{summary}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(&format!(
            "<testsuites name=\"gateway test\" tests=\"{passed}\" failures=\"0\">"
        )),
        "{xml}"
    );
    assert_eq!(xml.matches("<testcase ").count(), passed);
    assert!(!xml.contains("<failure"));
}

fn run_tests(file: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.toml");
    std::fs::write(&path, file).unwrap();
    let junit = dir.path().join("report.xml");
    let out = gateway(&[
        "test",
        "policies",
        path.to_str().unwrap(),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let mut stdout = text(&out.stdout).replace(&format!("{}/", dir.path().display()), "");
    if let Ok(xml) = std::fs::read_to_string(&junit) {
        stdout.push_str(&xml.replace(&format!("{}/", dir.path().display()), ""));
    }
    Output {
        status: out.status,
        stdout: stdout.into_bytes(),
        stderr: text(&out.stderr)
            .replace(&format!("{}/", dir.path().display()), "")
            .into_bytes(),
    }
}

#[test]
fn a_wrong_expectation_fails_with_expected_actual_and_the_rule() {
    // The shipped test of the account route, edited to expect the wrong status.
    let file = r#"
[[test]]
name = "the account route is open (wrong)"
request = "GET http://api.localhost/v1/account/me"
expect = { status = 200, auth = "ok" }

[[test]]
name = "routing is right"
request = "GET http://api.localhost/v1/orders/7"
expect = { route = "api-v1" }
"#;
    let out = run_tests(file);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("FAIL  t.toml:3: the account route is open (wrong)"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "t.toml:5: status: expected 200, got 401 (unauthorized) (rule at policies/routes.toml:"
        ),
        "{stdout}"
    );
    assert!(
        stdout
            .contains("t.toml:5: auth: expected `ok`, got `missing` (rule at policies/auth.toml:"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed"), "{stdout}");
    assert!(
        stdout.contains("<failure message=\"status: expected 200, got 401 (unauthorized)\">"),
        "{stdout}"
    );
}

#[test]
fn a_test_file_naming_what_the_policy_lacks_is_refused_with_file_and_line() {
    let file = r#"
[[test]]
name = "typo in the route"
request = "GET http://api.localhost/v1/account/me"
expect = { route = "acount", error = "unauthorised", cluster = "nope" }

[[test]]
name = "bad request line"
request = "GET"
headers = ["NoColon"]
client_ip = "not-an-ip"
expect = {}
"#;
    let out = run_tests(file);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for want in [
        "t.toml:5:20: test[0].expect.route: found `acount`, expected one of the routes",
        "(did you mean `account`?)",
        "t.toml:5:38: test[0].expect.error: found `unauthorised`",
        "(did you mean `unauthorized`?)",
        "t.toml:5:64: test[0].expect.cluster: found `nope`, expected one of the clusters",
        "t.toml:9:11: test[1].request: found `GET`, expected `METHOD URL`",
        "t.toml:10:12: test[1].headers[0]: found `NoColon`, expected `Name: value`",
        "t.toml:11:13: test[1].client_ip: found `not-an-ip`, expected an IP address",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    // Nothing ran.
    assert!(
        !text(&out.stdout).contains("passed"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_test_file_with_an_unknown_field_or_bad_syntax_is_located() {
    let out = run_tests(
        "[[test]]\nname = \"x\"\nrequest = \"GET http://a/\"\nexpect = { statsu = 200 }\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "t.toml:4:12: test[0].expect.statsu: unknown field `statsu`, expected one of `status`"
        ),
        "{err}"
    );
    let out = run_tests("[[test]\nname = 1\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("t.toml:1:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_request_the_gateway_cannot_read_is_a_failure_not_a_crash() {
    let file = r#"
[[test]]
name = "a control character in a header"
request = "GET http://api.localhost/v1/orders/7"
headers = ["X-Bad: a\u0001b"]
expect = { status = 400 }

[[test]]
name = "claims on an open route"
request = "GET http://api.localhost/v1/orders/7"
claims = { sub = "u1" }
expect = { status = 200 }
"#;
    let out = run_tests(file);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("t.toml:3: request: expected a request the gateway can read, got the gateway's HTTP parser refuses this request"),
        "{stdout}"
    );
    assert!(
        stdout.contains("t.toml:9: request: expected a request the gateway can read, got claims given, but route `api-v1` has no auth rule"),
        "{stdout}"
    );
}

#[test]
fn explain_verifies_a_real_token_against_a_local_jwks_file() {
    use e2e::jwt::{claims, jwks, SigningKey};
    let key = SigningKey::rsa("k1", jsonwebtoken::Algorithm::RS256);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keys.json"), jwks(&[&key])).unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        r#"
[cluster.api]
endpoints = ["api.internal:8080"]

[issuer.id]
iss = "https://id.test/"
audiences = ["api"]
algorithms = ["RS256"]
jwks_file = "keys.json"

[auth.user]
issuers = ["id"]
scopes = ["read"]

[[route]]
name = "r"
path_prefix = "/"
cluster = "api"
auth = "user"
"#,
    )
    .unwrap();
    let mut c = claims("https://id.test/", "api", "alice");
    c["scope"] = "read write".into();
    let good = key.sign(&c);
    let explain = |token: &str| {
        let out = Command::new(e2e::bin("gateway"))
            .arg("explain")
            .arg(dir.path())
            .args(["GET http://any.host/x", "--token", token])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let out = explain(&good);
    assert!(out.contains("rule `user`: ok"), "{out}");
    assert!(out.contains("verified: issuer id, subject alice"), "{out}");
    // The endpoint is a name: shown as written, never resolved.
    assert!(
        out.contains("result      200 from the upstream (api api.internal:8080)"),
        "{out}"
    );
    // Never printed: the token itself.
    assert!(!out.contains(&good), "{out}");
    // Another key's signature, and a token of the wrong audience, are refused.
    let other = SigningKey::rsa("k1", jsonwebtoken::Algorithm::RS256).sign(&c);
    let out = explain(&other);
    assert!(out.contains("rule `user`: bad_signature"), "{out}");
    assert!(
        out.contains("result      401 from the gateway (unauthorized)"),
        "{out}"
    );
    let wrong_aud = key.sign(&claims("https://id.test/", "other", "alice"));
    let out = explain(&wrong_aud);
    assert!(
        out.contains("result      401 from the gateway (unauthorized)"),
        "{out}"
    );
}
