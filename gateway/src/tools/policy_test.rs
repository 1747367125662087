//! `gateway test`: policy tests, run offline through the proxy's own phases.
//!
//! A test file (`policies/tests/*.toml`) is a list of `[[test]]` tables, each a request and
//! what the policy must do with it:
//!
//! ```toml
//! [[test]]
//! name = "reading a user needs a token"
//! request = "GET http://api.localhost/v1/users/42"
//! expect = { status = 401, route = "users", auth = "missing" }
//! ```
//!
//! Every test runs on a fresh [`Simulator`] (its own limiter buckets, breakers and canary
//! state), so tests do not depend on their order. `repeat = N` sends the request N times at
//! the same instant and checks the last answer (a burst of 20 allows 20, the 21st is 429);
//! `advance = "1s"` moves the clock first. A reference to something the policy does not
//! define (a route, cluster, shard, issuer, error class) is an error with file and line, as
//! is an unreadable request line or header.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::Spanned;

use super::simulate::{Decision, Request, Simulator, UpstreamResponse};
use crate::policy::validate::{did_you_mean, from_toml};
use crate::policy::{line_col, PolicyError, PolicyErrors, Snapshot};
use edgeway_record::outcome::{AuthResult, CanaryArm, ErrorClass, RateLimitDecision};

/// The client address of a test that names none (TEST-NET-3, RFC 5737).
pub const DEFAULT_CLIENT_IP: &str = "203.0.113.10";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default, rename = "test")]
    tests: Vec<TestCase>,
}

/// One `[[test]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestCase {
    name: Spanned<String>,
    /// `METHOD URL`: `GET https://api.example.com/v1/users/42?x=1`.
    request: Spanned<String>,
    /// `Name: value` lines.
    #[serde(default)]
    headers: Vec<Spanned<String>>,
    /// The connection's peer address (default 203.0.113.10).
    client_ip: Option<Spanned<String>>,
    /// A token with these verified claims is presented where the route's issuer expects it.
    claims: Option<Map<String, Value>>,
    issuer: Option<Spanned<String>>,
    /// Present this token instead (verified against the issuers' local JWKS files).
    token: Option<String>,
    /// Send the request this many times at the same instant; the last answer is checked.
    #[serde(default = "one")]
    repeat: Spanned<u32>,
    /// Move the clock this far before sending.
    advance: Option<Spanned<String>>,
    #[serde(default)]
    upstream: UpstreamFile,
    expect: Expect,
}

fn one() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// What the upstream answers (default 200, `content-type: application/json`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamFile {
    status: Option<u16>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Expected outcomes; each is checked only when given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    status: Option<Spanned<u16>>,
    /// The route name; `""` for no route.
    route: Option<Spanned<String>>,
    /// Whether the request reached the upstream.
    forwarded: Option<Spanned<bool>>,
    /// The record's `error_class` (`unauthorized`, `rate_limited`, `no_route`...).
    error: Option<Spanned<String>>,
    /// The record's `auth_result` (`ok`, `missing`, `forbidden`...).
    auth: Option<Spanned<String>>,
    /// The record's `rate_limit` (`allowed`, `limited`, `shadow`, `shed`).
    rate_limit: Option<Spanned<String>>,
    cluster: Option<Spanned<String>>,
    shard: Option<Spanned<String>>,
    /// `stable` or `canary`.
    canary: Option<Spanned<String>>,
    /// The path and query the upstream receives.
    upstream_target: Option<Spanned<String>>,
    /// Headers the upstream receives, with their values.
    #[serde(default)]
    upstream_headers: BTreeMap<String, Spanned<String>>,
    /// Headers the upstream must not receive.
    #[serde(default)]
    upstream_headers_absent: Vec<Spanned<String>>,
    /// Headers the client receives, with their values.
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    headers_absent: Vec<Spanned<String>>,
}

/// The result of one test.
#[derive(Debug)]
pub struct Outcome {
    pub file: PathBuf,
    pub line: usize,
    pub name: String,
    /// Empty when the test passed.
    pub failures: Vec<Failure>,
}

/// One expectation that did not hold.
#[derive(Debug)]
pub struct Failure {
    /// Line of the expectation in the test file.
    pub line: usize,
    pub what: String,
    pub expected: String,
    pub actual: String,
    /// `file:line` of the policy rule that decided it.
    pub rule: Option<String>,
}

/// The results of every test file.
#[derive(Debug, Default)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| !o.failures.is_empty())
            .count()
    }

    /// The text report: one line per failure (expected, actual, rule), then the totals.
    pub fn text(&self, verbose: bool) -> String {
        let mut out = String::new();
        for o in &self.outcomes {
            if o.failures.is_empty() {
                if verbose {
                    let _ = writeln!(out, "ok    {}:{}: {}", o.file.display(), o.line, o.name);
                }
                continue;
            }
            let _ = writeln!(out, "FAIL  {}:{}: {}", o.file.display(), o.line, o.name);
            for f in &o.failures {
                let rule = f
                    .rule
                    .as_deref()
                    .map(|r| format!(" (rule at {r})"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "      {}:{}: {}: expected {}, got {}{rule}",
                    o.file.display(),
                    f.line,
                    f.what,
                    f.expected,
                    f.actual
                );
            }
        }
        let _ = writeln!(
            out,
            "{} passed, {} failed",
            self.outcomes.len() - self.failed(),
            self.failed()
        );
        out
    }

    /// JUnit XML, one `<testsuite>` per test file, for CI systems.
    pub fn junit(&self) -> String {
        let mut files: BTreeMap<&Path, Vec<&Outcome>> = BTreeMap::new();
        for o in &self.outcomes {
            files.entry(&o.file).or_default().push(o);
        }
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites name=\"gateway test\" tests=\"{}\" failures=\"{}\">",
            self.outcomes.len(),
            self.failed()
        );
        for (file, outcomes) in files {
            let failed = outcomes.iter().filter(|o| !o.failures.is_empty()).count();
            let _ = writeln!(
                x,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\">",
                xml(&file.display().to_string()),
                outcomes.len()
            );
            for o in outcomes {
                let _ = write!(
                    x,
                    "    <testcase name=\"{}\" classname=\"{}\" file=\"{}\" line=\"{}\"",
                    xml(&o.name),
                    xml(&file.display().to_string()),
                    xml(&file.display().to_string()),
                    o.line
                );
                if o.failures.is_empty() {
                    x.push_str("/>\n");
                    continue;
                }
                x.push_str(">\n");
                let first = &o.failures[0];
                let body: Vec<String> = o
                    .failures
                    .iter()
                    .map(|f| {
                        format!(
                            "{}:{}: {}: expected {}, got {}{}",
                            file.display(),
                            f.line,
                            f.what,
                            f.expected,
                            f.actual,
                            f.rule
                                .as_deref()
                                .map(|r| format!(" (rule at {r})"))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                let _ = writeln!(
                    x,
                    "      <failure message=\"{}: expected {}, got {}\">{}</failure>",
                    xml(&first.what),
                    xml(&first.expected),
                    xml(&first.actual),
                    xml(&body.join("\n"))
                );
                x.push_str("    </testcase>\n");
            }
            x.push_str("  </testsuite>\n");
        }
        x.push_str("</testsuites>\n");
        x
    }
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The test files to run: `paths` (files, or directories of `*.toml`), or `dir/tests`.
pub fn test_files(dir: &Path, paths: &[PathBuf]) -> Result<Vec<PathBuf>, PolicyErrors> {
    let roots = if paths.is_empty() {
        vec![dir.join("tests")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for root in roots {
        if root.is_file() {
            files.push(root);
            continue;
        }
        let entries = std::fs::read_dir(&root)
            .map_err(|e| error(&root, 0, 0, "-", format!("cannot read: {e}")))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        if found.is_empty() {
            return Err(error(&root, 0, 0, "-", "found no *.toml test files".into()));
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

fn error(file: &Path, line: usize, column: usize, field: &str, message: String) -> PolicyErrors {
    PolicyErrors(vec![PolicyError {
        file: file.to_path_buf(),
        line,
        column,
        field: field.to_string(),
        message,
    }])
}

/// Run every test of `files` against the policy in `dir`, with the clock starting at
/// `now_ms`. A test file that cannot be read, parsed or that names something the policy does
/// not define stops the run with located errors.
pub async fn run(dir: &Path, files: &[PathBuf], now_ms: i64) -> Result<Report, PolicyErrors> {
    // Loaded once to check the tests' references; each test then gets a fresh simulator.
    let reference = Simulator::load(dir, now_ms).await?;
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| error(file, 0, 0, "-", format!("cannot read: {e}")))?;
        match parse(file, &text) {
            Ok(tests) => {
                let mut errs = Located::new(file, &text);
                let cases: Vec<(Request, Vec<Check>, usize, String, Duration, u32)> = tests
                    .into_iter()
                    .filter_map(|(i, t)| prepare(&mut errs, &reference.policy, i, t))
                    .collect();
                errors.extend(errs.errors);
                parsed.push((file.clone(), cases));
            }
            Err(e) => errors.extend(e.0),
        }
    }
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    let mut report = Report::default();
    for (file, cases) in parsed {
        for (req, checks, line, name, advance, repeat) in cases {
            let sim = Simulator::load(dir, now_ms).await?;
            sim.clock.advance(advance);
            let mut last = None;
            let mut bad = None;
            for _ in 0..repeat.max(1) {
                match sim.run(&req).await {
                    Ok(d) => last = Some(d),
                    Err(e) => {
                        bad = Some(e.0);
                        break;
                    }
                }
            }
            let failures = match (bad, last) {
                (Some(why), _) => vec![Failure {
                    line,
                    what: "request".into(),
                    expected: "a request the gateway can read".into(),
                    actual: why,
                    rule: None,
                }],
                (None, Some(d)) => checks.iter().filter_map(|c| c.check(&d, &sim)).collect(),
                (None, None) => Vec::new(),
            };
            report.outcomes.push(Outcome {
                file: file.clone(),
                line,
                name,
                failures,
            });
        }
    }
    Ok(report)
}

fn parse(file: &Path, text: &str) -> Result<Vec<(usize, TestCase)>, PolicyErrors> {
    match from_toml::<TestFile>(text) {
        Ok(f) => Ok(f.tests.into_iter().enumerate().collect()),
        Err(e) => {
            let (line, col) = line_col(text, e.span.start);
            Err(error(file, line, col, &e.field, e.message))
        }
    }
}

/// Errors located in one test file.
struct Located<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<PolicyError>,
}

impl<'a> Located<'a> {
    fn new(file: &'a Path, text: &'a str) -> Self {
        Located {
            file,
            text,
            errors: Vec::new(),
        }
    }

    fn line(&self, span: &Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }

    fn at(&mut self, span: Range<usize>, field: String, message: String) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(PolicyError {
            file: self.file.to_path_buf(),
            line,
            column,
            field,
            message,
        });
    }

    /// `value` must be one of `known` (a `what` such as "routes").
    fn known(&mut self, v: &Spanned<String>, field: String, known: &[&str], what: &str) -> bool {
        if known.contains(&v.get_ref().as_str()) {
            return true;
        }
        let hint = did_you_mean(v.get_ref(), known)
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        self.at(
            v.span(),
            field,
            format!(
                "found `{}`, expected one of the {what}: [{}]{hint}",
                v.get_ref(),
                known.join(", ")
            ),
        );
        false
    }
}

/// One expectation, ready to compare.
struct Check {
    line: usize,
    what: String,
    kind: CheckKind,
}

enum CheckKind {
    Status(u16),
    Route(String),
    Forwarded(bool),
    Error(String),
    Auth(String),
    RateLimit(String),
    Cluster(String),
    Shard(String),
    Canary(String),
    UpstreamTarget(String),
    UpstreamHeader(String, Option<String>),
    Header(String, Option<String>),
}

/// Check a test's references against the policy and turn it into a request and checks.
fn prepare(
    errs: &mut Located<'_>,
    policy: &Snapshot,
    index: usize,
    t: TestCase,
) -> Option<(Request, Vec<Check>, usize, String, Duration, u32)> {
    let at = |f: &str| format!("test[{index}].{f}");
    let before = errs.errors.len();
    let line = errs.line(&t.name.span());
    let (method, url) = match t.request.get_ref().trim().split_once(' ') {
        Some((m, u)) if !u.trim().is_empty() && !u.trim().contains(' ') => {
            (m.to_string(), u.trim().to_string())
        }
        _ => {
            errs.at(
                t.request.span(),
                at("request"),
                format!(
                    "found `{}`, expected `METHOD URL` (for example `GET https://api.example.com/v1/users/42`)",
                    t.request.get_ref()
                ),
            );
            (String::new(), String::new())
        }
    };
    let mut headers = Vec::new();
    for (i, h) in t.headers.iter().enumerate() {
        match h.get_ref().split_once(':') {
            Some((n, v)) if !n.trim().is_empty() => {
                headers.push((n.trim().to_string(), v.trim().to_string()))
            }
            _ => errs.at(
                h.span(),
                at(&format!("headers[{i}]")),
                format!("found `{}`, expected `Name: value`", h.get_ref()),
            ),
        }
    }
    let client_ip = match &t.client_ip {
        None => DEFAULT_CLIENT_IP.parse::<IpAddr>().ok(),
        Some(ip) => match ip.get_ref().parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => {
                errs.at(
                    ip.span(),
                    at("client_ip"),
                    format!("found `{}`, expected an IP address", ip.get_ref()),
                );
                None
            }
        },
    };
    if let Some(i) = &t.issuer {
        let names: Vec<&str> = policy.auth.issuers.iter().map(|i| &*i.name).collect();
        errs.known(i, at("issuer"), &names, "issuers");
    }
    if t.issuer.is_some() && t.claims.is_none() {
        errs.at(
            t.issuer.as_ref().map_or(0..0, Spanned::span),
            at("issuer"),
            "`issuer` is given without `claims`".into(),
        );
    }
    let advance = match &t.advance {
        None => Duration::ZERO,
        Some(a) => humantime::parse_duration(a.get_ref()).unwrap_or_else(|e| {
            errs.at(
                a.span(),
                at("advance"),
                format!(
                    "found `{}`, expected a duration such as `1s`: {e}",
                    a.get_ref()
                ),
            );
            Duration::ZERO
        }),
    };
    if *t.repeat.get_ref() == 0 || *t.repeat.get_ref() > 100_000 {
        errs.at(
            t.repeat.span(),
            at("repeat"),
            format!("found {}, expected 1 to 100000", t.repeat.get_ref()),
        );
    }
    let checks = expectations(errs, policy, index, t.expect);
    if errs.errors.len() > before {
        return None;
    }
    let upstream = UpstreamResponse {
        status: t.upstream.status.unwrap_or(200),
        headers: if t.upstream.headers.is_empty() {
            UpstreamResponse::default().headers
        } else {
            t.upstream.headers.into_iter().collect()
        },
    };
    let req = Request {
        method,
        url,
        headers,
        client_ip: client_ip?,
        claims: t.claims,
        issuer: t.issuer.map(Spanned::into_inner),
        token: t.token,
        response: upstream,
    };
    Some((
        req,
        checks,
        line,
        t.name.into_inner(),
        advance,
        t.repeat.into_inner(),
    ))
}

fn expectations(errs: &mut Located<'_>, policy: &Snapshot, index: usize, e: Expect) -> Vec<Check> {
    let at = |f: &str| format!("test[{index}].expect.{f}");
    let mut checks = Vec::new();
    let mut push = |errs: &Located<'_>, span: Range<usize>, what: &str, kind: CheckKind| {
        checks.push(Check {
            line: errs.line(&span),
            what: what.to_string(),
            kind,
        })
    };
    if let Some(s) = e.status {
        push(errs, s.span(), "status", CheckKind::Status(*s.get_ref()));
    }
    if let Some(r) = e.route {
        let mut names: Vec<&str> = policy.routes.iter().map(|r| &*r.name).collect();
        names.push("");
        if errs.known(&r, at("route"), &names, "routes (\"\" for none)") {
            push(errs, r.span(), "route", CheckKind::Route(r.into_inner()));
        }
    }
    if let Some(f) = e.forwarded {
        push(
            errs,
            f.span(),
            "forwarded",
            CheckKind::Forwarded(*f.get_ref()),
        );
    }
    if let Some(v) = e.error {
        let mut names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        names.push("");
        if errs.known(&v, at("error"), &names, "error classes (\"\" for none)") {
            push(errs, v.span(), "error", CheckKind::Error(v.into_inner()));
        }
    }
    if let Some(v) = e.auth {
        let names: Vec<&str> = AuthResult::ALL.iter().map(|c| c.as_str()).collect();
        if errs.known(&v, at("auth"), &names, "auth results") {
            push(errs, v.span(), "auth", CheckKind::Auth(v.into_inner()));
        }
    }
    if let Some(v) = e.rate_limit {
        let mut names: Vec<&str> = RateLimitDecision::ALL.iter().map(|c| c.as_str()).collect();
        names.push("");
        if errs.known(
            &v,
            at("rate_limit"),
            &names,
            "rate-limit decisions (\"\" for none)",
        ) {
            push(
                errs,
                v.span(),
                "rate_limit",
                CheckKind::RateLimit(v.into_inner()),
            );
        }
    }
    if let Some(v) = e.cluster {
        let names: Vec<&str> = policy.clusters.iter().map(|c| &*c.name).collect();
        if errs.known(&v, at("cluster"), &names, "clusters") {
            push(
                errs,
                v.span(),
                "cluster",
                CheckKind::Cluster(v.into_inner()),
            );
        }
    }
    if let Some(v) = e.shard {
        let names: Vec<&str> = policy
            .shards
            .maps
            .iter()
            .flat_map(|m| m.shards.iter().map(|s| &*s.name))
            .collect();
        if errs.known(&v, at("shard"), &names, "shards") {
            push(errs, v.span(), "shard", CheckKind::Shard(v.into_inner()));
        }
    }
    if let Some(v) = e.canary {
        let names: Vec<&str> = CanaryArm::ALL.iter().map(|c| c.as_str()).collect();
        if errs.known(&v, at("canary"), &names, "canary arms") {
            push(errs, v.span(), "canary", CheckKind::Canary(v.into_inner()));
        }
    }
    if let Some(v) = e.upstream_target {
        push(
            errs,
            v.span(),
            "upstream_target",
            CheckKind::UpstreamTarget(v.into_inner()),
        );
    }
    for (name, v) in e.upstream_headers {
        let what = format!("upstream header {name}");
        push(
            errs,
            v.span(),
            &what,
            CheckKind::UpstreamHeader(name.to_ascii_lowercase(), Some(v.into_inner())),
        );
    }
    for v in e.upstream_headers_absent {
        let what = format!("upstream header {}", v.get_ref());
        push(
            errs,
            v.span(),
            &what,
            CheckKind::UpstreamHeader(v.into_inner().to_ascii_lowercase(), None),
        );
    }
    for (name, v) in e.headers {
        let what = format!("response header {name}");
        push(
            errs,
            v.span(),
            &what,
            CheckKind::Header(name.to_ascii_lowercase(), Some(v.into_inner())),
        );
    }
    for v in e.headers_absent {
        let what = format!("response header {}", v.get_ref());
        push(
            errs,
            v.span(),
            &what,
            CheckKind::Header(v.into_inner().to_ascii_lowercase(), None),
        );
    }
    checks
}

fn opt(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.is_empty() => format!("`{s}`"),
        _ => "none".to_string(),
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<String> {
    let values: Vec<&'a str> = headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

impl Check {
    /// `None` when the expectation holds.
    fn check(&self, d: &Decision, sim: &Simulator) -> Option<Failure> {
        let route = d.route.as_ref().map(|p| p.name().to_string());
        let route_rule = || {
            route
                .as_ref()
                .and_then(|r| sim.origin(&format!("route.{r}")))
        };
        let (ok, expected, actual, rule) = match &self.kind {
            CheckKind::Status(s) => (
                d.status == *s,
                s.to_string(),
                format!(
                    "{}{}",
                    d.status,
                    d.error
                        .map(|e| format!(" ({})", e.as_str()))
                        .unwrap_or_default()
                ),
                route_rule(),
            ),
            CheckKind::Route(r) => (
                route.as_deref().unwrap_or("") == r,
                opt(Some(r)),
                opt(route.as_deref()),
                route_rule().or_else(|| sim.origin(&format!("route.{r}"))),
            ),
            CheckKind::Forwarded(f) => (
                d.forwarded == *f,
                f.to_string(),
                d.forwarded.to_string(),
                route_rule(),
            ),
            CheckKind::Error(e) => {
                let got = d.error.map(|c| c.as_str()).unwrap_or("");
                (got == e, opt(Some(e)), opt(Some(got)), route_rule())
            }
            CheckKind::Auth(a) => {
                let got = d.auth.map(|c| c.as_str()).unwrap_or("none");
                let rule = d
                    .route
                    .as_ref()
                    .and_then(|p| p.spec.auth.as_ref())
                    .and_then(|a| sim.origin(&format!("auth.{a}")))
                    .or_else(route_rule);
                (got == a, opt(Some(a)), opt(Some(got)), rule)
            }
            CheckKind::RateLimit(r) => {
                let got = d.rate_limit.map(|c| c.as_str()).unwrap_or("");
                let rule = d
                    .limit_keys
                    .first()
                    .and_then(|(n, _)| sim.origin(&format!("limit.{n}")))
                    .or_else(route_rule);
                (got == r, opt(Some(r)), opt(Some(got)), rule)
            }
            CheckKind::Cluster(c) => (
                d.cluster.as_deref() == Some(c.as_str()),
                opt(Some(c)),
                opt(d.cluster.as_deref()),
                route_rule(),
            ),
            CheckKind::Shard(s) => {
                let rule = d
                    .route
                    .as_ref()
                    .and_then(|p| match &p.spec.target {
                        crate::shard::RouteTarget::Shard(r) => {
                            sim.origin(&format!("shard_map.{}", r.map))
                        }
                        crate::shard::RouteTarget::Cluster(_) => None,
                    })
                    .or_else(route_rule);
                (
                    d.shard.as_deref() == Some(s.as_str()),
                    opt(Some(s)),
                    opt(d.shard.as_deref()),
                    rule,
                )
            }
            CheckKind::Canary(c) => {
                let got = d.canary.map(|a| a.as_str());
                (
                    got == Some(c.as_str()),
                    opt(Some(c)),
                    opt(got),
                    route_rule(),
                )
            }
            CheckKind::UpstreamTarget(t) => (
                d.upstream_target.as_deref() == Some(t.as_str()),
                opt(Some(t)),
                opt(d.upstream_target.as_deref()),
                route_rule(),
            ),
            CheckKind::UpstreamHeader(name, want) => {
                let got = header(&d.upstream_headers, name);
                compare(want.as_deref(), got, d.forwarded, route_rule())
            }
            CheckKind::Header(name, want) => {
                let got = header(&d.response_headers, name);
                let rule = d
                    .route
                    .as_ref()
                    .and_then(|p| p.spec.cache.as_ref())
                    .and_then(|c| sim.origin(&format!("cache.{c}")))
                    .or_else(route_rule);
                compare(want.as_deref(), got, true, rule)
            }
        };
        (!ok).then(|| Failure {
            line: self.line,
            what: self.what.clone(),
            expected,
            actual,
            rule,
        })
    }
}

/// A header expectation: `want` a value, or (`None`) absent.
fn compare(
    want: Option<&str>,
    got: Option<String>,
    reached: bool,
    rule: Option<String>,
) -> (bool, String, String, Option<String>) {
    let actual = match (&got, reached) {
        (_, false) => "no upstream request (the gateway answered)".to_string(),
        (Some(v), _) => format!("`{v}`"),
        (None, _) => "absent".to_string(),
    };
    match want {
        Some(w) => (
            reached && got.as_deref() == Some(w),
            format!("`{w}`"),
            actual,
            rule,
        ),
        None => (got.is_none(), "absent".to_string(), actual, rule),
    }
}
