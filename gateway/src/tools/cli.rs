//! The `explain` and `test` subcommands of the `gateway` binary.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use super::simulate::{Request, Simulator, UpstreamResponse};
use super::{explain, policy_test};
use edgeway_record::clock::{Clock, SystemClock};

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// Directory of `*.toml` policy files.
    pub dir: PathBuf,
    /// The request: `GET https://api.example.com/v1/users/42?x=1` (one argument or two).
    #[arg(required = true, num_args = 1..=2, value_name = "REQUEST")]
    pub request: Vec<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
    /// The address the connection comes from.
    #[arg(long, default_value = policy_test::DEFAULT_CLIENT_IP)]
    pub client_ip: std::net::IpAddr,
    /// Present a token with these verified claims (a JSON object), as if its signature had
    /// been checked: `--claims '{"sub":"u1","scope":"users:read"}'`.
    #[arg(long, conflicts_with = "token")]
    pub claims: Option<String>,
    /// The issuer of the `--claims` token (default: the route rule's first issuer).
    #[arg(long, requires = "claims")]
    pub issuer: Option<String>,
    /// Present this token; its signature is checked against local JWKS files only (an issuer
    /// with a JWKS URL has no keys offline: use `--claims`).
    #[arg(long)]
    pub token: Option<String>,
    /// The upstream's status, for the response headers the client would get.
    #[arg(long, default_value_t = 200)]
    pub status: u16,
    /// An upstream response header, `Name: value` (repeatable; default
    /// `Content-Type: application/json`).
    #[arg(long = "response-header", value_name = "HEADER")]
    pub response_headers: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Directory of `*.toml` policy files.
    pub dir: PathBuf,
    /// Test files or directories of them (default: DIR/tests).
    pub tests: Vec<PathBuf>,
    /// Also write a JUnit XML report here.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// List passing tests too.
    #[arg(short, long)]
    pub verbose: bool,
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn header_pairs(lines: &[String], what: &str) -> Result<Vec<(String, String)>, String> {
    lines
        .iter()
        .map(|h| match h.split_once(':') {
            Some((n, v)) if !n.trim().is_empty() => {
                Ok((n.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!("{what} `{h}`: expected `Name: value`")),
        })
        .collect()
}

/// `gateway explain`: exit 0 with the explanation, 1 on an invalid policy or request.
pub fn explain(args: ExplainArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let req = match request(&args) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let sim = match Simulator::load(&args.dir, SystemClock.now_ms()).await {
            Ok(s) => s,
            Err(errors) => return policy_errors(&errors, Some(&args.dir)),
        };
        match explain::explain(&sim, &req).await {
            Ok(e) => {
                let text = match args.format {
                    Format::Text => explain::render_text(&e),
                    Format::Json => match serde_json::to_string_pretty(&e) {
                        Ok(j) => j + "\n",
                        Err(err) => {
                            eprintln!("error: {err}");
                            return ExitCode::FAILURE;
                        }
                    },
                };
                stdout(&text);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn request(args: &ExplainArgs) -> Result<Request, String> {
    let (method, url) = match args.request.as_slice() {
        [one] => one
            .trim()
            .split_once(' ')
            .map(|(m, u)| (m.to_string(), u.trim().to_string()))
            .ok_or_else(|| format!("request `{one}`: expected `METHOD URL`"))?,
        [m, u] => (m.clone(), u.clone()),
        _ => return Err("expected the request as `METHOD URL`".into()),
    };
    let claims = match &args.claims {
        None => None,
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Some(map),
            Ok(_) | Err(_) => {
                return Err(format!("--claims `{text}`: expected a JSON object"));
            }
        },
    };
    let response_headers = header_pairs(&args.response_headers, "--response-header")?;
    Ok(Request {
        method,
        url,
        headers: header_pairs(&args.headers, "-H")?,
        client_ip: args.client_ip,
        claims,
        issuer: args.issuer.clone(),
        token: args.token.clone(),
        response: UpstreamResponse {
            status: args.status,
            headers: if response_headers.is_empty() {
                UpstreamResponse::default().headers
            } else {
                response_headers
            },
        },
    })
}

/// Located errors, one per line, then their count (`in DIR` for a policy directory).
fn policy_errors(errors: &crate::policy::PolicyErrors, dir: Option<&std::path::Path>) -> ExitCode {
    for e in &errors.0 {
        eprintln!("{e}");
    }
    match dir {
        Some(dir) => eprintln!("{} error(s) in {}", errors.0.len(), dir.display()),
        None => eprintln!("{} error(s)", errors.0.len()),
    }
    ExitCode::FAILURE
}

/// `gateway test`: exit 0 when every test passes, 1 on any failure or invalid file.
pub fn test(args: TestArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async move {
        let files = match policy_test::test_files(&args.dir, &args.tests) {
            Ok(f) => f,
            Err(errors) => return policy_errors(&errors, None),
        };
        let report = match policy_test::run(&args.dir, &files, SystemClock.now_ms()).await {
            Ok(r) => r,
            Err(errors) => return policy_errors(&errors, None),
        };
        stdout(&report.text(args.verbose));
        if let Some(path) = &args.junit {
            if let Err(e) = std::fs::write(path, report.junit()) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
        if report.failed() > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}

/// Print to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn stdout(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
