//! `pipeline`: access-log records from Kinesis (or the gateway's local durable log) → Parquet
//! files in the lake, partitioned by event time; see the crate docs of the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use edgeway_record::aws::{sdk_config, AwsSettings};
use edgeway_record::put_records::{put_all, Entry, KinesisTransport, RetryPolicy};
use edgeway_record::segment::{FsyncPolicy, SegmentReader, SegmentWriter};
use pipeline::clock::SystemClock;
use pipeline::kinesis::{KinesisOptions, Reader};
use pipeline::lake::Lake;
use pipeline::lease::{LeaseTable, DEFAULT_LEASE_MS};
use pipeline::local::LocalOptions;
use pipeline::metrics::{get, Metrics};
use pipeline::writer::{WriterConfig, WriterContext};

/// `--version`: the crate version and the commit the binary was built from
/// (`EDGEWAY_GIT_COMMIT` at build time: the Dockerfile and `scripts/build --profile dist` set it).
fn version() -> &'static str {
    let commit = option_env!("EDGEWAY_GIT_COMMIT").unwrap_or("unknown");
    Box::leak(format!("{} (commit {commit})", env!("CARGO_PKG_VERSION")).into_boxed_str())
}

#[derive(Parser)]
#[command(
    name = "pipeline",
    version = version(),
    about = "Access-log pipeline: Kinesis (or the local log) → Parquet files in the lake, partitioned by event time."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once at start-up")]
enum Cmd {
    /// Read the stream (or the local log) and write the lake until SIGTERM/SIGINT, which
    /// finishes and checkpoints every open file.
    Run(Box<RunArgs>),
    /// Generate synthetic records into a local log directory (benchmarks, demos).
    #[command(hide = true)]
    GenLog(GenArgs),
    /// Put synthetic records, KPL-aggregated, into a Kinesis stream (benchmarks).
    #[command(hide = true)]
    PutKinesis(PutArgs),
    /// Time records → Parquet on one thread: decode every record of a local log and write
    /// one file; prints JSON.
    #[command(hide = true)]
    BenchEncode(BenchArgs),
}

#[derive(clap::Args)]
struct RunArgs {
    /// Lake root: a local directory or s3://bucket/prefix.
    #[arg(long, env = "LAKE_ROOT", default_value = ".local/lake")]
    lake: String,
    /// Local mode: read the gateway's local log directory instead of Kinesis.
    #[arg(long, env = "PIPELINE_LOCAL_LOG", conflicts_with = "stream")]
    local_log: Option<PathBuf>,
    /// Kinesis stream to read.
    #[arg(long, env = "KINESIS_STREAM")]
    stream: Option<String>,
    /// DynamoDB lease table: several workers share the shards. Without it, one worker keeps
    /// checkpoints in the lake (`_checkpoints/`).
    #[arg(long, env = "PIPELINE_LEASE_TABLE")]
    lease_table: Option<String>,
    /// This worker's id in the lease table (default: host name and pid).
    #[arg(long, env = "PIPELINE_WORKER_ID")]
    worker_id: Option<String>,
    /// Lease duration: a dead worker's shards move after this long.
    #[arg(long, default_value = "10s", value_parser = duration)]
    lease_duration: Duration,
    /// Roll a file when it reaches this size (MiB).
    #[arg(long, default_value_t = 128)]
    target_file_mb: u64,
    /// Roll a file by size in bytes (overrides --target-file-mb; for tests).
    #[arg(long, hide = true)]
    target_file_bytes: Option<u64>,
    /// Roll a file when it is this old (Firehose allows 60s–900s; 1s minimum).
    #[arg(long, default_value = "300s", value_parser = duration)]
    max_file_age: Duration,
    /// Rows an open file keeps in memory; more are sorted and spilled to --spill-dir, and the
    /// runs are merged when the file rolls, so each file is sorted by event time as a whole.
    #[arg(long, default_value_t = edgeway_record::parquet::MAX_ROW_GROUP_ROWS)]
    row_group_rows: usize,
    /// Directory for the sorted runs of large open files (default: the system temp dir).
    /// Needs up to about the size of the open files, in LZ4 Arrow.
    #[arg(long, env = "PIPELINE_SPILL_DIR")]
    spill_dir: Option<PathBuf>,
    /// Open files per shard before the least recently written one is rolled.
    #[arg(long, default_value_t = pipeline::writer::DEFAULT_MAX_OPEN_FILES)]
    max_open_files: usize,
    /// Memory for rows waiting in row groups, all shards together (MiB).
    #[arg(long, default_value_t = 512)]
    memory_budget_mb: usize,
    /// Wait after reading the tip of a shard (or the local log).
    #[arg(long, default_value = "1s", value_parser = duration)]
    idle_poll: Duration,
    /// How often to look for new shards and leases.
    #[arg(long, default_value = "10s", value_parser = duration)]
    discovery_interval: Duration,
    /// Create/update the Glue table on start (default: on with an s3:// lake).
    #[arg(long, env = "PIPELINE_GLUE")]
    glue: Option<bool>,
    /// Also register each partition a file lands in (BatchCreatePartition), for engines that
    /// do not read Athena's partition projection. Needs the Glue table.
    #[arg(long, env = "PIPELINE_REGISTER_PARTITIONS")]
    register_partitions: bool,
    /// Serve Prometheus metrics on this address (`/metrics`).
    #[arg(long, env = "PIPELINE_METRICS")]
    metrics: Option<SocketAddr>,
    /// Stop once every shard is read to its tip (batch runs, benchmarks).
    #[arg(long)]
    exit_when_idle: bool,
    /// Worker threads (1 = current-thread runtime).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// AWS region (default: the SDK's chain, AWS_REGION).
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
    /// AWS endpoint override for emulators (moto, LocalStack).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint: Option<String>,
}

#[derive(clap::Args)]
struct GenArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Event time of the first record (ms); records are 2 ms apart.
    #[arg(long, default_value_t = 1_763_776_800_000)]
    base_ms: i64,
    /// Also write the records as JSON lines here.
    #[arg(long)]
    jsonl: Option<PathBuf>,
}

#[derive(clap::Args)]
struct PutArgs {
    #[arg(long)]
    stream: String,
    #[arg(long, default_value_t = 100_000)]
    records: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 1_763_776_800_000)]
    base_ms: i64,
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint: Option<String>,
}

#[derive(clap::Args)]
struct BenchArgs {
    #[arg(long)]
    log: PathBuf,
    #[arg(long)]
    out: PathBuf,
}

/// A duration flag: humantime (`500ms`, `10s`, `5m`, `1h 30m`); a bare number is seconds, as
/// the flags have always accepted.
fn duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("found `{s}`, expected a duration like 500ms, 10s, 5m ({e})"))
}

/// `put-kinesis`: PutRecords calls per batch before giving up on the entries still failing.
const PUT_ATTEMPTS: u32 = 10;
/// `put-kinesis`: how long one PutRecords call may take before it counts as failed.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let threads = match &cli.cmd {
        Cmd::Run(a) => a.threads,
        _ => 1,
    };
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let rt = match rt {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pipeline: tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async move {
        match cli.cmd {
            Cmd::Run(a) => run(*a).await,
            Cmd::GenLog(a) => gen_log(a),
            Cmd::PutKinesis(a) => put_kinesis(a).await,
            Cmd::BenchEncode(a) => bench_encode(a).await,
        }
    });
    match res {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pipeline: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(a: RunArgs) -> anyhow::Result<()> {
    if a.max_file_age < Duration::from_secs(1) || a.max_file_age > Duration::from_secs(900) {
        bail!(
            "--max-file-age: found {} ms, expected 1s..900s (Firehose uses 60s..900s)",
            a.max_file_age.as_millis()
        );
    }
    if a.local_log.is_none() && a.stream.is_none() {
        bail!("give --stream NAME (Kinesis) or --local-log DIR (local mode)");
    }
    let lake = Lake::open(&a.lake, a.region.as_deref(), a.endpoint.as_deref())?;
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = a.metrics {
        pipeline::metrics::serve(addr, metrics.clone())
            .await
            .with_context(|| format!("metrics listener {addr}"))?;
    }
    let cfg = WriterConfig {
        target_file_bytes: a
            .target_file_bytes
            .unwrap_or(a.target_file_mb * 1024 * 1024)
            .max(1),
        max_file_age_ms: a.max_file_age.as_millis() as i64,
        row_group_rows: a.row_group_rows.max(1),
        max_open_files: a.max_open_files.max(1),
        memory_budget: a.memory_budget_mb * 1024 * 1024,
        spill_dir: a.spill_dir.clone(),
    };
    let mut ctx = WriterContext {
        lake: lake.clone(),
        cfg: Arc::new(cfg),
        clock: Arc::new(SystemClock),
        metrics: metrics.clone(),
        buffered: Arc::new(AtomicUsize::new(0)),
        partitions: None,
    };
    let glue_on = a.glue.unwrap_or(lake.is_s3) && a.stream.is_some();
    if a.register_partitions && !(glue_on && lake.is_s3) {
        bail!(
            "--register-partitions needs --stream, an s3:// lake and the Glue table (--glue true)"
        );
    }
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("SIGTERM handler: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down: finishing and checkpointing open files");
        let _ = stop_tx.send(true);
    });
    let started = Instant::now();
    if let Some(dir) = a.local_log {
        pipeline::local::run(
            LocalOptions {
                dir,
                idle_poll: a.idle_poll,
                exit_when_idle: a.exit_when_idle,
            },
            ctx,
            stop,
        )
        .await?;
    } else if let Some(stream) = a.stream {
        let settings = AwsSettings {
            region: a.region.clone(),
            endpoint: a.endpoint.clone(),
        };
        let sdk = sdk_config(&settings).await;
        if glue_on {
            let glue = aws_sdk_glue::Client::new(&sdk);
            // Every table the pipeline writes: access_logs and policy_changes.
            for table in edgeway_record::table::Table::ALL {
                let location = table.location(&lake.root);
                let status = edgeway_record::table::ensure(&glue, table, &location)
                    .await
                    .with_context(|| format!("Glue table {}", table.name()))?;
                tracing::info!(?status, %location, "glue table {}.{}", edgeway_record::table::DATABASE, table.name());
            }
            let location = edgeway_record::table::table_location(&lake.root);
            if a.register_partitions {
                ctx.partitions = Some(Arc::new(pipeline::writer::PartitionRegistry::new(
                    glue, location,
                )));
            }
        }
        let leases = match &a.lease_table {
            Some(t) => {
                let owner = a.worker_id.clone().unwrap_or_else(|| {
                    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
                    format!("{}-{}", host.trim(), std::process::id())
                });
                Some(Arc::new(LeaseTable::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    t,
                    &owner,
                    if !a.lease_duration.is_zero() {
                        a.lease_duration.as_millis() as i64
                    } else {
                        DEFAULT_LEASE_MS
                    },
                    ctx.clock.clone(),
                    metrics.clone(),
                )))
            }
            None => None,
        };
        let reader = Reader {
            client: aws_sdk_kinesis::Client::new(&sdk),
            ctx,
            opts: Arc::new(KinesisOptions {
                stream,
                idle_poll: a.idle_poll,
                discovery_interval: a.discovery_interval,
                exit_when_idle: a.exit_when_idle,
            }),
        };
        pipeline::kinesis::run(reader, leases, stop).await?;
    }
    let secs = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "records_in": get(&metrics.records_in),
        "records_out": get(&metrics.records_out),
        "files": get(&metrics.files_written),
        "bytes": get(&metrics.bytes_written),
        "errors": get(&metrics.errors),
        "seconds": secs,
    });
    println!("{summary}");
    tracing::info!(%summary, "stopped");
    Ok(())
}

fn gen_log(a: GenArgs) -> anyhow::Result<()> {
    let mut w = SegmentWriter::open(&a.dir, 64 * 1024 * 1024, u64::MAX, FsyncPolicy::Never)?;
    let mut jsonl = match &a.jsonl {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p)?)),
        None => None,
    };
    const CHUNK: u64 = 50_000;
    let mut i = 0;
    while i < a.records {
        let end = (i + CHUNK).min(a.records);
        let recs: Vec<_> = (i..end)
            .map(|k| pipeline::gen::record(a.seed, k, a.base_ms))
            .collect();
        if let Some(j) = jsonl.as_mut() {
            use std::io::Write;
            for r in &recs {
                writeln!(j, "{}", pipeline::gen::json_line(r))?;
            }
        }
        let instance = format!("gen{}-{i}", a.seed);
        for (_, blob) in
            pipeline::gen::aggregate(recs.iter().map(|r| r.to_bytes()), &instance, 256 * 1024)
        {
            w.append(&blob)?;
        }
        i = end;
    }
    w.sync()?;
    if let Some(mut j) = jsonl {
        use std::io::Write;
        j.flush()?;
    }
    Ok(())
}

async fn put_kinesis(a: PutArgs) -> anyhow::Result<()> {
    let sdk = sdk_config(&AwsSettings {
        region: a.region,
        endpoint: a.endpoint,
    })
    .await;
    let transport = KinesisTransport {
        client: aws_sdk_kinesis::Client::new(&sdk),
        stream: a.stream,
        call_timeout: PUT_TIMEOUT,
    };
    let recs = (0..a.records).map(|k| pipeline::gen::record(a.seed, k, a.base_ms).to_bytes());
    let entries = pipeline::gen::aggregate(recs, &format!("put{}", a.seed), 256 * 1024)
        .into_iter()
        .map(|(key, data)| Entry { key, data });
    let policy = RetryPolicy {
        max_attempts: Some(PUT_ATTEMPTS),
        ..RetryPolicy::default()
    };
    let sent = put_all(&transport, entries.collect(), &policy)
        .await
        .map_err(|u| anyhow::anyhow!("{u}"))?;
    println!("{{\"kinesis_records\":{sent},\"records\":{}}}", a.records);
    Ok(())
}

async fn bench_encode(a: BenchArgs) -> anyhow::Result<()> {
    use pipeline::checkpoint::{CheckpointSink, Seq};
    use pipeline::writer::ShardWriter;
    // Load the log into memory first: the timed part is the shard writer's own path (KPL and
    // protobuf decode, Arrow, sorted runs, merge, ZSTD Parquet into a local lake).
    let mut reader = SegmentReader::new(&a.log, Default::default());
    let mut blobs = Vec::new();
    while let Some(f) = reader.next_frame()? {
        blobs.push(f.payload);
    }
    std::fs::create_dir_all(&a.out)?;
    let lake = Lake::open(&a.out.to_string_lossy(), None, None)?;
    let metrics = Arc::new(Metrics::default());
    let ctx = WriterContext {
        lake,
        cfg: Arc::new(WriterConfig::default()),
        clock: Arc::new(SystemClock),
        metrics: metrics.clone(),
        buffered: Default::default(),
        partitions: None,
    };
    let t = Instant::now();
    let mut w = ShardWriter::open("bench", ctx, CheckpointSink::Memory(Default::default())).await?;
    for (i, b) in blobs.iter().enumerate() {
        let seq = Seq::parse(&(i + 1).to_string()).context("sequence number")?;
        w.ingest(&seq, b).await?;
        if i % 64 == 0 {
            w.maintain().await?;
        }
    }
    w.finish(false).await?;
    let secs = t.elapsed().as_secs_f64();
    let n = get(&metrics.records_out);
    let bytes = get(&metrics.bytes_written);
    println!(
        "{}",
        serde_json::json!({"records": n, "seconds": secs, "records_per_sec": n as f64 / secs, "bytes": bytes, "bytes_per_record": bytes as f64 / n.max(1) as f64, "files": get(&metrics.files_written), "runs_spilled": get(&metrics.runs_spilled)})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_flags_take_humantime_and_bare_seconds() {
        assert_eq!(duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("7"), Ok(Duration::from_secs(7)));
        assert!(duration("ten seconds").unwrap_err().contains("ten seconds"));
        assert!(duration("-1s").is_err());
    }
}
