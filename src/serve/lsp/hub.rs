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
    pub(crate) login_prompted: Arc<AtomicBool>,
}

/// The sessions of one daemon (or one standalone server) and the broker they share.
pub struct Hub {
    pub broker: Broker,
    pub(crate) sessions: Mutex<HashMap<u64, SessionInfo>>,
    pub(crate) next_id: AtomicU64,
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let hub = self.clone();
        let (service, socket) = LspService::build(|client| Session::new(client, hub, id))
            .custom_method(protocol::Status::METHOD, Session::status)
            .custom_method(protocol::Credentials::METHOD, Session::credentials)
            .custom_method(protocol::ScanFailed::METHOD, Session::scan_failed)
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
pub(crate) async fn fan_out(
    hub: std::sync::Weak<Hub>,
    mut events: tokio::sync::broadcast::Receiver<Event>,
) {
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
pub(crate) fn maybe_prompt_login(s: &SessionInfo, why: &str) {
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

pub(crate) async fn send_progress(client: Client, id: u64, title: Option<String>) {
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
