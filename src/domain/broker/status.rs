//! The status snapshot every caller sees (`StatusReport` in docs/protocol.md).

use serde::Serialize;

use super::*;

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
    /// The config file on disk does not parse (file, line and key): the previous configuration
    /// still serves until it is fixed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_problem: Option<String>,
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

impl Broker {
    /// The profile's status for callers (editors, `scanmint status`).
    pub async fn status(&self, profile: &str) -> StatusReport {
        self.load(profile).await;
        let key = self.valid_active(profile, 0, false).map(|c| KeyInfo {
            key_id: c.key_id,
            fingerprint: c.key.fingerprint(),
            role: c.role.clone(),
            expires_at: c.expires_ms,
            generation: c.generation,
        });
        let store_tier = self.inner.store.tier();
        let config_problem = self.config_problem();
        self.with_state(profile, |s| {
            let state = match s.phase {
                Phase::Minting => State::Minting,
                Phase::Rotating => State::Rotating,
                Phase::Idle if s.tenant.is_none() || s.refused => State::NeedsLogin,
                Phase::Idle if s.last_error.is_some() && key.is_some() => State::Degraded,
                Phase::Idle if s.last_error.is_some() => State::Error,
                Phase::Idle => State::Ready,
            };
            let last_error = s.last_error.clone().or_else(|| {
                (s.tenant.is_none()).then(|| {
                    let e = BrokerError::needs_login(profile);
                    BrokerError {
                        code: e.code,
                        message: e.message,
                    }
                })
            });
            StatusReport {
                state,
                profile: profile.to_string(),
                base_url: s.base_url.clone(),
                storage: s.storage.unwrap_or(store_tier).as_str().to_string(),
                key,
                last_error: last_error.map(|e| StatusError {
                    code: e.code,
                    message: e.message,
                }),
                config_problem,
            }
        })
    }

    /// Facts about the Primary key, for `doctor`.
    pub async fn primary_info(&self, profile: &str) -> Option<(i64, SecurityLevel, Tier)> {
        self.load(profile).await;
        self.with_state(profile, |s| {
            Some((s.primary_id?, s.primary_level?, s.storage?))
        })
    }

    /// Record a problem found outside the lifecycle (delivery, say) so every editor sees it.
    pub fn report_problem(&self, profile: &str, code: &str, message: &str) {
        tracing::warn!(profile, code, message, "problem reported");
        self.with_state(profile, |s| {
            s.last_error = Some(BrokerError::new(code, message))
        });
        self.emit_status(profile);
    }
}
