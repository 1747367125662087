//! Hot reload: watches the policy directory (and the TLS files) and listens for SIGHUP; each
//! trigger re-validates everything and swaps atomically, or keeps the last good state.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::{RecursiveMode, Watcher};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;

use crate::state::{ReloadOutcome, Shared};
use crate::tls::CertResolver;

/// Editors write files in several steps; wait this long after the last event.
const DEBOUNCE: Duration = Duration::from_millis(150);

pub struct Reloader {
    pub shared: Arc<Shared>,
    pub certs: Option<Arc<CertResolver>>,
}

impl Reloader {
    async fn reload_all(&self) {
        match self.shared.reload().await {
            Ok(ReloadOutcome::Applied(v)) => tracing::info!(version = %v, "policy reloaded"),
            Ok(ReloadOutcome::Unchanged(v)) => {
                tracing::debug!(version = %v, "policy unchanged")
            }
            Err(errors) => {
                let serving = self.shared.current.load().policy.version.clone();
                for e in &errors.0 {
                    tracing::warn!(error = %e, "policy reload rejected");
                }
                tracing::warn!(
                    errors = errors.0.len(),
                    serving_version = %serving,
                    "invalid policy edit rejected; the last good policy keeps serving"
                );
            }
        }
        if let Some(certs) = &self.certs {
            match certs.reload() {
                Ok(true) => tracing::info!("TLS certificate reloaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate reload rejected; keeping the current one")
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.shared.current.load().start_background();

        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let watch_tx = tx.clone();
        let mut watched: Vec<PathBuf> = vec![self.shared.policy_dir.clone()];
        if let Some(c) = &self.certs {
            watched.extend(c.watched_dirs());
        }
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                if !ev.kind.is_access() {
                    let _ = watch_tx.send(());
                }
            }
        });
        let _watcher = match watcher {
            Ok(mut w) => {
                for dir in &watched {
                    // The policy directory's subdirectories hold referenced files (IP lists).
                    let mode = if *dir == self.shared.policy_dir {
                        RecursiveMode::Recursive
                    } else {
                        RecursiveMode::NonRecursive
                    };
                    if let Err(e) = w.watch(dir, mode) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch; reload with SIGHUP");
                    }
                }
                Some(w)
            }
            Err(e) => {
                tracing::warn!(error = %e, "file watching unavailable; reload with SIGHUP");
                None
            }
        };

        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = rx.recv() => {
                    // Coalesce a burst of events into one reload.
                    while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
                    self.reload_all().await;
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading policy");
                    self.reload_all().await;
                }
            }
        }
    }
}
