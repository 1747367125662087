//! Kinesis PutRecords, batched within the service's limits and retried entry by entry: the
//! gateway's access-log shipper and the pipeline's `put-kinesis` benchmark command both send
//! through [`send_all`].
//!
//! Data enters as [`PutEntry`]s (a partition key and a data blob each, usually one KPL
//! aggregate). [`CallBudget`] decides which entries share one call; [`send_all`] sends a call,
//! keeps the entries Kinesis refused (a partial failure is an HTTP 200 with
//! `FailedRecordCount`) and sends only those again after a jittered exponential backoff, until
//! every entry is in, the [`RetryPolicy`] runs out of attempts, or the caller's [`PutObserver`]
//! says to stop. The call itself goes through [`Transport`], so the retry logic is tested
//! without a network and the backoff without sleeping ([`send_all`] takes the sleep function).

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

/// Kinesis PutRecords: at most 500 entries per call
/// (<https://docs.aws.amazon.com/kinesis/latest/APIReference/API_PutRecords.html>).
pub const MAX_ENTRIES_PER_CALL: usize = 500;
/// Kinesis PutRecords: at most 5 MiB per call, data and partition keys included (same page).
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
/// Kinesis PutRecords: at most 1 MiB per entry, data and partition key included (same page).
pub const MAX_BYTES_PER_ENTRY: usize = crate::kpl::MAX_KINESIS_RECORD_BYTES;
/// The per-entry error code of a throttled shard (same page, `PutRecordsResultEntry`).
pub const THROTTLED: &str = "ProvisionedThroughputExceededException";

/// One PutRecords entry.
pub trait PutEntry {
    fn partition_key(&self) -> &str;
    fn data(&self) -> &[u8];
    /// Bytes this entry counts against [`MAX_BYTES_PER_CALL`].
    fn size(&self) -> usize {
        self.partition_key().len() + self.data().len()
    }
}

/// A plain entry: a partition key and a data blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub data: Vec<u8>,
}

impl PutEntry for Entry {
    fn partition_key(&self) -> &str {
        &self.key
    }
    fn data(&self) -> &[u8] {
        &self.data
    }
}

/// What one PutRecords call has taken so far: entries join while they fit the per-call limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallBudget {
    entries: usize,
    bytes: usize,
}

impl CallBudget {
    /// Whether an entry of `size` bytes may join. The first entry always may (an entry over
    /// the per-entry limit is refused by Kinesis itself, entry by entry).
    pub fn fits(&self, size: usize) -> bool {
        self.entries == 0
            || (self.entries < MAX_ENTRIES_PER_CALL && self.bytes + size <= MAX_BYTES_PER_CALL)
    }

    pub fn add(&mut self, size: usize) {
        self.entries += 1;
        self.bytes += size;
    }

    /// No further entry can join.
    pub fn is_full(&self) -> bool {
        self.entries >= MAX_ENTRIES_PER_CALL
    }

    pub fn entries(&self) -> usize {
        self.entries
    }
}

/// Split `entries`, in order, into PutRecords calls within the per-call limits.
pub fn calls<E: PutEntry>(entries: impl IntoIterator<Item = E>) -> Vec<Vec<E>> {
    let mut out = Vec::new();
    let mut call = Vec::new();
    let mut budget = CallBudget::default();
    for e in entries {
        let size = e.size();
        if !budget.fits(size) {
            out.push(std::mem::take(&mut call));
            budget = CallBudget::default();
        }
        budget.add(size);
        call.push(e);
    }
    if !call.is_empty() {
        out.push(call);
    }
    out
}

/// Why a whole call failed (as opposed to some of its entries).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The stream's throughput was exceeded for the whole call.
    #[error("PutRecords throttled: {0}")]
    Throttled(String),
    /// Any other error from the SDK or the service.
    #[error("PutRecords: {0}")]
    Failed(String),
    #[error("PutRecords timed out after {0:?}")]
    Timeout(Duration),
    /// The answer did not have one result per entry sent; every entry is sent again.
    #[error("PutRecords answered {answered} results for {sent} entries")]
    Mismatch { sent: usize, answered: usize },
}

/// The result of one call: the error code of each entry, in order (`None`: accepted).
pub type CallResult = Result<Vec<Option<String>>, CallError>;

/// Sends one PutRecords call.
pub trait Transport {
    fn put<E: PutEntry + Sync>(&self, entries: &[E]) -> impl Future<Output = CallResult> + Send;
}

/// The SDK's client for one stream, each call bounded by `call_timeout`.
#[derive(Debug, Clone)]
pub struct KinesisTransport {
    pub client: aws_sdk_kinesis::Client,
    pub stream: String,
    pub call_timeout: Duration,
}

impl Transport for KinesisTransport {
    async fn put<E: PutEntry + Sync>(&self, entries: &[E]) -> CallResult {
        let records: Vec<PutRecordsRequestEntry> = entries
            .iter()
            .map(|e| {
                PutRecordsRequestEntry::builder()
                    .data(Blob::new(e.data().to_vec()))
                    .partition_key(e.partition_key())
                    .build()
                    .map_err(|err| CallError::Failed(err.to_string()))
            })
            .collect::<Result<_, _>>()?;
        let call = self
            .client
            .put_records()
            .stream_name(&self.stream)
            .set_records(Some(records))
            .send();
        match tokio::time::timeout(self.call_timeout, call).await {
            Err(_) => Err(CallError::Timeout(self.call_timeout)),
            Ok(Err(e)) => {
                let message = aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string();
                let throttled = e
                    .as_service_error()
                    .is_some_and(|s| s.is_provisioned_throughput_exceeded_exception());
                Err(if throttled {
                    CallError::Throttled(message)
                } else {
                    CallError::Failed(message)
                })
            }
            Ok(Ok(out)) => {
                let results = out.records();
                if results.len() != entries.len() {
                    return Err(CallError::Mismatch {
                        sent: entries.len(),
                        answered: results.len(),
                    });
                }
                Ok(results
                    .iter()
                    .map(|r| r.error_code().map(str::to_string))
                    .collect())
            }
        }
    }
}

/// How [`send_all`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff ceiling; it doubles after every failed call up to `backoff_max`, and
    /// starts again after a call in which every entry went in.
    pub backoff_start: Duration,
    pub backoff_max: Duration,
    /// Calls at most (`None`: until every entry is in or the observer stops).
    pub max_attempts: Option<u32>,
}

/// First backoff ceiling: AWS's SDKs start near 50 ms.
pub const DEFAULT_BACKOFF_START: Duration = Duration::from_millis(50);
/// Backoff ceiling at most.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff_start: DEFAULT_BACKOFF_START,
            backoff_max: DEFAULT_BACKOFF_MAX,
            max_attempts: None,
        }
    }
}

/// Full-jitter exponential backoff: each wait is uniform between zero and a ceiling that
/// doubles after each failure (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>).
#[derive(Debug, Clone)]
pub struct Backoff {
    start: Duration,
    max: Duration,
    ceiling: Duration,
    rng: fastrand::Rng,
}

impl Backoff {
    pub fn new(start: Duration, max: Duration) -> Backoff {
        Backoff::with_rng(start, max, fastrand::Rng::new())
    }

    /// With a seeded generator, for tests.
    pub fn with_rng(start: Duration, max: Duration, rng: fastrand::Rng) -> Backoff {
        Backoff {
            start,
            max,
            ceiling: start,
            rng,
        }
    }

    /// The next wait; the ceiling doubles for the one after.
    pub fn next_delay(&mut self) -> Duration {
        let ms = self.rng.u64(0..=self.ceiling.as_millis() as u64);
        self.ceiling = (self.ceiling * 2).min(self.max);
        Duration::from_millis(ms)
    }

    pub fn reset(&mut self) {
        self.ceiling = self.start;
    }

    pub fn ceiling(&self) -> Duration {
        self.ceiling
    }
}

/// What the caller sees of [`send_all`]'s progress (metrics, logs, shutdown).
pub trait PutObserver<E> {
    /// Before call number `attempt` (2 or more) resends `pending`; `false` stops trying.
    fn before_retry(&mut self, _attempt: u32, _pending: &[E]) -> bool {
        true
    }
    /// A call finished (with any result) after `elapsed`.
    fn call_finished(&mut self, _elapsed: Duration) {}
    /// Kinesis refused one entry with `code`; it will be sent again.
    fn entry_failed(&mut self, _code: &str) {}
    /// The whole call `attempt` failed; every pending entry will be sent again.
    fn call_failed(&mut self, _attempt: u32, _error: &CallError) {}
}

/// An observer that observes nothing.
impl<E> PutObserver<E> for () {}

/// Entries [`send_all`] could not deliver, with the last call error if the last call failed
/// as a whole.
#[derive(Debug)]
pub struct Unsent<E> {
    pub entries: Vec<E>,
    pub attempts: u32,
    pub last_error: Option<CallError>,
}

impl<E> std::fmt::Display for Unsent<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PutRecords: {} entries still failing after {} calls",
            self.entries.len(),
            self.attempts
        )?;
        if let Some(e) = &self.last_error {
            write!(f, " (last: {e})")?;
        }
        Ok(())
    }
}

impl<E: std::fmt::Debug> std::error::Error for Unsent<E> {}

/// Send every entry of `pending` (at most one call's worth; see [`calls`]), resending only the
/// entries that failed, after a backoff waited with `sleep`.
pub async fn send_all<E, T, O, S, F>(
    transport: &T,
    mut pending: Vec<E>,
    policy: &RetryPolicy,
    backoff: &mut Backoff,
    observer: &mut O,
    mut sleep: S,
) -> Result<(), Unsent<E>>
where
    E: PutEntry + Sync,
    T: Transport,
    O: PutObserver<E>,
    S: FnMut(Duration) -> F,
    F: Future<Output = ()>,
{
    let mut attempt = 0u32;
    let mut last_error = None;
    while !pending.is_empty() {
        if attempt > 0 {
            let out_of_attempts = policy.max_attempts.is_some_and(|m| attempt >= m);
            if out_of_attempts || !observer.before_retry(attempt + 1, &pending) {
                return Err(Unsent {
                    entries: pending,
                    attempts: attempt,
                    last_error,
                });
            }
            sleep(backoff.next_delay()).await;
        }
        attempt += 1;
        let started = Instant::now();
        let result = transport.put(&pending).await;
        observer.call_finished(started.elapsed());
        match result {
            Ok(codes) => {
                last_error = None;
                let mut still = Vec::new();
                for (entry, code) in pending.into_iter().zip(codes) {
                    if let Some(code) = code {
                        observer.entry_failed(&code);
                        still.push(entry);
                    }
                }
                if still.is_empty() {
                    backoff.reset();
                }
                pending = still;
            }
            Err(e) => {
                observer.call_failed(attempt, &e);
                last_error = Some(e);
            }
        }
    }
    Ok(())
}

/// [`send_all`] for a batch of any size: split into calls ([`calls`]), each sent in turn with
/// the SDK client and real sleeps. Returns the number of entries sent.
pub async fn put_all<E: PutEntry + Sync + Send>(
    transport: &KinesisTransport,
    entries: Vec<E>,
    policy: &RetryPolicy,
) -> Result<usize, Unsent<E>> {
    let mut backoff = Backoff::new(policy.backoff_start, policy.backoff_max);
    let mut sent = 0;
    for call in calls(entries) {
        let n = call.len();
        send_all(
            transport,
            call,
            policy,
            &mut backoff,
            &mut (),
            tokio::time::sleep,
        )
        .await?;
        sent += n;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::Mutex;

    fn entry(key: &str, len: usize) -> Entry {
        Entry {
            key: key.into(),
            data: vec![0; len],
        }
    }

    #[test]
    fn calls_respect_the_entry_and_byte_limits() {
        // 1,001 small entries: 500 + 500 + 1.
        let sizes: Vec<usize> = calls((0..1001).map(|i| entry(&i.to_string(), 10)))
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [500, 500, 1]);
        // Entries of 1 MiB (key included): five fit 5 MiB, the sixth starts a new call.
        let mib = MAX_BYTES_PER_ENTRY;
        let big: Vec<_> = (0..7).map(|i| entry(&format!("k{i}"), mib - 2)).collect();
        let split = calls(big.clone());
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), [5, 2]);
        assert_eq!(split.concat(), big, "order is kept");
        for call in &split {
            assert!(call.iter().map(PutEntry::size).sum::<usize>() <= MAX_BYTES_PER_CALL);
        }
        // An oversized entry still goes alone (Kinesis refuses it, not the batcher).
        assert_eq!(calls(vec![entry("k", MAX_BYTES_PER_CALL + 1)]).len(), 1);
        assert!(calls(Vec::<Entry>::new()).is_empty());
    }

    #[test]
    fn budget_is_full_at_500_entries() {
        let mut b = CallBudget::default();
        assert!(
            b.fits(MAX_BYTES_PER_CALL * 2),
            "the first entry always fits"
        );
        for _ in 0..MAX_ENTRIES_PER_CALL {
            assert!(b.fits(1));
            b.add(1);
        }
        assert!(b.is_full() && !b.fits(1));
        assert_eq!(b.entries(), 500);
    }

    #[test]
    fn backoff_is_jittered_below_a_doubling_capped_ceiling() {
        let mut b = Backoff::with_rng(
            Duration::from_millis(50),
            Duration::from_millis(300),
            fastrand::Rng::with_seed(1),
        );
        let mut ceilings = Vec::new();
        for _ in 0..5 {
            let c = b.ceiling();
            assert!(b.next_delay() <= c);
            ceilings.push(c.as_millis());
        }
        assert_eq!(ceilings, [50, 100, 200, 300, 300]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(50));
    }

    /// Answers calls from a script and records the keys of each call.
    struct Scripted {
        answers: Mutex<VecDeque<CallResult>>,
        calls: Mutex<Vec<Vec<String>>>,
    }

    impl Scripted {
        fn new(answers: Vec<CallResult>) -> Scripted {
            Scripted {
                answers: Mutex::new(answers.into()),
                calls: Mutex::new(Vec::new()),
            }
        }
        fn calls(&self) -> Vec<Vec<String>> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Transport for Scripted {
        async fn put<E: PutEntry + Sync>(&self, entries: &[E]) -> CallResult {
            self.calls.lock().unwrap().push(
                entries
                    .iter()
                    .map(|e| e.partition_key().to_string())
                    .collect(),
            );
            let next = self.answers.lock().unwrap().pop_front();
            next.unwrap_or_else(|| Ok(vec![None; entries.len()]))
        }
    }

    #[derive(Default)]
    struct Seen {
        retries: Vec<(u32, usize)>,
        codes: Vec<String>,
        call_errors: Vec<u32>,
        calls: u32,
        stop_after: Option<u32>,
    }

    impl<E> PutObserver<E> for Seen {
        fn before_retry(&mut self, attempt: u32, pending: &[E]) -> bool {
            self.retries.push((attempt, pending.len()));
            self.stop_after.is_none_or(|s| attempt <= s)
        }
        fn call_finished(&mut self, _: Duration) {
            self.calls += 1;
        }
        fn entry_failed(&mut self, code: &str) {
            self.codes.push(code.into());
        }
        fn call_failed(&mut self, attempt: u32, _: &CallError) {
            self.call_errors.push(attempt);
        }
    }

    fn keys(ks: &[&str]) -> Vec<Entry> {
        ks.iter().map(|k| entry(k, 4)).collect()
    }

    fn no_sleep(
        slept: &Mutex<Vec<Duration>>,
    ) -> impl FnMut(Duration) -> std::future::Ready<()> + '_ {
        move |d| {
            slept.lock().unwrap().push(d);
            std::future::ready(())
        }
    }

    fn backoff() -> Backoff {
        Backoff::with_rng(
            DEFAULT_BACKOFF_START,
            DEFAULT_BACKOFF_MAX,
            fastrand::Rng::with_seed(7),
        )
    }

    #[tokio::test]
    async fn only_failed_entries_are_resent_and_call_errors_resend_all() {
        let t = Scripted::new(vec![
            Ok(vec![None, Some(THROTTLED.into()), None]),
            Err(CallError::Failed("InternalFailure".into())),
            Ok(vec![Some("InternalFailure".into())]),
            Ok(vec![None]),
        ]);
        let slept = Mutex::new(Vec::new());
        let mut seen = Seen::default();
        let mut b = backoff();
        send_all(
            &t,
            keys(&["a", "b", "c"]),
            &RetryPolicy::default(),
            &mut b,
            &mut seen,
            no_sleep(&slept),
        )
        .await
        .unwrap();
        assert_eq!(
            t.calls(),
            [vec!["a", "b", "c"], vec!["b"], vec!["b"], vec!["b"]]
        );
        assert_eq!(seen.codes, [THROTTLED, "InternalFailure"]);
        assert_eq!(seen.call_errors, [2]);
        assert_eq!(seen.retries, [(2, 1), (3, 1), (4, 1)]);
        assert_eq!(seen.calls, 4);
        // Three waits, each under a ceiling that doubled: 50, 100, 200 ms.
        let slept = slept.into_inner().unwrap();
        assert_eq!(slept.len(), 3);
        for (d, c) in slept.iter().zip([50, 100, 200]) {
            assert!(d.as_millis() <= c, "{d:?} > {c} ms");
        }
        assert_eq!(
            b.ceiling(),
            DEFAULT_BACKOFF_START,
            "reset after full success"
        );
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_or_when_the_observer_stops() {
        let failing = || Ok(vec![Some(THROTTLED.to_string()); 2]);
        let t = Scripted::new(vec![failing(), failing(), failing(), failing()]);
        let slept = Mutex::new(Vec::new());
        let policy = RetryPolicy {
            max_attempts: Some(3),
            ..RetryPolicy::default()
        };
        let unsent = send_all(
            &t,
            keys(&["a", "b"]),
            &policy,
            &mut backoff(),
            &mut (),
            no_sleep(&slept),
        )
        .await
        .unwrap_err();
        assert_eq!(unsent.attempts, 3);
        assert_eq!(unsent.entries, keys(&["a", "b"]));
        assert_eq!(t.calls().len(), 3);
        assert!(unsent
            .to_string()
            .contains("2 entries still failing after 3 calls"));

        let t = Scripted::new(vec![Err(CallError::Timeout(Duration::from_secs(5)))]);
        let mut seen = Seen {
            stop_after: Some(1),
            ..Seen::default()
        };
        let unsent = send_all(
            &t,
            keys(&["a"]),
            &RetryPolicy::default(),
            &mut backoff(),
            &mut seen,
            no_sleep(&slept),
        )
        .await
        .unwrap_err();
        assert_eq!(unsent.attempts, 1);
        assert_eq!(
            unsent.last_error,
            Some(CallError::Timeout(Duration::from_secs(5)))
        );
        assert!(unsent.to_string().contains("timed out"));
    }
}
