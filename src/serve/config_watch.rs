//! The daemon follows its `config.toml`: an edit applies without a restart (a new `ttl` or
//! `role` from the next mint; a changed `base_url` is a new tenant that needs its own login). An
//! edit that does not parse keeps the configuration in use, and every editor and `status` say
//! what is wrong with the file (file, line and key) until it is fixed.
//!
//! The directory is watched, not the file: editors save by writing a new file and renaming it
//! over the old one, which a watch on the old file would never see.

use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use tower_lsp_server::ls_types::MessageType;

use crate::domain::config::Config;
use crate::serve::lsp::Hub;

/// Edits arriving this close together are one edit (a save is often several events).
const SETTLE: Duration = Duration::from_millis(150);

/// Dropping it stops the watching.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
}

impl ConfigWatch {
    /// Watch the directory of the config file in use and apply its edits to `hub`'s broker.
    pub fn start(hub: Arc<Hub>) -> Option<ConfigWatch> {
        let path = hub.broker.config().path.clone();
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return None;
        };
        let name = name.to_os_string();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && !matches!(event.kind, notify::EventKind::Access(_))
                && event
                    .paths
                    .iter()
                    .any(|p| p.file_name() == Some(name.as_os_str()))
            {
                let _ = tx.send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config file; edits apply at the next start");
                return None;
            }
        };
        if let Err(e) = watcher.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; edits apply at the next start");
            return None;
        }
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                tokio::time::sleep(SETTLE).await;
                while rx.try_recv().is_ok() {}
                reload(&hub).await;
            }
        });
        Some(ConfigWatch { _watcher: watcher })
    }
}

/// Read the file again and apply it, or report why it cannot be.
pub async fn reload(hub: &Arc<Hub>) {
    let broker = &hub.broker;
    match Config::load() {
        Ok(config) => {
            if *broker.config() == config && broker.config_problem().is_none() {
                return;
            }
            tracing::info!(file = %config.path.display(), "configuration reloaded");
            broker.apply_config(config).await;
        }
        Err(e) => {
            let problem = format!("{e}; the previous configuration stays in use until it is fixed");
            if broker.config_problem().as_deref() == Some(problem.as_str()) {
                return;
            }
            tracing::warn!(problem = %problem, "the config file does not parse");
            broker.set_config_problem(problem.clone());
            hub.show_editors(MessageType::ERROR, &format!("scanmint: {problem}"))
                .await;
        }
    }
}
