//! The tenant emulator: a faithful local stand-in for the tenant's Public API
//! (`docs/public-api.md`), for tests, benchmarks and `scanmint demo`.
//!
//! - [`state`]: the key inventory, roles and permissions, the tenant clock, counters.
//! - [`auth`]: Standard and Advanced authentication, replay protection.
//! - [`api`]: the Public API endpoints, error envelopes, faults, the rate limit, and the
//!   loopback-only admin endpoint under `/_emulator/`.
//! - [`server`]: the accept loop (HTTP or HTTPS), one hyper connection per client, dropped
//!   connections for the `drop` fault, graceful shutdown.
//! - [`dialect`]: the readings of the vendor's documents a tenant may speak (`--dialect`).
//! - [`edit`]: the console's edit call, which changes a key after it was minted.
//! - [`errors`], [`filters`]: error answers in each envelope; list and delete filters.
//! - [`hostile`]: replies that break the contract.
//! - [`tls`]: a generated CA and a `localhost` leaf certificate.
//! - [`cli`]: `scanmint emulator`.

mod admin;
mod api;
mod auth;
mod cli;
mod dialect;
mod edit;
mod errors;
mod filters;
mod hostile;
mod server;
mod state;
mod tls;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::domain::secret::Secret;
pub use crate::tenant::papi::wire::SecurityLevel;

pub use cli::{EmulatorArgs, bootstrap_line, parse_fail, run_cli};
pub use dialect::{
    DIALECTS, DeleteReply, Dialect, UNCERTAIN_GENERATES, UncertainGenerate, ValidateReply,
};
pub use edit::KeyEdit;
pub use state::{
    ACCOUNT_ADMIN, CLI_READ_ONLY_CUSTOM, CLI_READ_ONLY_ROLE, CLI_ROLE, CLI_WRITE_CUSTOM,
    INSTANCE_ADMINISTRATOR, KNOWN_ROLES, PAPI_EDIT, PAPI_VIEW, PATH_B_PRIMARY_ROLES,
};

/// How the emulated tenant behaves.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The Primary key holds "Instance Administrator" (Path A); otherwise exactly the three
    /// custom roles of Path B ([`PATH_B_PRIMARY_ROLES`]).
    pub path_a: bool,
    /// The security level of the Primary key.
    pub security_level: SecurityLevel,
    /// Serve HTTPS with a freshly generated CA.
    pub tls: bool,
    /// Where to write the CA certificate (PEM), when `tls` is on.
    pub ca_out: Option<PathBuf>,
    /// Tenant-wide requests per rolling second across all API endpoints; 0 turns the limit off.
    pub rate_limit_per_sec: u32,
    pub faults: Faults,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            path_a: false,
            security_level: SecurityLevel::Standard,
            tls: false,
            ca_out: None,
            rate_limit_per_sec: 10,
            faults: Faults::default(),
        }
    }
}

/// Faults to inject; changeable at run time ([`Emulator::set_faults`], `PUT /_emulator/faults`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Faults {
    /// Added to every API call before it is handled.
    pub latency_ms: u64,
    /// The tenant's clock = the real clock + this offset (`Date` header, expiry, the Advanced
    /// timestamp check, `creation_time`).
    pub clock_offset_ms: i64,
    /// `generate` silently attaches "Instance Administrator" to the minted key.
    pub broaden_roles: bool,
    /// Per endpoint: "generate" | "list" | "delete" | "validate" | "download_link" | "all".
    /// An endpoint's own entry wins over "all".
    pub failures: BTreeMap<String, Failure>,
    /// Answer `get_api_keys` with `data`/`total_count`/`filter_count`.
    pub lowercase_list: bool,
    /// Where error fields go.
    pub error_envelope: ErrorEnvelope,
    /// Answer successful `generate`/`get_api_keys` calls the way a broken or hostile tenant
    /// would (the call itself still takes effect: a key is still minted).
    pub hostile: Option<Hostile>,
    /// Where the tenant's wire format differs from the documented reading.
    pub dialect: Dialect,
    /// `generate` mints, then fails as if it had not (503 or a dropped connection).
    pub uncertain_generate: Option<UncertainGenerate>,
}

/// Replies that break the contract, for testing that nothing bad is handed out.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Hostile {
    /// A 2 MiB reply body.
    HugeBody,
    /// `id` as a string, `roles` as a string, `expiration` as a string.
    WrongTypes,
    /// `generate` answers `{"id": N}` without the secret.
    GenerateWithoutKey,
    /// Inventory records claim a negative expiration.
    NegativeExpiration,
    /// Inventory records claim an expiration thousands of years away.
    AbsurdExpiration,
    /// Every inventory record appears twice, the copy with an extra admin role.
    DuplicateIds,
}

impl Faults {
    /// Check failure endpoints, kinds and rates (used by the CLI and `PUT /_emulator/faults`).
    pub fn validate(&self) -> Result<(), String> {
        for (endpoint, failure) in &self.failures {
            if !FAILURE_ENDPOINTS.contains(&endpoint.as_str()) {
                return Err(format!(
                    "unknown endpoint {endpoint:?} in failures; expected one of {}",
                    FAILURE_ENDPOINTS.join(", ")
                ));
            }
            if !(0.0..=1.0).contains(&failure.rate) {
                return Err(format!(
                    "failure rate {} for {endpoint} is outside 0..=1",
                    failure.rate
                ));
            }
            if let FailureKind::Status(code) = failure.kind
                && !(400..=599).contains(&code)
            {
                return Err(format!(
                    "failure status {code} for {endpoint} is not an error status"
                ));
            }
        }
        Ok(())
    }
}

/// The endpoint names accepted as keys of [`Faults::failures`].
pub const FAILURE_ENDPOINTS: &[&str] = &[
    "generate",
    "list",
    "delete",
    "validate",
    "download_link",
    "all",
];

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    /// Probability in 0.0..=1.0 that a call fails.
    pub rate: f64,
}

/// JSON: `{"status": 503}` or `"drop"`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Answer with this status and the error envelope (429 looks like the rate-limit reply).
    Status(u16),
    /// Close the connection without any HTTP reply.
    Drop,
}

/// Where the error fields `err_code`/`err_msg`/`err_extra` go.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorEnvelope {
    /// `{"reply": {"err_code", "err_msg", "err_extra"}}` (the usual place).
    #[default]
    Reply,
    /// `{"err_code", "err_msg", "err_extra"}`.
    Root,
    /// `{"data": {"err_msg", "err_extra", "metadata": {"err_code"}}}`.
    Data,
    /// `{"data": {"err_msg", "metadata": {"err_code", "err_extra"}}}`.
    Metadata,
    /// `{"errorCode", "message", "details"}` (newer services, as the vendor's Go SDK reads them).
    Camel,
}

impl std::str::FromStr for ErrorEnvelope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reply" => Ok(ErrorEnvelope::Reply),
            "root" => Ok(ErrorEnvelope::Root),
            "data" => Ok(ErrorEnvelope::Data),
            "metadata" => Ok(ErrorEnvelope::Metadata),
            "camel" => Ok(ErrorEnvelope::Camel),
            _ => Err(format!(
                "unknown error envelope {s:?} (expected reply, root, data, metadata or camel)"
            )),
        }
    }
}

/// A key as the tenant's console sees it. Never the secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AdminKeyView {
    pub id: i64,
    pub roles: Vec<String>,
    pub security_level: SecurityLevel,
    pub expiration: Option<i64>,
    pub comment: String,
    pub created_by: String,
    pub creation_time: i64,
    pub state: KeyState,
    pub is_primary: bool,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Active,
    Deleted,
    Expired,
}

/// Requests received per API endpoint, including rejected and faulted ones.
/// `rate_limited` counts the rate limiter's own 429s (not injected 429 faults); `total` counts
/// every request outside `/_emulator/`, unknown paths included.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct CallCounts {
    pub generate: u64,
    pub list: u64,
    pub delete: u64,
    pub validate: u64,
    pub download_link: u64,
    /// The console's edit call (`GET`/`PUT /platform/iam/v1/api-key/{id}`).
    #[serde(default)]
    pub edit: u64,
    pub rate_limited: u64,
    pub total: u64,
}

/// A running emulated tenant. Dropping it stops the server too; [`Emulator::shutdown`] also
/// waits for open connections to finish.
pub struct Emulator {
    shared: Arc<state::Shared>,
    primary_key_id: i64,
    primary_key: Secret,
    security_level: SecurityLevel,
    ca_pem: Option<String>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
}

impl Emulator {
    /// Bind, create the Primary key, write the CA (if any) and start serving.
    pub async fn start(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        if config.ca_out.is_some() && !config.tls {
            anyhow::bail!("emulator: ca_out needs tls (there is no CA without HTTPS)");
        }
        if !config.tls && !config.listen.ip().to_canonical().is_loopback() {
            anyhow::bail!(
                "emulator: refusing to listen on {} without --tls: keys (the Primary key \
                 included) would cross the network in the clear; add --tls or listen on a \
                 loopback address such as 127.0.0.1",
                config.listen
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("emulator: cannot listen on {}", config.listen))?;
        let local = listener.local_addr()?;
        let host_ip = if local.ip().is_unspecified() {
            match local.ip() {
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            }
        } else {
            local.ip()
        };
        let (base_url, tls_material) = if config.tls {
            let material = tls::generate(host_ip)?;
            let host = if host_ip.is_loopback() {
                "localhost".to_string()
            } else {
                url_host(host_ip)
            };
            (format!("https://{host}:{}", local.port()), Some(material))
        } else {
            (
                format!("http://{}:{}", url_host(host_ip), local.port()),
                None,
            )
        };
        let ca_pem = tls_material.as_ref().map(|m| m.ca_pem.clone());
        if let (Some(path), Some(pem)) = (&config.ca_out, &ca_pem) {
            crate::platform::fs::write_private_atomic(path, pem.as_bytes()).with_context(|| {
                format!(
                    "emulator: cannot write the CA certificate to {}",
                    path.display()
                )
            })?;
        }
        let primary_roles: Vec<String> = if config.path_a {
            vec![INSTANCE_ADMINISTRATOR.to_string()]
        } else {
            PATH_B_PRIMARY_ROLES.iter().map(|r| r.to_string()).collect()
        };
        let shared = Arc::new(state::Shared::new(
            base_url,
            config.rate_limit_per_sec,
            config.faults.clone(),
        ));
        let (primary_key_id, primary_key) = shared.create_key(state::NewKey {
            roles: primary_roles,
            level: config.security_level,
            expiration: None,
            comment: "Primary key (emulator)".into(),
            user: state::PRIMARY_USER.into(),
            is_primary: true,
        });
        let (stop, stop_rx) = watch::channel(false);
        let acceptor = tls_material.map(|m| m.acceptor);
        let server = tokio::spawn(server::serve(listener, acceptor, shared.clone(), stop_rx));
        tracing::info!(
            base_url = %shared.base_url,
            primary_key_id,
            security_level = %config.security_level,
            path = if config.path_a { "A" } else { "B" },
            "tenant emulator listening"
        );
        Ok(Emulator {
            shared,
            primary_key_id,
            primary_key,
            security_level: config.security_level,
            ca_pem,
            stop,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with TLS.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// `{base_url}/_emulator/{token}`: the admin endpoint, its random token in the path (a
    /// request without it is refused). Holds a credential: it reaches the Primary key.
    pub fn admin_url(&self) -> String {
        format!(
            "{}/_emulator/{}",
            self.shared.base_url,
            self.shared.admin_token.expose()
        )
    }

    pub fn primary_key_id(&self) -> i64 {
        self.primary_key_id
    }

    pub fn primary_key(&self) -> Secret {
        self.primary_key.clone()
    }

    pub fn security_level(&self) -> SecurityLevel {
        self.security_level
    }

    /// The CA certificate (PEM) when serving HTTPS.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.clone()
    }

    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Every key ever created, deleted and expired ones included.
    pub fn keys(&self) -> Vec<AdminKeyView> {
        self.shared.views()
    }

    /// Keys neither deleted nor expired.
    pub fn live_keys(&self) -> Vec<AdminKeyView> {
        self.keys()
            .into_iter()
            .filter(|k| k.state == KeyState::Active)
            .collect()
    }

    pub fn calls(&self) -> CallCounts {
        self.shared.lock().calls.clone()
    }

    /// Create a key as if made in the console (any role names are accepted here).
    pub fn create_key(
        &self,
        roles: &[&str],
        level: SecurityLevel,
        expiration_ms: Option<i64>,
    ) -> (i64, Secret) {
        self.shared.create_key(state::NewKey {
            roles: roles.iter().map(|r| r.to_string()).collect(),
            level,
            expiration: expiration_ms,
            comment: String::new(),
            user: state::CONSOLE_USER.into(),
            is_primary: false,
        })
    }

    /// Every secret this tenant ever issued, the Primary key's included: what a leak test
    /// searches logs and files for.
    pub fn issued_secrets(&self) -> Vec<Secret> {
        self.shared
            .lock()
            .keys
            .values()
            .map(|k| k.secret.clone())
            .collect()
    }

    /// Change a live key as the console's edit call would (roles, level, comment; no grant
    /// checks). False when unknown or deleted.
    pub fn edit_key(&self, id: i64, edit: KeyEdit) -> bool {
        self.shared.lock().edit_key(id, edit)
    }

    /// Delete a key as if in the console. False when unknown or already deleted.
    pub fn revoke(&self, id: i64) -> bool {
        self.shared.revoke(id)
    }

    /// The tenant's clock, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.shared.lock().now_ms()
    }

    /// Stop accepting, let open connections finish (briefly), and return.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
    }
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}
