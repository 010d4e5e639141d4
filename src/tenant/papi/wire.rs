//! The wire contract of the tenant's Public API (`docs/public-api.md`), shared by the
//! client and the emulator so both speak exactly the same shapes.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::secret::{self, Secret};

pub const API_PREFIX: &str = "/public_api/v1";
pub const PATH_GENERATE: &str = "/public_api/v1/api_keys/generate";
pub const PATH_LIST: &str = "/public_api/v1/api_keys/get_api_keys";
pub const PATH_DELETE: &str = "/public_api/v1/api_keys/delete";
/// Note: no `/public_api/v1` prefix, as documented.
pub const PATH_VALIDATE: &str = "/api_keys/validate";
/// The POST form of validate a vendor-published request collection uses (trailing slash, a
/// `{"request_data": {}}` body); tried when the tenant answers 404/405 to the GET.
pub const PATH_VALIDATE_POST: &str = "/api_keys/validate/";
/// The console's edit call (undocumented; a vendor-published request collection):
/// `GET`/`PUT {PATH_EDIT_PREFIX}{id}` with `{"request_data": {roles, security_level, comment}}`.
pub const PATH_EDIT_PREFIX: &str = "/platform/iam/v1/api-key/";
pub const PATH_DOWNLOAD_LINK: &str = "/public_api/v1/unified-cli/releases/download-link";

pub const HEADER_AUTH_ID: &str = "x-xdr-auth-id";
pub const HEADER_NONCE: &str = "x-xdr-nonce";
pub const HEADER_TIMESTAMP: &str = "x-xdr-timestamp";
pub const NONCE_LEN: usize = 64;

/// The two authentication levels of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SecurityLevel {
    #[default]
    Standard,
    Advanced,
}

impl SecurityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityLevel::Standard => "standard",
            SecurityLevel::Advanced => "advanced",
        }
    }

    /// Tenants are not consistent about case ("standard", "Standard", "STANDARD").
    pub fn parse_lenient(s: &str) -> Option<SecurityLevel> {
        match s.trim().to_ascii_lowercase().as_str() {
            "standard" => Some(SecurityLevel::Standard),
            "advanced" => Some(SecurityLevel::Advanced),
            _ => None,
        }
    }
}

impl std::str::FromStr for SecurityLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SecurityLevel::parse_lenient(s)
            .ok_or_else(|| format!("unknown security level {s:?} (expected standard or advanced)"))
    }
}

impl std::fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `Authorization` for Advanced keys: lowercase hex of SHA-256(key ‖ nonce ‖ timestamp).
pub fn advanced_auth_hash(key: &Secret, nonce: &str, timestamp_ms: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(key.expose().as_bytes());
    hasher.update(nonce.as_bytes());
    hasher.update(timestamp_ms.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `{"request_data": ...}`
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestEnvelope<T> {
    pub request_data: T,
}

/// `{"reply": ...}`
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplyEnvelope<T> {
    pub reply: T,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub roles: Vec<String>,
    pub security_level: SecurityLevel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<i64>,
    #[serde(default)]
    pub comment: String,
}

/// The one reply that carries a secret; it is shown once and never again.
#[derive(Deserialize, Serialize)]
pub struct GenerateReply {
    pub id: i64,
    #[serde(serialize_with = "secret::serialize")]
    pub key: Secret,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Filter {
    pub field: String,
    pub operator: String,
    pub value: serde_json::Value,
}

impl Filter {
    pub fn ids(ids: &[i64]) -> Filter {
        Filter {
            field: "id".into(),
            operator: "in".into(),
            value: serde_json::json!(ids),
        }
    }

    /// Keys expiring at or after `timestamp`, given in the tenant's own unit (never-expiring
    /// keys match too): the narrow filter for "every key still alive".
    pub fn expiration_gte(timestamp: i64) -> Filter {
        Filter {
            field: "expiration".into(),
            operator: "gte".into(),
            value: serde_json::json!(timestamp),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListRequest {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<Filter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_from: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_to: Option<u64>,
}

/// One key in the inventory. Never the secret. Field names are accepted in lower or upper case
/// (tenants are not consistent about the list's own fields, so neither is assumed for records).
/// `creation_time` and `expiration` are kept exactly as the tenant sent them: epoch ms on most
/// tenants, seconds on some ([`super::TimeUnit`] tells them apart); nothing here converts them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyRecord {
    #[serde(alias = "ID")]
    pub id: i64,
    #[serde(default, alias = "ROLES")]
    pub roles: Vec<String>,
    #[serde(default, alias = "CREATED_BY", skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(
        default,
        alias = "CREATION_TIME",
        skip_serializing_if = "Option::is_none"
    )]
    pub creation_time: Option<i64>,
    /// The tenant's epoch timestamp (ms or s, as it keeps them), or `null` for a key that never
    /// expires.
    #[serde(default, alias = "EXPIRATION")]
    pub expiration: Option<i64>,
    #[serde(default, alias = "COMMENT")]
    pub comment: Option<String>,
    #[serde(default, alias = "USER_NAME", skip_serializing_if = "Option::is_none")]
    pub user_name: Option<String>,
    #[serde(
        default,
        alias = "SECURITY_LEVEL",
        skip_serializing_if = "Option::is_none"
    )]
    pub security_level: Option<String>,
}

/// The list reply; tenants spell its fields `DATA` or `data`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListReply {
    #[serde(rename = "DATA", alias = "data")]
    pub data: Vec<KeyRecord>,
    #[serde(rename = "TOTAL_COUNT", alias = "total_count", default)]
    pub total_count: u64,
    #[serde(rename = "FILTER_COUNT", alias = "filter_count", default)]
    pub filter_count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteRequest {
    pub filters: Vec<Filter>,
}

/// The `{"update_count": n}` shape of a delete reply; [`super::DeleteOutcome`] covers every shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteReply {
    #[serde(default)]
    pub update_count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DownloadLinkReply {
    pub signed_url: String,
    pub file_name: String,
}

/// The error fields, wherever the service put them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorBody {
    pub err_code: Option<String>,
    pub err_msg: Option<String>,
    pub err_extra: Option<String>,
}

/// Find the error fields wherever the service put them: `err_code`/`err_msg`/`err_extra` under
/// `reply`, at the root, or under `data` (`data.err_msg`, `data.metadata.err_code`,
/// `data.metadata.err_extra`); or the newer services' root `errorCode`/`message`/`details`.
/// `err_code` may be a string or an integer, `err_extra` a string or an array of objects.
/// Returns `None` when none is present.
pub fn parse_error_body(body: &[u8]) -> Option<ErrorBody> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let places = [value.get("reply"), Some(&value), value.get("data")];
    for place in places.into_iter().flatten() {
        if !place.is_object() {
            continue;
        }
        let metadata = place.get("metadata").filter(|m| m.is_object());
        let field = |name: &str| {
            place
                .get(name)
                .and_then(text)
                .or_else(|| metadata.and_then(|m| m.get(name)).and_then(text))
        };
        let err_msg = field("err_msg");
        let err_code = field("err_code");
        let err_extra = field("err_extra");
        if err_msg.is_some() || err_code.is_some() || err_extra.is_some() {
            return Some(ErrorBody {
                err_code,
                err_msg,
                err_extra,
            });
        }
    }
    // The vendor's Go SDK also reads a root `errorCode`/`message`/`details`.
    let err_code = value.get("errorCode").and_then(text);
    let err_msg = value.get("message").and_then(text);
    let err_extra = value.get("details").and_then(text);
    if err_msg.is_some() || err_code.is_some() || err_extra.is_some() {
        return Some(ErrorBody {
            err_code,
            err_msg,
            err_extra,
        });
    }
    None
}

/// A field as text: strings as they are, numbers printed, arrays and objects (as `err_extra`
/// may be) flattened to compact JSON. Long values are cut so a hostile reply cannot flood a log.
fn text(v: &serde_json::Value) -> Option<String> {
    let s = match v {
        serde_json::Value::Null => return None,
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some(truncate(&s, 512))
}

/// Cut `s` to at most `max` bytes on a char boundary, marking the cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The error body the tenant sends, in its usual place (under `reply`).
pub fn error_body_json(
    code: u16,
    msg: &str,
    extra: Option<serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "reply": {
            "err_code": code,
            "err_msg": msg,
            "err_extra": extra.unwrap_or(serde_json::Value::Null),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advanced_hash_matches_known_vector() {
        // printf 'secretnonce1700000000000' | sha256sum
        let key = Secret::new("secret");
        assert_eq!(
            advanced_auth_hash(&key, "nonce", "1700000000000"),
            "e262fdac7a9df818c58474f49b7fc903f038e39d673ebd0745c6ee76f7bd6303"
        );
    }

    #[test]
    fn error_body_in_all_three_places() {
        let under_reply =
            br#"{"reply":{"err_code":403,"err_msg":"forbidden","err_extra":"no perm"}}"#;
        let at_root = br#"{"err_code":"500","err_msg":"bad role","err_extra":[{"field":"roles"}]}"#;
        let under_data = br#"{"data":{"err_msg":"rate","metadata":{"err_code":429}}}"#;
        assert_eq!(
            parse_error_body(under_reply),
            Some(ErrorBody {
                err_code: Some("403".into()),
                err_msg: Some("forbidden".into()),
                err_extra: Some("no perm".into())
            })
        );
        let root = parse_error_body(at_root).unwrap();
        assert_eq!(root.err_code.as_deref(), Some("500"));
        assert_eq!(root.err_extra.as_deref(), Some(r#"[{"field":"roles"}]"#));
        let data = parse_error_body(under_data).unwrap();
        assert_eq!(data.err_code.as_deref(), Some("429"));
        assert_eq!(data.err_msg.as_deref(), Some("rate"));
        let metadata =
            br#"{"data":{"err_msg":"no","metadata":{"err_code":"403","err_extra":[{"a":1}]}}}"#;
        let metadata = parse_error_body(metadata).unwrap();
        assert_eq!(metadata.err_code.as_deref(), Some("403"));
        assert_eq!(metadata.err_extra.as_deref(), Some(r#"[{"a":1}]"#));
        let camel = br#"{"errorCode":"PERMISSION_DENIED","message":"nope","details":["x"]}"#;
        assert_eq!(
            parse_error_body(camel),
            Some(ErrorBody {
                err_code: Some("PERMISSION_DENIED".into()),
                err_msg: Some("nope".into()),
                err_extra: Some(r#"["x"]"#.into())
            })
        );
        assert_eq!(parse_error_body(br#"{"reply":{"DATA":[]}}"#), None);
        assert_eq!(parse_error_body(br#"{"reply":true}"#), None);
        assert_eq!(parse_error_body(b"<html>"), None);
    }

    #[test]
    fn list_reply_accepts_both_spellings() {
        let upper: ListReply = serde_json::from_str(r#"{"DATA":[{"id":1,"roles":["r"],"expiration":null,"comment":"c"}],"TOTAL_COUNT":1,"FILTER_COUNT":1}"#).unwrap();
        let lower: ListReply = serde_json::from_str(
            r#"{"data":[{"id":1,"roles":["r"],"expiration":5}],"total_count":1,"filter_count":1}"#,
        )
        .unwrap();
        assert_eq!(upper.data[0].expiration, None);
        assert_eq!(lower.data[0].expiration, Some(5));
        assert_eq!(upper.total_count, lower.total_count);
    }

    #[test]
    fn security_level_parses_any_case() {
        assert_eq!(
            SecurityLevel::parse_lenient("Standard"),
            Some(SecurityLevel::Standard)
        );
        assert_eq!(
            SecurityLevel::parse_lenient("ADVANCED"),
            Some(SecurityLevel::Advanced)
        );
        assert_eq!(SecurityLevel::parse_lenient("basic"), None);
    }
}
