//! Open, changed and closed documents, and the diagnostics published for literal keys in
//! the files the scanner reads.

use super::*;

/// How long the literal-key scan of one file may take before its diagnostics are dropped.
const SCAN_TIME_LIMIT: Duration = Duration::from_secs(2);

/// Diagnostics for one file: from `text` when given (an open buffer), else from disk. A hostile
/// repository decides what is in these files: the disk read refuses links, FIFOs and devices
/// and stops at the scan cap, a file whose directory leads out of the workspace `roots` is not
/// read, and the scan runs on a blocking thread with a time bound, never on the async workers
/// that answer every other session.
pub async fn publish(
    client: &Client,
    broker: &Broker,
    path: &Path,
    text: Option<&str>,
    roots: &[PathBuf],
) {
    let Some(uri) = Uri::from_file_path(path) else {
        return;
    };
    let text = match text {
        // Only what the scan will look at is copied off the request.
        Some(t) => t
            .get(..scan::SCAN_CAP.min(t.len()))
            .unwrap_or(t)
            .to_string(),
        None => {
            let path = path.to_path_buf();
            let roots = roots.to_vec();
            tokio::task::spawn_blocking(move || read_in_workspace(&path, &roots))
                .await
                .ok()
                .flatten()
                .unwrap_or_default()
        }
    };
    // scanmint's own managed cortex.env holds our current key by design: skip it, but only when
    // the file is exactly what scanmint writes and names a key this installation minted.
    if let Some(id) = scan::managed_key_id(&text)
        && broker
            .ledger_snapshot()
            .keys
            .iter()
            .any(|k| k.id == Some(id))
    {
        client.publish_diagnostics(uri, Vec::new(), None).await;
        return;
    }
    let owned = path.to_path_buf();
    let scan = tokio::task::spawn_blocking(move || diagnostics_for(&owned, &text));
    match tokio::time::timeout(SCAN_TIME_LIMIT, scan).await {
        Ok(Ok(diagnostics)) => client.publish_diagnostics(uri, diagnostics, None).await,
        _ => tracing::warn!(path = %path.display(), "literal-key scan took too long; skipped"),
    }
}

/// The text of a scanned file on disk, if it is a regular file inside one of `roots` (its
/// directory, links resolved, lies within a root's) and not itself a link; at most the scan cap.
fn read_in_workspace(path: &Path, roots: &[PathBuf]) -> Option<String> {
    let dir = path.parent()?.canonicalize().ok()?;
    let inside = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|r| dir.starts_with(&r));
    if !roots.is_empty() && !inside {
        tracing::warn!(path = %path.display(), "not reading a file whose directory leads out of the workspace");
        return None;
    }
    let bytes = crate::platform::fs::read_regular_capped(path, scan::SCAN_CAP).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

pub fn diagnostics_for(path: &Path, text: &str) -> Vec<Diagnostic> {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("this file");
    let lines: Vec<&str> = text.lines().collect();
    scan::find_literal_keys(text)
        .into_iter()
        .map(|f| {
            let line = lines.get(f.line as usize).copied().unwrap_or_default();
            let col = |byte: u32| line.get(..byte as usize).map_or(0, |s| s.encode_utf16().count() as u32);
            Diagnostic {
                range: Range::new(Position::new(f.line, col(f.start)), Position::new(f.line, col(f.end))),
                severity: Some(DiagnosticSeverity::WARNING),
                code: Some(NumberOrString::String("literal-key".into())),
                source: Some("scanmint".into()),
                message: format!(
                    "A literal Cortex API key ({}) in {file}: a long-lived key in a file leaks. Remove it: scanmint mints a short-lived, read-only key for each scan (`scanmint exec`, or a `scanmint wrapper` as the plugin's CLI Path).",
                    f.name
                ),
                ..Default::default()
            }
        })
        .collect()
}

impl Session {
    pub(crate) async fn publish_file(&self, path: &Path, text: Option<&str>) {
        let roots = self.folders.lock().unwrap().clone();
        publish(&self.client, self.broker(), path, text, &roots).await;
    }

    pub(crate) async fn handle_did_open(&self, params: DidOpenTextDocumentParams) {
        if let Some(path) = uri_path(&params.text_document.uri).filter(|p| scan::is_scanned_file(p))
        {
            self.publish_file(&path, Some(&params.text_document.text))
                .await;
        }
    }

    pub(crate) async fn handle_did_change(&self, params: DidChangeTextDocumentParams) {
        if let Some(path) = uri_path(&params.text_document.uri).filter(|p| scan::is_scanned_file(p))
            && let Some(change) = params.content_changes.last()
        {
            self.publish_file(&path, Some(&change.text)).await;
        }
    }

    pub(crate) async fn handle_did_close(&self, params: DidCloseTextDocumentParams) {
        if let Some(path) = uri_path(&params.text_document.uri).filter(|p| scan::is_scanned_file(p))
        {
            self.publish_file(&path, None).await;
        }
    }
}
