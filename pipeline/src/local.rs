//! Local mode: the gateway's durable local log (a directory of segment files, each frame one
//! KPL-aggregated blob) read as one shard named `local`. A frame's position is its sequence
//! number, so keys and checkpoints are as deterministic as with Kinesis.
//!
//! After each checkpoint save, its position is also written to the log directory
//! ([`LOCAL_CONSUMER_POSITION_FILE`]); the gateway deletes the segments wholly before it, so
//! the log never fills while the pipeline keeps up (the gateway's `access_log::writer` says
//! why the gateway, not the pipeline, deletes).

use std::path::PathBuf;
use std::time::Duration;

use edgeway_record::segment::{
    save_position, Position, SegmentReader, LOCAL_CONSUMER_POSITION_FILE,
};
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
    let mut publish = Publish::new(&opts.dir);
    loop {
        if *stop.borrow() {
            w.finish(false).await?;
            publish.durable(&w);
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
                        publish.durable(&w);
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
        publish.durable(&w);
        if n == 0 {
            if opts.exit_when_idle {
                w.finish(false).await?;
                publish.durable(&w);
                return Ok(());
            }
            tokio::select! {
                _ = tokio::time::sleep(opts.idle_poll) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// Writes the saved checkpoint's log position beside the segments when it moves.
struct Publish {
    path: PathBuf,
    published: Option<Position>,
    /// The last write failed (warn once per episode).
    failing: bool,
}

impl Publish {
    fn new(dir: &std::path::Path) -> Self {
        Publish {
            path: dir.join(LOCAL_CONSUMER_POSITION_FILE),
            published: None,
            failing: false,
        }
    }

    /// Only the saved checkpoint counts: the in-memory one may be ahead of what a restart
    /// would resume from. The frame at the resume position may be partly durable, so its
    /// segment is kept (the gateway deletes segments strictly before this one).
    fn durable(&mut self, w: &ShardWriter) {
        let Some(pos) = w.durable_resume().and_then(|p| p.seq.to_position()) else {
            return;
        };
        if self.published.is_some_and(|p| p >= pos)
            || !self.path.parent().is_some_and(|d| d.is_dir())
        {
            return;
        }
        match save_position(&self.path, pos) {
            Ok(()) => {
                self.published = Some(pos);
                self.failing = false;
            }
            Err(e) => {
                if !self.failing {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot publish the local log position; the gateway keeps consumed segments");
                    self.failing = true;
                }
            }
        }
    }
}
