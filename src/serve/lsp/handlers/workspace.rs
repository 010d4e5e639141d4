//! Workspace folders: scanning them and watching them for changed files (the watcher emits
//! paths; the session publishes).

use super::*;

impl Session {
    pub(crate) async fn handle_did_change_workspace_folders(
        &self,
        params: DidChangeWorkspaceFoldersParams,
    ) {
        let mut folders = self.folders.lock().unwrap().clone();
        let removed: Vec<PathBuf> = params
            .event
            .removed
            .iter()
            .filter_map(|f| uri_path(&f.uri))
            .collect();
        folders.retain(|f| !removed.contains(f));
        folders.extend(params.event.added.iter().filter_map(|f| uri_path(&f.uri)));
        *self.folders.lock().unwrap() = folders.clone();
        self.prefetch(&self.profile(None));
        self.watch(folders).await;
    }

    /// Scan the workspace folders now, and again whenever a scanned file changes on disk.
    pub(crate) async fn watch(&self, folders: Vec<PathBuf>) {
        let watcher =
            crate::serve::watch::Watcher::start(&folders).map(|(watcher, mut changed)| {
                let client = self.client.clone();
                let broker = self.broker().clone();
                let roots = folders.clone();
                tokio::spawn(async move {
                    while let Some(path) = changed.recv().await {
                        publish(&client, &broker, &path, None, &roots).await;
                    }
                });
                watcher
            });
        for folder in &folders {
            for dir in scan::watched_dirs(folder) {
                let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
                    continue;
                };
                while let Ok(Some(entry)) = entries.next_entry().await {
                    let path = entry.path();
                    // `file_type` does not follow links: a link is not read (see `publish`).
                    let regular = entry.file_type().await.is_ok_and(|t| t.is_file());
                    if scan::is_scanned_file(&path) && regular {
                        self.publish_file(&path, None).await;
                    }
                }
            }
        }
        *self.watcher.lock().unwrap() = watcher;
    }
}
