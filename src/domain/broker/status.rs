//! The status snapshot every caller sees (`StatusReport` in docs/protocol.md).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ready,
    Minting,
    Rotating,
    NeedsLogin,
    Degraded,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub key_id: i64,
    pub fingerprint: String,
    pub role: String,
    pub expires_at: i64,
    pub generation: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub state: State,
    pub profile: String,
    pub base_url: Option<String>,
    pub storage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<KeyInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<StatusError>,
}

impl StatusReport {
    /// Credentials can be handed out right now: a live key, or a working login to mint one.
    pub fn usable(&self) -> bool {
        match self.state {
            State::Ready | State::Minting | State::Rotating => self.base_url.is_some(),
            State::Degraded => self.key.is_some(),
            State::NeedsLogin | State::Error => false,
        }
    }
}
