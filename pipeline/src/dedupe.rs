//! Dropping repeated batches: the producer side of exactly-once.
//!
//! Kinesis producers retry: when a PutRecords call times out after Kinesis stored an entry,
//! the gateway sends it again, and the stream holds the batch twice. Every aggregate the
//! gateway ships carries a unique batch id (`<instance>-<boot>-<seq>`) as its partition key, so
//! both copies land in the same shard. [`BatchIds`] remembers the ids of the most recent
//! batches of a shard and drops a batch whose id was first seen at another sequence number.
//!
//! The memory is part of the checkpoint, as of its resume position: ids of batches read
//! before `resume` (whose records are all in durable files) are kept, up to
//! [`DEDUPE_WINDOW`] of them; ids read after it are rebuilt by the replay. So a worker that
//! restarts makes the same decisions, and a batch whose first copy was not durable is never
//! dropped. A repeat that arrives more than the window after its first copy is not caught
//! (every row carries its `request_id`, so it stays findable with SQL).

use std::collections::{HashMap, VecDeque};

use crate::checkpoint::{Pos, Seq};

/// Batch ids kept in a shard's checkpoint. A retried batch arrives within seconds of the
/// first copy, and the gateway ships at most a few hundred aggregates a second per shard.
pub const DEDUPE_WINDOW: usize = 1024;

#[derive(Debug, Default)]
pub struct BatchIds {
    /// Read before the checkpoint's resume position, oldest first.
    committed: VecDeque<(Seq, String)>,
    /// Read since, oldest first.
    pending: VecDeque<(Seq, String)>,
    /// Every id above → the sequence number of its first copy.
    first: HashMap<String, Seq>,
}

impl BatchIds {
    pub fn new(committed: &[(Seq, String)]) -> BatchIds {
        let mut b = BatchIds::default();
        for (seq, id) in committed {
            if b.first.insert(id.clone(), seq.clone()).is_none() {
                b.committed.push_back((seq.clone(), id.clone()));
            }
        }
        b
    }

    /// Note the batch `id` at `seq`. Returns the first copy's sequence number when this is a
    /// repeat (the same id at another sequence number); a replay of the same Kinesis record
    /// is not a repeat.
    pub fn repeat_of(&mut self, seq: &Seq, id: &str) -> Option<Seq> {
        match self.first.get(id) {
            Some(first) if first != seq => Some(first.clone()),
            Some(_) => None,
            None => {
                self.first.insert(id.to_string(), seq.clone());
                self.pending.push_back((seq.clone(), id.to_string()));
                None
            }
        }
    }

    /// Everything before `resume` is durable: move those ids into the checkpointed window.
    pub fn commit(&mut self, resume: &Pos) {
        while let Some((seq, _)) = self.pending.front() {
            let start = Pos {
                seq: seq.clone(),
                sub: 0,
            };
            if start >= *resume {
                break;
            }
            if let Some(e) = self.pending.pop_front() {
                self.committed.push_back(e);
            }
        }
        while self.committed.len() > DEDUPE_WINDOW {
            if let Some((_, id)) = self.committed.pop_front() {
                self.first.remove(&id);
            }
        }
    }

    /// The window to save in the checkpoint.
    pub fn committed(&self) -> Vec<(Seq, String)> {
        self.committed.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(n: u64) -> Seq {
        Seq::parse(&n.to_string()).unwrap()
    }

    #[test]
    fn a_repeat_is_caught_before_and_after_a_restart_and_the_window_is_bounded() {
        let mut b = BatchIds::default();
        assert_eq!(b.repeat_of(&seq(1), "gw-a-1"), None);
        assert_eq!(b.repeat_of(&seq(1), "gw-a-1"), None, "same record replayed");
        assert_eq!(b.repeat_of(&seq(2), "gw-a-2"), None);
        assert_eq!(b.repeat_of(&seq(3), "gw-a-1"), Some(seq(1)));
        b.commit(&Pos::after(&seq(1)));
        assert_eq!(b.committed(), vec![(seq(1), "gw-a-1".to_string())]);
        // Restart from that checkpoint: gw-a-2 was not durable, the replay re-reads it.
        let mut r = BatchIds::new(&b.committed());
        assert_eq!(r.repeat_of(&seq(2), "gw-a-2"), None);
        assert_eq!(r.repeat_of(&seq(3), "gw-a-1"), Some(seq(1)));
        // A resume inside an aggregate keeps the aggregate's own id replayable.
        let mut m = BatchIds::default();
        m.repeat_of(&seq(5), "x");
        m.commit(&Pos {
            seq: seq(5),
            sub: 3,
        });
        let mut m = BatchIds::new(&m.committed());
        assert_eq!(m.repeat_of(&seq(5), "x"), None);
        // Bounded.
        for i in 10..(10 + DEDUPE_WINDOW as u64 + 50) {
            r.repeat_of(&seq(i), &format!("id-{i}"));
        }
        r.commit(&Pos::after(&seq(u64::MAX)));
        assert_eq!(r.committed().len(), DEDUPE_WINDOW);
        assert_eq!(r.repeat_of(&seq(u64::MAX), "gw-a-1"), None, "forgotten");
    }
}
