//! The broker's public vocabulary: what callers get back (credentials, reports), what it
//! announces (events) and how it fails (`BrokerError`, whose messages quote the tenant).

use super::*;

/// Roles that make a Primary key broader than it needs to be (Path A).
/// A key handed to a scanner must outlive a long scan.
pub const SCAN_MIN_VALID_SECS: u64 = 900;

pub const ADMIN_ROLES: [&str; 2] = ["Instance Administrator", "Account Admin"];

/// What a Primary key needs, from the vendor's self-service page: said whenever a key is refused.
pub const PRIMARY_KEY_GUIDANCE: &str = "A Primary key needs Public API View/Edit and must hold the CLI role it hands out. \
Admins (Instance Administrator or Account Admin, Path A): create a \"Public API (PAPI) Edit\" role and attach it, with the CLI roles, directly to the key. \
Everyone else (Path B): create the custom roles \"CLI Read-Only Custom\" (CLI Tools View), \"CLI Write Custom\" (CLI Tools View/Edit) and \
\"Public API (PAPI) Edit\" (Public API View/Edit), make one user group per role, add the key's owner to all three groups, \
then generate the Primary key.";

/// Something the lifecycle could not do, in words a person can act on.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerError {
    pub code: String,
    pub message: String,
}

impl BrokerError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        BrokerError {
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn needs_login(profile: &str) -> Self {
        BrokerError::new(
            "needs_login",
            format!(
                "profile {profile:?} has no Primary key: log in (your editor's Log in command, or `scanmint login --profile {profile}`)"
            ),
        )
    }

    pub fn is_needs_login(&self) -> bool {
        self.code == "needs_login" || self.code == "primary_refused"
    }
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<TenantError> for BrokerError {
    fn from(e: TenantError) -> Self {
        BrokerError::new(e.kind.code(), e.message)
    }
}

/// A key ready to hand to a scanner.
#[derive(Clone)]
pub struct Credentials {
    pub profile: String,
    pub base_url: String,
    pub key_id: i64,
    pub key: Secret,
    pub expires_ms: i64,
    pub generation: u64,
    pub role: String,
}

/// What the broker announces. Status is computed by whoever listens, so bursts coalesce.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The status of this profile changed.
    Status(String),
    /// A mint or rotation started (`Some(title)`) or ended (`None`).
    Progress {
        profile: String,
        id: u64,
        title: Option<String>,
    },
    /// A new key became active (deliver it), or the profile logged out (`generation` None).
    KeyChanged {
        profile: String,
        generation: Option<u64>,
    },
    /// Something every editor of the profile should be told once, in words (a live key was
    /// changed on the tenant and replaced, say).
    Notice { profile: String, message: String },
}

/// What `scan_failed` found.
#[derive(Debug, Clone, PartialEq)]
pub enum ScanFailure {
    /// The tenant still accepts the key: the scanner failed for another reason.
    KeyWorks,
    /// The key was already replaced by a newer one.
    AlreadyReplaced,
    /// The tenant rejected the key; a new one (this generation) replaced it.
    Replaced(u64),
}

pub struct LoginRequest {
    pub base_url: Option<String>,
    pub key_id: i64,
    pub key: Secret,
    pub security_level: SecurityLevel,
}

#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub profile: String,
    pub storage: Tier,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReconcileReport {
    pub revoked: Vec<i64>,
    pub forgotten: Vec<i64>,
    /// Live keys of ours whose record is still exactly the role at the Standard level.
    pub verified: Vec<i64>,
    /// Why live keys were revoked for no longer being that (changed on the tenant).
    pub changed: Vec<String>,
}
