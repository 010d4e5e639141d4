//! The quick fix that removes a literal key.

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
                let line = d.range.start.line;
                let edit = TextEdit {
                    range: Range::new(Position::new(line, 0), Position::new(line + 1, 0)),
                    new_text: String::new(),
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
