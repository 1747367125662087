//! `gateway`: the edge proxy binary, plus the policy tools security teams use (`check`,
//! `schema`) and development certificate generation (`gen-certs`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

use gateway::{admin, policy, proxy, reload, state, tls};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "Edge gateway on Pingora: TLS, policy-driven routing, health checks, hot-reloaded policies."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway.
    Run(RunArgs),
    /// Validate a policy directory without starting anything. Prints every error as
    /// `file:line:column: field: message` and exits 1 when there is any.
    Check {
        /// Directory of `*.toml` policy files.
        dir: PathBuf,
    },
    /// Print the JSON Schema of a policy file (for editor validation).
    Schema,
    /// Create a development CA and server certificate (never for production).
    GenCerts {
        /// Output directory; existing files are kept.
        #[arg(long, default_value = "certs/dev")]
        out: PathBuf,
        /// Extra DNS names or IPs for the server certificate.
        #[arg(long = "name")]
        names: Vec<String>,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Directory of `*.toml` policy files; watched and hot-reloaded (also on SIGHUP).
    #[arg(long, env = "GATEWAY_POLICIES", default_value = "policies")]
    policies: PathBuf,
    /// Plain HTTP listen address; empty to disable.
    #[arg(long, env = "GATEWAY_HTTP", default_value = "0.0.0.0:8080")]
    http: String,
    /// HTTPS listen address (TLS 1.2/1.3, ALPN h2 and http/1.1); empty to disable.
    #[arg(long, env = "GATEWAY_HTTPS", default_value = "0.0.0.0:8443")]
    https: String,
    /// Admin listen address for /healthz, /readyz and /metrics.
    #[arg(long, env = "GATEWAY_ADMIN", default_value = "127.0.0.1:9180")]
    admin: String,
    /// PEM certificate chain. Without it, development certificates are generated in
    /// `--dev-certs`.
    #[arg(long, env = "GATEWAY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key matching `--tls-cert`.
    #[arg(long, env = "GATEWAY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where development certificates are generated when no `--tls-cert` is given.
    #[arg(long, env = "GATEWAY_DEV_CERTS", default_value = "certs/dev")]
    dev_certs: PathBuf,
    /// Worker threads for the proxy.
    #[arg(long, env = "GATEWAY_THREADS", default_value_t = 1)]
    threads: usize,
    /// Seconds to keep serving in-flight requests after SIGTERM before exiting.
    #[arg(long, env = "GATEWAY_GRACE_SECONDS", default_value_t = 10)]
    grace_seconds: u64,
    /// Log one line per request to stdout (until the access-log sink is configured).
    #[arg(long, env = "GATEWAY_LOG_REQUESTS", default_value_t = true, action = clap::ArgAction::Set)]
    log_requests: bool,
    /// Take over the listeners of a running gateway (zero-downtime upgrade; see README).
    #[arg(long)]
    upgrade: bool,
    /// Unix socket used to hand listeners to the next process on upgrade.
    #[arg(
        long,
        env = "GATEWAY_UPGRADE_SOCK",
        default_value = "/tmp/edgeway_upgrade.sock"
    )]
    upgrade_sock: String,
    /// PID file (used by the upgrade procedure).
    #[arg(long, env = "GATEWAY_PID_FILE", default_value = "/tmp/edgeway.pid")]
    pid_file: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { dir } => check(&dir),
        Cmd::Schema => {
            println!("{}", policy::json_schema());
            ExitCode::SUCCESS
        }
        Cmd::GenCerts { out, names } => match tls::ensure_dev_certs(&out, &names) {
            Ok(c) => {
                println!("CA:          {}", c.ca.display());
                println!("certificate: {}", c.cert.display());
                println!("key:         {}", c.key.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run(args) => match run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(dir: &std::path::Path) -> ExitCode {
    match policy::load_dir(dir) {
        Ok(s) => {
            println!(
                "ok: {} routes, {} clusters, policy version {}",
                s.routes.len(),
                s.clusters.len(),
                s.version
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{} error(s) in {}", errors.0.len(), dir.display());
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("GATEWAY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .init();
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    // rustls needs one process-wide crypto provider; ours is ring, the one Pingora uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    init_logging();

    let shared = state::Shared::load(&args.policies)
        .map_err(|e| anyhow::anyhow!("invalid policy in {}:\n{e}", args.policies.display()))?;
    tracing::info!(
        version = %shared.current.load().policy.version,
        dir = %args.policies.display(),
        "policy loaded"
    );

    let certs = if args.https.is_empty() {
        None
    } else {
        let (cert, key) = match (&args.tls_cert, &args.tls_key) {
            (Some(c), Some(k)) => (c.clone(), k.clone()),
            _ => {
                let dev = tls::ensure_dev_certs(&args.dev_certs, &[])?;
                tracing::warn!(
                    ca = %dev.ca.display(),
                    "no --tls-cert given: serving a generated development certificate"
                );
                (dev.cert, dev.key)
            }
        };
        Some(Arc::new(
            tls::CertResolver::new(&cert, &key).context("loading the TLS certificate")?,
        ))
    };

    let conf = ServerConf {
        threads: args.threads.max(1),
        work_stealing: true,
        grace_period_seconds: Some(args.grace_seconds),
        graceful_shutdown_timeout_seconds: Some(args.grace_seconds.max(1)),
        upgrade_sock: args.upgrade_sock.clone(),
        pid_file: args.pid_file.clone(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: args.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let gateway = proxy::Gateway {
        shared: Arc::clone(&shared),
        log_requests: args.log_requests,
    };
    let mut proxy = http_proxy_service(&server.configuration, gateway);
    if !args.http.is_empty() {
        proxy.add_tcp(&args.http);
    }
    if let Some(resolver) = &certs {
        // Paths are unused: the resolver serves (and hot-swaps) the validated certificate.
        let mut settings =
            TlsSettings::intermediate("", "").map_err(|e| anyhow::anyhow!("TLS settings: {e}"))?;
        settings.set_cert_resolver(Arc::clone(resolver) as _);
        settings.enable_h2();
        proxy.add_tls_with_settings(&args.https, None, settings);
    }
    server.add_service(proxy);

    let mut admin_svc = pingora::services::listening::Service::new(
        "admin".into(),
        admin::Admin {
            shared: Arc::clone(&shared),
        },
    );
    admin_svc.add_tcp(&args.admin);
    server.add_service(admin_svc);

    server.add_service(pingora::services::background::background_service(
        "policy reloader",
        reload::Reloader {
            shared: Arc::clone(&shared),
            certs,
        },
    ));

    tracing::info!(http = %args.http, https = %args.https, admin = %args.admin, threads = args.threads, "gateway starting");
    server.run_forever();
}
