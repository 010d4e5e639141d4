//! One error type for every way a Public API call can fail, with kinds a caller can act on.

use std::fmt;

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

/// A failed call. `message` is safe to show: it quotes what the tenant said (its `err_msg` and
/// `err_extra`, or the start of a body that is not an error envelope), cut to a bounded length,
/// and never a secret (the client redacts its own key from anything the tenant echoes back).
#[derive(Debug, Clone, PartialEq)]
pub struct PapiError {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    pub message: String,
    /// The call may have taken effect although it failed (see [`PapiError::is_uncertain`]).
    uncertain: bool,
}

impl PapiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PapiError {
            kind,
            status: None,
            message: message.into(),
            uncertain: false,
        }
    }

    /// A `generate` that failed after it may have reached the tenant: a 5xx other than a 500
    /// the tenant explained, a connection dropped after sending, or a timeout. The key may have
    /// been minted (its secret is then lost with the reply): look it up by its unique comment
    /// tag before sending `generate` again. Never set for other calls, for 4xx, or for a
    /// connection that was never made.
    pub fn is_uncertain(&self) -> bool {
        self.uncertain
    }

    /// Set or clear the mark without touching the message (the client marks every failure that
    /// may have reached the tenant, then keeps the mark only for `generate`).
    pub(super) fn with_uncertain(mut self, uncertain: bool) -> Self {
        self.uncertain = uncertain;
        self
    }

    /// Mark this error as one whose effect on the tenant is unknown (fake tenants in tests use
    /// this too).
    pub fn into_uncertain(mut self) -> Self {
        self.uncertain = true;
        self.message
            .push_str(" (the key may or may not have been minted)");
        self
    }

    pub fn from_status(status: u16, detail: Option<String>) -> Self {
        let kind = match status {
            400 => ErrorKind::BadRequest,
            401 => ErrorKind::Unauthorized,
            402 => ErrorKind::PaymentRequired,
            403 => ErrorKind::Forbidden,
            429 => ErrorKind::RateLimited,
            500..=599 => ErrorKind::Server,
            _ => ErrorKind::Malformed,
        };
        let what = match status {
            400 => "rejected the request as malformed",
            401 => {
                "did not accept the key (wrong id or secret, expired, deleted, or bad auth headers)"
            }
            402 => "has no licence for this API",
            403 => "refused: the key lacks the permission for this call",
            429 => "is rate limiting (too many requests)",
            500..=599 => "failed with a server error",
            _ => "answered with an unexpected status",
        };
        let mut message = format!("tenant {what} (HTTP {status})");
        if let Some(detail) = detail.filter(|d| !d.is_empty()) {
            message.push_str(": ");
            message.push_str(&detail);
        }
        PapiError {
            kind,
            status: Some(status),
            message,
            uncertain: false,
        }
    }
}

impl fmt::Display for PapiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PapiError {}
