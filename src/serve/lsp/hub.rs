//! The `Hub`: the factory of sessions and what they share. One per daemon (or standalone
//! server): it holds the broker, knows every session's profile and abilities, and its one
//! fan-out task turns broker events into status notifications, progress and log-in prompts, in
//! the order they happened.

use super::*;

/// Requests handled concurrently per session: enough that a slow mint never blocks `status`.
pub(crate) const CONCURRENCY: usize = 16;

/// No reply from an editor to a server request is awaited longer than this.
pub(crate) const CLIENT_REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a "Log in" prompt may stay unanswered.
pub(crate) const PROMPT_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Clone)]
pub(crate) struct SessionInfo {
    pub(crate) client: Client,
    pub(crate) profile: String,
    pub(crate) progress: bool,
    /// Only editors are prompted to log in.
    pub(crate) editor: bool,
    /// Prompt with the terminal command rather than a "Log in" action (`loginPrompt`).
    pub(crate) login_in_terminal: bool,
    pub(crate) login_prompted: Arc<AtomicBool>,
}

/// The sessions of one daemon (or one standalone server) and the broker they share.
pub struct Hub {
    pub broker: Broker,
    pub(crate) sessions: Mutex<HashMap<u64, SessionInfo>>,
    pub(crate) next_id: AtomicU64,
    /// Scanner sessions open now (`exec_session.rs`; they hold no `SessionInfo`).
    pub(crate) exec_sessions: std::sync::atomic::AtomicUsize,
    /// Signalled whenever a session ends (the daemon's idle clock starts then).
    pub session_ended: tokio::sync::Notify,
    /// Set by the daemon: only a daemon can be asked to stop (`scanmint/stop`).
    pub stoppable: AtomicBool,
    /// Signalled by `scanmint/stop`; the reason waits in `stop_reason` (`lsp/stop.rs`).
    pub stop_requested: tokio::sync::Notify,
    pub(crate) stop_reason: Mutex<Option<StopReason>>,
}

impl Hub {
    /// Create the hub and start its fan-out task.
    pub fn start(broker: Broker) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            broker,
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            exec_sessions: Default::default(),
            session_ended: tokio::sync::Notify::new(),
            stoppable: AtomicBool::new(false),
            stop_requested: tokio::sync::Notify::new(),
            stop_reason: Mutex::new(None),
        });
        let events = hub.broker.subscribe();
        tokio::spawn(fan_out(Arc::downgrade(&hub), events));
        hub
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().unwrap().len() + self.exec_sessions.load(Ordering::Relaxed)
    }

    /// The sessions of `profile` that show work-done progress, with their ids.
    pub(crate) fn progress_sessions_of(&self, profile: &str) -> Vec<(u64, SessionInfo)> {
        self.sessions
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.profile == profile && s.progress)
            .map(|(id, s)| (*id, s.clone()))
            .collect()
    }

    pub(crate) fn sessions_of(&self, profile: &str) -> Vec<SessionInfo> {
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
        self.serve_from(read, write, false).await
    }

    /// Serve a session from the restricted (remote) socket: every message passes the
    /// `RemoteGate` of `serve/remote.rs` first.
    pub async fn serve_remote<R, W>(self: &Arc<Self>, read: R, write: W)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        self.serve_from(read, write, true).await
    }

    async fn serve_from<R, W>(self: &Arc<Self>, mut read: R, write: W, remote: bool)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        if remote {
            return self.serve_lsp(read, write, true).await;
        }
        // A scanner's launch is served without tower-lsp (`exec_session.rs`).
        use super::exec_session::{self, FirstFrame};
        match exec_session::first_frame(&mut read).await {
            FirstFrame::Exec { id, options, rest } => {
                exec_session::serve(self.clone(), (id, options, rest), read, write).await
            }
            FirstFrame::Other(first) => {
                let read = tokio::io::AsyncReadExt::chain(std::io::Cursor::new(first), read);
                self.serve_lsp(read, write, false).await
            }
            FirstFrame::Closed => {}
        }
    }

    async fn serve_lsp<R, W>(self: &Arc<Self>, read: R, write: W, remote: bool)
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let hub = self.clone();
        let (service, socket) = LspService::build(|client| Session::new(client, hub, id, remote))
            .custom_method(protocol::Status::METHOD, Session::status)
            .custom_method(protocol::Credentials::METHOD, Session::credentials)
            .custom_method(protocol::ScanFailed::METHOD, Session::scan_failed)
            .custom_method(protocol::Stop::METHOD, Session::stop)
            .finish();
        let guarded = crate::serve::framing::guard(read);
        let service = crate::serve::framing::OptionalParams::new(service);
        let server = Server::new(guarded, write, socket).concurrency_level(CONCURRENCY);
        if remote {
            let gate = crate::serve::remote::RemoteGate::new(service, self.broker.clone());
            server.serve(gate).await;
        } else {
            server.serve(service).await;
        }
        self.sessions.lock().unwrap().remove(&id);
        self.session_ended.notify_one();
        tracing::debug!(session = id, remote, "session ended");
    }
}

/// The one task that turns broker events into notifications, in order.
pub(crate) async fn fan_out(
    hub: std::sync::Weak<Hub>,
    mut events: tokio::sync::broadcast::Receiver<Event>,
) {
    // Per session and progress token, the task sending `begin`: `end` waits for it, so a fast
    // mint never ends a progress before the client was told it began.
    let mut begins: HashMap<(u64, u64), tokio::task::JoinHandle<bool>> = HashMap::new();
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
            Event::Progress {
                profile,
                id,
                title: Some(title),
            } => {
                for (session, s) in hub.progress_sessions_of(&profile) {
                    let begin = tokio::spawn(send_progress_begin(s.client, id, title.clone()));
                    begins.insert((session, id), begin);
                }
            }
            Event::Progress {
                id, title: None, ..
            } => {
                let ours: Vec<(u64, u64)> = begins.keys().filter(|k| k.1 == id).copied().collect();
                for key in ours {
                    let Some(begin) = begins.remove(&key) else {
                        continue;
                    };
                    let Some(s) = hub.sessions.lock().unwrap().get(&key.0).cloned() else {
                        continue;
                    };
                    tokio::spawn(async move {
                        // No `end` for a token the client never created.
                        if matches!(begin.await, Ok(true)) {
                            send_progress_end(s.client, id).await;
                        }
                    });
                }
            }
            Event::KeyChanged { .. } => {}
            Event::Notice { profile, message } => {
                for s in hub.sessions_of(&profile).into_iter().filter(|s| s.editor) {
                    s.client
                        .show_message(MessageType::WARNING, message.clone())
                        .await;
                }
            }
        }
    }
}

pub(crate) async fn notify_status(hub: &Arc<Hub>, profile: &str) {
    let report = hub.broker.status(profile).await;
    let needs_login = report.state == crate::domain::broker::State::NeedsLogin;
    let value = serde_json::to_value(&report).unwrap_or(Value::Null);
    for s in hub.sessions_of(profile) {
        s.client
            .send_notification::<DidChangeStatus>(value.clone())
            .await;
        if needs_login && s.editor {
            maybe_prompt_login(&s, report.last_error.as_ref());
        } else {
            s.login_prompted.store(false, Ordering::Relaxed);
        }
    }
}

/// One "Log in" prompt per session while the profile needs a login, never a flood. A client
/// that cannot run the log-in command is told the terminal command instead, with no action.
pub(crate) fn maybe_prompt_login(s: &SessionInfo, error: Option<&StatusError>) {
    if s.login_prompted.swap(true, Ordering::Relaxed) {
        return;
    }
    let client = s.client.clone();
    if s.login_in_terminal {
        let profile = &s.profile;
        let why = match error {
            Some(e) if e.code != "needs_login" => format!("profile {profile:?}: {}", e.message),
            _ => format!("profile {profile:?} has no Primary key"),
        };
        let message =
            format!("scanmint: {why}: run `scanmint login --profile {profile}` in a terminal");
        tokio::spawn(async move { client.show_message(MessageType::WARNING, message).await });
        return;
    }
    let why = error.map(|e| e.message.as_str()).unwrap_or_default();
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

fn progress_token(id: u64) -> NumberOrString {
    NumberOrString::String(format!("scanmint/{id}"))
}

/// Create the token (the client must answer) and send `begin`; whether `begin` went out.
pub(crate) async fn send_progress_begin(client: Client, id: u64, title: String) -> bool {
    let token = progress_token(id);
    let created = tokio::time::timeout(
        CLIENT_REPLY_TIMEOUT,
        client.create_work_done_progress(token.clone()),
    )
    .await;
    if !matches!(created, Ok(Ok(()))) {
        return false;
    }
    let begin = WorkDoneProgress::Begin(WorkDoneProgressBegin {
        title,
        cancellable: Some(false),
        message: None,
        percentage: None,
    });
    client
        .send_notification::<notification::Progress>(ProgressParams {
            token,
            value: ProgressParamsValue::WorkDone(begin),
        })
        .await;
    true
}

pub(crate) async fn send_progress_end(client: Client, id: u64) {
    let end = WorkDoneProgress::End(WorkDoneProgressEnd { message: None });
    client
        .send_notification::<notification::Progress>(ProgressParams {
            token: progress_token(id),
            value: ProgressParamsValue::WorkDone(end),
        })
        .await;
}
