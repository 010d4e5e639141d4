//! Reading `initializationOptions` field by field: one field of the wrong type is ignored (and
//! logged), not a reason to reset every other option to its default.

use super::*;

impl InitOptions {
    pub(crate) fn read(value: Option<&Value>) -> InitOptions {
        let mut options = InitOptions::default();
        let Some(Value::Object(map)) = value else {
            if value.is_some_and(|v| !v.is_null()) {
                tracing::debug!("initializationOptions is not an object; using defaults");
            }
            return options;
        };
        let text = |key: &str| -> Option<String> {
            match map.get(key) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => {
                    tracing::debug!(key, value = %other, "initializationOptions: not a string; ignored");
                    None
                }
            }
        };
        options.profile = text("profile");
        options.client_kind = text("clientKind");
        options.expose_secret_to_editor = match map.get("exposeSecretToEditor") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                tracing::debug!(value = %other, "initializationOptions.exposeSecretToEditor: not a boolean; ignored");
                false
            }
        };
        options.login_in_terminal = match text("loginPrompt").as_deref() {
            None | Some("action") => false,
            Some("terminal") => true,
            Some(other) => {
                tracing::debug!(
                    value = other,
                    "initializationOptions.loginPrompt: unknown; acting as \"terminal\""
                );
                true
            }
        };
        options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bad_field_does_not_reset_the_others() {
        let o = InitOptions::read(Some(&json!({
            "profile": "work", "clientKind": "editor", "exposeSecretToEditor": "yes", "loginPrompt": 3
        })));
        assert_eq!(o.profile.as_deref(), Some("work"));
        assert_eq!(o.client_kind.as_deref(), Some("editor"));
        assert!(!o.expose_secret_to_editor);
        // A loginPrompt that is not a string is ignored like any other bad field: the default.
        assert!(!o.login_in_terminal);
    }

    #[test]
    fn login_prompt_values() {
        let read =
            |v: Value| InitOptions::read(Some(&json!({ "loginPrompt": v }))).login_in_terminal;
        assert!(read(json!("terminal")));
        assert!(!read(json!("action")));
        assert!(!read(Value::Null));
        assert!(read(json!("popup")), "an unknown value acts as terminal");
        assert!(!InitOptions::read(None).login_in_terminal);
    }
}
