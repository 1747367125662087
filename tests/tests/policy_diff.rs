//! `gateway diff OLD NEW` (a semantic diff that exits 2 when a change weakens security) and
//! the lint warnings of `gateway check` (`--deny-warnings` turns them into exit 1), run as a
//! reviewer or a CI job runs them: the real binary over real policy directories.

use std::path::{Path, PathBuf};
use std::process::Command;

fn policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Exit code, stdout and stderr of `gateway <args>` run in `cwd` (so paths print relative).
fn gateway(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(e2e::bin("gateway"))
        .current_dir(cwd)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Text replacements in policy files: (file, text, replacement).
type Edits<'a> = &'a [(&'a str, &'a str, &'a str)];

/// The shipped policies as `old/`, and as `new/` with `edit` applied to the file `name`.
fn edited(edits: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&policies(), &dir.path().join("old"));
    copy_dir(&policies(), &dir.path().join("new"));
    for (name, from, to) in edits {
        let path = dir.path().join("new").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{name} has no `{from}`");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
    dir
}

/// `gateway diff old new` after `edits`: exit code and output.
fn diff(edits: &[(&str, &str, &str)]) -> (i32, String) {
    let dir = edited(edits);
    let (code, out, err) = gateway(dir.path(), &["diff", "old", "new"]);
    (code, format!("{out}{err}"))
}

/// Every weakening edit a reviewer must see: exit 2, and the line naming file, line, rule.
#[test]
fn each_weakening_change_is_flagged_and_exits_2() {
    let cases: &[(Edits, &str)] = &[
        (
            &[("routes.toml", "auth = \"users\"  ", "#")],
            "weakens     new/routes.toml:42:8: route.account.auth: `users` → none: the route no longer authenticates requests",
        ),
        (
            &[("auth.toml", "mode = \"required\"", "mode = \"optional\"")],
            "weakens     new/auth.toml:58:1: auth.users: mode required → optional: requests without a token pass anonymously (weakens routes `account`, `feed`)",
        ),
        (
            &[("auth.toml", "scopes = [\"account:read\"]", "scopes = []")],
            "auth.users: scopes all of `account:read` → none: tokens with fewer scopes pass",
        ),
        (
            &[("auth.toml", "claims = { email_verified = true }", "")],
            "auth.users: claim `email_verified` no longer required",
        ),
        (
            &[("auth.toml", "audiences = [\"api.localhost\"]", "audiences = [\"api.localhost\", \"admin.localhost\"]")],
            "weakens     new/auth.toml:22:1: issuer.example: audiences `admin.localhost` accepted too",
        ),
        (
            &[("auth.toml", "jti = [\"5f1c2a9e-revoked-example\"]", "jti = []")],
            "revocation: 1 revoked `jti` value(s) removed: those tokens pass again",
        ),
        (
            &[("limits.toml", "rate = 100  ", "rate = 1000 ")],
            "weakens     new/limits.toml:50:1: limit.per_ip: rate 100/1s (burst 200) → 1000/1s (burst 200): raised",
        ),
        (
            &[("limits.toml", "mode = \"enforce\"", "mode = \"shadow\"")],
            "limit.per_ip: shadow mode switched on: requests over the limit pass (only recorded)",
        ),
        (
            &[("routes.toml", "name = \"account\"", "name = \"account\"\nlimits = []")],
            "route.account.limits: `per_ip` → none: no longer limited by `per_ip`",
        ),
        (
            &[("cache.toml", "cache_control = \"private, no-cache\"", "cache_control = \"public, max-age=60\"")],
            "weakens     new/cache.toml:78:1: cache.personal: responses become public",
        ),
        (
            &[("lists/blocked.txt", "192.0.2.0/24", "# gone")],
            "weakens     new/limits.toml:88:1: ip_list.blocked: no longer matches some addresses (ranges before: 192.0.2.0/24); denied by `[ip_access]`, so they pass now",
        ),
        (
            &[("limits.toml", "\ndeny = [\"blocked\"]", "\ndeny = []")],
            "ip_access.deny: `blocked` → none: addresses in `blocked` are no longer refused",
        ),
        (
            &[("forwarding.toml", "trusted_proxies = [", "trusted_proxies = [\"0.0.0.0/0\",")],
            "forwarding.trusted_proxies: none → `0.0.0.0/0`: X-Forwarded-For is now believed from more peers",
        ),
        (
            &[("routes.toml", "name = \"account\"", "name = \"account\"\nip_allow = [\"office\"]"), ("routes.toml", "name = \"api-root\"", "name = \"api-root\"\nip_allow = [\"office\"]")],
            "",
        ),
    ];
    for (edits, expected) in cases {
        let (code, out) = diff(edits);
        if expected.is_empty() {
            // Restricting routes to an allow list only strengthens.
            assert_eq!(code, 0, "{out}");
            assert!(out.contains("strengthens new/routes.toml:"), "{out}");
            continue;
        }
        assert_eq!(code, 2, "{edits:?}:\n{out}");
        assert!(
            out.contains(expected),
            "{edits:?}: expected `{expected}` in:\n{out}"
        );
        assert!(out.contains(" weaken security"), "{out}");
    }
}

#[test]
fn removing_an_authenticated_route_is_flagged_by_where_its_requests_go() {
    // Without `account`, /v1/account on api.localhost falls to `api-v1`, which has no auth.
    let (code, out) = diff(&[(
        "routes.toml",
        "name = \"account\"\nhosts = [\"api.localhost\"]",
        "name = \"account\"\nhosts = [\"retired.localhost\"]",
    )]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("route.account.hosts: `api.localhost` → `retired.localhost`"),
        "{out}"
    );
    assert!(
        out.contains("weakens     new/routes.toml:42:8: route.account.match: requests it authenticated on api.localhost `/v1/account` now goes to route `api-v1` (no auth rule)"),
        "{out}"
    );
    let (code, out) = diff(&[
        (
            "routes.toml",
            "[[route]]\nname = \"account\"",
            "[[route]]\nname = \"retired\"",
        ),
        (
            "routes.toml",
            "name = \"retired\"\nhosts = [\"api.localhost\"]",
            "name = \"retired\"\nhosts = [\"retired.localhost\"]",
        ),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("weakens     old/routes.toml:42:8: route.account: route removed: on api.localhost `/v1/account` now goes to route `api-v1` (no auth rule)"),
        "{out}"
    );
}

#[test]
fn harmless_changes_exit_0() {
    // A comment and another spelling of the same duration: no semantic change at all.
    let (code, out) = diff(&[
        ("routes.toml", "[[route]]", "# reviewed\n[[route]]"),
        ("resilience.toml", "\n", "\n# a comment\n"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "no semantic changes\n");
    // A stricter limit and a longer revocation list strengthen; a timeout is neutral.
    let (code, out) = diff(&[
        ("limits.toml", "rate = 100  ", "rate = 50  "),
        ("auth.toml", "sub = []", "sub = [\"mallory\"]"),
        ("routes.toml", "timeout = \"5s\"", "timeout = \"4s\""),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("strengthens new/limits.toml:50:1: limit.per_ip: rate 100/1s (burst 200) → 50/1s (burst 200): lowered"), "{out}");
    assert!(
        out.contains("strengthens new/auth.toml:71:1: revocation: 1 `sub` value(s) revoked"),
        "{out}"
    );
    assert!(out.contains("neutral     new/routes.toml:"), "{out}");
    assert!(out.contains("route.api-v1.timeout: 5s → 4s"), "{out}");
    assert!(
        out.ends_with("3 change(s): 0 weaken security, 2 strengthen, 1 neutral\n"),
        "{out}"
    );
}

#[test]
fn json_output_for_tools() {
    let dir = edited(&[("limits.toml", "mode = \"enforce\"", "mode = \"shadow\"")]);
    let (code, out, _) = gateway(dir.path(), &["diff", "--format", "json", "old", "new"]);
    assert_eq!(code, 2);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["weakens"], 1);
    let c = &v["changes"][0];
    assert_eq!(c["effect"], "weakens");
    assert_eq!(c["kind"], "changed");
    assert_eq!(c["subject"], "limit.per_ip");
    assert_eq!(c["file"], "new/limits.toml");
    assert_eq!(c["line"], 50);
}

#[test]
fn an_invalid_side_is_reported_with_its_place_and_exits_1() {
    let (code, out) = diff(&[("routes.toml", "cluster = \"api\"", "cluster = \"apj\"")]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("new/routes.toml:"), "{out}");
    assert!(out.contains("route[0].cluster: found `apj`"), "{out}");
}

// ---- lints ----

const BASE: &str = "[cluster.api]\nendpoints = [\"127.0.0.1:9\"]\n[issuer.idp]\niss = \"https://idp.test\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]\njwks_url = \"https://idp.test/jwks\"\n[auth.users]\nissuers = [\"idp\"]\n";

/// `gateway check` (and with `--deny-warnings`) on BASE plus `routes`: both exit codes and
/// the warnings.
fn check(routes: &str) -> (i32, i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("base.toml"), BASE).unwrap();
    std::fs::write(dir.path().join("routes.toml"), routes).unwrap();
    let (code, _, err) = gateway(dir.path(), &["check", "."]);
    let (strict, _, _) = gateway(dir.path(), &["check", "--deny-warnings", "."]);
    (code, strict, err)
}

fn route(name: &str, extra: &str) -> String {
    format!("[[route]]\nname = \"{name}\"\ncluster = \"api\"\n{extra}\n")
}

#[test]
fn each_lint_fires_on_a_minimal_example() {
    let cases = [
        (
            format!(
                "{}{}",
                route("users", "hosts = [\"api.test\"]\npath_prefix = \"/v1/users\"\nauth = \"users\""),
                route("export", "hosts = [\"api.test\"]\npath_prefix = \"/v1/users/export\"")
            ),
            "warning: ./routes.toml:8:8: route.export.auth: route `export` has no auth rule, but its path_prefix `/v1/users/export` is inside authenticated route `users`",
        ),
        (
            format!(
                "{}{}",
                route("admin", "hosts = [\"*.example.test\"]\npath_prefix = \"/admin\"\nauth = \"users\""),
                route("api", "hosts = [\"api.example.test\"]")
            ),
            "warning: ./routes.toml:2:8: route.admin.hosts: authenticated route `admin` (`/admin` on *.example.test, auth `users`) does not apply on api.example.test, which has routes of its own",
        ),
        (
            format!(
                "[cache.shared]\ncache_control = \"public, max-age=60\"\nauthenticated = \"public\"\n{}",
                route("a", "auth = \"users\"\ncache = \"shared\"")
            ),
            "warning: ./routes.toml:3:17: cache.shared.authenticated: responses to requests with credentials",
        ),
        (
            format!(
                "[limit.by_key]\nkey = \"header:x-api-key\"\nrate = 10\n{}",
                route("a", "limits = [\"by_key\"]")
            ),
            "warning: ./routes.toml:5:8: route.a.limits: route `a` is limited by `by_key` (key `header:x-api-key`) from its `limits`, keyed on a value the client chooses",
        ),
        (
            route("tunnel", "methods = [\"CONNECT\"]"),
            "warning: ./routes.toml:2:8: route.tunnel: route `tunnel` can never match",
        ),
    ];
    for (routes, expected) in cases {
        let (code, strict, err) = check(&routes);
        assert_eq!(code, 0, "{err}");
        assert_eq!(strict, 1, "{err}");
        assert!(err.contains(expected), "expected `{expected}` in:\n{err}");
        assert!(err.contains("1 warning(s) in ."), "{err}");
    }
    // The safe counterparts are quiet.
    let quiet = [
        format!(
            "{}{}",
            route("users", "hosts = [\"api.test\"]\npath_prefix = \"/v1/users\"\nauth = \"users\""),
            route("root", "hosts = [\"api.test\"]")
        ),
        format!(
            "[limit.by_key]\nkey = \"header:x-api-key\"\nrate = 10\n[limit.by_ip]\nkey = \"ip\"\nrate = 100\n{}",
            route("a", "limits = [\"by_key\", \"by_ip\"]")
        ),
    ];
    for routes in quiet {
        let (code, strict, err) = check(&routes);
        assert_eq!((code, strict), (0, 0), "{err}");
    }
}

#[test]
fn shipped_policies_pass_with_deny_warnings() {
    let (code, out, err) = gateway(&policies(), &["check", "--deny-warnings", "."]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok: "), "{out}");
    assert!(!err.contains("warning"), "{err}");
}
