//! Local mode: the gateway's durable local log (a directory of segment files, each frame one
//! KPL-aggregated blob) read as one shard named `local`. A frame's position is its sequence
//! number, so keys and checkpoints are as deterministic as with Kinesis.

use std::path::PathBuf;
use std::time::Duration;

use edgeway_record::segment::SegmentReader;
use tokio::sync::watch;

use crate::checkpoint::{lake_checkpoint_key, CheckpointSink, Seq};
use crate::writer::{ShardWriter, WriteError, WriterContext};

pub const LOCAL_SHARD: &str = "local";
/// Frames read between maintenance passes.
const FRAMES_PER_PASS: usize = 256;

#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub dir: PathBuf,
    pub idle_poll: Duration,
    pub exit_when_idle: bool,
}

pub async fn run(
    opts: LocalOptions,
    ctx: WriterContext,
    mut stop: watch::Receiver<bool>,
) -> Result<(), WriteError> {
    let sink = CheckpointSink::Lake {
        lake: ctx.lake.clone(),
        key: lake_checkpoint_key(LOCAL_SHARD, LOCAL_SHARD),
    };
    let mut w = ShardWriter::open(LOCAL_SHARD, ctx, sink).await?;
    let start = w
        .resume()
        .and_then(|p| p.seq.to_position())
        .unwrap_or_default();
    tracing::info!(dir = %opts.dir.display(), ?start, "reading the local log");
    let mut reader = SegmentReader::new(&opts.dir, start);
    loop {
        if *stop.borrow() {
            w.finish(false).await?;
            return Ok(());
        }
        let mut n = 0;
        if opts.dir.is_dir() {
            while n < FRAMES_PER_PASS {
                match reader.next_frame() {
                    Ok(Some(f)) => {
                        w.ingest(&Seq::from_position(f.at), &f.payload).await?;
                        // Size rolls happen at aggregate boundaries, not once per pass.
                        w.maintain().await?;
                        n += 1;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(dir = %opts.dir.display(), "reading the local log: {e}");
                        break;
                    }
                }
            }
        }
        w.maintain().await?;
        if n == 0 {
            if opts.exit_when_idle {
                w.finish(false).await?;
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(opts.idle_poll) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
