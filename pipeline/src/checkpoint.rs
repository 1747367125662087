//! Per-shard progress. A checkpoint says which records are already in durable files:
//!
//! - `resume`: every record before this position is in a file (or in the error prefix);
//! - `flushed`: per partition, records before this position are in a file; a replay from
//!   `resume` skips them, so files written after `resume` are never duplicated;
//! - `pending`: the file being completed when the checkpoint was saved, with its last record,
//!   so a replay after a crash cuts that file at the same record and rewrites the same key
//!   with the same records.
//!
//! Saved in the lake (`_checkpoints/<stream>/<shard>.json`) with one worker, or in the shard's
//! DynamoDB lease item with several ([`crate::lease`]).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::lake::Lake;
use crate::lease::{LeaseError, LeaseHandle};

/// A Kinesis sequence number (a decimal of up to 129 digits) or a local log position, in
/// canonical form (no leading zeros), ordered numerically.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Seq(Arc<str>);

impl Seq {
    pub fn parse(s: &str) -> Option<Seq> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let t = s.trim_start_matches('0');
        Some(Seq(Arc::from(if t.is_empty() { "0" } else { t })))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Local log position as a sequence number: `segment * 10^12 + offset`.
    pub fn from_position(p: edgeway_record::segment::Position) -> Seq {
        let v = u128::from(p.segment) * 1_000_000_000_000 + u128::from(p.offset);
        Seq(Arc::from(v.to_string()))
    }

    pub fn to_position(&self) -> Option<edgeway_record::segment::Position> {
        let v: u128 = self.0.parse().ok()?;
        Some(edgeway_record::segment::Position {
            segment: u64::try_from(v / 1_000_000_000_000).ok()?,
            offset: (v % 1_000_000_000_000) as u64,
        })
    }
}

impl Ord for Seq {
    fn cmp(&self, o: &Self) -> Ordering {
        self.0.len().cmp(&o.0.len()).then_with(|| self.0.cmp(&o.0))
    }
}

impl PartialOrd for Seq {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

/// A user record's place: the Kinesis record (or log frame) and its index inside the
/// aggregate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub seq: Seq,
    pub sub: u32,
}

impl Pos {
    pub fn next(&self) -> Pos {
        Pos {
            seq: self.seq.clone(),
            sub: self.sub.saturating_add(1),
        }
    }

    /// Just after every record of the aggregate at `seq`.
    pub fn after(seq: &Seq) -> Pos {
        Pos {
            seq: seq.clone(),
            sub: u32::MAX,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct PosJson {
    seq: String,
    sub: u32,
}

fn pos_to_json(p: &Pos) -> PosJson {
    PosJson {
        seq: p.seq.as_str().to_string(),
        sub: p.sub,
    }
}

fn pos_from_json(p: &PosJson) -> Option<Pos> {
    Some(Pos {
        seq: Seq::parse(&p.seq)?,
        sub: p.sub,
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub resume: Option<Pos>,
    /// Partition path (`dt=…/hour=…`) → first position not yet in a file.
    pub flushed: BTreeMap<String, Pos>,
    /// (partition path, last record) of the file being completed.
    pub pending: Option<(String, Pos)>,
    /// The shard reached SHARD_END and everything read is durable.
    pub ended: bool,
    /// Ids of the latest batches read before `resume` (first sequence number, id), oldest
    /// first: see [`crate::dedupe`].
    pub batches: Vec<(Seq, String)>,
}

#[derive(Serialize, Deserialize, Default)]
struct CheckpointJson {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resume: Option<PosJson>,
    #[serde(default)]
    flushed: BTreeMap<String, PosJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<(String, PosJson)>,
    #[serde(default)]
    ended: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    batches: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {what}: {message}")]
    Invalid { what: String, message: String },
    #[error("checkpoint store: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("checkpoint fsync: {0}")]
    Sync(#[from] std::io::Error),
}

impl Checkpoint {
    pub fn to_json(&self) -> String {
        let j = CheckpointJson {
            resume: self.resume.as_ref().map(pos_to_json),
            flushed: self
                .flushed
                .iter()
                .map(|(k, v)| (k.clone(), pos_to_json(v)))
                .collect(),
            pending: self
                .pending
                .as_ref()
                .map(|(k, p)| (k.clone(), pos_to_json(p))),
            ended: self.ended,
            batches: self
                .batches
                .iter()
                .map(|(s, id)| (s.as_str().to_string(), id.clone()))
                .collect(),
        };
        serde_json::to_string(&j).unwrap_or_default()
    }

    pub fn from_json(what: &str, s: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |message: String| CheckpointError::Invalid {
            what: what.to_string(),
            message,
        };
        let j: CheckpointJson = serde_json::from_str(s).map_err(|e| bad(e.to_string()))?;
        let p =
            |p: &PosJson| pos_from_json(p).ok_or_else(|| bad(format!("bad sequence {:?}", p.seq)));
        Ok(Checkpoint {
            resume: j.resume.as_ref().map(&p).transpose()?,
            flushed: j
                .flushed
                .iter()
                .map(|(k, v)| Ok((k.clone(), p(v)?)))
                .collect::<Result<_, CheckpointError>>()?,
            pending: j
                .pending
                .as_ref()
                .map(|(k, v)| Ok::<_, CheckpointError>((k.clone(), p(v)?)))
                .transpose()?,
            ended: j.ended,
            batches: j
                .batches
                .iter()
                .map(|(s, id)| {
                    Seq::parse(s)
                        .map(|s| (s, id.clone()))
                        .ok_or_else(|| bad(format!("bad sequence {s:?}")))
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Where one shard's checkpoint goes.
pub enum CheckpointSink {
    /// `<lake>/_checkpoints/<stream>/<shard>.json` (one worker, no DynamoDB).
    Lake { lake: Lake, key: String },
    /// The shard's lease item (several workers).
    Lease(LeaseHandle),
    /// Kept in memory (tests).
    Memory(Arc<std::sync::Mutex<Vec<Checkpoint>>>),
}

pub fn lake_checkpoint_key(stream: &str, shard: &str) -> String {
    format!("_checkpoints/{stream}/{shard}.json")
}

impl CheckpointSink {
    pub async fn load(&mut self) -> Result<Checkpoint, CheckpointError> {
        match self {
            CheckpointSink::Lake { lake, key } => match lake.store.get(&lake.path(key)).await {
                Ok(r) => {
                    let b = r.bytes().await?;
                    Checkpoint::from_json(key, &String::from_utf8_lossy(&b))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(Checkpoint::default()),
                Err(e) => Err(e.into()),
            },
            CheckpointSink::Lease(h) => match &h.checkpoint {
                Some(s) if !s.is_empty() => Checkpoint::from_json(&h.shard, s),
                _ => Ok(Checkpoint::default()),
            },
            CheckpointSink::Memory(m) => Ok(m
                .lock()
                .ok()
                .and_then(|v| v.last().cloned())
                .unwrap_or_default()),
        }
    }

    pub async fn save(&mut self, c: &Checkpoint) -> Result<(), CheckpointError> {
        match self {
            CheckpointSink::Lake { lake, key } => {
                lake.store
                    .put(&lake.path(key), PutPayload::from(c.to_json().into_bytes()))
                    .await?;
                lake.sync(key).await?;
                Ok(())
            }
            CheckpointSink::Lease(h) => Ok(h.checkpoint(c).await?),
            CheckpointSink::Memory(m) => {
                if let Ok(mut v) = m.lock() {
                    v.push(c.clone());
                }
                Ok(())
            }
        }
    }

    /// Keep the lease alive (no-op without leases).
    pub async fn renew(&mut self) -> Result<(), CheckpointError> {
        match self {
            CheckpointSink::Lease(h) => Ok(h.renew_if_due().await?),
            _ => Ok(()),
        }
    }

    /// Give the lease up so another worker takes it at once (shutdown).
    pub async fn release(&mut self) {
        if let CheckpointSink::Lease(h) = self {
            h.release().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_order_numerically() {
        let a = Seq::parse("49590338271490256608559692538361571095921575989136588898").unwrap();
        let b = Seq::parse("9").unwrap();
        assert!(b < a);
        assert_eq!(Seq::parse("007").unwrap().as_str(), "7");
        assert!(Seq::parse("").is_none() && Seq::parse("1a").is_none());
        let p = edgeway_record::segment::Position {
            segment: 12,
            offset: 4096,
        };
        assert_eq!(Seq::from_position(p).to_position(), Some(p));
        assert!(
            Pos {
                seq: b.clone(),
                sub: 3
            } < Pos {
                seq: b.clone(),
                sub: 4
            } && Pos::after(&b) < Pos { seq: a, sub: 0 }
        );
    }

    #[test]
    fn checkpoint_round_trips() {
        let s = Seq::parse("123").unwrap();
        let mut c = Checkpoint {
            resume: Some(Pos {
                seq: s.clone(),
                sub: 2,
            }),
            ..Default::default()
        };
        c.flushed
            .insert("dt=2025-01-01/hour=00".into(), Pos::after(&s));
        c.pending = Some(("dt=2025-01-01/hour=01".into(), Pos { seq: s, sub: 9 }));
        assert_eq!(Checkpoint::from_json("t", &c.to_json()).unwrap(), c);
        assert!(Checkpoint::from_json("t", "{\"resume\":{\"seq\":\"x\",\"sub\":0}}").is_err());
    }
}
