//! `workspace/executeCommand`: login, logout, rotate, revoke, doctor.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LoginArgs {
    pub(crate) base_url: Option<String>,
    pub(crate) key_id: i64,
    pub(crate) key: Secret,
    #[serde(default)]
    pub(crate) security_level: Option<String>,
    #[serde(default)]
    pub(crate) profile: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct CommandArgs {
    pub(crate) profile: Option<String>,
    pub(crate) all: bool,
}

impl Session {
    pub(crate) async fn run_command(&self, command: &str, args: Vec<Value>) -> Result<Value> {
        if command == protocol::Login::METHOD {
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
            protocol::Logout::METHOD => {
                // The person chose to log out: no session is asked to log in again right away.
                for s in self.hub.sessions_of(&profile) {
                    s.login_prompted.store(true, Ordering::Relaxed);
                }
                let revoked = broker.logout(&profile).await.map_err(err)?;
                Ok(json!({ "profile": profile, "revoked": revoked,
                    "message": format!("Logged out of {profile:?}: revoked {} key(s) and forgot the Primary key.", revoked.len()) }))
            }
            protocol::Rotate::METHOD => {
                let c = broker.rotate(&profile).await.map_err(err)?;
                Ok(
                    json!({ "profile": profile, "keyId": c.key_id, "generation": c.generation, "expiresAt": c.expires_ms,
                    "message": format!("Rotated: key {} (generation {}) is active; the previous key retires.", c.key_id, c.generation) }),
                )
            }
            protocol::Revoke::METHOD => {
                let revoked = broker.revoke(&profile, a.all).await.map_err(err)?;
                Ok(json!({ "profile": profile, "revoked": revoked,
                    "message": format!("Revoked {} key(s){}; the next scan mints a fresh one.", revoked.len(),
                        if revoked.is_empty() { String::new() } else { format!(" ({})", revoked.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")) }) }))
            }
            protocol::Doctor::METHOD => {
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

    pub(crate) async fn handle_execute_command(
        &self,
        params: ExecuteCommandParams,
    ) -> Result<Option<LSPAny>> {
        self.run_command(&params.command, params.arguments)
            .await
            .map(Some)
    }
}
