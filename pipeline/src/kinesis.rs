//! Reading a Kinesis stream: shard discovery (ListShards), one task per shard (GetShardIterator,
//! GetRecords) within the per-shard read limits, resharding (a child starts only after its
//! parents reached SHARD_END), and, with several workers, shard leases.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ShardIteratorType;
use aws_sdk_kinesis::Client;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::checkpoint::{lake_checkpoint_key, CheckpointSink, Pos, Seq};
use crate::lease::{Lease, LeaseError, LeaseTable};
use crate::metrics::inc;
use crate::writer::{ShardWriter, WriteError, WriterContext};

/// Kinesis: 5 GetRecords calls per second per shard
/// (<https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html>).
pub const MIN_GET_RECORDS_INTERVAL: Duration = Duration::from_millis(200);
/// Kinesis: 2 MiB/s of reads per shard (shared fan-out).
pub const MAX_READ_BYTES_PER_SEC: f64 = 2.0 * 1024.0 * 1024.0;
/// Kinesis: at most 10,000 records per GetRecords.
pub const GET_RECORDS_LIMIT: i32 = 10_000;
const MAX_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct ShardInfo {
    pub id: String,
    pub parents: Vec<String>,
    pub closed: bool,
}

#[derive(Debug, Clone)]
pub struct KinesisOptions {
    pub stream: String,
    /// Wait after an empty GetRecords at the tip of the shard.
    pub idle_poll: Duration,
    /// How often the shard list (and leases) are looked at.
    pub discovery_interval: Duration,
    /// Stop when every shard is read to its tip (benchmarks, batch runs).
    pub exit_when_idle: bool,
}

/// Why reading the stream failed. Each message names the call and the stream or shard.
#[derive(Debug, thiserror::Error)]
pub enum KinesisError {
    /// A Kinesis API call failed: the operation, what it was about, and the service's message.
    #[error("{op} {target}: {message}")]
    Aws {
        op: &'static str,
        target: String,
        message: String,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
}

#[derive(Debug)]
enum Outcome {
    Ended,
    Stopped,
    Idle,
    Lost,
}

fn aws_msg<E: ProvideErrorMetadata + std::fmt::Debug>(e: &E) -> String {
    match (e.code(), e.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        _ => format!("{e:?}"),
    }
}

pub async fn list_shards(client: &Client, stream: &str) -> Result<Vec<ShardInfo>, KinesisError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let req = client.list_shards();
        let req = match &token {
            Some(t) => req.next_token(t),
            None => req.stream_name(stream),
        };
        let resp = req.send().await.map_err(|e| KinesisError::Aws {
            op: "ListShards",
            target: stream.to_string(),
            message: aws_msg(&e),
        })?;
        for s in resp.shards() {
            let mut parents = Vec::new();
            parents.extend(s.parent_shard_id().map(str::to_string));
            parents.extend(s.adjacent_parent_shard_id().map(str::to_string));
            out.push(ShardInfo {
                id: s.shard_id().to_string(),
                parents,
                closed: s
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number())
                    .is_some(),
            });
        }
        match resp.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// Shards that may be read now: not ended, and every parent still listed has ended.
pub fn eligible(shards: &[ShardInfo], ended: &BTreeSet<String>) -> Vec<String> {
    let listed: BTreeSet<&str> = shards.iter().map(|s| s.id.as_str()).collect();
    shards
        .iter()
        .filter(|s| !ended.contains(&s.id))
        .filter(|s| {
            s.parents
                .iter()
                .all(|p| ended.contains(p) || !listed.contains(p.as_str()))
        })
        .map(|s| s.id.clone())
        .collect()
}

/// How many shards this worker should hold, and which lease (if any) to steal to get there.
pub fn balance<'a>(
    me: &str,
    leases: &'a [Lease],
    eligible: &BTreeSet<String>,
    now_ms: i64,
) -> (usize, Vec<&'a Lease>, Option<&'a Lease>) {
    let live = |l: &Lease| !l.owner.is_empty() && l.expires_ms > now_ms;
    let active: Vec<&Lease> = leases
        .iter()
        .filter(|l| eligible.contains(&l.shard))
        .collect();
    let mut workers: BTreeSet<&str> = active
        .iter()
        .filter(|l| live(l))
        .map(|l| l.owner.as_str())
        .collect();
    workers.insert(me);
    let target = active.len().div_ceil(workers.len().max(1));
    let mine = active.iter().filter(|l| l.owner == me && live(l)).count();
    let free: Vec<&Lease> = active.iter().copied().filter(|l| !live(l)).collect();
    let mut steal = None;
    if mine + free.len() < target {
        let mut per_owner: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        for l in active.iter().copied().filter(|l| live(l) && l.owner != me) {
            per_owner.entry(l.owner.as_str()).or_default().push(l);
        }
        if let Some((_, ls)) = per_owner
            .iter()
            .filter(|(_, ls)| ls.len() > target)
            .max_by_key(|(o, ls)| (ls.len(), std::cmp::Reverse(**o)))
        {
            steal = ls.iter().max_by_key(|l| l.shard.clone()).copied();
        }
    }
    (target, free, steal)
}

/// Everything a shard task needs.
#[derive(Clone)]
pub struct Reader {
    pub client: Client,
    pub ctx: WriterContext,
    pub opts: Arc<KinesisOptions>,
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

impl Reader {
    async fn iterator(
        &self,
        shard: &str,
        from: Option<&Pos>,
    ) -> Result<Option<String>, KinesisError> {
        let req = self
            .client
            .get_shard_iterator()
            .stream_name(&self.opts.stream)
            .shard_id(shard);
        let req = match from {
            None => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Some(p) => req
                .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
                .starting_sequence_number(p.seq.as_str()),
        };
        let resp = req.send().await.map_err(|e| KinesisError::Aws {
            op: "GetShardIterator",
            target: shard.to_string(),
            message: aws_msg(&e),
        })?;
        Ok(resp.shard_iterator().map(str::to_string))
    }

    async fn shard_closed(&self, shard: &str) -> bool {
        match list_shards(&self.client, &self.opts.stream).await {
            Ok(list) => list.iter().any(|s| s.id == shard && s.closed),
            Err(_) => false,
        }
    }

    /// Read one shard until SHARD_END, shutdown, a lost lease or (with `exit_when_idle`) its tip.
    async fn run_shard(
        &self,
        shard: String,
        mut w: ShardWriter,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Outcome, KinesisError> {
        let m = self.ctx.metrics.clone();
        let mut backoff = Duration::from_millis(200);
        let mut iter = loop {
            match self.iterator(&shard, w.resume()).await {
                Ok(i) => break i,
                Err(e) => {
                    inc(&m.retries, 1);
                    tracing::warn!(%shard, "{e:#}");
                    if sleep_or_stop(backoff, &mut stop).await {
                        w.sink_mut().release().await;
                        return Ok(Outcome::Stopped);
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        let mut last_closed_check = tokio::time::Instant::now() - Duration::from_secs(60);
        loop {
            let Some(it) = iter.clone() else {
                // SHARD_END: everything read from this shard is in files once finished.
                w.finish(true).await?;
                tracing::info!(%shard, "shard ended");
                return Ok(Outcome::Ended);
            };
            if *stop.borrow() {
                w.finish(false).await?;
                w.sink_mut().release().await;
                return Ok(Outcome::Stopped);
            }
            let started = tokio::time::Instant::now();
            let resp = match self
                .client
                .get_records()
                .shard_iterator(&it)
                .limit(GET_RECORDS_LIMIT)
                .send()
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    let se = e.as_service_error();
                    if se.is_some_and(|s| s.is_provisioned_throughput_exceeded_exception()) {
                        inc(&m.throttled, 1);
                    } else if se.is_some_and(|s| s.is_expired_iterator_exception()) {
                        // Re-position just after what was read (AT the last aggregate; its
                        // records are skipped by position).
                        if let Ok(i) = self.iterator(&shard, w.read_end().or(w.resume())).await {
                            iter = i;
                        }
                    } else {
                        inc(&m.retries, 1);
                        tracing::warn!(%shard, "GetRecords: {}", aws_msg(&e));
                    }
                    if sleep_or_stop(backoff, &mut stop).await {
                        continue;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            let behind = resp.millis_behind_latest().unwrap_or(0);
            m.set_lag(&shard, behind);
            let mut bytes = 0usize;
            for r in resp.records() {
                let data = r.data().as_ref();
                bytes += data.len();
                match Seq::parse(r.sequence_number()) {
                    Some(seq) => {
                        w.ingest(&seq, data).await?;
                        w.maintain().await?;
                    }
                    None => {
                        inc(&m.errors, 1);
                        tracing::error!(%shard, seq = r.sequence_number(), "record with an unparsable sequence number skipped");
                    }
                }
            }
            w.maintain().await?;
            if let Err(e) = w.sink_mut().renew().await {
                tracing::warn!(%shard, "{e}");
                return Ok(Outcome::Lost);
            }
            let empty = resp.records().is_empty();
            iter = resp.next_shard_iterator().map(str::to_string);
            if empty && behind == 0 && iter.is_some() {
                // At the tip. A closed shard whose tip is reached is at its end (emulators
                // may keep returning iterators for closed shards).
                if last_closed_check.elapsed() >= Duration::from_secs(1) {
                    last_closed_check = tokio::time::Instant::now();
                    if self.shard_closed(&shard).await {
                        iter = None;
                        continue;
                    }
                }
                if self.opts.exit_when_idle {
                    w.finish(false).await?;
                    w.sink_mut().release().await;
                    return Ok(Outcome::Idle);
                }
                if sleep_or_stop(self.opts.idle_poll, &mut stop).await {
                    continue;
                }
            } else {
                // Stay within 5 calls/s and 2 MiB/s.
                let by_bytes = Duration::from_secs_f64(bytes as f64 / MAX_READ_BYTES_PER_SEC);
                let wait = MIN_GET_RECORDS_INTERVAL.max(by_bytes);
                let spent = started.elapsed();
                if wait > spent {
                    sleep_or_stop(wait - spent, &mut stop).await;
                }
            }
        }
    }
}

/// Run the stream until `stop` turns true. With `leases`, share shards with other workers.
pub async fn run(
    reader: Reader,
    leases: Option<Arc<LeaseTable>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), KinesisError> {
    let stream = reader.opts.stream.clone();
    let mut tasks: JoinSet<(String, Result<Outcome, KinesisError>)> = JoinSet::new();
    let mut running: HashMap<String, ()> = HashMap::new();
    let mut ended: BTreeSet<String> = BTreeSet::new();
    let mut idle: BTreeSet<String> = BTreeSet::new();
    if let Some(l) = &leases {
        l.ensure_table().await?;
    }
    loop {
        // Reap finished shard tasks.
        while let Some(joined) = tasks.try_join_next() {
            match joined {
                Ok((shard, res)) => {
                    running.remove(&shard);
                    reader.ctx.metrics.set_owned(&shard, false);
                    match res {
                        Ok(Outcome::Ended) => {
                            ended.insert(shard);
                        }
                        Ok(Outcome::Idle) => {
                            idle.insert(shard);
                        }
                        Ok(Outcome::Stopped) | Ok(Outcome::Lost) => {}
                        Err(e) => tracing::error!(%shard, "shard task failed, will retry: {e:#}"),
                    }
                }
                Err(e) => tracing::error!("shard task panicked: {e}"),
            }
        }
        if *stop.borrow() {
            break;
        }
        match discover(&reader, leases.as_ref(), &mut ended, &running, &idle).await {
            Ok(start) => {
                for (shard, sink) in start {
                    let w = match ShardWriter::open(&shard, reader.ctx.clone(), sink).await {
                        Ok(w) => w,
                        Err(e) => {
                            tracing::error!(%shard, "open checkpoint: {e}");
                            continue;
                        }
                    };
                    if w.ended() {
                        ended.insert(shard);
                        continue;
                    }
                    tracing::info!(%shard, resume = ?w.resume().map(|p| p.seq.as_str().to_string()), "shard started");
                    running.insert(shard.clone(), ());
                    reader.ctx.metrics.set_owned(&shard, true);
                    let r = reader.clone();
                    let st = stop.clone();
                    tasks.spawn(async move {
                        let res = r.run_shard(shard.clone(), w, st).await;
                        (shard, res)
                    });
                }
            }
            Err(e) => {
                inc(&reader.ctx.metrics.retries, 1);
                tracing::warn!(%stream, "discovery: {e:#}");
            }
        }
        if reader.opts.exit_when_idle && running.is_empty() && tasks.is_empty() {
            // Nothing running and nothing newly eligible after a discovery round.
            let shards = list_shards(&reader.client, &stream).await?;
            let todo: Vec<String> = eligible(&shards, &ended)
                .into_iter()
                .filter(|s| !idle.contains(s))
                .collect();
            if todo.is_empty() {
                break;
            }
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(reader.opts.discovery_interval) => {}
            _ = stop.changed() => {}
            Some(j) = tasks.join_next(), if !tasks.is_empty() => {
                // Put it back through the reaping path on the next turn.
                if let Ok((shard, res)) = j {
                    running.remove(&shard);
                    reader.ctx.metrics.set_owned(&shard, false);
                    match res {
                        Ok(Outcome::Ended) => { ended.insert(shard); }
                        Ok(Outcome::Idle) => { idle.insert(shard); }
                        Ok(_) => {}
                        Err(e) => tracing::error!(%shard, "shard task failed, will retry: {e:#}"),
                    }
                }
            }
        }
    }
    // Shutdown: every shard task finishes its files and checkpoints.
    while let Some(j) = tasks.join_next().await {
        if let Ok((shard, Err(e))) = j {
            tracing::error!(%shard, "shard task failed during shutdown: {e:#}");
        }
    }
    Ok(())
}

/// Which shards to start now, each with its checkpoint sink.
async fn discover(
    reader: &Reader,
    leases: Option<&Arc<LeaseTable>>,
    ended: &mut BTreeSet<String>,
    running: &HashMap<String, ()>,
    idle: &BTreeSet<String>,
) -> Result<Vec<(String, CheckpointSink)>, KinesisError> {
    let stream = &reader.opts.stream;
    let shards = list_shards(&reader.client, stream).await?;
    let mut start = Vec::new();
    match leases {
        None => {
            for s in eligible(&shards, ended) {
                if running.contains_key(&s) || idle.contains(&s) {
                    continue;
                }
                start.push((
                    s.clone(),
                    CheckpointSink::Lake {
                        lake: reader.ctx.lake.clone(),
                        key: lake_checkpoint_key(stream, &s),
                    },
                ));
            }
        }
        Some(table) => {
            let mut all = table.list().await?;
            for s in &shards {
                if !all.iter().any(|l| l.shard == s.id) {
                    table.create_if_missing(&s.id).await?;
                }
            }
            if all.len() < shards.len() {
                all = table.list().await?;
            }
            for l in &all {
                if l.ended {
                    ended.insert(l.shard.clone());
                }
            }
            let elig: BTreeSet<String> = eligible(&shards, ended)
                .into_iter()
                .filter(|s| !idle.contains(s))
                .collect();
            let now = reader.ctx.clock.now_ms();
            let (target, free, steal) = balance(&table.owner, &all, &elig, now);
            let mut mine = running.len();
            for l in free {
                if mine >= target {
                    break;
                }
                if running.contains_key(&l.shard) {
                    continue;
                }
                if let Some(h) = table.take(l, false).await? {
                    start.push((l.shard.clone(), CheckpointSink::Lease(h)));
                    mine += 1;
                }
            }
            if mine < target {
                if let Some(l) = steal {
                    if let Some(h) = table.take(l, true).await? {
                        start.push((l.shard.clone(), CheckpointSink::Lease(h)));
                    }
                }
            }
        }
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(id: &str, parents: &[&str], closed: bool) -> ShardInfo {
        ShardInfo {
            id: id.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            closed,
        }
    }

    #[test]
    fn children_wait_for_their_parents() {
        let shards = vec![
            shard("p", &[], true),
            shard("a", &["p"], false),
            shard("b", &["p"], false),
            shard("m", &["a", "b"], false),
        ];
        let mut ended = BTreeSet::new();
        assert_eq!(eligible(&shards, &ended), vec!["p"]);
        ended.insert("p".to_string());
        assert_eq!(eligible(&shards, &ended), vec!["a", "b"]);
        ended.insert("a".to_string());
        assert_eq!(eligible(&shards, &ended), vec!["b"]);
        // A parent trimmed from the stream no longer blocks its child.
        assert_eq!(eligible(&shards[1..], &BTreeSet::new()), vec!["a", "b"]);
    }

    fn lease(shard: &str, owner: &str, expires_ms: i64) -> Lease {
        Lease {
            shard: shard.into(),
            owner: owner.into(),
            counter: 1,
            expires_ms,
            checkpoint: None,
            ended: false,
        }
    }

    #[test]
    fn workers_balance_and_dead_leases_are_free() {
        let all: BTreeSet<String> = ["s0", "s1", "s2", "s3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // w1 holds everything; w2 arrives: target 2, nothing free, steal one.
        let leases: Vec<Lease> = all.iter().map(|s| lease(s, "w1", 1_000)).collect();
        let (target, free, steal) = balance("w2", &leases, &all, 0);
        assert_eq!((target, free.len()), (2, 0));
        assert!(steal.is_some());
        // w1 died (expired): w2 may take all four.
        let (target, free, steal) = balance("w2", &leases, &all, 2_000);
        assert_eq!((target, free.len(), steal.is_none()), (4, 4, true));
        // Balanced: nothing to do.
        let leases = vec![
            lease("s0", "w1", 1_000),
            lease("s1", "w1", 1_000),
            lease("s2", "w2", 1_000),
            lease("s3", "w2", 1_000),
        ];
        let (target, free, steal) = balance("w2", &leases, &all, 0);
        assert_eq!((target, free.len(), steal.is_none()), (2, 0, true));
    }
}
