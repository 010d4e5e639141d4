//! `workspace/executeCommand`: login, logout, rotate, revoke, doctor.

use super::*;
use crate::domain::wipe::zeroize_strings;

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

/// What was wrong with `scanmint.login`'s arguments, never quoting a value: serde's own message
/// quotes the offending value, and a secret pasted into the wrong field is exactly that value.
pub(crate) fn login_args_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let field = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| text.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
        .filter(|f| f.len() <= 20 && f.chars().all(|c| c.is_ascii_alphanumeric()));
    let head = match field {
        Some(f) if text.starts_with("missing") => format!("the field {f:?} is missing"),
        Some(f) => format!("there is no field {f:?}"),
        None => "a field has the wrong type (keyId is an integer, key a string; the values are not repeated here, one may be a secret)".into(),
    };
    format!(
        "scanmint.login arguments: {head}; expected {{baseUrl, keyId, key, securityLevel?, profile?}}"
    )
}

/// `scanmint.login`'s arguments, read by reference: the `Secret` takes its own copy, and every
/// string of the arguments (the Primary key, in whatever field it was pasted) is wiped after,
/// whether they parsed or not.
pub(crate) fn take_login_args(args: &mut [Value]) -> std::result::Result<LoginArgs, String> {
    let parsed = match args.first() {
        None => Err(
            "scanmint.login takes one argument: {baseUrl, keyId, key, securityLevel?, profile?}"
                .to_string(),
        ),
        Some(raw) => LoginArgs::deserialize(raw).map_err(|e| login_args_error(&e)),
    };
    args.iter_mut().for_each(zeroize_strings);
    parsed
}

impl Session {
    pub(crate) async fn run_command(&self, command: &str, args: Vec<Value>) -> Result<Value> {
        if command == protocol::Login::METHOD {
            let mut args = args;
            let a = take_login_args(&mut args).map_err(invalid)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 8 (issue 12): a secret pasted into the key id field was echoed (~100 characters).
    #[test]
    fn a_login_argument_error_never_echoes_a_value() {
        let pasted = "Zq8sEcReTvAlUe0123456789abcdefXYZ";
        for raw in [
            json!({ "baseUrl": "https://t", "keyId": pasted, "key": "k" }),
            json!({ "baseUrl": pasted, "keyId": 1, "key": 5 }),
            json!({ "keyId": 1, "key": pasted, "securityLevel": 7 }),
            json!({ "keyId": 1, "key": pasted, pasted: 1 }),
        ] {
            let e = serde_json::from_value::<LoginArgs>(raw).err().unwrap();
            let text = login_args_error(&e);
            assert!(!text.contains("Zq8s") && !text.contains("XYZ"), "{text}");
        }
        let e = serde_json::from_value::<LoginArgs>(json!({ "keyId": 1 }))
            .err()
            .unwrap();
        assert!(login_args_error(&e).contains("\"key\" is missing"));
    }

    /// Finding 8 (issue 12): the login arguments arrive as a `Value` we own; once the Secret is
    /// taken, no string in them still holds the Primary key, whether they parsed or not.
    #[test]
    fn login_arguments_are_wiped_once_the_secret_is_taken() {
        let secret = "Zq8sEcReTvAlUe0123456789abcdefXYZ";
        let mut args = vec![json!({ "baseUrl": "https://t", "keyId": 1, "key": secret })];
        let a = take_login_args(&mut args).unwrap();
        assert_eq!(a.key.expose(), secret);
        assert!(args[0]["key"].as_str().unwrap().bytes().all(|b| b == 0));
        assert!(!args[0].to_string().contains("Zq8s"));
        // Pasted into the wrong field and refused: wiped all the same.
        let mut args = vec![json!({ "baseUrl": secret, "keyId": "x", "key": "k" })];
        assert!(take_login_args(&mut args).is_err());
        assert!(!args[0].to_string().contains("Zq8s"), "{}", args[0]);
    }
}
