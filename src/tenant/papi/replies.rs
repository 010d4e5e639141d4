//! Decoding the tenant's replies, in every shape a tenant is known or likely to send: the reply
//! variants are where the vendor's documents and public clients disagree.

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ErrorKind, PapiError};
use super::wire::*;
use crate::domain::secret::Secret;

pub(super) fn malformed(message: impl Into<String>) -> PapiError {
    PapiError::new(ErrorKind::Malformed, message)
}

/// What a `delete` reply said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// `{"update_count": n}`: the tenant deleted n keys (fewer than asked when some were gone
    /// already). `{"reply": false}` reads as `Count(0)`: nothing was deleted.
    Count(u64),
    /// `{"reply": true}` (or a bare `true`): accepted, without saying how many were deleted.
    /// Confirm by listing the ids when it matters.
    Accepted,
}

impl DeleteOutcome {
    /// The count, or `asked` when the tenant only said it accepted the call.
    pub fn count_or(self, asked: u64) -> u64 {
        match self {
            DeleteOutcome::Count(n) => n,
            DeleteOutcome::Accepted => asked,
        }
    }
}

/// Decode a `delete` reply: `{"reply": {"update_count": n}}`, `{"update_count": n}`,
/// `{"reply": true}`, `true`, or the count as a string.
pub fn decode_delete_reply(body: &[u8]) -> Result<DeleteOutcome, PapiError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        malformed(format!(
            "delete reply is not JSON: {}",
            quote_body(body, 200)
        ))
    })?;
    let inner = match &value {
        Value::Object(o) if o.contains_key("reply") => &o["reply"],
        other => other,
    };
    let count = |v: &Value| match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    match inner {
        Value::Bool(true) => Ok(DeleteOutcome::Accepted),
        Value::Bool(false) => Ok(DeleteOutcome::Count(0)),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(DeleteOutcome::Accepted),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(DeleteOutcome::Count(0)),
        Value::Object(o) => match o.get("update_count").or_else(|| o.get("UPDATE_COUNT")) {
            Some(v) => count(v).map(DeleteOutcome::Count).ok_or_else(|| {
                malformed(format!("delete reply has a non-count update_count: {v}"))
            }),
            None => Err(malformed(format!(
                "delete reply says neither update_count nor true: {}",
                truncate(&inner.to_string(), 200)
            ))),
        },
        other => Err(malformed(format!(
            "delete reply says neither update_count nor true: {}",
            truncate(&other.to_string(), 200)
        ))),
    }
}

/// Decode a `validate` reply: `true`, `"true"`, `{"reply": true}` or `{"reply": "true"}` (and
/// the `false` forms).
pub fn decode_validate_reply(body: &[u8]) -> Result<bool, PapiError> {
    let value: Value = serde_json::from_slice(body).map_err(|_| {
        malformed(format!(
            "validate did not answer true or false: {}",
            quote_body(body, 100)
        ))
    })?;
    let inner = match &value {
        Value::Object(o) if o.contains_key("reply") => &o["reply"],
        other => other,
    };
    match inner {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        other => Err(malformed(format!(
            "validate did not answer true or false: {}",
            truncate(&other.to_string(), 100)
        ))),
    }
}

/// A reply body quoted for a message: cut, control characters and runs of whitespace folded.
pub fn quote_body(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let folded: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    format!("{:?}", truncate(&folded, max))
}

/// Decode a `generate` reply (`{"reply": {"id": .., "key": ..}}`).
pub fn decode_generate_reply(body: &[u8]) -> Result<GenerateReply, PapiError> {
    // Serde's message could quote the reply (e.g. "invalid type: string \"<the new key>\""); the
    // reply holds a secret, so never pass serde's text on: say only what is wrong.
    let envelope: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| malformed("generate reply is not valid JSON"))?;
    let Some(reply) = envelope.get("reply").filter(|r| r.is_object()) else {
        return Err(malformed("generate reply has no `reply` object"));
    };
    let id = reply.get("id").and_then(|v| v.as_i64());
    let key = reply
        .get("key")
        .and_then(|v| v.as_str())
        .filter(|k| !k.is_empty());
    match (id, key) {
        (Some(id), Some(key)) if id > 0 => Ok(GenerateReply {
            id,
            key: Secret::new(key),
        }),
        (None, _) => Err(malformed("generate reply has no integer `id`")),
        (Some(_), None) => Err(malformed(
            "generate reply has no `key`: the new key cannot be used",
        )),
        (Some(id), Some(_)) => Err(malformed(format!(
            "generate reply has an impossible id {id}"
        ))),
    }
}

/// Decode a `get_api_keys` reply: `{"reply": {"DATA": [..], ..}}`, fields in either casing,
/// also without the `reply` wrapper.
pub fn decode_list_reply(body: &[u8]) -> Result<ListReply, PapiError> {
    match parse_json::<ReplyEnvelope<ListReply>>(body) {
        Ok(envelope) => Ok(envelope.reply),
        Err(wrapped) => {
            let root: Value = parse_json(body)?;
            if root.get("reply").is_some() {
                return Err(wrapped);
            }
            serde_json::from_value(root).map_err(|_| wrapped)
        }
    }
}

pub(super) fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, PapiError> {
    serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "the tenant's reply does not match the API: {}",
            truncate(&e.to_string(), 200)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_replies_in_every_shape() {
        let cases: &[(&str, DeleteOutcome)] = &[
            (r#"{"reply":{"update_count":2}}"#, DeleteOutcome::Count(2)),
            (r#"{"update_count":1}"#, DeleteOutcome::Count(1)),
            (r#"{"reply":{"update_count":"3"}}"#, DeleteOutcome::Count(3)),
            (r#"{"reply":true}"#, DeleteOutcome::Accepted),
            ("true", DeleteOutcome::Accepted),
            (r#"{"reply":"true"}"#, DeleteOutcome::Accepted),
            (r#"{"reply":false}"#, DeleteOutcome::Count(0)),
        ];
        for (body, want) in cases {
            assert_eq!(
                decode_delete_reply(body.as_bytes()).unwrap(),
                *want,
                "{body}"
            );
        }
        for bad in [
            r#"{"reply":{}}"#,
            r#"{"reply":{"update_count":-1}}"#,
            "[]",
            "<html>",
            r#"{"reply":7}"#,
        ] {
            let err = decode_delete_reply(bad.as_bytes()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Malformed, "{bad}");
        }
        assert_eq!(DeleteOutcome::Accepted.count_or(4), 4);
        assert_eq!(DeleteOutcome::Count(1).count_or(4), 1);
    }

    #[test]
    fn validate_replies_in_every_shape() {
        for (body, want) in [
            ("true", true),
            ("false", false),
            (r#""true""#, true),
            (r#""false""#, false),
            (r#"{"reply":true}"#, true),
            (r#"{"reply":false}"#, false),
            (r#"{"reply":"true"}"#, true),
        ] {
            assert_eq!(
                decode_validate_reply(body.as_bytes()).unwrap(),
                want,
                "{body}"
            );
        }
        for bad in ["1", r#""yes""#, r#"{"ok":true}"#, "<html>ok</html>", ""] {
            let err = decode_validate_reply(bad.as_bytes()).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Malformed, "{bad}");
        }
    }

    #[test]
    fn quoted_bodies_are_bounded_and_folded() {
        let body = format!("<html>\n  <b>Bad\tGateway</b>{}", "x".repeat(500));
        let q = quote_body(body.as_bytes(), 40);
        assert!(q.starts_with("\"<html> <b>Bad Gateway</b>"), "{q}");
        assert!(q.len() < 60, "{q}");
    }
}
