//! `initialize` (what the session says about itself, our capabilities) and `initialized`
//! (first status, log-in prompt or prefetch, workspace watching).

use super::*;

impl Session {
    pub(crate) async fn handle_initialize(
        &self,
        params: InitializeParams,
    ) -> Result<InitializeResult> {
        let options = InitOptions::read(params.initialization_options.as_ref());
        let login_in_terminal = options.login_in_terminal;
        let profile = self.broker().resolve_profile(options.profile.as_deref());
        let editor =
            !self.remote && matches!(options.client_kind.as_deref(), None | Some("editor"));
        let progress = params
            .capabilities
            .window
            .as_ref()
            .and_then(|w| w.work_done_progress)
            .unwrap_or(false);
        let mut folders: Vec<PathBuf> = params
            .workspace_folders
            .unwrap_or_default()
            .iter()
            .filter_map(|f| uri_path(&f.uri))
            .collect();
        #[allow(deprecated)]
        if folders.is_empty()
            && let Some(root) = params.root_uri.as_ref().and_then(uri_path)
        {
            folders.push(root);
        }
        tracing::debug!(session = self.id, %profile, kind = options.client_kind.as_deref().unwrap_or("editor"), "session initialized");
        *self.folders.lock().unwrap() = folders;
        *self.options.lock().unwrap() = options;
        self.hub.sessions.lock().unwrap().insert(
            self.id,
            SessionInfo {
                client: self.client.clone(),
                profile,
                progress,
                editor,
                login_in_terminal,
                login_prompted: self.login_prompted.clone(),
            },
        );
        Ok(initialize_result())
    }

    pub(crate) async fn handle_initialized(&self, _: InitializedParams) {
        let profile = self.profile(None);
        let report = self.broker().status(&profile).await;
        self.client
            .send_notification::<DidChangeStatus>(
                serde_json::to_value(&report).unwrap_or(Value::Null),
            )
            .await;
        if !self.is_editor() {
            return;
        }
        if report.state == crate::domain::broker::State::NeedsLogin {
            if let Some(s) = self.hub.sessions.lock().unwrap().get(&self.id).cloned() {
                maybe_prompt_login(&s, report.last_error.as_ref());
            }
        } else {
            self.prefetch(&profile);
        }
        let folders = self.folders.lock().unwrap().clone();
        self.watch(folders).await;
    }
}

/// What every session is told in reply to `initialize`: our capabilities and version.
pub(crate) fn initialize_result() -> InitializeResult {
    InitializeResult {
        capabilities: ServerCapabilities {
            execute_command_provider: Some(ExecuteCommandOptions {
                commands: COMMANDS.iter().map(|c| c.to_string()).collect(),
                work_done_progress_options: Default::default(),
            }),
            text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
            code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
                code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
                ..Default::default()
            })),
            workspace: Some(WorkspaceServerCapabilities {
                workspace_folders: Some(WorkspaceFoldersServerCapabilities {
                    supported: Some(true),
                    change_notifications: Some(OneOf::Left(true)),
                }),
                file_operations: None,
            }),
            ..Default::default()
        },
        server_info: Some(ServerInfo {
            name: "scanmint".into(),
            version: Some(crate::serve::version::own()),
        }),
        offset_encoding: None,
    }
}
