//! What the broker needs from a tenant, as a trait and the domain's own record, filter and error
//! types: the lifecycle is written against these, not against HTTP or the Public API's wire
//! shapes. `tenant::connector` implements the trait for `papi::Client` and converts.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::secret::Secret;

/// The Primary key: the one credential allowed to mint and delete keys.
#[derive(Clone)]
pub struct PrimaryKey {
    pub base_url: String,
    pub key_id: i64,
    pub key: Secret,
    pub security_level: SecurityLevel,
}

#[async_trait]
pub trait Tenant: Send + Sync {
    async fn generate(&self, req: &GenerateRequest) -> Result<GenerateReply, TenantError>;
    /// Every key matching `filters`, across pages.
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<KeyRecord>, TenantError>;
    /// A count, or only "accepted" (some tenants answer `{"reply": true}`): the caller confirms
    /// by listing when the reply does not say.
    async fn delete(&self, ids: &[i64]) -> Result<DeleteOutcome, TenantError>;
    /// Whether a minted (Standard) key works, asked the way the scanner would authenticate.
    async fn validate(&self, key_id: i64, key: &Secret) -> Result<bool, TenantError>;
    /// Tenant clock minus ours (ms), 0 until measured.
    fn clock_offset_ms(&self) -> i64;
    /// Whether [`Tenant::clock_offset_ms`] was measured (a reply carried a `Date` header).
    fn clock_offset_known(&self) -> bool {
        true
    }
    fn base_url(&self) -> &str;
    /// What the tenant's replies have shown of its dialect so far (for `doctor`).
    fn dialect(&self) -> DialectSeen {
        DialectSeen::default()
    }
}

/// What a `delete` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// The tenant deleted this many keys (fewer than asked when some were gone already).
    Count(u64),
    /// Accepted without a count: confirm by listing when it matters.
    Accepted,
}

/// The points where tenants differ, as seen in their replies; `None` where nothing told yet.
/// Informational (doctor, bug reports); the broker acts only on the time unit, which it learns
/// itself (`units.rs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DialectSeen {
    /// `upper` (`DATA`/`TOTAL_COUNT`) or `lower` (`data`/`total_count`).
    pub list_casing: Option<String>,
    /// `honoured`, `ignored`, or `unknown` (every listing fitted one page).
    pub paging: Option<String>,
    /// `update_count` or `reply_true`.
    pub delete_reply: Option<String>,
    /// `get` or `post`.
    pub validate: Option<String>,
    /// The unit the client saw in listings (`ms` or `s`).
    pub time_unit: Option<String>,
}

/// Makes a tenant connection for a Primary key.
pub trait Connector: Send + Sync {
    fn connect(
        &self,
        primary: &PrimaryKey,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Arc<dyn Tenant>, TenantError>;
}

/// The two authentication levels of a key (stored with a Primary key, lowercase).
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

/// A request for a new key.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub roles: Vec<String>,
    pub security_level: SecurityLevel,
    pub expiration: Option<i64>,
    pub comment: String,
}

/// A new key: the only reply that carries a secret.
pub struct GenerateReply {
    pub id: i64,
    pub key: Secret,
}

/// One condition on a listing (`field operator value`, as the tenant filters).
#[derive(Debug, Clone, PartialEq)]
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
}

/// One key in the tenant's inventory. Never the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: i64,
    pub roles: Vec<String>,
    pub created_by: Option<String>,
    pub creation_time: Option<i64>,
    /// Epoch ms, or `None` for a key that never expires.
    pub expiration: Option<i64>,
    pub comment: Option<String>,
    pub user_name: Option<String>,
    pub security_level: Option<String>,
}

/// How a tenant call failed, in kinds the lifecycle acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the tenant could not parse the request.
    BadRequest,
    /// 401: bad, expired or deleted key, or bad auth headers.
    Unauthorized,
    /// 402: the tenant lacks a licence.
    PaymentRequired,
    /// 403: the key lacks the permission.
    Forbidden,
    /// 429: the tenant-wide rate limit.
    RateLimited,
    /// 5xx, including the documented 500s for bad role names and bad expirations.
    Server,
    /// Connection refused, reset or dropped before a complete reply.
    Transport,
    /// No reply within the request timeout or the retry deadline.
    Timeout,
    /// A reply that does not match the contract (shape, size, type).
    Malformed,
    /// Refused before sending: plain http to a remote host, a bad URL or CA file.
    Config,
}

impl ErrorKind {
    /// Worth trying again later: the tenant may answer next time.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited | ErrorKind::Server | ErrorKind::Transport | ErrorKind::Timeout
        )
    }

    /// The caller's credentials are refused: retrying will not help, a person must act.
    pub fn is_auth(self) -> bool {
        matches!(
            self,
            ErrorKind::Unauthorized | ErrorKind::Forbidden | ErrorKind::PaymentRequired
        )
    }

    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::PaymentRequired => "licence_required",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Server => "tenant_error",
            ErrorKind::Transport => "tenant_unreachable",
            ErrorKind::Timeout => "tenant_timeout",
            ErrorKind::Malformed => "malformed_reply",
            ErrorKind::Config => "config",
        }
    }
}

/// A failed tenant call. `message` is safe to show: it quotes what the tenant said and never
/// carries a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantError {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    pub message: String,
    /// Only for `generate`: it failed after it may have reached the tenant (5xx, a dropped
    /// connection, a timeout), so a key may exist whose secret was lost with the reply.
    pub uncertain: bool,
}

impl std::fmt::Display for TenantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TenantError {}
