//! `lake`: the analysts' command for the access-log lake. See the library docs (`lake::`) for
//! how data enters and leaves; this file only parses flags and prints.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use edgeway_record::aws::{sdk_config, AwsSettings};
use lake::output::Format;
use lake::root::{Lake, StoreSettings};
use lake::{compact, engine, generate, init, named, retain, LakeError};

/// `--version`: the crate version and the commit the binary was built from
/// (`EDGEWAY_GIT_COMMIT` at build time: the Dockerfile and `scripts/build --profile dist` set it).
fn version() -> &'static str {
    let commit = option_env!("EDGEWAY_GIT_COMMIT").unwrap_or("unknown");
    Box::leak(format!("{} (commit {commit})", env!("CARGO_PKG_VERSION")).into_boxed_str())
}

#[derive(Parser)]
#[command(
    name = "lake",
    version = version(),
    about = "Query and maintain the access-log lake (Athena or local DataFusion).",
    long_about = "Query and maintain the access-log lake: the Parquet files the pipeline writes \
                  under <lake>/access_logs/dt=YYYY-MM-DD/hour=HH/.\n\n\
                  Locally, `lake query` runs SQL with an embedded engine (DataFusion) over a \
                  lake directory or an s3:// prefix; with --athena it runs the same SQL on \
                  Athena. `lake queries` lists the named queries."
)]
struct Cli {
    /// Lake root: a local directory or s3://bucket/prefix (the pipeline's --lake).
    #[arg(long, global = true, env = "LAKE_ROOT", default_value = ".local/lake")]
    lake: String,
    /// AWS region (else the SDK's usual lookup).
    #[arg(long, global = true, env = "AWS_REGION")]
    region: Option<String>,
    /// AWS endpoint override, for emulators such as moto.
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    endpoint: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create or update, idempotently, the Glue table, the Athena workgroup and the named
    /// queries; prints what changed.
    Init(InitArgs),
    /// Run SQL (or a named query) locally or on Athena.
    Query(QueryArgs),
    /// List the named queries and their parameters.
    Queries,
    /// Merge the small files of a partition into files near the target size.
    Compact(CompactArgs),
    /// Delete partitions older than N days (prints the plan; deletes only with --yes).
    Retain(RetainArgs),
    /// Write a synthetic lake (tests and benchmarks).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

#[derive(Args)]
struct InitArgs {
    /// Athena workgroup to create or update.
    #[arg(long, env = "LAKE_WORKGROUP", default_value = "edgeway")]
    workgroup: String,
    /// Athena result location (default: s3://<lake bucket>/athena-results/).
    #[arg(long)]
    results: Option<String>,
    /// Leave the Glue tables alone (the pipeline also ensures them on start).
    #[arg(long)]
    skip_table: bool,
}

#[derive(Args)]
struct QueryArgs {
    /// The SQL text (one statement). The tables are `access_logs` and `policy_changes` (also
    /// `edgeway.access_logs`, `edgeway.policy_changes`).
    #[arg(required_unless_present = "named", conflicts_with = "named")]
    sql: Option<String>,
    /// Run a named query (see `lake queries`).
    #[arg(long)]
    named: Option<String>,
    /// Parameter of the named query, NAME=VALUE (repeatable).
    #[arg(long = "param", value_parser = named::parse_param)]
    params: Vec<(String, String)>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Run on Athena instead of locally.
    #[arg(long)]
    athena: bool,
    /// Athena workgroup.
    #[arg(long, env = "LAKE_WORKGROUP", default_value = "edgeway")]
    workgroup: String,
    /// Athena database (default schema of the query).
    #[arg(long, default_value = edgeway_record::table::DATABASE)]
    database: String,
    /// No progress or summary on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
struct CompactArgs {
    /// Partition date, YYYY-MM-DD.
    #[arg(long, value_parser = parse_dt)]
    dt: chrono::NaiveDate,
    /// Only this hour (00-23); default every hour of the date.
    #[arg(long, value_parser = parse_hour)]
    hour: Option<u8>,
    /// Output file size to aim at, MiB.
    #[arg(long, default_value_t = 128)]
    target_mb: u64,
    /// Leave hours that closed less than this long ago (`2h`, `90m`).
    #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
    min_age: Duration,
    /// The same in whole minutes (older spelling of --min-age).
    #[arg(long, hide = true, conflicts_with = "min_age")]
    min_age_minutes: Option<u64>,
    /// Stop right after this step, as a crash would (crash-safety tests).
    #[arg(long, value_enum, hide = true, env = "LAKE_COMPACT_CRASH_AFTER")]
    crash_after: Option<compact::Step>,
}

#[derive(Args)]
struct RetainArgs {
    /// Keep this many days (partitions with dt before today minus N days go).
    #[arg(long)]
    days: u32,
    /// Delete for real.
    #[arg(long)]
    yes: bool,
    /// Today's date, for tests (default: the UTC date now).
    #[arg(long, hide = true, value_parser = parse_dt)]
    today: Option<chrono::NaiveDate>,
}

#[derive(Args)]
struct GenerateArgs {
    #[arg(long)]
    records: u64,
    /// Output root (default: --lake).
    #[arg(long)]
    out: Option<String>,
    /// First hour: YYYY-MM-DD or RFC 3339.
    #[arg(long, default_value = "2025-11-22")]
    start: String,
    #[arg(long, default_value_t = 24)]
    hours: u32,
    #[arg(long, default_value_t = 2)]
    files_per_hour: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_dt(s: &str) -> Result<chrono::NaiveDate, String> {
    lake::layout::parse_dt(s).ok_or_else(|| format!("expected a date YYYY-MM-DD, found {s:?}"))
}

fn parse_hour(s: &str) -> Result<u8, String> {
    lake::layout::parse_hour(s).ok_or_else(|| format!("expected an hour 00-23, found {s:?}"))
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// Progress on stderr: rewritten in place on a terminal, one line per tick otherwise.
struct Progress {
    tty: bool,
    shown: bool,
    quiet: bool,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            shown: false,
            quiet,
        }
    }
    fn show(&mut self, line: &str) {
        if self.quiet {
            return;
        }
        let mut e = std::io::stderr();
        if self.tty {
            let _ = write!(e, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(e, "{line}");
        }
        self.shown = true;
    }
    fn done(&mut self) {
        if self.shown && self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

async fn run(cli: Cli) -> Result<(), LakeError> {
    let store_settings = StoreSettings {
        region: cli.region.clone(),
        endpoint: cli.endpoint.clone(),
    };
    let aws = AwsSettings {
        region: cli.region.clone(),
        endpoint: cli.endpoint.clone(),
    };
    match cli.cmd {
        Cmd::Init(a) => {
            let sdk = sdk_config(&aws).await;
            let changes = init::run(
                &sdk,
                &init::InitSettings {
                    root: cli.lake.clone(),
                    workgroup: a.workgroup,
                    results: a.results,
                    skip_table: a.skip_table,
                },
            )
            .await?;
            for c in &changes {
                println!("{c}");
            }
            let n = changes.iter().filter(|c| c.changed()).count();
            if n == 0 {
                println!("nothing changed");
            } else {
                println!("{n} change(s)");
            }
        }
        Cmd::Queries => {
            for q in named::all()? {
                println!("{}\n    {}", q.name, q.description);
                for p in &q.params {
                    println!(
                        "    --param {}=…  {} (default {})",
                        p.name, p.doc, p.default
                    );
                }
            }
        }
        Cmd::Query(a) => {
            let sql = match (&a.sql, &a.named) {
                (_, Some(name)) => named::get(name)?.render(&a.params)?,
                (Some(sql), None) => {
                    if !a.params.is_empty() {
                        return Err(LakeError::Usage("--param goes with --named".into()));
                    }
                    sql.clone()
                }
                (None, None) => return Err(LakeError::Usage("give SQL or --named".into())),
            };
            let mut progress = Progress::new(a.quiet);
            let mut stdout = std::io::stdout().lock();
            if a.athena {
                let sdk = sdk_config(&aws).await;
                let client = aws_sdk_athena::Client::new(&sdk);
                let out = lake::athena::run_query(
                    &client,
                    &sql,
                    &a.workgroup,
                    &a.database,
                    |state, t, scanned| {
                        progress.show(&format!(
                            "athena: {state} after {:.1} s, {} scanned",
                            t.as_secs_f64(),
                            human_bytes(scanned)
                        ))
                    },
                )
                .await;
                progress.done();
                let out = out?;
                lake::output::write(&mut stdout, a.format, &out.schema, &out.batches)?;
                if !a.quiet {
                    eprintln!(
                        "{} rows in {:.3} s (athena: engine {} ms, total {} ms); scanned {} bytes ({}); query id {}",
                        out.rows,
                        out.elapsed.as_secs_f64(),
                        out.engine_ms,
                        out.total_ms,
                        out.bytes_scanned,
                        human_bytes(out.bytes_scanned),
                        out.id
                    );
                }
            } else {
                let lake = Lake::open(&cli.lake, &store_settings, false)?;
                let engine = engine::LocalEngine::open(&lake).await?;
                let out = engine
                    .query(&sql, |t: Duration, bytes| {
                        progress.show(&format!(
                            "running: {:.0} s, {} read",
                            t.as_secs_f64(),
                            human_bytes(bytes)
                        ))
                    })
                    .await;
                progress.done();
                let out = out?;
                lake::output::write(&mut stdout, a.format, &out.schema, &out.batches)?;
                if !a.quiet {
                    eprintln!(
                        "{} rows in {:.3} s; read {} bytes ({}) from {}",
                        out.rows,
                        out.elapsed.as_secs_f64(),
                        out.bytes_read,
                        human_bytes(out.bytes_read),
                        lake.display
                    );
                }
            }
        }
        Cmd::Compact(a) => {
            let lake = Lake::open(&cli.lake, &store_settings, false)?;
            let reports = compact::compact(
                &lake,
                &compact::Options {
                    dt: a.dt,
                    hour: a.hour,
                    target_bytes: a.target_mb.max(1) * 1024 * 1024,
                    min_age: a
                        .min_age_minutes
                        .map_or(a.min_age, |m| Duration::from_secs(m * 60)),
                    now: chrono::Utc::now(),
                    crash_after: a.crash_after,
                },
            )
            .await?;
            if reports.is_empty() {
                println!("no partitions under dt={}", a.dt.format("%Y-%m-%d"));
            }
            for r in reports {
                if let Some(rec) = &r.recovered {
                    println!("{}: {rec}", r.partition);
                }
                match &r.skipped {
                    Some(why) => println!("{}: skipped: {why}", r.partition),
                    None => println!(
                        "{}: merged {} files ({}) into {} ({}), {} rows",
                        r.partition,
                        r.inputs,
                        human_bytes(r.bytes_before),
                        r.outputs,
                        human_bytes(r.bytes_after),
                        r.rows
                    ),
                }
            }
        }
        Cmd::Retain(a) => {
            let lake = Lake::open(&cli.lake, &store_settings, false)?;
            let today = a.today.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let plan = retain::plan(&lake, a.days, today).await?;
            if plan.is_empty() {
                println!("nothing older than {} days (today {today})", a.days);
                return Ok(());
            }
            for e in &plan {
                println!(
                    "{} dt={}: {} files, {}",
                    if a.yes { "deleting" } else { "would delete" },
                    e.dt.format("%Y-%m-%d"),
                    e.files,
                    human_bytes(e.bytes)
                );
            }
            if a.yes {
                let n = retain::delete(&lake, &plan).await?;
                println!("deleted {} partition date(s), {n} objects", plan.len());
            } else {
                println!(
                    "dry run: {} partition date(s) would go; run again with --yes to delete",
                    plan.len()
                );
            }
        }
        Cmd::Generate(a) => {
            let root = a.out.unwrap_or(cli.lake);
            let lake = Lake::open(&root, &store_settings, true)?;
            let start_ms = generate::parse_start(&a.start).ok_or_else(|| {
                LakeError::Usage(format!(
                    "--start {:?}: expected YYYY-MM-DD or RFC 3339",
                    a.start
                ))
            })?;
            if a.hours == 0 || a.files_per_hour == 0 {
                return Err(LakeError::Usage(
                    "--hours and --files-per-hour must be > 0".into(),
                ));
            }
            let spec = generate::Spec {
                records: a.records,
                start_ms,
                hours: a.hours,
                files_per_hour: a.files_per_hour,
                seed: a.seed,
            };
            let r = generate::write(&lake, &spec).await?;
            println!(
                "wrote {} records in {} files ({}) under {}",
                r.records,
                r.files,
                human_bytes(r.bytes),
                lake.display
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lake: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ LakeError::InjectedCrash(_)) => {
            eprintln!("lake: {e}");
            ExitCode::from(86)
        }
        Err(e) => {
            eprintln!("lake: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
