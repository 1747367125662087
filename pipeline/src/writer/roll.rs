//! When an open file is rolled (completed in the lake): pure decisions, no I/O.
//!
//! In: what the roll needs to know of each open file ([`RollInputs`]: its protobuf bytes,
//! when it was opened and last written), the time, and the limits ([`RollLimits`], from the
//! writer's configuration).
//! Out: whether one file is due and why ([`roll_decision`]), or the files to roll now, in
//! order ([`plan`]): the files due by size or age by partition, then, while the shard has
//! more open files than allowed, the least recently written. Each partition has its own file,
//! so a record of another hour opens another file and never rolls the current one; the other
//! [`RollReason`]s are decided by the writer's protocol (a replay's cut, shutdown, SHARD_END).

use super::WriterConfig;

/// Protobuf bytes shrink about 8× in ZSTD Parquet (`bench/pipeline` measures the ratio).
pub const PARQUET_SHRINK: u64 = 8;

/// Why a file is rolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RollReason {
    /// Its estimated size reached the target.
    Size,
    /// It has been open for the age limit.
    Age,
    /// The shard has too many open files; it is the least recently written.
    OpenFiles,
    /// A replay reached the record the file was cut at before the crash (the checkpoint's
    /// `pending`), so it rolls there again and rewrites the same file.
    ReplayCut,
    /// The worker stops (or gives the shard up).
    Shutdown,
    /// The shard was closed by a reshard and everything in it was read.
    ShardEnd,
}

impl RollReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RollReason::Size => "size",
            RollReason::Age => "age",
            RollReason::OpenFiles => "open_files",
            RollReason::ReplayCut => "replay_cut",
            RollReason::Shutdown => "shutdown",
            RollReason::ShardEnd => "shard_end",
        }
    }
}

/// What the roll decision knows of one open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollInputs {
    /// Protobuf bytes of its rows so far, in memory or spilled.
    pub data_bytes: u64,
    pub opened_ms: i64,
    pub last_write_ms: i64,
}

impl RollInputs {
    /// Estimated size of the finished file.
    pub fn estimated_bytes(&self) -> u64 {
        self.data_bytes / PARQUET_SHRINK
    }
}

/// The limits of [`WriterConfig`] that decide rolls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollLimits {
    pub target_file_bytes: u64,
    pub max_file_age_ms: i64,
    pub max_open_files: usize,
}

impl From<&WriterConfig> for RollLimits {
    fn from(c: &WriterConfig) -> RollLimits {
        RollLimits {
            target_file_bytes: c.target_file_bytes,
            max_file_age_ms: c.max_file_age_ms,
            max_open_files: c.max_open_files,
        }
    }
}

/// Whether one file is due by itself: by size first, then by age (both limits inclusive).
pub fn roll_decision(file: &RollInputs, now_ms: i64, limits: &RollLimits) -> Option<RollReason> {
    if file.estimated_bytes() >= limits.target_file_bytes {
        Some(RollReason::Size)
    } else if now_ms - file.opened_ms >= limits.max_file_age_ms {
        Some(RollReason::Age)
    } else {
        None
    }
}

/// The files to roll now, in the order to roll them: those due by size or age, by
/// partition; then, if more than `max_open_files` would stay open, the least recently
/// written of the rest (ties by partition) until that many are left.
pub fn plan<K: Copy + Ord>(
    files: &[(K, RollInputs)],
    now_ms: i64,
    limits: &RollLimits,
) -> Vec<(K, RollReason)> {
    let mut due = Vec::new();
    let mut rest = Vec::new();
    for (p, f) in files {
        match roll_decision(f, now_ms, limits) {
            Some(reason) => due.push((*p, reason)),
            None => rest.push((f.last_write_ms, *p)),
        }
    }
    due.sort();
    rest.sort();
    let excess = rest.len().saturating_sub(limits.max_open_files);
    due.extend(
        rest.into_iter()
            .take(excess)
            .map(|(_, p)| (p, RollReason::OpenFiles)),
    );
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeway_record::table::Partition;

    const T0: i64 = 1_763_776_800_000; // 2025-11-22T02:00:00Z
    const HOUR: i64 = 3_600_000;

    const LIMITS: RollLimits = RollLimits {
        target_file_bytes: 1_000,
        max_file_age_ms: 60_000,
        max_open_files: 2,
    };

    fn file(data_bytes: u64, opened_ms: i64, last_write_ms: i64) -> RollInputs {
        RollInputs {
            data_bytes,
            opened_ms,
            last_write_ms,
        }
    }

    fn hour(h: i64) -> Partition {
        Partition::of(T0 + h * HOUR)
    }

    #[test]
    fn size_rolls_at_the_target_not_a_byte_before() {
        let target = LIMITS.target_file_bytes;
        let below = file(target * PARQUET_SHRINK - 1, T0, T0);
        assert_eq!(below.estimated_bytes(), target - 1);
        assert_eq!(roll_decision(&below, T0, &LIMITS), None);
        let at = file(target * PARQUET_SHRINK, T0, T0);
        assert_eq!(roll_decision(&at, T0, &LIMITS), Some(RollReason::Size));
        let over = file(u64::MAX, T0, T0);
        assert_eq!(roll_decision(&over, T0, &LIMITS), Some(RollReason::Size));
    }

    #[test]
    fn age_rolls_at_the_limit_not_a_millisecond_before() {
        let f = file(1, T0, T0);
        assert_eq!(roll_decision(&f, T0, &LIMITS), None);
        assert_eq!(roll_decision(&f, T0 + 59_999, &LIMITS), None);
        assert_eq!(
            roll_decision(&f, T0 + 60_000, &LIMITS),
            Some(RollReason::Age)
        );
        // Age counts from opening, not from the last write.
        let busy = file(1, T0, T0 + 59_999);
        assert_eq!(
            roll_decision(&busy, T0 + 60_000, &LIMITS),
            Some(RollReason::Age)
        );
        // A clock that went back never rolls a file early.
        assert_eq!(roll_decision(&f, T0 - 1, &LIMITS), None);
    }

    #[test]
    fn size_is_the_reason_when_both_are_due() {
        let f = file(LIMITS.target_file_bytes * PARQUET_SHRINK, T0, T0);
        assert_eq!(
            roll_decision(&f, T0 + 60_000, &LIMITS),
            Some(RollReason::Size)
        );
    }

    #[test]
    fn tiny_targets_roll_by_the_estimated_size() {
        // `target_file_bytes: 1` (tests, tiny files) rolls any file with 8 bytes of rows;
        // a zero target rolls even an empty one.
        let zero = RollLimits {
            target_file_bytes: 0,
            ..LIMITS
        };
        assert_eq!(
            roll_decision(&file(0, T0, T0), T0, &zero),
            Some(RollReason::Size)
        );
        let one = RollLimits {
            target_file_bytes: 1,
            ..LIMITS
        };
        assert_eq!(roll_decision(&file(7, T0, T0), T0, &one), None);
        assert_eq!(
            roll_decision(&file(8, T0, T0), T0, &one),
            Some(RollReason::Size)
        );
    }

    #[test]
    fn another_partition_does_not_roll_the_current_file() {
        // A late record opened hour -1 just now; the hour 0 file stays open, and only the
        // file that is due rolls.
        let files = [
            (hour(0), file(10, T0, T0 + 1_000)),
            (hour(-1), file(10, T0 + 1_000, T0 + 1_000)),
        ];
        assert_eq!(plan(&files, T0 + 1_000, &LIMITS), vec![]);
        assert_eq!(
            plan(&files, T0 + 60_000, &LIMITS),
            vec![(hour(0), RollReason::Age)]
        );
    }

    #[test]
    fn due_files_roll_in_partition_order() {
        let files = [
            (hour(2), file(u64::MAX, T0, T0)),
            (hour(0), file(1, T0 - 60_000, T0)),
            (hour(1), file(u64::MAX, T0, T0)),
        ];
        assert_eq!(
            plan(&files, T0, &LIMITS),
            vec![
                (hour(0), RollReason::Age),
                (hour(1), RollReason::Size),
                (hour(2), RollReason::Size),
            ]
        );
    }

    #[test]
    fn too_many_open_files_roll_the_least_recently_written() {
        let files = [
            (hour(0), file(1, T0, T0 + 30)),
            (hour(1), file(1, T0, T0 + 10)),
            (hour(2), file(1, T0, T0 + 20)),
            (hour(3), file(1, T0, T0 + 10)),
        ];
        // Four open, two allowed: the two written longest ago go, ties by partition.
        assert_eq!(
            plan(&files, T0 + 40, &LIMITS),
            vec![
                (hour(1), RollReason::OpenFiles),
                (hour(3), RollReason::OpenFiles)
            ]
        );
        // At the limit, nothing.
        assert_eq!(plan(&files[..2], T0 + 40, &LIMITS), vec![]);
        // Files due anyway count first: one due, three left, one more must go.
        let mut with_due = files;
        with_due[2].1.data_bytes = u64::MAX;
        assert_eq!(
            plan(&with_due, T0 + 40, &LIMITS),
            vec![
                (hour(2), RollReason::Size),
                (hour(1), RollReason::OpenFiles)
            ]
        );
        // No open files allowed: everything rolls, oldest write first.
        let none = RollLimits {
            max_open_files: 0,
            ..LIMITS
        };
        assert_eq!(
            plan(&files, T0 + 40, &none)
                .into_iter()
                .map(|(p, _)| p)
                .collect::<Vec<_>>(),
            vec![hour(1), hour(3), hour(2), hour(0)]
        );
    }

    #[test]
    fn limits_come_from_the_writer_config() {
        let c = WriterConfig {
            target_file_bytes: 5,
            max_file_age_ms: 6,
            max_open_files: 7,
            ..Default::default()
        };
        assert_eq!(
            RollLimits::from(&c),
            RollLimits {
                target_file_bytes: 5,
                max_file_age_ms: 6,
                max_open_files: 7
            }
        );
    }
}
