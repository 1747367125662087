//! The reload audit trail: one event per policy load (the load at start, and each reload
//! that was applied or rejected; a reload that found the same content is not an event).
//!
//! In: the fingerprint of what a load read ([`Fingerprint`]: version and per-file hashes),
//! its outcome, and the located errors of a rejected load, from [`crate::state::Shared`].
//! Out: one [`PolicyChangeRecord`] per event, written twice:
//! - to the log, as a structured `tracing` event (target `edgeway::policy_audit`, message
//!   `policy change`, every column a field);
//! - to the access-log sink, framed as its own record kind, so it travels the access logs'
//!   durable path (queue, KPL aggregate, segment log, Kinesis or the local pipeline) and lands
//!   in the lake's `policy_changes` table, where `serving_version` joins
//!   `access_logs.policy_version`.
//!
//! The load at start happens before the sink exists and before the instance id is known:
//! its event waits until [`Audit::connect`] gives both.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use edgeway_record::clock::Clock;
use edgeway_record::policy_change::{
    PolicyChangeRecord, ReloadCause, ReloadResult, POLICY_CHANGE_VERSION,
};

use crate::access_log::AccessLog;
use crate::policy::fingerprint::Fingerprint;
use crate::policy::{PolicyError, PolicyErrors};
use crate::state::ReloadOutcome;

/// Longest error message kept in an event (a message quotes what it found).
pub const MAX_ERROR_CHARS: usize = 512;
/// Most errors kept in one event; the last entry says how many more there were.
pub const MAX_ERRORS: usize = 100;

/// Where events go once the gateway knows its instance id and has a sink.
struct Connected {
    instance: String,
    log: Option<AccessLog>,
}

pub struct Audit {
    policy_dir: std::path::PathBuf,
    clock: Arc<dyn Clock>,
    /// What the serving policy was loaded from.
    serving: Mutex<Fingerprint>,
    connected: OnceLock<Connected>,
    /// Events before [`Audit::connect`] (the load at start).
    pending: Mutex<Vec<PolicyChangeRecord>>,
}

impl Audit {
    /// The audit trail of a gateway whose first load, `started`, was applied: its event
    /// waits for [`Audit::connect`].
    pub fn started(policy_dir: &Path, clock: Arc<dyn Clock>, started: Fingerprint) -> Audit {
        let event = change(&Change {
            cause: ReloadCause::Start,
            result: ReloadResult::Applied,
            old: None,
            new: &started,
            errors: &[],
            dir: policy_dir,
            now_ms: clock.now_ms(),
        });
        Audit {
            policy_dir: policy_dir.to_path_buf(),
            clock,
            serving: Mutex::new(started),
            connected: OnceLock::new(),
            pending: Mutex::new(vec![event]),
        }
    }

    /// From now on, stamp events with `instance` and write them to `log` (none: the log
    /// only); the events waiting so far go out now.
    pub fn connect(&self, instance: String, log: Option<AccessLog>) {
        if self.connected.set(Connected { instance, log }).is_err() {
            tracing::warn!("policy audit connected twice; the first sink stays");
        }
        let waiting = std::mem::take(&mut *lock(&self.pending));
        for event in waiting {
            self.emit(event);
        }
    }

    /// Record a reload: `candidate` is what it read, `outcome` what became of it.
    pub fn reloaded(&self, candidate: &Fingerprint, outcome: &Result<ReloadOutcome, PolicyErrors>) {
        let (result, errors): (_, &[PolicyError]) = match outcome {
            Ok(ReloadOutcome::Unchanged(_)) => return,
            Ok(ReloadOutcome::Applied(_)) => (ReloadResult::Applied, &[]),
            Err(e) => (ReloadResult::Rejected, &e.0),
        };
        let mut serving = lock(&self.serving);
        let event = change(&Change {
            cause: ReloadCause::Reload,
            result,
            old: Some(&serving),
            new: candidate,
            errors,
            dir: &self.policy_dir,
            now_ms: self.clock.now_ms(),
        });
        if result == ReloadResult::Applied {
            *serving = candidate.clone();
        }
        drop(serving);
        self.emit(event);
    }

    fn emit(&self, mut event: PolicyChangeRecord) {
        let Some(to) = self.connected.get() else {
            lock(&self.pending).push(event);
            return;
        };
        event.gateway_instance.clone_from(&to.instance);
        log_event(&event);
        if let Some(log) = &to.log {
            log.emit_encoded(event.to_framed_bytes());
        }
    }
}

/// A load that failed at start (the gateway does not start): the log only, as there is no
/// sink and no serving policy.
pub fn start_rejected(
    policy_dir: &Path,
    clock: &dyn Clock,
    read: &Fingerprint,
    errors: &PolicyErrors,
) {
    log_event(&change(&Change {
        cause: ReloadCause::Start,
        result: ReloadResult::Rejected,
        old: None,
        new: read,
        errors: &errors.0,
        dir: policy_dir,
        now_ms: clock.now_ms(),
    }));
}

/// The facts of one event.
struct Change<'a> {
    cause: ReloadCause,
    result: ReloadResult,
    /// What served before (none at start).
    old: Option<&'a Fingerprint>,
    /// What the load read.
    new: &'a Fingerprint,
    errors: &'a [PolicyError],
    dir: &'a Path,
    now_ms: i64,
}

/// The event for `c` (without the instance id, which [`Audit::emit`] stamps). Pure.
fn change(c: &Change<'_>) -> PolicyChangeRecord {
    let new_version = c.new.version.clone();
    let old_version = c.old.map(|o| o.version.clone());
    let serving_version = match (c.result, &old_version) {
        (ReloadResult::Rejected, Some(old)) => old.clone(),
        _ => new_version.clone(),
    };
    let files_changed = match c.old {
        Some(old) => c.new.changed_since(old),
        // At start, every file is new.
        None => c.new.files.keys().cloned().collect(),
    };
    let mut errors: Vec<String> = c
        .errors
        .iter()
        .take(MAX_ERRORS)
        .map(|e| located(e, c.dir))
        .collect();
    if c.errors.len() > MAX_ERRORS {
        errors.push(format!("… and {} more errors", c.errors.len() - MAX_ERRORS));
    }
    PolicyChangeRecord {
        record_version: POLICY_CHANGE_VERSION,
        event_time: c.now_ms,
        gateway_instance: String::new(),
        cause: c.cause.as_str().into(),
        result: c.result.as_str().into(),
        old_version,
        new_version,
        serving_version,
        files_changed,
        errors,
    }
}

/// `file:line:col: field: message`, the file relative to the policy directory (the same
/// policy gives the same text on every host), the message capped at [`MAX_ERROR_CHARS`].
fn located(e: &PolicyError, dir: &Path) -> String {
    let file = e.file.strip_prefix(dir).unwrap_or(&e.file);
    let file = if file.as_os_str().is_empty() {
        Path::new(".")
    } else {
        file
    };
    let message: String = e.message.chars().take(MAX_ERROR_CHARS).collect();
    format!(
        "{}:{}:{}: {}: {message}",
        file.display(),
        e.line,
        e.column,
        e.field
    )
}

fn log_event(e: &PolicyChangeRecord) {
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: "edgeway::policy_audit",
                $level,
                event_time = e.event_time,
                gateway_instance = %e.gateway_instance,
                cause = %e.cause,
                result = %e.result,
                old_version = e.old_version.as_deref().unwrap_or(""),
                new_version = %e.new_version,
                serving_version = %e.serving_version,
                files_changed = ?e.files_changed,
                errors = ?e.errors,
                "policy change"
            )
        };
    }
    if e.result == ReloadResult::Rejected.as_str() {
        event!(tracing::Level::WARN);
    } else {
        event!(tracing::Level::INFO);
    }
}

/// A poisoned lock only means another thread panicked while holding it; the data (a
/// fingerprint, a list of events) is still whole.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgeway_record::clock::ManualClock;
    use edgeway_record::kind::{split, RecordKind};
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn print(version: &str, files: &[(&str, u8)]) -> Fingerprint {
        Fingerprint {
            version: version.into(),
            files: files
                .iter()
                .map(|(n, h)| (n.to_string(), [*h; 32]))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    fn error(file: &str, message: &str) -> PolicyError {
        PolicyError {
            file: PathBuf::from("/etc/edgeway/policies").join(file),
            line: 3,
            column: 10,
            field: "route[0].cluster".into(),
            message: message.into(),
        }
    }

    /// (old, new, serving) versions of an event.
    fn versions(e: &PolicyChangeRecord) -> (Option<&str>, &str, &str) {
        (
            e.old_version.as_deref(),
            e.new_version.as_str(),
            e.serving_version.as_str(),
        )
    }

    #[test]
    fn events_name_versions_files_and_located_errors() {
        let dir = Path::new("/etc/edgeway/policies");
        let v1 = print("v1", &[("clusters.toml", 1), ("routes.toml", 2)]);
        let start = change(&Change {
            cause: ReloadCause::Start,
            result: ReloadResult::Applied,
            old: None,
            new: &v1,
            errors: &[],
            dir,
            now_ms: 7,
        });
        assert_eq!(versions(&start), (None, "v1", "v1"));
        assert_eq!(start.files_changed, ["clusters.toml", "routes.toml"]);
        assert_eq!(
            (start.cause.as_str(), start.result.as_str()),
            ("start", "applied")
        );

        let v2 = print("v2", &[("clusters.toml", 1), ("routes.toml", 3)]);
        let long = "x".repeat(2 * MAX_ERROR_CHARS);
        let errors = [
            error("routes.toml", "unknown cluster `nope`"),
            error("routes.toml", &long),
        ];
        let rejected = change(&Change {
            cause: ReloadCause::Reload,
            result: ReloadResult::Rejected,
            old: Some(&v1),
            new: &v2,
            errors: &errors,
            dir,
            now_ms: 8,
        });
        assert_eq!(
            versions(&rejected),
            (Some("v1"), "v2", "v1"),
            "a rejected load leaves the old version serving"
        );
        assert_eq!(rejected.files_changed, ["routes.toml"]);
        assert_eq!(
            rejected.errors[0],
            "routes.toml:3:10: route[0].cluster: unknown cluster `nope`"
        );
        assert!(rejected.errors[1].len() < MAX_ERROR_CHARS + 50);
    }

    #[test]
    fn the_start_event_waits_for_the_sink_and_unchanged_reloads_are_not_events() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000));
        let audit = Audit::started(dir.path(), clock.clone(), print("v1", &[("a.toml", 1)]));
        assert_eq!(lock(&audit.pending).len(), 1);
        // A reload before the sink is there waits too, in order.
        clock.advance_ms(5);
        audit.reloaded(
            &print("v2", &[("a.toml", 2)]),
            &Ok(ReloadOutcome::Applied("v2".into())),
        );
        audit.reloaded(
            &print("v2", &[("a.toml", 2)]),
            &Ok(ReloadOutcome::Unchanged("v2".into())),
        );
        let waiting = lock(&audit.pending).clone();
        assert_eq!(waiting.len(), 2);
        assert_eq!(waiting[1].old_version.as_deref(), Some("v1"));
        assert_eq!(waiting[1].event_time, 1_005);
        // The applied load is what later loads compare with.
        audit.reloaded(
            &print("v3", &[("a.toml", 2), ("b.toml", 9)]),
            &Err(PolicyErrors(vec![error("b.toml", "bad")])),
        );
        let last = lock(&audit.pending).last().cloned().unwrap();
        assert_eq!(last.files_changed, ["b.toml"]);
        assert_eq!(last.serving_version, "v2");
        audit.connect("gw-7".into(), None);
        assert!(lock(&audit.pending).is_empty());
        // Framed as its own kind.
        let (kind, _) = split(&last.to_framed_bytes())
            .map(|(k, b)| (k, b.len()))
            .unwrap();
        assert_eq!(kind, RecordKind::PolicyChange);
    }
}
