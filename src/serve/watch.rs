//! Watching workspace folders for scanned files that change on disk (`notify`, debounced). It
//! only emits the changed paths on a channel; the LSP session subscribes and publishes, so this
//! module knows nothing of LSP.

use std::path::PathBuf;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::serve::scan;

/// Dropping it stops the watching.
pub struct Watcher {
    _debouncer: Debouncer<notify::RecommendedWatcher, RecommendedCache>,
}

impl Watcher {
    /// Watch the directories of `folders` where scanned files live (non-recursively: a large
    /// tree costs nothing); each scanned file that changes arrives on the returned channel.
    pub fn start(folders: &[PathBuf]) -> Option<(Watcher, UnboundedReceiver<PathBuf>)> {
        let dirs: Vec<PathBuf> = folders.iter().flat_map(|f| scan::watched_dirs(f)).collect();
        if dirs.is_empty() {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let handler = move |result: DebounceEventResult| {
            if let Ok(events) = result {
                for path in events.iter().flat_map(|e| e.paths.iter()) {
                    if scan::is_scanned_file(path) {
                        let _ = tx.send(path.clone());
                    }
                }
            }
        };
        let mut debouncer = match new_debouncer(Duration::from_millis(300), None, handler) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the workspace; diagnostics update on open and edit only");
                return None;
            }
        };
        for dir in &dirs {
            if let Err(e) = debouncer.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory");
            }
        }
        Some((
            Watcher {
                _debouncer: debouncer,
            },
            rx,
        ))
    }
}
