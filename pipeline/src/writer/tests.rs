//! The shard writer as a whole, on a local lake under an injected clock: rolls, sorting
//! across spilled runs, dedupe across restarts, error objects, and replay after a crash.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::checkpoint::{Checkpoint, CheckpointSink, Pos, Seq};
use crate::clock::ManualClock;
use crate::lake::Lake;
use crate::metrics::Metrics;
use edgeway_record::kpl::Aggregator;

const T0: i64 = 1_763_776_800_000; // 2025-11-22T02:00:00Z

use edgeway_record::AccessLogRecord;

fn rec(i: u64, t: i64) -> AccessLogRecord {
    AccessLogRecord {
        event_time: t,
        request_id: format!("r{i}"),
        method: "GET".into(),
        ..Default::default()
    }
}

fn blob(recs: &[AccessLogRecord]) -> Vec<u8> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let key = format!("gw-test-{}", N.fetch_add(1, Ordering::Relaxed));
    keyed_blob(&key, recs)
}

fn keyed_blob(key: &str, recs: &[AccessLogRecord]) -> Vec<u8> {
    let mut a = Aggregator::new(key, 1 << 20);
    for r in recs {
        assert!(a.try_push(&r.to_bytes()));
    }
    a.finish()
}

struct Fixture {
    dir: tempfile::TempDir,
    clock: ManualClock,
    ctx: WriterContext,
    saved: Arc<std::sync::Mutex<Vec<Checkpoint>>>,
}

fn fixture(cfg: WriterConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path().to_str().unwrap(), None, None).unwrap();
    let clock = ManualClock::new(T0);
    let ctx = WriterContext {
        lake,
        cfg: Arc::new(cfg),
        clock: Arc::new(clock.clone()),
        metrics: Arc::new(Metrics::default()),
        buffered: Arc::new(AtomicUsize::new(0)),
        partitions: None,
    };
    Fixture {
        dir,
        clock,
        ctx,
        saved: Default::default(),
    }
}

impl Fixture {
    async fn writer(&self) -> ShardWriter {
        ShardWriter::open(
            "s1",
            self.ctx.clone(),
            CheckpointSink::Memory(self.saved.clone()),
        )
        .await
        .unwrap()
    }

    fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "parquet") {
                    out.push(
                        p.strip_prefix(self.dir.path())
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        out.sort();
        out
    }

    fn ids(&self) -> Vec<String> {
        use arrow_array::cast::AsArray;
        let mut ids = Vec::new();
        for f in self.files() {
            let file = std::fs::File::open(self.dir.path().join(f)).unwrap();
            let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            for b in r {
                let b = b.unwrap();
                let col = b.column_by_name("request_id").unwrap().as_string::<i32>();
                ids.extend(col.iter().map(|v| v.unwrap().to_string()));
            }
        }
        ids.sort();
        ids
    }
}

fn seq(n: u64) -> Seq {
    Seq::parse(&n.to_string()).unwrap()
}

#[tokio::test]
async fn rolls_by_age_under_the_injected_clock() {
    let fx = fixture(WriterConfig {
        max_file_age_ms: 60_000,
        ..Default::default()
    });
    let mut w = fx.writer().await;
    w.ingest(&seq(1), &blob(&[rec(1, T0), rec(2, T0 + 5)]))
        .await
        .unwrap();
    w.maintain().await.unwrap();
    assert!(fx.files().is_empty());
    fx.clock.advance_ms(59_999);
    w.maintain().await.unwrap();
    assert!(fx.files().is_empty(), "not yet 60 s old");
    fx.clock.advance_ms(1);
    w.maintain().await.unwrap();
    assert_eq!(
        fx.files(),
        vec!["access_logs/dt=2025-11-22/hour=02/s1-1.parquet".to_string()]
    );
    assert_eq!(w.checkpoint().resume, Some(Pos::after(&seq(1))));
    assert_eq!(fx.ids(), vec!["r1", "r2"]);
}

/// (event_time, request_id) of every row of `file`, in file order.
fn rows_in_order(path: &std::path::Path) -> Vec<(i64, String)> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::TimestampMillisecondType;
    let file = std::fs::File::open(path).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut out = Vec::new();
    for b in r {
        let b = b.unwrap();
        let t = b
            .column_by_name("event_time")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>();
        let id = b.column_by_name("request_id").unwrap().as_string::<i32>();
        for k in 0..b.num_rows() {
            out.push((t.value(k), id.value(k).to_string()));
        }
    }
    out
}

#[tokio::test]
async fn a_file_is_sorted_as_a_whole_across_spilled_runs_and_rewrites_identically() {
    // 1,000 records of one hour, times jumping back and forth with many ties, through
    // files that keep 100 (then 37, under memory pressure) rows in memory: the rows spill
    // as sorted runs and the roll merges them.
    let blobs: Vec<Vec<u8>> = (0..25u64)
        .map(|b| {
            let recs: Vec<_> = (0..40u64)
                .map(|k| {
                    let i = b * 40 + k;
                    rec(i, T0 + ((i * 7919) % 500) as i64)
                })
                .collect();
            blob(&recs)
        })
        .collect();
    let mut expected: Vec<(i64, String)> = (0..1000u64)
        .map(|i| (T0 + ((i * 7919) % 500) as i64, format!("r{i}")))
        .collect();
    // Equal times keep arrival order.
    expected.sort_by_key(|(t, _)| *t);
    let mut bytes = Vec::new();
    for (rows, budget) in [(100, DEFAULT_MEMORY_BUDGET), (37, 1)] {
        let fx = fixture(WriterConfig {
            row_group_rows: rows,
            memory_budget: budget,
            max_file_age_ms: 600_000,
            ..Default::default()
        });
        let mut w = fx.writer().await;
        for (i, b) in blobs.iter().enumerate() {
            w.ingest(&seq(1 + i as u64), b).await.unwrap();
            w.maintain().await.unwrap();
        }
        assert!(fx.files().is_empty(), "nothing rolled yet");
        w.finish(false).await.unwrap();
        let files = fx.files();
        assert_eq!(
            files,
            vec!["access_logs/dt=2025-11-22/hour=02/s1-1.parquet".to_string()]
        );
        let path = fx.dir.path().join(&files[0]);
        assert_eq!(rows_in_order(&path), expected, "row group size {rows}");
        let spilled = fx.ctx.metrics.runs_spilled.get();
        assert!(spilled >= 5, "{spilled} runs spilled");
        assert_eq!(fx.ctx.buffered.load(Ordering::Relaxed), 0);
        bytes.push(std::fs::read(&path).unwrap());
    }
    assert!(
        bytes[0] == bytes[1],
        "same rows, same bytes, whatever the runs"
    );
}

#[tokio::test]
async fn a_batch_sent_twice_is_written_once_even_across_a_restart() {
    let fx = fixture(WriterConfig::default());
    let first = keyed_blob("gw-1-0000abcd-7", &[rec(1, T0), rec(2, T0 + 1)]);
    let mut w = fx.writer().await;
    w.ingest(&seq(1), &first).await.unwrap();
    w.ingest(&seq(2), &first).await.unwrap(); // the producer's retry, soon after
    w.finish(false).await.unwrap();
    assert_eq!(fx.ids(), vec!["r1", "r2"]);
    drop(w);
    // A new worker resumes from the checkpoint; the retry arrives much later.
    let mut w = fx.writer().await;
    w.ingest(&seq(3), &keyed_blob("gw-1-0000abcd-8", &[rec(3, T0 + 2)]))
        .await
        .unwrap();
    w.ingest(&seq(4), &first).await.unwrap();
    w.finish(false).await.unwrap();
    assert_eq!(fx.ids(), vec!["r1", "r2", "r3"]);
    assert_eq!(fx.ctx.metrics.duplicates.get(), 4);
    assert_eq!(fx.ctx.metrics.records_out.get(), 3);
}

#[tokio::test]
async fn rolls_by_size_and_late_records_get_their_own_hour() {
    let fx = fixture(WriterConfig {
        target_file_bytes: 1,
        ..Default::default()
    });
    let mut w = fx.writer().await;
    w.ingest(&seq(10), &blob(&[rec(1, T0), rec(2, T0 - 3_600_000)]))
        .await
        .unwrap();
    w.maintain().await.unwrap();
    assert_eq!(
        fx.files(),
        vec![
            "access_logs/dt=2025-11-22/hour=01/s1-10.parquet".to_string(),
            "access_logs/dt=2025-11-22/hour=02/s1-10.parquet".to_string()
        ]
    );
    assert_eq!(w.open_files(), 0);
}

#[tokio::test]
async fn undecodable_records_go_to_the_error_prefix() {
    let fx = fixture(WriterConfig::default());
    let mut w = fx.writer().await;
    let mut a = Aggregator::new("gw-bad", 1 << 20);
    a.try_push(&rec(1, T0).to_bytes());
    a.try_push(&[0xff, 0xff, 0xff]);
    a.try_push(&rec(3, 5).to_bytes()); // 1970: refused
    w.ingest(&seq(7), &a.finish()).await.unwrap();
    let mut corrupt = blob(&[rec(4, T0)]);
    let n = corrupt.len();
    corrupt[n - 1] ^= 1;
    w.ingest(&seq(8), &corrupt).await.unwrap();
    w.finish(false).await.unwrap();
    let errs = fx.dir.path().join("errors/s1");
    let mut names: Vec<String> = std::fs::read_dir(&errs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["7-1.json", "7-2.json", "8-0.json"]);
    let e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(errs.join("7-2.json")).unwrap()).unwrap();
    assert_eq!(e["sequence_number"], "7");
    assert!(e["reason"].as_str().unwrap().contains("event_time"));
    assert_eq!(fx.ids(), vec!["r1"]);
}

#[tokio::test]
async fn replay_after_a_crash_rewrites_the_same_files() {
    // Two partitions interleaved; hour 01 rolls by size while hour 02 stays open, then
    // the worker dies. The replay from the checkpoint must not duplicate hour 01.
    let cfg = WriterConfig {
        target_file_bytes: 1_000, // ≈ 400 of these small records
        max_file_age_ms: 600_000,
        ..Default::default()
    };
    let fx = fixture(cfg);
    let blobs: Vec<Vec<u8>> = (0..40u64)
        .map(|b| {
            let recs: Vec<_> = (0..50u64)
                .map(|k| {
                    let i = b * 50 + k;
                    let hour = if k % 3 == 0 { T0 } else { T0 - 3_600_000 };
                    rec(i, hour + i as i64)
                })
                .collect();
            blob(&recs)
        })
        .collect();
    let mut w = fx.writer().await;
    for (i, b) in blobs.iter().enumerate().take(30) {
        w.ingest(&seq(100 + i as u64), b).await.unwrap();
        w.maintain().await.unwrap();
    }
    let before = fx.files();
    assert!(before.len() >= 2, "{before:?}");
    drop(w); // crash: open files are lost, checkpoint stays where it was
    let mut w = fx.writer().await;
    let resume = w.resume().cloned();
    for (i, b) in blobs.iter().enumerate() {
        let s = seq(100 + i as u64);
        if resume.as_ref().is_some_and(|r| Pos::after(&s) <= *r) {
            continue;
        }
        w.ingest(&s, b).await.unwrap();
        w.maintain().await.unwrap();
    }
    w.finish(false).await.unwrap();
    let ids = fx.ids();
    let mut dedup = ids.clone();
    dedup.dedup();
    assert_eq!(ids.len(), 2000, "every record once");
    assert_eq!(dedup.len(), 2000);
    for f in before {
        assert!(fx.files().contains(&f));
    }
}

/// One aggregate holding access logs, a policy change, a record of a kind this pipeline does
/// not know, and garbage: each table gets its own file, the unknown kind and the garbage go to
/// the error prefix (counted), and a repeat of the batch is dropped whole, policy change too.
#[tokio::test]
async fn policy_changes_get_their_own_table_and_unknown_kinds_are_counted_and_skipped() {
    use arrow_array::cast::AsArray;
    use edgeway_record::policy_change::PolicyChangeRecord;
    let fx = fixture(WriterConfig {
        max_file_age_ms: 60_000,
        ..Default::default()
    });
    let change = PolicyChangeRecord {
        record_version: 1,
        event_time: T0 + 3,
        gateway_instance: "gw-1".into(),
        cause: "reload".into(),
        result: "rejected".into(),
        old_version: Some("aaa".into()),
        new_version: "bbb".into(),
        serving_version: "aaa".into(),
        files_changed: vec!["routes.toml".into()],
        errors: vec!["routes.toml:1:1: route[0]: bad".into()],
    };
    let mut a = Aggregator::new("gw-mixed-1", 1 << 20);
    for data in [
        rec(1, T0).to_bytes(),
        change.to_framed_bytes(),
        vec![0x00, 0x2a, 0x08, 0x01],
        vec![0xff, 0xff],
        rec(2, T0 + 5).to_bytes(),
    ] {
        assert!(a.try_push(&data));
    }
    let mixed = a.finish();
    let mut w = fx.writer().await;
    w.ingest(&seq(1), &mixed).await.unwrap();
    w.ingest(&seq(2), &mixed).await.unwrap();
    fx.clock.advance_ms(60_000);
    w.maintain().await.unwrap();
    assert_eq!(
        fx.files(),
        vec![
            "access_logs/dt=2025-11-22/hour=02/s1-1.parquet".to_string(),
            "policy_changes/dt=2025-11-22/hour=02/s1-1.parquet".to_string(),
        ]
    );
    assert_eq!(w.checkpoint().resume, Some(Pos::after(&seq(2))));
    let m = &fx.ctx.metrics;
    assert_eq!(
        (
            m.records_in.get(),
            m.policy_changes_in.get(),
            m.unknown_kind.get(),
            m.errors.get(),
            m.duplicates.get()
        ),
        (3, 1, 1, 2, 5)
    );
    let errors = std::fs::read_dir(fx.dir.path().join("errors/s1"))
        .unwrap()
        .count();
    assert_eq!(errors, 2);
    let file = std::fs::File::open(
        fx.dir
            .path()
            .join("policy_changes/dt=2025-11-22/hour=02/s1-1.parquet"),
    )
    .unwrap();
    let batches: Vec<_> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    assert_eq!(b.schema(), edgeway_record::policy_change::schema());
    let text = |c: &str| {
        b.column_by_name(c)
            .unwrap()
            .as_string::<i32>()
            .value(0)
            .to_string()
    };
    assert_eq!(
        (text("result"), text("new_version"), text("serving_version")),
        ("rejected".into(), "bbb".into(), "aaa".into())
    );
    let errs = b
        .column_by_name("errors")
        .unwrap()
        .as_list::<i32>()
        .value(0);
    assert_eq!(
        errs.as_string::<i32>().value(0),
        "routes.toml:1:1: route[0]: bad"
    );
}
