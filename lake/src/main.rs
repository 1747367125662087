//! `lake`: the analysts' command (init, query, compact, retain). It lands with the lake issue;
//! today this binary only describes its interface.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lake",
    version,
    about = "Query and maintain the access-log lake (Athena or local DataFusion).",
    long_about = "Query and maintain the access-log lake (Athena or local DataFusion).\n\n\
                  Not functional yet: tracked by the lake issue. Every subcommand exits with status 2."
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create or update the Glue database and table and the Athena workgroup.
    Init,
    /// Run SQL against the lake.
    Query {
        /// The SQL text.
        sql: String,
    },
    /// Merge small files of a partition.
    Compact {
        /// Partition date, YYYY-MM-DD.
        #[arg(long)]
        dt: String,
    },
    /// Delete partitions older than N days.
    Retain {
        #[arg(long)]
        days: u32,
    },
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let name = match args.cmd {
        Cmd::Init => "init",
        Cmd::Query { .. } => "query",
        Cmd::Compact { .. } => "compact",
        Cmd::Retain { .. } => "retain",
    };
    eprintln!("lake {name}: not built yet; see the lake issue");
    std::process::ExitCode::from(2)
}
