//! The checkpoint protocol: a shard's progress, saved only around durable writes.
//!
//! In: the read position after each Kinesis record ([`Progress::read_to`]) and, around each
//! roll, [`Progress::begin`] before the upload and [`Progress::complete`] once the file is
//! durable ([`super::upload`]), with the earliest first record of the files still open.
//! Out: the [`Checkpoint`] saved to the shard's [`CheckpointSink`], and from it what the
//! writer asks while reading: where reading resumes, which records a replay finds already in
//! a file ([`Progress::in_a_file`]), and where a replay cuts the file that was being
//! completed at the crash ([`Progress::cut_after`]). The window of batch ids ([`BatchIds`])
//! lives here because it is saved with the checkpoint, as of its resume position.
//!
//! One roll: save `pending` (the partition and its last record), so that a replay after a
//! crash cuts that file at the same record; upload; then note the partition as flushed up to
//! that record, move `resume` to the first record not yet in a file, and save. A replay
//! therefore skips records already in files and rewrites the same keys with the same records.

use std::sync::Arc;

use super::WriteError;
use crate::checkpoint::{Checkpoint, CheckpointSink, Pos};
use crate::clock::Clock;
use crate::dedupe::BatchIds;
use crate::metrics::{inc, Metrics};

/// With no file open, a resume position moved by reading alone (error objects, replayed or
/// repeated records) is saved at most this often, or every age limit if that is shorter.
pub const IDLE_SAVE_INTERVAL_MS: i64 = 10_000;

/// How the checkpoint names the slot of a file (its table and partition).
pub(super) trait SlotKey {
    fn checkpoint_key(&self) -> String;
}

impl SlotKey for super::decode::Slot {
    fn checkpoint_key(&self) -> String {
        super::decode::Slot::checkpoint_key(self)
    }
}

/// One shard's checkpoint and the reading state derived from it.
pub(super) struct Progress {
    sink: CheckpointSink,
    ckpt: Checkpoint,
    batches: BatchIds,
    /// From a checkpoint's `pending`: cut that partition's file right after this record.
    cut: Option<(String, Pos)>,
    /// Just after the last record read.
    read_end: Option<Pos>,
    /// `ckpt.resume` as last saved, to save again only when it moved.
    saved_resume: Option<Pos>,
    last_save_ms: i64,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Progress {
    /// Load the shard's checkpoint.
    pub async fn load(
        mut sink: CheckpointSink,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Result<Progress, WriteError> {
        let ckpt = sink.load().await?;
        Ok(Progress {
            cut: ckpt.pending.clone(),
            batches: BatchIds::new(&ckpt.batches),
            saved_resume: ckpt.resume.clone(),
            read_end: ckpt.resume.clone(),
            ckpt,
            sink,
            last_save_ms: 0,
            clock,
            metrics,
        })
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.ckpt
    }

    pub fn sink_mut(&mut self) -> &mut CheckpointSink {
        &mut self.sink
    }

    /// Every record before it is durable.
    pub fn resume(&self) -> Option<&Pos> {
        self.ckpt.resume.as_ref()
    }

    /// `resume` as last saved: every record before it is in a durable file, and the
    /// checkpoint saying so is durable too.
    pub fn saved_resume(&self) -> Option<&Pos> {
        self.saved_resume.as_ref()
    }

    pub fn read_end(&self) -> Option<&Pos> {
        self.read_end.as_ref()
    }

    pub fn batches_mut(&mut self) -> &mut BatchIds {
        &mut self.batches
    }

    /// Everything up to `end` has been read (and is buffered, written or dropped).
    pub fn read_to(&mut self, end: Pos) {
        self.read_end = Some(end);
    }

    /// Whether the record at `pos` of partition `p` is in a durable file already (a replay
    /// re-reads records of partitions rolled after the resume position).
    pub fn in_a_file(&self, p: &impl SlotKey, pos: &Pos) -> bool {
        if self.ckpt.flushed.is_empty() {
            return false;
        }
        self.ckpt
            .flushed
            .get(&p.checkpoint_key())
            .is_some_and(|f| pos < f)
    }

    /// Whether `p`'s file must be cut right after `pos`, where it was being completed when
    /// the last worker stopped. True once.
    pub fn cut_after(&mut self, p: &impl SlotKey, pos: &Pos) -> bool {
        let here =
            matches!(&self.cut, Some((cp, cpos)) if cpos == pos && *cp == p.checkpoint_key());
        if here {
            self.cut = None;
        }
        here
    }

    /// Before `p`'s file is uploaded: save that it ends at `last`.
    pub async fn begin(&mut self, p: &impl SlotKey, last: &Pos) -> Result<(), WriteError> {
        self.ckpt.pending = Some((p.checkpoint_key(), last.clone()));
        self.save().await
    }

    /// After `p`'s file is durable: its records up to `last` are done.
    pub async fn complete(
        &mut self,
        p: &impl SlotKey,
        last: &Pos,
        first_open: Option<Pos>,
    ) -> Result<(), WriteError> {
        self.ckpt.flushed.insert(p.checkpoint_key(), last.next());
        self.ckpt.pending = None;
        self.advance_resume(first_open);
        self.save().await
    }

    /// With no file open: move the resume position to the read position, and save it when
    /// it moved and the last save is old enough.
    pub async fn idle(&mut self, now_ms: i64, max_file_age_ms: i64) -> Result<(), WriteError> {
        self.advance_resume(None);
        if self.idle_save_due(now_ms, max_file_age_ms) {
            self.save().await?;
        }
        Ok(())
    }

    fn idle_save_due(&self, now_ms: i64, max_file_age_ms: i64) -> bool {
        self.ckpt.resume != self.saved_resume
            && now_ms - self.last_save_ms >= max_file_age_ms.min(IDLE_SAVE_INTERVAL_MS)
    }

    /// Every file is rolled: save the final position (`ended` at SHARD_END).
    pub async fn finish(&mut self, ended: bool) -> Result<(), WriteError> {
        self.advance_resume(None);
        self.ckpt.ended = ended;
        if ended || self.ckpt.resume != self.saved_resume {
            self.save().await?;
        }
        Ok(())
    }

    /// Resume at the first record of the earliest open file, or after everything read.
    /// Never moves back.
    fn advance_resume(&mut self, first_open: Option<Pos>) {
        let resume = first_open.or_else(|| self.read_end.clone());
        if let Some(r) = resume {
            if self.ckpt.resume.as_ref().is_none_or(|c| r > *c) {
                self.ckpt.resume = Some(r);
            }
        }
        if let Some(r) = self.ckpt.resume.clone() {
            self.ckpt.flushed.retain(|_, f| *f > r);
            self.batches.commit(&r);
        }
    }

    async fn save(&mut self) -> Result<(), WriteError> {
        // The dedupe window as of `ckpt.resume` (advance_resume commits up to it).
        self.ckpt.batches = self.batches.committed();
        self.sink.save(&self.ckpt).await?;
        inc(&self.metrics.checkpoints, 1);
        self.saved_resume = self.ckpt.resume.clone();
        self.last_save_ms = self.clock.now_ms();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeway_record::table::Partition;

    /// The tests name access-log partitions, whose key is the partition path.
    impl SlotKey for Partition {
        fn checkpoint_key(&self) -> String {
            self.path()
        }
    }
    use crate::checkpoint::Seq;
    use crate::clock::ManualClock;

    const T0: i64 = 1_763_776_800_000; // 2025-11-22T02:00:00Z
    const HOUR: i64 = 3_600_000;

    fn pos(seq: u64, sub: u32) -> Pos {
        Pos {
            seq: Seq::parse(&seq.to_string()).unwrap(),
            sub,
        }
    }

    type Saved = Arc<std::sync::Mutex<Vec<Checkpoint>>>;

    async fn progress(saved: &Saved, clock: &ManualClock) -> Progress {
        Progress::load(
            CheckpointSink::Memory(saved.clone()),
            Arc::new(clock.clone()),
            Arc::new(Metrics::default()),
        )
        .await
        .unwrap()
    }

    fn last(saved: &Saved) -> Checkpoint {
        saved.lock().unwrap().last().cloned().unwrap()
    }

    #[tokio::test]
    async fn a_roll_saves_pending_first_then_flushed_and_resume() {
        let saved = Saved::default();
        let clock = ManualClock::new(T0);
        let mut pr = progress(&saved, &clock).await;
        let (h1, h2) = (Partition::of(T0 - HOUR), Partition::of(T0));
        pr.read_to(Pos::after(&pos(5, 0).seq));
        // Hour 01 (records 1.0 ..= 4.0) rolls while hour 02 (first record 2.0) stays open.
        pr.begin(&h1, &pos(4, 0)).await.unwrap();
        let c = last(&saved);
        assert_eq!(c.pending, Some((h1.path(), pos(4, 0))));
        assert_eq!(c.resume, None, "nothing durable yet");
        pr.complete(&h1, &pos(4, 0), Some(pos(2, 0))).await.unwrap();
        let c = last(&saved);
        assert_eq!(c.pending, None);
        assert_eq!(c.resume, Some(pos(2, 0)));
        assert_eq!(c.flushed.get(&h1.path()), Some(&pos(4, 1)));
        assert_eq!(saved.lock().unwrap().len(), 2);
        // What a replay from here skips: hour 01 up to 4.0, nothing of hour 02.
        assert!(pr.in_a_file(&h1, &pos(4, 0)));
        assert!(!pr.in_a_file(&h1, &pos(4, 1)));
        assert!(!pr.in_a_file(&h2, &pos(3, 0)));
        // Once hour 02 rolls too, resume moves past everything read and `flushed` empties.
        pr.begin(&h2, &pos(5, 0)).await.unwrap();
        pr.complete(&h2, &pos(5, 0), None).await.unwrap();
        let c = last(&saved);
        assert_eq!(c.resume, Some(Pos::after(&pos(5, 0).seq)));
        assert!(c.flushed.is_empty());
    }

    #[tokio::test]
    async fn a_restart_cuts_the_pending_file_once_at_its_record() {
        let saved = Saved::default();
        let clock = ManualClock::new(T0);
        let h2 = Partition::of(T0);
        let mut pr = progress(&saved, &clock).await;
        pr.begin(&h2, &pos(7, 3)).await.unwrap();
        drop(pr); // crash during the upload
        let mut pr = progress(&saved, &clock).await;
        assert!(!pr.cut_after(&h2, &pos(7, 2)));
        assert!(!pr.cut_after(&Partition::of(T0 - HOUR), &pos(7, 3)));
        assert!(pr.cut_after(&h2, &pos(7, 3)));
        assert!(!pr.cut_after(&h2, &pos(7, 3)), "once");
    }

    #[tokio::test]
    async fn an_idle_shard_saves_a_moved_position_at_most_every_interval() {
        let saved = Saved::default();
        let clock = ManualClock::new(T0);
        let mut pr = progress(&saved, &clock).await;
        let saves = || saved.lock().unwrap().len();
        let max_age = 60_000;
        pr.idle(clock.now_ms(), max_age).await.unwrap();
        assert_eq!(saves(), 0, "nothing read, nothing to save");
        pr.read_to(Pos::after(&pos(1, 0).seq));
        pr.idle(clock.now_ms(), max_age).await.unwrap();
        assert_eq!(saves(), 1, "never saved before");
        pr.read_to(Pos::after(&pos(2, 0).seq));
        clock.advance_ms(IDLE_SAVE_INTERVAL_MS - 1);
        pr.idle(clock.now_ms(), max_age).await.unwrap();
        assert_eq!(saves(), 1, "too soon");
        clock.advance_ms(1);
        pr.idle(clock.now_ms(), max_age).await.unwrap();
        assert_eq!(saves(), 2);
        assert_eq!(last(&saved).resume, Some(Pos::after(&pos(2, 0).seq)));
        pr.idle(clock.now_ms() + IDLE_SAVE_INTERVAL_MS, max_age)
            .await
            .unwrap();
        assert_eq!(saves(), 2, "not moved");
        // A shorter age limit shortens the interval.
        pr.read_to(Pos::after(&pos(3, 0).seq));
        clock.advance_ms(999);
        pr.idle(clock.now_ms(), 1_000).await.unwrap();
        assert_eq!(saves(), 2);
        clock.advance_ms(1);
        pr.idle(clock.now_ms(), 1_000).await.unwrap();
        assert_eq!(saves(), 3);
    }

    #[tokio::test]
    async fn finish_saves_when_moved_and_always_at_shard_end() {
        let saved = Saved::default();
        let clock = ManualClock::new(T0);
        let mut pr = progress(&saved, &clock).await;
        pr.finish(false).await.unwrap();
        assert_eq!(saved.lock().unwrap().len(), 0);
        pr.finish(true).await.unwrap();
        assert!(last(&saved).ended);
    }
}
