//! `gateway`: the edge proxy binary, plus the policy tools security teams use (`check`,
//! `explain`, `test`, `schema`) and development certificate generation (`gen-certs`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

use gateway::{access_log, admin, policy, proxy, reload, state, tls};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--version`: the crate version and the commit the binary was built from
/// (`EDGEWAY_GIT_COMMIT` at build time: the Dockerfile and `scripts/build --profile dist` set it).
fn version() -> &'static str {
    let commit = option_env!("EDGEWAY_GIT_COMMIT").unwrap_or("unknown");
    Box::leak(format!("{} (commit {commit})", env!("CARGO_PKG_VERSION")).into_boxed_str())
}

#[derive(Parser)]
#[command(
    name = "gateway",
    version = version(),
    about = "Edge gateway on Pingora: TLS, policy-driven routing, health checks, hot-reloaded policies."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once at start-up")]
enum Cmd {
    /// Run the gateway.
    Run(RunArgs),
    /// Validate a policy directory without starting anything. Prints every error as
    /// `file:line:column: field: message` and exits 1 when there is any.
    Check {
        /// Directory of `*.toml` policy files.
        dir: PathBuf,
        /// Exit 1 when there are warnings too (lints: open routes inside authenticated
        /// prefixes, wildcard rules that do not reach a host, client-keyed limits, routes that
        /// can never match, public caching of credentialed responses).
        #[arg(long)]
        deny_warnings: bool,
    },
    /// Compare two policy directories for review: routes, auth, limits, IP lists, forwarding
    /// and cache rules added, removed or changed, each with its file and line and classified
    /// `weakens`, `strengthens` or `neutral`. Exits 2 when any change weakens security (so CI
    /// can ask for a second approval), 1 when a directory is invalid, else 0.
    Diff {
        /// The policy directory before the change (e.g. a checkout of the base branch).
        old: PathBuf,
        /// The policy directory after the change.
        new: PathBuf,
        /// `text` (one line per change, then a summary) or `json`.
        #[arg(long, value_enum, default_value = "text")]
        format: DiffFormat,
    },
    /// Show what the policy does with one request, and why, without any network access:
    /// IP lists, the route (and the routes that lost), auth, limits and their keys, shard,
    /// canary, cluster, resilience, cache headers; each with the file and line of its rule.
    Explain(gateway::tools::cli::ExplainArgs),
    /// Run policy tests (`DIR/tests/*.toml`) offline through the proxy's own phases; print
    /// failures with expected and actual values and the rule's file and line; exit 1 on any.
    Test(gateway::tools::cli::TestArgs),
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

#[derive(Clone, Copy, clap::ValueEnum)]
enum DiffFormat {
    Text,
    Json,
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
    /// Admin listen address for /healthz, /readyz, /metrics, and the micro-cache's
    /// PURGE /cache/purge?tag=…|key=… and /cache/stats.
    #[arg(long, env = "GATEWAY_ADMIN", default_value = "127.0.0.1:9180")]
    admin: String,
    /// PEM certificate chain. Repeat it (with a `--tls-key` each, in the same order) to serve
    /// a certificate per SNI name: each serves the DNS names in its subject alternative names,
    /// and the first is the default. Without it, HTTPS needs `--dev-certs` (or `--https ""`).
    #[arg(
        long,
        env = "GATEWAY_TLS_CERT",
        value_delimiter = ',',
        requires = "tls_key"
    )]
    tls_cert: Vec<PathBuf>,
    /// PEM private key matching each `--tls-cert`, in the same order.
    #[arg(
        long,
        env = "GATEWAY_TLS_KEY",
        value_delimiter = ',',
        requires = "tls_cert"
    )]
    tls_key: Vec<PathBuf>,
    /// A TLS client whose SNI matches no certificate: `default` serves the first
    /// certificate; `reject` refuses the handshake. Clients without SNI (an IP literal) always
    /// get the first certificate.
    #[arg(
        long,
        env = "GATEWAY_TLS_UNKNOWN_SNI",
        value_enum,
        default_value = "default"
    )]
    tls_unknown_sni: tls::UnknownSni,
    /// Serve HTTPS with a generated development CA and certificate, kept in this directory
    /// (never for production). Must be given explicitly: without `--tls-cert` and without
    /// it, `gateway run` refuses to start an HTTPS listener. `--tls-cert` wins over it.
    #[arg(long, env = "GATEWAY_DEV_CERTS")]
    dev_certs: Option<PathBuf>,
    /// Worker threads for the proxy.
    #[arg(long, env = "GATEWAY_THREADS", default_value_t = 1)]
    threads: usize,
    /// Seconds to keep serving in-flight requests after SIGTERM before exiting.
    #[arg(long, env = "GATEWAY_GRACE_SECONDS", default_value_t = 10)]
    grace_seconds: u64,
    /// Also log one JSON line per request to stdout (the access-log sink is separate).
    #[arg(long, env = "GATEWAY_LOG_REQUESTS", default_value_t = false, action = clap::ArgAction::Set)]
    log_requests: bool,
    #[command(flatten)]
    access_log: AccessLogArgs,
    #[command(flatten)]
    connections: ConnectionArgs,
    /// Take over the listeners of a running gateway (zero-downtime upgrade; see README).
    #[arg(long)]
    upgrade: bool,
    /// Unix socket used to hand listeners to the next process on upgrade. Default:
    /// `upgrade.sock` in a private directory (0700): `$XDG_RUNTIME_DIR/edgeway`, else `run/`
    /// beside `--access-log-dir`. A path in a world-writable directory is refused.
    #[arg(long, env = "GATEWAY_UPGRADE_SOCK")]
    upgrade_sock: Option<PathBuf>,
    /// PID file, written by the gateway at start and removed at exit (the upgrade procedure
    /// reads it). Default: `gateway.pid` in the same private directory.
    #[arg(long, env = "GATEWAY_PID_FILE")]
    pid_file: Option<PathBuf>,
}

/// Downstream connection limits and timeouts (hostile or broken clients cannot hold
/// connections or workers).
#[derive(clap::Args)]
struct ConnectionArgs {
    /// Concurrent client connections per instance; beyond it, 503 and close (0: no cap).
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 16_384)]
    max_connections: usize,
    /// Concurrent connections per client IP (the TCP peer); beyond it, 503 and close
    /// (0: no cap). Behind a load balancer that does not preserve client IPs, set 0.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    max_connections_per_ip: usize,
    /// Idle time allowed between requests on a kept-alive HTTP/1 connection, e.g. `60s`.
    #[arg(long, env = "GATEWAY_KEEPALIVE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    keepalive_timeout: std::time::Duration,
    /// Requests served on one HTTP/1 connection before it is closed (0: no limit).
    #[arg(long, env = "GATEWAY_KEEPALIVE_REQUESTS", default_value_t = 10_000)]
    keepalive_requests: u32,
    /// Longest time to read a whole HTTP/1 request head (request line and headers), from the
    /// accepted connection for the first request and from its first byte for later ones;
    /// expiry answers 408 and closes the connection (0: off).
    #[arg(long, env = "GATEWAY_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: std::time::Duration,
    /// Longest wait for the next piece of a request body; expiry answers 408.
    #[arg(long, env = "GATEWAY_BODY_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    body_read_timeout: std::time::Duration,
    /// Longest wait for a client to take the next piece of a response.
    #[arg(long, env = "GATEWAY_SEND_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    send_timeout: std::time::Duration,
    /// Slowest accepted download in bytes per second (0: off): a write of N bytes may take
    /// N / rate seconds (at least 1 s) instead of `--send-timeout`.
    #[arg(long, env = "GATEWAY_MIN_SEND_RATE", default_value_t = 0)]
    min_send_rate: usize,
    /// HTTP/2: concurrent streams per connection.
    #[arg(long, env = "GATEWAY_H2_MAX_CONCURRENT_STREAMS", default_value_t = 100)]
    h2_max_concurrent_streams: u32,
    /// HTTP/2: largest decoded request header list, in bytes.
    #[arg(
        long,
        env = "GATEWAY_H2_MAX_HEADER_LIST_SIZE",
        default_value_t = 65_536
    )]
    h2_max_header_list_size: u32,
    /// HTTP/2: close a connection idle this long.
    #[arg(long, env = "GATEWAY_H2_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    h2_idle_timeout: std::time::Duration,
    /// HTTP/2: streams a client may reset before the gateway accepted them, per connection,
    /// before the connection is closed (rapid-reset defence, CVE-2023-44487).
    #[arg(long, env = "GATEWAY_H2_MAX_PENDING_RESETS", default_value_t = 20)]
    h2_max_pending_resets: usize,
}

impl ConnectionArgs {
    fn settings(&self) -> gateway::connections::Settings {
        gateway::connections::Settings {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            keepalive_timeout: self.keepalive_timeout,
            keepalive_requests: self.keepalive_requests,
            body_read_timeout: self.body_read_timeout,
            send_timeout: self.send_timeout,
            min_send_rate: self.min_send_rate,
            h2_max_concurrent_streams: self.h2_max_concurrent_streams,
            h2_max_header_list_size: self.h2_max_header_list_size,
            h2_idle_timeout: self.h2_idle_timeout,
            h2_max_pending_resets: self.h2_max_pending_resets,
        }
    }
}

/// Access-log sink settings.
#[derive(clap::Args)]
struct AccessLogArgs {
    /// Directory of the durable access log (segment files). Without `--kinesis-stream` this is
    /// the embedded local log that `pipeline --local-log` reads; with it, the spool that
    /// buffers Kinesis outages and restarts.
    #[arg(long, env = "GATEWAY_ACCESS_LOG_DIR", default_value = "data/accesslog")]
    access_log_dir: PathBuf,
    /// Turn access logging off (no records at all).
    #[arg(long, env = "GATEWAY_NO_ACCESS_LOG")]
    no_access_log: bool,
    /// Kinesis stream to ship records to (credentials and region from the AWS SDK chain).
    #[arg(long, env = "GATEWAY_KINESIS_STREAM")]
    kinesis_stream: Option<String>,
    /// AWS region (default: the SDK's environment/profile lookup).
    #[arg(long, env = "AWS_REGION")]
    aws_region: Option<String>,
    /// AWS endpoint override, for emulators (e.g. http://127.0.0.1:5000).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    aws_endpoint: Option<String>,
    /// When log appends reach the disk: `always`, `never`, or an interval like `1s`.
    #[arg(long, env = "GATEWAY_ACCESS_LOG_FSYNC", default_value = "1s")]
    access_log_fsync: edgeway_record::segment::FsyncPolicy,
    /// Largest size of the log on disk (e.g. `4GiB`, `500MiB`); beyond it new records are
    /// dropped and counted.
    #[arg(long, env = "GATEWAY_ACCESS_LOG_CAP", default_value = "4GiB", value_parser = parse_size)]
    access_log_cap: u64,
    /// Size of one log segment file (e.g. `64MiB`).
    #[arg(long, env = "GATEWAY_ACCESS_LOG_SEGMENT", default_value = "64MiB", value_parser = parse_size)]
    access_log_segment: u64,
    /// Longest wait for one PutRecords call before it is retried.
    #[arg(long, env = "GATEWAY_KINESIS_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    kinesis_timeout: std::time::Duration,
    /// Longest a record waits in memory before it is written, e.g. `200ms`.
    #[arg(long, env = "GATEWAY_ACCESS_LOG_LINGER", default_value = "200ms", value_parser = humantime::parse_duration)]
    access_log_linger: std::time::Duration,
    /// Records buffered in memory; beyond it records are dropped and counted.
    #[arg(long, env = "GATEWAY_ACCESS_LOG_QUEUE", default_value_t = 65536)]
    access_log_queue: usize,
    /// Identifies this gateway in records and Kinesis batch ids (default: host name).
    #[arg(long, env = "GATEWAY_INSTANCE_ID")]
    instance_id: Option<String>,
}

/// `4096`, `64KiB`, `500MiB`, `4GiB` → bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("found `{s}`, expected a size like `64MiB`"))?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        _ => {
            return Err(format!(
                "found `{s}`, expected a size like `64MiB` (B, KiB, MiB, GiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("found `{s}`, expected a positive size"))
}

fn instance_id(explicit: Option<String>) -> String {
    explicit
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".into())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Check { dir, deny_warnings } => check(&dir, deny_warnings),
        Cmd::Diff { old, new, format } => diff(&old, &new, format),
        Cmd::Explain(args) => gateway::tools::cli::explain(args),
        Cmd::Test(args) => gateway::tools::cli::test(args),
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

fn check(dir: &std::path::Path, deny_warnings: bool) -> ExitCode {
    match policy::load_dir(dir) {
        Ok(s) => {
            for w in &s.warnings {
                eprintln!("warning: {w}");
            }
            if !s.warnings.is_empty() {
                eprintln!("{} warning(s) in {}", s.warnings.len(), dir.display());
            }
            if deny_warnings && !s.warnings.is_empty() {
                eprintln!("error: warnings are denied (--deny-warnings)");
                return ExitCode::FAILURE;
            }
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

/// `gateway diff OLD NEW`: 2 when a change weakens security, 1 when a side is invalid.
fn diff(old: &std::path::Path, new: &std::path::Path, format: DiffFormat) -> ExitCode {
    let load = |dir: &std::path::Path| {
        policy::load_dir(dir).map_err(|errors| {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{} error(s) in {}", errors.0.len(), dir.display());
        })
    };
    let (Ok(old), Ok(new)) = (load(old), load(new)) else {
        return ExitCode::FAILURE;
    };
    let changes = policy::diff::diff(&old, &new);
    let out = match format {
        DiffFormat::Text => policy::diff::render_text(&changes),
        DiffFormat::Json => policy::diff::render_json(&changes) + "\n",
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    if changes
        .iter()
        .any(|c| c.effect == policy::diff::Effect::Weakens)
    {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// The log filter when `GATEWAY_LOG` is unset: our events from `info`, Pingora's (its `log`
/// lines, bridged into `tracing`) from `warn`, so start-up chatter stays out and its errors
/// (a broken downstream, a failed TLS handshake) come in.
const DEFAULT_LOG_FILTER: &str = "info,pingora=warn,pingora_core=warn,pingora_proxy=warn,\
pingora_pool=warn,pingora_cache=warn,pingora_load_balancing=warn,pingora_rustls=warn";

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    // `init` also installs the `log` → `tracing` bridge (the `tracing-log` feature).
    let filter = EnvFilter::try_from_env("GATEWAY_LOG")
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
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

    // The first load runs on a short-lived runtime: building may resolve names or fetch
    // (async), and Pingora's own runtimes start only with the server.
    let clock: Arc<dyn edgeway_record::clock::Clock> = Arc::new(edgeway_record::clock::SystemClock);
    let shared = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the policy loader")?
        .block_on(state::Shared::load(&args.policies, clock))
        .map_err(|e| anyhow::anyhow!("invalid policy in {}:\n{e}", args.policies.display()))?;
    tracing::info!(
        version = %shared.current.load().policy.version,
        dir = %args.policies.display(),
        "policy loaded"
    );

    let certs = if args.https.is_empty() {
        None
    } else {
        if args.tls_cert.len() != args.tls_key.len() {
            anyhow::bail!(
                "{} --tls-cert but {} --tls-key: give one key per certificate, in the same order",
                args.tls_cert.len(),
                args.tls_key.len()
            );
        }
        let pairs: Vec<(PathBuf, PathBuf)> = match (args.tls_cert.is_empty(), &args.dev_certs) {
            (false, _) => args
                .tls_cert
                .iter()
                .cloned()
                .zip(args.tls_key.iter().cloned())
                .collect(),
            (true, None) => anyhow::bail!(
                "--https {} needs a certificate: give --tls-cert and --tls-key, or --dev-certs DIR \
                 for a generated development certificate, or --https \"\" to serve plain HTTP only",
                args.https
            ),
            (true, Some(dir)) => {
                let dev = tls::ensure_dev_certs(dir, &[])?;
                tracing::warn!(
                    ca = %dev.ca.display(),
                    "no --tls-cert given: serving a generated development certificate"
                );
                vec![(dev.cert, dev.key)]
            }
        };
        Some(Arc::new(
            tls::CertResolver::with_pairs(&pairs, args.tls_unknown_sni)
                .context("loading the TLS certificates")?,
        ))
    };

    // The upgrade socket can take over our listeners: keep it (and the pid file) private.
    let private = gateway::run_dir::default_dir(
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .as_deref(),
        &args.access_log.access_log_dir,
    );
    let in_private = |name: &str| -> anyhow::Result<PathBuf> {
        gateway::run_dir::ensure_private(&private)?;
        Ok(private.join(name))
    };
    let upgrade_sock = match &args.upgrade_sock {
        Some(p) => p.clone(),
        None => in_private("upgrade.sock")?,
    };
    let pid_path = match &args.pid_file {
        Some(p) => p.clone(),
        None => in_private("gateway.pid")?,
    };
    gateway::run_dir::check_not_world_writable(&upgrade_sock)?;
    gateway::run_dir::check_not_world_writable(&pid_path)?;

    let conf = ServerConf {
        threads: args.threads.max(1),
        work_stealing: true,
        grace_period_seconds: Some(args.grace_seconds),
        graceful_shutdown_timeout_seconds: Some(args.grace_seconds.max(1)),
        upgrade_sock: upgrade_sock.to_string_lossy().into_owned(),
        pid_file: pid_path.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: args.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    // After bootstrap: on `--upgrade` the listeners have been handed over by now, and this
    // process is the one to signal.
    let _pid_file = gateway::run_dir::PidFile::write(&pid_path)?;
    tracing::info!(pid_file = %pid_path.display(), upgrade_sock = %upgrade_sock.display(), "process files");

    let instance = instance_id(args.access_log.instance_id.clone());
    let al = &args.access_log;
    let (access_log, sink) = if al.no_access_log {
        (None, None)
    } else {
        let metrics = Arc::new(access_log::LogMetrics::new(&shared.metrics.registry));
        let config = access_log::AccessLogConfig {
            dir: al.access_log_dir.clone(),
            stream: al.kinesis_stream.clone().filter(|s| !s.is_empty()),
            aws: edgeway_record::aws::AwsSettings {
                region: al.aws_region.clone(),
                endpoint: al.aws_endpoint.clone(),
            },
            fsync: al.access_log_fsync,
            queue_capacity: al.access_log_queue,
            linger: al.access_log_linger,
            segment_bytes: al.access_log_segment,
            cap_bytes: al.access_log_cap,
            put_timeout: al.kinesis_timeout,
            instance: instance.clone(),
        };
        tracing::info!(
            dir = %config.dir.display(),
            kinesis_stream = config.stream.as_deref().unwrap_or("-"),
            "access log enabled"
        );
        let (handle, sink) = access_log::Sink::start(config, metrics)?;
        (Some(handle), Some(sink))
    };

    // The policy audit trail writes its events (the load at start first) to the log and,
    // through the access-log sink, to the lake's policy_changes table.
    shared.audit.connect(instance.clone(), access_log.clone());

    let conn_settings = Arc::new(args.connections.settings());
    let heads = Arc::new(gateway::head::Heads::new(
        args.connections.header_timeout,
        Arc::clone(&shared),
        access_log.clone(),
        instance.clone(),
        &shared.metrics.registry,
    ));
    let gateway = proxy::Gateway {
        shared: Arc::clone(&shared),
        log_requests: args.log_requests,
        access_log,
        records: access_log::RecordBuilder { instance },
        connections: Arc::clone(&conn_settings),
    };
    let mut app = pingora::proxy::http_proxy(&server.configuration, gateway);
    app.server_options = Some(conn_settings.server_options());
    app.h2_options = Some(conn_settings.h2_options());
    let limits = Arc::new(gateway::connections::Limits::new(
        &conn_settings,
        &shared.metrics.registry,
    ));
    let mut proxy = pingora::services::listening::Service::new(
        "proxy".into(),
        gateway::connections::Guarded {
            inner: Arc::new(app),
            limits,
            heads,
        },
    );
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
    // `run` returns once in-flight requests have drained (SIGTERM) or at once (SIGINT); the
    // access log then flushes its queue to disk and gives Kinesis a last chance.
    server.run(pingora::server::RunArgs::default());
    if let Some(sink) = sink {
        sink.shutdown(std::time::Duration::from_secs(10));
    }
    tracing::info!("gateway stopped");
    Ok(())
}
