//! `Session`: one LSP connection (an editor window, `scanmint exec`, the CLI). Its
//! `impl LanguageServer` is a table, one line per method, into `handlers/`; the custom methods
//! are registered in `Hub::serve`.

use super::*;

/// Prefetch when the key will not last this long.
pub(crate) const PREFETCH_MARGIN: Duration = Duration::from_secs(300);

/// What a session said about itself in `initialize` (read field by field: `init_options.rs`).
#[derive(Debug, Clone, Default)]
pub(crate) struct InitOptions {
    pub(crate) profile: Option<String>,
    pub(crate) expose_secret_to_editor: bool,
    pub(crate) client_kind: Option<String>,
    /// The client cannot run the `scanmint.login` command: say to log in from a terminal.
    pub(crate) login_in_terminal: bool,
}

/// One LSP connection: an editor window, `scanmint exec`, or the CLI.
pub struct Session {
    pub(crate) client: Client,
    pub(crate) hub: Arc<Hub>,
    pub(crate) id: u64,
    pub(crate) options: Mutex<InitOptions>,
    /// Keys this session was handed: they count as in use until it ends or moves on.
    pub(crate) leases: Mutex<Vec<Lease>>,
    pub(crate) watcher: Mutex<Option<crate::serve::watch::Watcher>>,
    pub(crate) folders: Mutex<Vec<PathBuf>>,
    pub(crate) login_prompted: Arc<AtomicBool>,
    /// It came through the restricted socket (`serve/remote.rs` gates its methods): it is
    /// served as a scanner is, never as an editor of the workstation.
    pub(crate) remote: bool,
}

pub(crate) fn err(e: BrokerError) -> Error {
    Error {
        code: ErrorCode::ServerError(-32001),
        message: e.message.into(),
        data: Some(json!({ "code": e.code })),
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error {
        code: ErrorCode::InvalidParams,
        message: message.into().into(),
        data: None,
    }
}

pub(crate) fn uri_path(uri: &Uri) -> Option<PathBuf> {
    uri.to_file_path().map(|p| p.into_owned())
}

impl Session {
    pub(crate) fn new(client: Client, hub: Arc<Hub>, id: u64, remote: bool) -> Session {
        Session {
            client,
            hub,
            id,
            options: Mutex::new(InitOptions::default()),
            leases: Mutex::new(Vec::new()),
            watcher: Mutex::new(None),
            folders: Mutex::new(Vec::new()),
            login_prompted: Arc::new(AtomicBool::new(false)),
            remote,
        }
    }

    pub(crate) fn broker(&self) -> &Broker {
        &self.hub.broker
    }

    pub(crate) fn profile(&self, asked: Option<&str>) -> String {
        let own = self.options.lock().unwrap().profile.clone();
        self.broker().resolve_profile(asked.or(own.as_deref()))
    }

    pub(crate) fn kind(&self) -> Option<String> {
        self.options.lock().unwrap().client_kind.clone()
    }

    /// Remote sessions get keys as `exec` sessions do, whatever they call themselves.
    pub(crate) fn is_exec(&self) -> bool {
        self.remote || self.kind().as_deref() == Some("exec")
    }

    /// Editors get prefetch, workspace watching and log-in prompts; `exec` and `cli` sessions
    /// (scanners and one-shot commands) and remote sessions do not.
    pub(crate) fn is_editor(&self) -> bool {
        !self.remote && matches!(self.kind().as_deref(), None | Some("editor"))
    }

    pub(crate) fn may_see_secret(&self) -> bool {
        self.is_exec() || (self.is_editor() && self.options.lock().unwrap().expose_secret_to_editor)
    }

    /// Mint in the background when an editor arrives and the key will not last, so the first
    /// scan does not wait.
    pub(crate) fn prefetch(&self, profile: &str) {
        if self.is_editor() {
            self.prefetch_for(profile);
        }
    }

    pub(crate) fn prefetch_for(&self, profile: &str) {
        if !self.broker().config().profile(Some(profile)).prefetch {
            return;
        }
        let broker = self.broker().clone();
        let profile = profile.to_string();
        tokio::spawn(async move {
            let report = broker.status(&profile).await;
            if report.state == crate::domain::broker::State::NeedsLogin {
                return;
            }
            if let Err(e) = broker.credentials(&profile, PREFETCH_MARGIN).await {
                tracing::info!(error = %e, "prefetch did not get a key");
            }
        });
    }
}

impl LanguageServer for Session {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        self.handle_initialize(params).await
    }

    async fn initialized(&self, params: InitializedParams) {
        self.handle_initialized(params).await
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_change_workspace_folders(&self, params: DidChangeWorkspaceFoldersParams) {
        self.handle_did_change_workspace_folders(params).await
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        self.handle_did_open(params).await
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        self.handle_did_change(params).await
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        self.handle_did_close(params).await
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        self.handle_code_action(params).await
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<LSPAny>> {
        self.handle_execute_command(params).await
    }
}
