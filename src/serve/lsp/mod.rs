//! The LSP adapter: one `Session` per connection, all sharing one broker through the `Hub`.
//!
//! Thin by design: it turns LSP requests into broker calls and broker events into
//! notifications. Status notifications go out from one task (the hub's fan-out) so every
//! session sees changes in the order they happened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService, Server};

use crate::domain::broker::SecurityLevel;
use crate::domain::broker::health;
use crate::domain::broker::{Broker, BrokerError, Event, Lease, LoginRequest, ScanFailure};
use crate::domain::secret::Secret;
use crate::serve::scan;

pub const COMMANDS: [&str; 5] = [
    "scanmint.login",
    "scanmint.logout",
    "scanmint.rotate",
    "scanmint.revoke",
    "scanmint.doctor",
];
/// Requests handled concurrently per session: enough that a slow mint never blocks `status`.
const CONCURRENCY: usize = 16;
/// No reply from an editor to a server request is awaited longer than this.
const CLIENT_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a "Log in" prompt may stay unanswered.
const PROMPT_TIMEOUT: Duration = Duration::from_secs(600);
/// Prefetch when the key will not last this long.
const PREFETCH_MARGIN: Duration = Duration::from_secs(300);

enum DidChangeStatus {}
impl notification::Notification for DidChangeStatus {
    type Params = Value;
    const METHOD: &'static str = "scanmint/didChangeStatus";
}

/// What a session said about itself in `initialize`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct InitOptions {
    profile: Option<String>,
    expose_secret_to_editor: bool,
    client_kind: Option<String>,
}

#[derive(Clone)]
struct SessionInfo {
    client: Client,
    profile: String,
    progress: bool,
    /// Only editors are prompted to log in.
    editor: bool,
    login_prompted: Arc<AtomicBool>,
}

/// The sessions of one daemon (or one standalone server) and the broker they share.
pub struct Hub {
    pub broker: Broker,
    sessions: Mutex<HashMap<u64, SessionInfo>>,
    next_id: AtomicU64,
    /// Signalled whenever a session ends (the daemon's idle clock starts then).
    pub session_ended: tokio::sync::Notify,
}

impl Hub {
    /// Create the hub and start its fan-out task.
    pub fn start(broker: Broker) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            broker,
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            session_ended: tokio::sync::Notify::new(),
        });
        let events = hub.broker.subscribe();
        tokio::spawn(fan_out(Arc::downgrade(&hub), events));
        hub
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().unwrap().len()
    }

    fn sessions_of(&self, profile: &str) -> Vec<SessionInfo> {
        self.sessions
            .lock()
            .unwrap()
            .values()
            .filter(|s| s.profile == profile)
            .cloned()
            .collect()
    }

    /// Serve one LSP session on a byte stream until it closes.
    pub async fn serve<R, W>(self: &Arc<Self>, read: R, write: W)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let hub = self.clone();
        let (service, socket) = LspService::build(|client| Session::new(client, hub, id))
            .custom_method("scanmint/status", Session::status)
            .custom_method("scanmint/credentials", Session::credentials)
            .custom_method("scanmint/scanFailed", Session::scan_failed)
            .finish();
        let guarded = crate::serve::framing::guard(read);
        Server::new(guarded, write, socket)
            .concurrency_level(CONCURRENCY)
            .serve(crate::serve::framing::OptionalParams::new(service))
            .await;
        self.sessions.lock().unwrap().remove(&id);
        self.session_ended.notify_one();
        tracing::debug!(session = id, "session ended");
    }
}

/// The one task that turns broker events into notifications, in order.
async fn fan_out(hub: std::sync::Weak<Hub>, mut events: tokio::sync::broadcast::Receiver<Event>) {
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "status fan-out lagged; sending fresh status");
                let Some(hub) = hub.upgrade() else { return };
                for profile in hub.broker.known_profiles() {
                    notify_status(&hub, &profile).await;
                }
                continue;
            }
            Err(_) => return,
        };
        let Some(hub) = hub.upgrade() else { return };
        match event {
            Event::Status(profile) => notify_status(&hub, &profile).await,
            Event::Progress { profile, id, title } => {
                for s in hub.sessions_of(&profile).into_iter().filter(|s| s.progress) {
                    tokio::spawn(send_progress(s.client, id, title.clone()));
                }
            }
            Event::KeyChanged { .. } => {}
        }
    }
}

async fn notify_status(hub: &Arc<Hub>, profile: &str) {
    let report = hub.broker.status(profile).await;
    let needs_login = report.state == crate::domain::broker::State::NeedsLogin;
    let value = serde_json::to_value(&report).unwrap_or(Value::Null);
    for s in hub.sessions_of(profile) {
        s.client
            .send_notification::<DidChangeStatus>(value.clone())
            .await;
        if needs_login && s.editor {
            maybe_prompt_login(
                &s,
                &report
                    .last_error
                    .as_ref()
                    .map(|e| e.message.clone())
                    .unwrap_or_default(),
            );
        } else {
            s.login_prompted.store(false, Ordering::Relaxed);
        }
    }
}

/// One "Log in" prompt per session while the profile needs a login, never a flood.
fn maybe_prompt_login(s: &SessionInfo, why: &str) {
    if s.login_prompted.swap(true, Ordering::Relaxed) {
        return;
    }
    let client = s.client.clone();
    let message = format!("scanmint: {why}");
    tokio::spawn(async move {
        let actions = Some(vec![MessageActionItem {
            title: "Log in".into(),
            properties: HashMap::new(),
        }]);
        let _ = tokio::time::timeout(
            PROMPT_TIMEOUT,
            client.show_message_request(MessageType::WARNING, message, actions),
        )
        .await;
    });
}

async fn send_progress(client: Client, id: u64, title: Option<String>) {
    let token = NumberOrString::String(format!("scanmint/{id}"));
    let value = match title {
        Some(title) => {
            let created = tokio::time::timeout(
                CLIENT_REPLY_TIMEOUT,
                client.create_work_done_progress(token.clone()),
            )
            .await;
            if !matches!(created, Ok(Ok(()))) {
                return;
            }
            WorkDoneProgress::Begin(WorkDoneProgressBegin {
                title,
                cancellable: Some(false),
                message: None,
                percentage: None,
            })
        }
        None => WorkDoneProgress::End(WorkDoneProgressEnd { message: None }),
    };
    client
        .send_notification::<notification::Progress>(ProgressParams {
            token,
            value: ProgressParamsValue::WorkDone(value),
        })
        .await;
}

/// One LSP connection: an editor window, `scanmint exec`, or the CLI.
pub struct Session {
    client: Client,
    hub: Arc<Hub>,
    id: u64,
    options: Mutex<InitOptions>,
    /// Keys this session was handed: they count as in use until it ends or moves on.
    leases: Mutex<Vec<Lease>>,
    watcher: Mutex<Option<crate::serve::watch::Watcher>>,
    folders: Mutex<Vec<PathBuf>>,
    login_prompted: Arc<AtomicBool>,
}

fn err(e: BrokerError) -> Error {
    Error {
        code: ErrorCode::ServerError(-32001),
        message: e.message.into(),
        data: Some(json!({ "code": e.code })),
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error {
        code: ErrorCode::InvalidParams,
        message: message.into().into(),
        data: None,
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ProfileParams {
    profile: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CredentialsParams {
    profile: Option<String>,
    min_valid_secs: Option<u64>,
    /// The scanner just failed with this key: validate it (and replace it if bad) first.
    rejected_key_id: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScanFailedParams {
    key_id: i64,
    #[serde(default)]
    exit_code: Option<i32>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    profile: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LoginArgs {
    base_url: Option<String>,
    key_id: i64,
    key: Secret,
    #[serde(default)]
    security_level: Option<String>,
    #[serde(default)]
    profile: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CommandArgs {
    profile: Option<String>,
    all: bool,
}

impl Session {
    fn new(client: Client, hub: Arc<Hub>, id: u64) -> Session {
        Session {
            client,
            hub,
            id,
            options: Mutex::new(InitOptions::default()),
            leases: Mutex::new(Vec::new()),
            watcher: Mutex::new(None),
            folders: Mutex::new(Vec::new()),
            login_prompted: Arc::new(AtomicBool::new(false)),
        }
    }

    fn broker(&self) -> &Broker {
        &self.hub.broker
    }

    fn profile(&self, asked: Option<&str>) -> String {
        let own = self.options.lock().unwrap().profile.clone();
        self.broker().resolve_profile(asked.or(own.as_deref()))
    }

    fn kind(&self) -> Option<String> {
        self.options.lock().unwrap().client_kind.clone()
    }

    fn is_exec(&self) -> bool {
        self.kind().as_deref() == Some("exec")
    }

    /// Editors get prefetch, workspace watching and log-in prompts; `exec` and `cli` sessions
    /// (scanners and one-shot commands) do not.
    fn is_editor(&self) -> bool {
        matches!(self.kind().as_deref(), None | Some("editor"))
    }

    fn may_see_secret(&self) -> bool {
        self.is_exec() || (self.is_editor() && self.options.lock().unwrap().expose_secret_to_editor)
    }

    async fn status(&self, params: ProfileParams) -> Result<Value> {
        let report = self
            .broker()
            .status(&self.profile(params.profile.as_deref()))
            .await;
        Ok(serde_json::to_value(report).unwrap_or(Value::Null))
    }

    async fn credentials(&self, params: CredentialsParams) -> Result<Value> {
        let profile = self.profile(params.profile.as_deref());
        if let Some(key_id) = params.rejected_key_id {
            self.broker()
                .scan_failed(&profile, key_id)
                .await
                .map_err(err)?;
        }
        let min_valid = Duration::from_secs(params.min_valid_secs.unwrap_or(60).min(86_400 * 365));
        let c = self
            .broker()
            .credentials(&profile, min_valid)
            .await
            .map_err(err)?;
        let mut reply = json!({
            "profile": c.profile,
            "baseUrl": c.base_url,
            "keyId": c.key_id,
            "expiresAt": c.expires_ms,
            "generation": c.generation,
            "role": c.role,
            "fingerprint": c.key.fingerprint(),
        });
        if self.may_see_secret() {
            let mut leases = self.leases.lock().unwrap();
            // An editor that fetched a newer key has moved on from the old one; a scanner may
            // still use every key it was given (one lease per key is enough).
            if !self.is_exec() {
                leases.clear();
            }
            if !leases.iter().any(|l| l.key_id() == c.key_id) {
                leases.push(self.broker().lease(&profile, c.key_id));
            }
            reply["key"] = json!(c.key.expose());
            reply["env"] = json!({
                "CORTEX_API_BASE_URL": c.base_url,
                "CORTEX_API_KEY_ID": c.key_id.to_string(),
                "CORTEX_API_KEY": c.key.expose(),
            });
        }
        Ok(reply)
    }

    async fn scan_failed(&self, params: ScanFailedParams) {
        let profile = self.profile(params.profile.as_deref());
        tracing::info!(
            key_id = params.key_id,
            exit_code = params.exit_code,
            reason = params.reason.as_deref().unwrap_or(""),
            "a scanner reported an authentication failure"
        );
        match self.broker().scan_failed(&profile, params.key_id).await {
            Ok(ScanFailure::Replaced(generation)) => {
                tracing::info!(generation, "replaced the rejected key")
            }
            Ok(outcome) => tracing::info!(?outcome, "scan failure checked"),
            Err(e) => tracing::warn!(error = %e, "could not check the reported key"),
        }
    }

    async fn run_command(&self, command: &str, args: Vec<Value>) -> Result<Value> {
        if command == "scanmint.login" {
            let raw = args.into_iter().next().ok_or_else(|| invalid("scanmint.login takes one argument: {baseUrl, keyId, key, securityLevel?, profile?}"))?;
            let a: LoginArgs = serde_json::from_value(raw).map_err(|e| {
                // Never echo the value: it may hold the secret.
                let what = e.to_string();
                let what = what.split(" at line").next().unwrap_or("bad arguments");
                invalid(format!(
                    "scanmint.login arguments: {}",
                    what.replace('"', "'").chars().take(120).collect::<String>()
                ))
            })?;
            let level = match a.security_level.as_deref() {
                None | Some("") => SecurityLevel::Standard,
                Some(s) => s.parse().map_err(invalid)?,
            };
            let profile = self.profile(a.profile.as_deref());
            let outcome = self
                .broker()
                .login(
                    &profile,
                    LoginRequest {
                        base_url: a.base_url,
                        key_id: a.key_id,
                        key: a.key,
                        security_level: level,
                    },
                )
                .await
                .map_err(err)?;
            // Editors of this profile get their key now rather than at the first scan.
            if self.hub.sessions_of(&profile).iter().any(|s| s.editor) {
                self.prefetch_for(&profile);
            }
            let mut message = format!(
                "Logged in: the Primary key for profile {profile:?} is kept in the {} store.",
                outcome.storage.as_str()
            );
            for note in &outcome.notes {
                message.push_str(&format!(" Note: {note}."));
            }
            return Ok(
                json!({ "profile": profile, "storage": outcome.storage.as_str(), "notes": outcome.notes, "message": message }),
            );
        }
        let a: CommandArgs = match args.into_iter().next() {
            None | Some(Value::Null) => CommandArgs::default(),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| invalid(format!("{command} arguments: {e}")))?,
        };
        let profile = self.profile(a.profile.as_deref());
        let broker = self.broker();
        match command {
            "scanmint.logout" => {
                // The person chose to log out: no session is asked to log in again right away.
                for s in self.hub.sessions_of(&profile) {
                    s.login_prompted.store(true, Ordering::Relaxed);
                }
                let revoked = broker.logout(&profile).await.map_err(err)?;
                Ok(json!({ "profile": profile, "revoked": revoked,
                    "message": format!("Logged out of {profile:?}: revoked {} key(s) and forgot the Primary key.", revoked.len()) }))
            }
            "scanmint.rotate" => {
                let c = broker.rotate(&profile).await.map_err(err)?;
                Ok(
                    json!({ "profile": profile, "keyId": c.key_id, "generation": c.generation, "expiresAt": c.expires_ms,
                    "message": format!("Rotated: key {} (generation {}) is active; the previous key retires.", c.key_id, c.generation) }),
                )
            }
            "scanmint.revoke" => {
                let revoked = broker.revoke(&profile, a.all).await.map_err(err)?;
                Ok(json!({ "profile": profile, "revoked": revoked,
                    "message": format!("Revoked {} key(s){}; the next scan mints a fresh one.", revoked.len(),
                        if revoked.is_empty() { String::new() } else { format!(" ({})", revoked.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")) }) }))
            }
            "scanmint.doctor" => {
                let report = health::run(
                    broker,
                    &profile,
                    crate::serve::socket::check_runtime_dir().map_err(|e| e.to_string()),
                )
                .await;
                Ok(serde_json::to_value(report).unwrap_or(Value::Null))
            }
            other => Err(Error {
                code: ErrorCode::MethodNotFound,
                message: format!("unknown command {other:?}").into(),
                data: None,
            }),
        }
    }

    async fn publish_file(&self, path: &Path, text: Option<&str>) {
        publish(&self.client, path, text).await;
    }
}

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

fn uri_path(uri: &Uri) -> Option<PathBuf> {
    uri.to_file_path().map(|p| p.into_owned())
}

impl LanguageServer for Session {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let options: InitOptions = params
            .initialization_options
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let profile = self.broker().resolve_profile(options.profile.as_deref());
        let editor = matches!(options.client_kind.as_deref(), None | Some("editor"));
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
                login_prompted: self.login_prompted.clone(),
            },
        );
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: COMMANDS.iter().map(|c| c.to_string()).collect(),
                    work_done_progress_options: Default::default(),
                }),
                text_document_sync: Some(TextDocumentSyncCapability::Kind(
                    TextDocumentSyncKind::FULL,
                )),
                code_action_provider: Some(CodeActionProviderCapability::Options(
                    CodeActionOptions {
                        code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
                        ..Default::default()
                    },
                )),
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
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {
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
                maybe_prompt_login(
                    &s,
                    &report.last_error.map(|e| e.message).unwrap_or_default(),
                );
            }
        } else {
            self.prefetch(&profile);
        }
        let folders = self.folders.lock().unwrap().clone();
        self.watch(folders).await;
    }

    async fn shutdown(&self) -> Result<()> {
        Ok(())
    }

    async fn did_change_workspace_folders(&self, params: DidChangeWorkspaceFoldersParams) {
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

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        if let Some(path) = uri_path(&params.text_document.uri).filter(|p| scan::is_scanned_file(p))
        {
            self.publish_file(&path, Some(&params.text_document.text))
                .await;
        }
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        if let Some(path) = uri_path(&params.text_document.uri).filter(|p| scan::is_scanned_file(p))
            && let Some(change) = params.content_changes.last()
        {
            self.publish_file(&path, Some(&change.text)).await;
        }
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        if let Some(path) = uri_path(&params.text_document.uri).filter(|p| scan::is_scanned_file(p))
        {
            self.publish_file(&path, None).await;
        }
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
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

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<LSPAny>> {
        self.run_command(&params.command, params.arguments)
            .await
            .map(Some)
    }
}

impl Session {
    /// Mint in the background when an editor arrives and the key will not last, so the first
    /// scan does not wait.
    fn prefetch(&self, profile: &str) {
        if self.is_editor() {
            self.prefetch_for(profile);
        }
    }

    fn prefetch_for(&self, profile: &str) {
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

    /// Scan the workspace folders now, and again whenever a scanned file changes on disk.
    async fn watch(&self, folders: Vec<PathBuf>) {
        let watcher =
            crate::serve::watch::Watcher::start(&folders).map(|(watcher, mut changed)| {
                let client = self.client.clone();
                tokio::spawn(async move {
                    while let Some(path) = changed.recv().await {
                        publish(&client, &path, None).await;
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
                    if scan::is_scanned_file(&path) && path.is_file() {
                        self.publish_file(&path, None).await;
                    }
                }
            }
        }
        *self.watcher.lock().unwrap() = watcher;
    }
}
