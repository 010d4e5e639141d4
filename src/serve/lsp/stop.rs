//! Ending the daemon on request (`scanmint/stop`): from `scanmint stop`, or from a newer client
//! replacing an older daemon after an upgrade. Every session is told why before the daemon
//! exits, so an editor shows a message rather than a crash, and its shim can start the server
//! again (which starts a fresh daemon that restores the cached key without minting).

use super::*;

/// Why the daemon stops, as the caller said.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct StopReason {
    /// "stop" (a person ran `scanmint stop`), "upgrade" (a newer client replaces us), or
    /// "signal" (SIGTERM).
    pub reason: Option<String>,
    /// The version of the client that asked, for an upgrade.
    pub version: Option<String>,
}

impl StopReason {
    pub fn message(&self) -> String {
        let mine = crate::serve::version::own();
        match (self.reason.as_deref(), &self.version) {
            (Some("upgrade"), Some(v)) => format!(
                "scanmint: the daemon (version {mine}) was replaced by version {v}; restart the scanmint language server to reconnect"
            ),
            (Some("stop"), _) => "scanmint: the daemon was stopped (`scanmint stop`); restart the scanmint language server to reconnect".into(),
            _ => "scanmint: the daemon was stopped; restart the scanmint language server to reconnect".into(),
        }
    }
}

impl Session {
    pub(crate) async fn stop(&self, reason: StopReason) -> Result<Value> {
        if !self.hub.stoppable.load(Ordering::Relaxed) {
            return Err(invalid(
                "this server runs inside its editor (--standalone): there is no daemon to stop",
            ));
        }
        tracing::info!(session = self.id, reason = ?reason.reason, by = ?reason.version, "asked to stop");
        *self.hub.stop_reason.lock().unwrap() = Some(reason);
        self.hub.stop_requested.notify_one();
        Ok(json!({ "pid": std::process::id(), "version": crate::serve::version::own() }))
    }
}

impl Hub {
    /// Why the daemon was asked to stop, if it was.
    pub fn take_stop_reason(&self) -> StopReason {
        self.stop_reason.lock().unwrap().take().unwrap_or_default()
    }

    /// Tell every session the daemon is going away: `scanmint/didStop` to all, and a message
    /// editors show. Returns once the notifications are queued and given a moment to leave.
    pub async fn announce_stop(&self, reason: &StopReason) {
        let message = reason.message();
        let sessions: Vec<SessionInfo> = self.sessions.lock().unwrap().values().cloned().collect();
        for s in &sessions {
            s.client
                .send_notification::<protocol::DidStop>(json!({
                    "reason": reason.reason.as_deref().unwrap_or("stop"),
                    "version": reason.version,
                    "message": message,
                }))
                .await;
            if s.editor {
                s.client.show_message(MessageType::INFO, &message).await;
            }
        }
        if !sessions.is_empty() {
            // The writers are tasks of their own: let them put the bytes on the sockets.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Show a message in every editor (a config file that does not parse, say).
    pub async fn show_editors(&self, kind: MessageType, message: &str) {
        let sessions: Vec<SessionInfo> = self.sessions.lock().unwrap().values().cloned().collect();
        for s in sessions.into_iter().filter(|s| s.editor) {
            s.client.show_message(kind, message).await;
        }
    }
}
