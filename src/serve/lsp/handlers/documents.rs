//! Open, changed and closed documents, and the diagnostics published for literal keys in
//! the files the scanner reads.

use super::*;

/// Diagnostics for one file: from `text` when given (an open buffer), else from disk.
pub async fn publish(client: &Client, path: &Path, text: Option<&str>) {
    let Some(uri) = Uri::from_file_path(path) else {
        return;
    };
    let owned;
    let text = match text {
        Some(t) => t,
        None => {
            owned = match tokio::fs::metadata(path).await {
                Ok(m) if m.len() <= 1 << 20 => {
                    tokio::fs::read_to_string(path).await.unwrap_or_default()
                }
                _ => String::new(),
            };
            &owned
        }
    };
    let diagnostics = diagnostics_for(path, text);
    client.publish_diagnostics(uri, diagnostics, None).await;
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
        publish(&self.client, path, text).await;
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
