//! One Kinesis record (or local log frame) → the user records the writer keeps.
//!
//! In: the record's sequence number and bytes, the shard's resume position and its window
//! of batch ids ([`BatchIds`], the dedupe hand-off: the batch id is noted there).
//! Out: a [`Blob`] saying what the writer does with it: nothing ([`Blob::Durable`], read
//! before the resume position), drop it ([`Blob::Repeat`], a producer's retry), write it as
//! one error object ([`Blob::Undecodable`], not a valid aggregate), or take its records one
//! by one ([`Blob::Records`]), each either decoded and checked, with its position and
//! partition ([`Record`]), or refused with the reason ([`Refused`]).
//!
//! No I/O and no metrics: the writer acts on the answer. Records decode lazily, borrowing
//! the input bytes, straight into the open file's Arrow builders.
//!
//! The demux: each user record's kind ([`edgeway_record::kind`]) picks its table. Access-log
//! records (bare protobuf) go to `access_logs`, policy-change records (kind 1) to
//! `policy_changes`; a record of an unknown kind, or one that does not decode as its kind, is
//! refused with the reason like any other bad record (the writer counts it and writes it to
//! the error prefix), and the records around it carry on.

use edgeway_record::kind::{self, KindError, RecordKind};
use edgeway_record::kpl;
use edgeway_record::policy_change::PolicyChangeRecord;
use edgeway_record::table::{Partition, Table};
use edgeway_record::AccessLogRecordRef;

use crate::checkpoint::{Pos, Seq};
use crate::dedupe::BatchIds;

/// Records whose event time falls outside this range are errors, not 1970 partitions.
pub const MIN_EVENT_TIME_MS: i64 = 946_684_800_000; // 2000-01-01
pub const MAX_EVENT_TIME_MS: i64 = 4_102_444_800_000; // 2100-01-01

/// Why a decoded record is refused.
pub fn validate(r: &AccessLogRecordRef<'_>) -> Result<(), String> {
    check_time(r.event_time)
}

/// What one Kinesis record is to the writer.
pub(super) enum Blob<'a> {
    /// Every record in it is in a durable file already (read before the resume position).
    Durable,
    /// A repeat of batch `batch`, first read at `first`: dropped whole.
    Repeat {
        batch: String,
        first: Seq,
        records: u64,
    },
    /// Not a valid aggregate (bad checksum or framing): one error object for all of it.
    Undecodable { reason: String },
    /// Its user records not yet durable, in order.
    Records(Records<'a>),
}

/// Where a record goes: one table's partition. Each slot has its own open file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub table: Table,
    pub partition: Partition,
}

impl Slot {
    pub fn access_logs(partition: Partition) -> Slot {
        Slot {
            table: Table::AccessLogs,
            partition,
        }
    }

    /// The slot's name in the checkpoint: `dt=…/hour=…` for access logs (as checkpoints
    /// written before there were other tables name them), `<table>/dt=…/hour=…` otherwise.
    pub fn checkpoint_key(&self) -> String {
        match self.table {
            Table::AccessLogs => self.partition.path(),
            t => format!("{}/{}", t.dir(), self.partition.path()),
        }
    }
}

/// A decoded record, of one of the lake's tables.
#[allow(
    clippy::large_enum_variant,
    reason = "the large variant is the hot one (every request); boxing it would allocate per record"
)]
pub(super) enum Row<'a> {
    /// Strings borrow the input bytes.
    Access(AccessLogRecordRef<'a>),
    /// Rare (one per policy load): decoded owned.
    PolicyChange(PolicyChangeRecord),
}

impl Row<'_> {
    fn event_time(&self) -> i64 {
        match self {
            Row::Access(r) => r.event_time,
            Row::PolicyChange(r) => r.event_time,
        }
    }

    fn table(&self) -> Table {
        match self {
            Row::Access(_) => Table::AccessLogs,
            Row::PolicyChange(_) => Table::PolicyChanges,
        }
    }
}

/// One user record of a [`Blob::Records`], decoded and checked.
pub(super) struct Record<'a> {
    pub pos: Pos,
    pub slot: Slot,
    pub row: Row<'a>,
    /// Its protobuf bytes (for size estimates and memory accounting).
    pub data_len: usize,
}

/// One user record of a [`Blob::Records`] that does not decode as its kind, is of an unknown
/// kind, or that [`validate`] refuses.
pub(super) struct Refused<'a> {
    pub sub: u32,
    pub reason: String,
    /// The kind byte is unknown (a newer gateway's record), not garbage.
    pub unknown_kind: bool,
    pub data: &'a [u8],
}

/// Classify the record at `seq`. A batch id seen for the first time is noted in `batches`.
pub(super) fn open<'a>(
    seq: &Seq,
    blob: &'a [u8],
    resume: Option<&Pos>,
    batches: &mut BatchIds,
) -> Blob<'a> {
    if resume.is_some_and(|r| Pos::after(seq) <= *r) {
        return Blob::Durable;
    }
    if let Some(batch) = kpl::partition_key(blob) {
        if let Some(first) = batches.repeat_of(seq, &batch) {
            return Blob::Repeat {
                records: kpl::count_records(blob),
                batch,
                first,
            };
        }
    }
    match kpl::records(blob) {
        Ok(records) => Blob::Records(Records {
            seq: seq.clone(),
            resume: resume.cloned(),
            records: records.into_iter().enumerate(),
        }),
        Err(e) => Blob::Undecodable {
            reason: e.to_string(),
        },
    }
}

/// The user records of one aggregate from the resume position on, decoded as they are read.
pub(super) struct Records<'a> {
    seq: Seq,
    /// Records before it (a resume inside this aggregate) are skipped.
    resume: Option<Pos>,
    records: std::iter::Enumerate<std::vec::IntoIter<&'a [u8]>>,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, Refused<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        for (sub, data) in self.records.by_ref() {
            let sub = sub as u32;
            let pos = Pos {
                seq: self.seq.clone(),
                sub,
            };
            if self.resume.as_ref().is_some_and(|r| pos < *r) {
                continue;
            }
            return Some(match decode(data) {
                Ok(row) => Ok(Record {
                    pos,
                    slot: Slot {
                        table: row.table(),
                        partition: Partition::of(row.event_time()),
                    },
                    row,
                    data_len: data.len(),
                }),
                Err((reason, unknown_kind)) => Err(Refused {
                    sub,
                    reason,
                    unknown_kind,
                    data,
                }),
            });
        }
        None
    }
}

/// The record in `data`, or why not (and whether only its kind is unknown).
fn decode(data: &[u8]) -> Result<Row<'_>, (String, bool)> {
    let row = match kind::split(data) {
        Ok((RecordKind::AccessLog, body)) => Row::Access(
            AccessLogRecordRef::decode(body)
                .map_err(|e| (format!("not an AccessLogRecord: {e}"), false))?,
        ),
        Ok((RecordKind::PolicyChange, body)) => Row::PolicyChange(
            PolicyChangeRecord::from_body(body)
                .map_err(|e| (format!("not a PolicyChangeRecord: {e}"), false))?,
        ),
        Err(e @ KindError::Unknown(_)) => return Err((e.to_string(), true)),
        Err(e) => return Err((e.to_string(), false)),
    };
    check_time(row.event_time()).map_err(|e| (e, false))?;
    Ok(row)
}

/// Why a record's event time is refused.
fn check_time(event_time: i64) -> Result<(), String> {
    if !(MIN_EVENT_TIME_MS..MAX_EVENT_TIME_MS).contains(&event_time) {
        return Err(format!(
            "event_time {event_time} ms is outside 2000-01-01..2100-01-01"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeway_record::kpl::Aggregator;
    use edgeway_record::AccessLogRecord;

    const T0: i64 = 1_763_776_800_000; // 2025-11-22T02:00:00Z

    fn seq(n: u64) -> Seq {
        Seq::parse(&n.to_string()).unwrap()
    }

    fn rec(id: &str, t: i64) -> Vec<u8> {
        AccessLogRecord {
            event_time: t,
            request_id: id.into(),
            ..Default::default()
        }
        .to_bytes()
    }

    fn aggregate(key: &str, records: &[Vec<u8>]) -> Vec<u8> {
        let mut a = Aggregator::new(key, 1 << 20);
        for r in records {
            assert!(a.try_push(r));
        }
        a.finish()
    }

    /// (sub, request id or refusal) of every item.
    fn items(b: Blob<'_>) -> Vec<(u32, String)> {
        let Blob::Records(records) = b else {
            panic!("expected records");
        };
        records
            .map(|i| match i {
                Ok(Record {
                    pos,
                    slot,
                    row,
                    data_len,
                }) => {
                    assert_eq!(slot.partition, Partition::of(row.event_time()));
                    assert_eq!(slot.table, row.table());
                    assert!(data_len > 0);
                    match row {
                        Row::Access(rec) => (pos.sub, rec.request_id.to_string()),
                        Row::PolicyChange(rec) => (pos.sub, format!("policy {}", rec.new_version)),
                    }
                }
                Err(Refused {
                    sub,
                    reason,
                    unknown_kind,
                    ..
                }) => (
                    sub,
                    format!(
                        "refused{}: {reason}",
                        if unknown_kind { " (kind)" } else { "" }
                    ),
                ),
            })
            .collect()
    }

    #[test]
    fn records_decode_in_order_and_bad_ones_are_refused_with_a_reason() {
        let blob = aggregate(
            "gw-a-1",
            &[rec("r0", T0), vec![0xff, 0xff], rec("r2", 5), rec("r3", T0)],
        );
        let got = items(open(&seq(7), &blob, None, &mut BatchIds::default()));
        assert_eq!(got.len(), 4);
        assert_eq!(got[0], (0, "r0".to_string()));
        assert!(
            got[1].1.starts_with("refused: not an AccessLogRecord"),
            "{got:?}"
        );
        assert_eq!(
            got[2],
            (
                2,
                "refused: event_time 5 ms is outside 2000-01-01..2100-01-01".to_string()
            )
        );
        assert_eq!(got[3], (3, "r3".to_string()));
    }

    fn policy_change(version: &str, t: i64) -> Vec<u8> {
        PolicyChangeRecord {
            event_time: t,
            new_version: version.into(),
            ..Default::default()
        }
        .to_framed_bytes()
    }

    #[test]
    fn records_are_demultiplexed_by_kind_and_unknown_kinds_or_garbage_are_refused() {
        let mut bad_body = policy_change("x", T0);
        bad_body.truncate(bad_body.len() - 1);
        let blob = aggregate(
            "gw-a-2",
            &[
                rec("r0", T0),
                policy_change("v2", T0),
                vec![0x00, 0x07, 1, 2, 3],
                vec![0x00],
                bad_body,
                policy_change("old", 5),
                rec("r6", T0),
            ],
        );
        let got = items(open(&seq(9), &blob, None, &mut BatchIds::default()));
        assert_eq!(got[0], (0, "r0".to_string()));
        assert_eq!(got[1], (1, "policy v2".to_string()));
        assert!(
            got[2]
                .1
                .starts_with("refused (kind): record kind 7 is unknown"),
            "{got:?}"
        );
        assert!(
            got[3]
                .1
                .starts_with("refused: record starts with the kind marker"),
            "{got:?}"
        );
        assert!(
            got[4].1.starts_with("refused: not a PolicyChangeRecord"),
            "{got:?}"
        );
        assert!(got[5].1.contains("event_time 5 ms is outside"), "{got:?}");
        assert_eq!(got[6], (6, "r6".to_string()));
        // Each table has its own slot in the same hour.
        let Blob::Records(mut records) = open(&seq(9), &blob, None, &mut BatchIds::default())
        else {
            panic!("records");
        };
        let a = records.next().unwrap().ok().unwrap().slot;
        let p = records.next().unwrap().ok().unwrap().slot;
        assert_eq!(a, Slot::access_logs(Partition::of(T0)));
        assert_eq!(p.table, Table::PolicyChanges);
        assert_eq!(a.checkpoint_key(), "dt=2025-11-22/hour=02");
        assert_eq!(p.checkpoint_key(), "policy_changes/dt=2025-11-22/hour=02");
    }

    #[test]
    fn the_event_time_range_is_half_open() {
        let at = |t| AccessLogRecordRef {
            event_time: t,
            ..Default::default()
        };
        assert!(validate(&at(MIN_EVENT_TIME_MS - 1)).is_err());
        assert!(validate(&at(MIN_EVENT_TIME_MS)).is_ok());
        assert!(validate(&at(MAX_EVENT_TIME_MS - 1)).is_ok());
        assert!(validate(&at(MAX_EVENT_TIME_MS)).is_err());
    }

    #[test]
    fn a_resume_skips_what_is_durable_whole_or_inside_the_aggregate() {
        let blob = aggregate("gw-a-1", &[rec("r0", T0), rec("r1", T0), rec("r2", T0)]);
        let mut b = BatchIds::default();
        let durable = Pos::after(&seq(7));
        assert!(matches!(
            open(&seq(7), &blob, Some(&durable), &mut b),
            Blob::Durable
        ));
        let inside = Pos {
            seq: seq(7),
            sub: 2,
        };
        assert_eq!(
            items(open(&seq(7), &blob, Some(&inside), &mut b)),
            vec![(2, "r2".to_string())]
        );
        let before = Pos::after(&seq(6));
        assert_eq!(items(open(&seq(7), &blob, Some(&before), &mut b)).len(), 3);
    }

    #[test]
    fn a_repeated_batch_is_dropped_and_a_replay_of_the_same_record_is_not() {
        let blob = aggregate("gw-a-9", &[rec("r0", T0), rec("r1", T0)]);
        let mut b = BatchIds::default();
        assert_eq!(items(open(&seq(1), &blob, None, &mut b)).len(), 2);
        assert_eq!(items(open(&seq(1), &blob, None, &mut b)).len(), 2);
        match open(&seq(2), &blob, None, &mut b) {
            Blob::Repeat {
                batch,
                first,
                records,
            } => {
                assert_eq!(batch, "gw-a-9");
                assert_eq!(first, seq(1));
                assert_eq!(records, 2);
            }
            _ => panic!("expected a repeat"),
        }
    }

    #[test]
    fn a_corrupt_aggregate_is_undecodable_as_a_whole() {
        let mut blob = aggregate("gw-a-1", &[rec("r0", T0)]);
        let n = blob.len();
        blob[n - 1] ^= 1;
        assert!(matches!(
            open(&seq(1), &blob, None, &mut BatchIds::default()),
            Blob::Undecodable { .. }
        ));
    }
}
