//! The quick fix that removes a literal key: only its value, so the file stays valid
//! (`CORTEX_API_KEY=`, `"api_key": ""`, `api-key:`); a `--api-key` flag gets a reference to the
//! variable `scanmint exec` sets instead, so the command line keeps its shape.

use super::*;

impl Session {
    pub(crate) async fn handle_code_action(
        &self,
        params: CodeActionParams,
    ) -> Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri;
        let actions = params
            .context
            .diagnostics
            .into_iter()
            .filter(|d| d.source.as_deref() == Some("scanmint"))
            .map(|d| {
                // The diagnostic's range is exactly the value (inside its quotes).
                let flag = d.message.contains("(--api-key)");
                let edit = TextEdit {
                    range: d.range,
                    new_text: if flag {
                        "\"$CORTEX_API_KEY\"".into()
                    } else {
                        String::new()
                    },
                };
                CodeActionOrCommand::CodeAction(CodeAction {
                    title:
                        "Remove the literal key (scanmint mints a short-lived key for each scan)"
                            .into(),
                    kind: Some(CodeActionKind::QUICKFIX),
                    diagnostics: Some(vec![d]),
                    edit: Some(WorkspaceEdit {
                        changes: Some(HashMap::from([(uri.clone(), vec![edit])])),
                        ..Default::default()
                    }),
                    is_preferred: Some(true),
                    ..Default::default()
                })
            })
            .collect::<Vec<_>>();
        Ok(Some(actions))
    }
}
