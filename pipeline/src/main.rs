//! `pipeline`: reads access-log records (Kinesis, or the gateway's local durable log) and
//! writes them as Parquet into the lake. The consumer itself lands with the pipeline issue;
//! today this binary only describes its interface.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "pipeline",
    version,
    about = "Access-log pipeline: Kinesis (or the local log) → Parquet files in the lake, partitioned by event time.",
    long_about = "Access-log pipeline: Kinesis (or the local log) → Parquet files in the lake, \
                  partitioned by event time.\n\nNot functional yet: the consumer is tracked by the \
                  pipeline issue. Running it exits with status 2."
)]
struct Args {
    /// Lake root: a local directory or an s3://bucket/prefix URL.
    #[arg(long, env = "LAKE_ROOT", default_value = ".local/lake")]
    lake: String,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    eprintln!(
        "pipeline: the consumer is not built yet (lake root would be {}); see the pipeline issue",
        args.lake
    );
    std::process::ExitCode::from(2)
}
