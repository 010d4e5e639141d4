//! The key lifecycle: mint on demand (single-flight), verify, store, rotate, revoke, reconcile.
//!
//! This is the domain core. It knows nothing of LSP or sockets and talks to the tenant only
//! through the [`Tenant`] trait. Every state change is announced on [`Broker::subscribe`].

mod status;
mod tenant;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};

pub use status::{KeyInfo, State, StatusError, StatusReport};
pub use tenant::{Connector, HttpConnector, PrimaryKey, Tenant};

use crate::clock::Clock;
use crate::config::{Config, Profile};
use crate::ledger::{KeyState, Ledger, LedgerFile, LedgerKey};
use crate::papi::wire::{Filter, GenerateReply, GenerateRequest, KeyRecord, SecurityLevel};
use crate::papi::{ErrorKind, PapiError};
use crate::secret::{self, Secret};
use crate::store::{Store, Tier};

/// Reconcile with the tenant this often even when nothing happens.
const RECONCILE_EVERY_MS: i64 = 3600 * 1000;
/// A listing judges only keys created this long before it began: timestamps carry the error
/// of the tenant-clock estimate (the `Date` header has one-second resolution).
const LISTING_MARGIN_MS: i64 = 5_000;
/// How long a mint waits to learn the tenant's clock before it goes ahead on ours.
const CLOCK_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// A pending entry the tenant does not list yet is looked for again this soon...
const PENDING_RECHECK_MS: i64 = 5_000;
/// ...until no `generate` sent for it could still land (client timeouts are far shorter).
const PENDING_SETTLE_MS: i64 = 120_000;
/// The scheduler re-reads the wall clock at least this often, so a suspended laptop catches up.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// A key whose `validate` succeeded this recently is not validated again for another report.
const VALIDATED_FRESH_MS: i64 = 5_000;
/// How long a login canary lives if we cannot delete it.
const CANARY_TTL_MS: i64 = 120_000;
/// Roles that make a Primary key broader than it needs to be (Path A).
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

impl std::error::Error for BrokerError {}

impl From<PapiError> for BrokerError {
    fn from(e: PapiError) -> Self {
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
}

#[derive(Clone)]
struct ActiveKey {
    id: i64,
    key: Secret,
    expires_ms: i64,
    generation: u64,
    role: String,
}

#[derive(Clone, Copy, PartialEq, Default)]
enum Phase {
    #[default]
    Idle,
    Minting,
    Rotating,
}

#[derive(Default)]
struct ProfileState {
    loaded: bool,
    tenant: Option<Arc<dyn Tenant>>,
    primary_level: Option<SecurityLevel>,
    primary_id: Option<i64>,
    base_url: Option<String>,
    storage: Option<Tier>,
    /// The tenant refused the Primary key (401/403/402): a person must log in again.
    refused: bool,
    phase: Phase,
    active: Option<ActiveKey>,
    last_error: Option<BrokerError>,
    /// Consecutive transient failures, and when the next attempt may start.
    failures: u32,
    retry_after_ms: i64,
    /// Sessions using a key (by id): a retiring key is kept until they finish, within grace.
    leases: HashMap<i64, usize>,
    validated_at: HashMap<i64, i64>,
    next_reconcile_ms: i64,
    /// A reconciliation listing is in flight (it measures the tenant's clock on the way).
    listing: bool,
    /// The whole (unexpired) inventory was searched for our tags since the ledger was lost.
    full_scan_done: bool,
    /// Consecutive failed reconciliations, and when the next may start (a reconcile asked for
    /// "as soon as possible" still waits for this).
    reconcile_failures: u32,
    reconcile_retry_after_ms: i64,
}

/// The secret record of a Primary key in the store.
#[derive(Serialize, Deserialize)]
struct StoredPrimary {
    base_url: String,
    key_id: i64,
    #[serde(serialize_with = "secret::serialize")]
    key: Secret,
    security_level: SecurityLevel,
}

/// The cached minted key in the store.
#[derive(Serialize, Deserialize)]
struct StoredMinted {
    id: i64,
    #[serde(serialize_with = "secret::serialize")]
    key: Secret,
    expires_ms: i64,
    generation: u64,
}

fn to_secret_json<T: Serialize>(value: &T) -> Secret {
    let text = zeroize::Zeroizing::new(serde_json::to_string(value).unwrap_or_default());
    Secret::new(text.as_str())
}

fn primary_account(profile: &str) -> String {
    format!("{profile}/primary")
}

fn minted_account(profile: &str) -> String {
    format!("{profile}/minted")
}

pub struct BrokerOptions {
    pub config: Config,
    pub store: Store,
    pub connector: Arc<dyn Connector>,
    pub clock: Arc<dyn Clock>,
    pub ledger: LedgerFile,
    /// A Primary key from the environment (`SCANMINT_PRIMARY_KEY*`), for the default profile.
    pub env_primary: Option<PrimaryKey>,
}

struct Inner {
    config: Config,
    store: Store,
    connector: Arc<dyn Connector>,
    clock: Arc<dyn Clock>,
    ledger_file: LedgerFile,
    ledger: Mutex<Ledger>,
    profiles: Mutex<HashMap<String, ProfileState>>,
    mint_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    events: broadcast::Sender<Event>,
    wake: Notify,
    env_primary: Option<PrimaryKey>,
    /// `user@host`: the part of every comment tag that says the key is this machine's.
    owner: String,
    progress_ids: std::sync::atomic::AtomicU64,
    listing_done: Notify,
}

/// The key broker. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

/// While held, the key it names counts as in use and is not revoked before its grace ends.
pub struct Lease {
    broker: Broker,
    profile: String,
    key_id: i64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut profiles = self.broker.inner.profiles.lock().unwrap();
        if let Some(state) = profiles.get_mut(&self.profile)
            && let Some(n) = state.leases.get_mut(&self.key_id)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.leases.remove(&self.key_id);
            }
        }
        drop(profiles);
        self.broker.inner.wake.notify_one();
    }
}

impl Lease {
    pub fn key_id(&self) -> i64 {
        self.key_id
    }
}

fn owner() -> String {
    // In a CI job the tag names the job (one job's keys are never another job's).
    if let Some(job) = crate::ci_job::owner() {
        return job;
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid{}", crate::fsutil::euid()));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}").replace(' ', "_")
}

impl Broker {
    /// Build the broker from its parts. Loads the ledger (moving a corrupt one aside).
    pub fn new(opts: BrokerOptions) -> std::io::Result<Broker> {
        let mut ledger_file = opts.ledger;
        let mut ledger = ledger_file.load(opts.clock.now_ms())?;
        ledger.prune(opts.clock.now_ms());
        let (events, _) = broadcast::channel(256);
        Ok(Broker {
            inner: Arc::new(Inner {
                config: opts.config,
                store: opts.store,
                connector: opts.connector,
                clock: opts.clock,
                ledger_file,
                ledger: Mutex::new(ledger),
                profiles: Mutex::new(HashMap::new()),
                mint_locks: Mutex::new(HashMap::new()),
                events,
                wake: Notify::new(),
                env_primary: opts.env_primary,
                owner: owner(),
                progress_ids: std::sync::atomic::AtomicU64::new(1),
                listing_done: Notify::new(),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    pub fn ledger_snapshot(&self) -> Ledger {
        self.inner.ledger.lock().unwrap().clone()
    }

    pub fn ledger_recovered_from(&self) -> Option<std::path::PathBuf> {
        self.inner.ledger_file.recovered_from.clone()
    }

    /// Failed deletes still waiting to be retried.
    pub fn outbox_len(&self) -> usize {
        self.inner.ledger.lock().unwrap().outbox.len()
    }

    /// The comment-tag prefix of every key this machine mints for `profile`.
    pub fn tag_prefix(&self, profile: &str) -> String {
        format!("scanmint {} {} ", self.inner.owner, profile)
    }

    /// Every profile we know of: configured ones and ones in the ledger.
    pub fn known_profiles(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.config.profiles.keys().cloned().collect();
        names.push(self.inner.config.default_profile.clone());
        let ledger = self.inner.ledger.lock().unwrap();
        names.extend(ledger.keys.iter().map(|k| k.profile.clone()));
        names.extend(ledger.outbox.iter().map(|o| o.profile.clone()));
        names.sort();
        names.dedup();
        names
    }

    pub fn resolve_profile(&self, name: Option<&str>) -> String {
        name.filter(|n| !n.is_empty())
            .unwrap_or(&self.inner.config.default_profile)
            .to_string()
    }

    fn profile(&self, name: &str) -> Profile {
        self.inner.config.profile(Some(name))
    }

    fn emit(&self, event: Event) {
        let _ = self.inner.events.send(event);
    }

    fn emit_status(&self, profile: &str) {
        self.emit(Event::Status(profile.to_string()));
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The tenant's idea of now: our clock plus the offset measured from its `Date` header.
    fn tenant_now(&self, tenant: &Arc<dyn Tenant>) -> i64 {
        self.now() + tenant.clock_offset_ms()
    }

    /// Before the first expiry is computed from the tenant's clock, make sure its offset is
    /// measured: a cheap inventory read (of the Primary key's own record) carries a `Date`
    /// header. Without it a fresh connection assumes offset 0, and a skewed tenant gets keys
    /// that expire at the wrong time (or a login canary "in the past"). Errors are left to the
    /// call that follows, which reports them properly.
    async fn measure_clock(
        &self,
        tenant: &Arc<dyn Tenant>,
        profile: &str,
        primary_id: Option<i64>,
    ) {
        if tenant.clock_offset_known() {
            return;
        }
        // A reconciliation listing in flight will measure it: wait for that rather than spend
        // another call (registered before the check, so its end cannot slip past).
        let listing_done = self.inner.listing_done.notified();
        tokio::pin!(listing_done);
        listing_done.as_mut().enable();
        if self.with_state(profile, |s| s.listing) {
            let _ = tokio::time::timeout(CLOCK_PROBE_TIMEOUT, listing_done).await;
            if tenant.clock_offset_known() {
                return;
            }
        }
        // Bounded: a slow tenant must not hold a mint up here; without a measurement the mint
        // goes ahead on our clock.
        let probe = tenant.list(vec![Filter::ids(&[primary_id.unwrap_or_default()])]);
        let _ = tokio::time::timeout(CLOCK_PROBE_TIMEOUT, probe).await;
    }

    fn with_state<T>(&self, profile: &str, f: impl FnOnce(&mut ProfileState) -> T) -> T {
        let mut profiles = self.inner.profiles.lock().unwrap();
        f(profiles.entry(profile.to_string()).or_default())
    }

    fn with_ledger<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        f(&mut self.inner.ledger.lock().unwrap())
    }

    /// Apply `f` to the ledger and write it to disk. A write failure is an error: the mint path
    /// must not call the tenant unless its pending entry is on disk.
    fn update_ledger<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> Result<T, BrokerError> {
        // All or nothing: the change is kept in memory only once it is on disk.
        let mut ledger = self.inner.ledger.lock().unwrap();
        let mut changed = ledger.clone();
        let out = f(&mut changed);
        // The write fsyncs: on a busy disk that takes milliseconds, so let the runtime move other
        // tasks off this worker meanwhile.
        let save = || self.inner.ledger_file.save(&changed);
        let saved = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(save)
            }
            _ => save(),
        };
        saved.map_err(|e| {
            BrokerError::new(
                "ledger_unwritable",
                format!(
                    "cannot write the ledger {}: {e}",
                    self.inner.ledger_file.path().display()
                ),
            )
        })?;
        *ledger = changed;
        Ok(out)
    }

    /// Save the ledger as it is (on shutdown).
    pub fn persist(&self) -> Result<(), BrokerError> {
        self.update_ledger(|_| ())
    }

    fn mint_lock(&self, profile: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.inner
            .mint_locks
            .lock()
            .unwrap()
            .entry(profile.to_string())
            .or_default()
            .clone()
    }

    /// Load the profile's Primary key and cached minted key from the store, once.
    async fn load(&self, profile: &str) {
        if self.with_state(profile, |s| s.loaded) {
            return;
        }
        self.inner.store.ready().await;
        let p = self.profile(profile);
        let mut primary = None;
        let mut storage = self.inner.store.tier();
        let mut load_error = None;
        if let Some(env) = &self.inner.env_primary
            && profile == self.inner.config.default_profile
        {
            primary = Some(env.clone());
            storage = Tier::Env;
        } else {
            match self.inner.store.get(&primary_account(profile)).await {
                Ok(Some(raw)) => match serde_json::from_str::<StoredPrimary>(raw.expose()) {
                    Ok(sp) => {
                        primary = Some(PrimaryKey {
                            base_url: p.base_url.clone().unwrap_or(sp.base_url),
                            key_id: sp.key_id,
                            key: sp.key,
                            security_level: sp.security_level,
                        })
                    }
                    Err(_) => {
                        load_error = Some(BrokerError::new(
                            "store_corrupt",
                            "the stored Primary key record is unreadable: run `scanmint login` again",
                        ))
                    }
                },
                Ok(None) => {}
                Err(e) => load_error = Some(BrokerError::new("store_unavailable", e.to_string())),
            }
        }
        let tenant = match &primary {
            Some(pk) => match self.inner.connector.connect(pk, p.ca_file.as_deref()) {
                Ok(t) => Some(t),
                Err(e) => {
                    load_error = Some(e.into());
                    None
                }
            },
            None => None,
        };
        let active = self.restore_minted(profile).await;
        let store_failed = load_error
            .as_ref()
            .is_some_and(|e| e.code == "store_unavailable");
        self.with_state(profile, |s| {
            if s.loaded {
                return;
            }
            // A keychain that did not answer is tried again on the next call.
            s.loaded = !store_failed;
            s.tenant = tenant;
            s.base_url = primary
                .as_ref()
                .map(|pk| pk.base_url.clone())
                .or(p.base_url.clone());
            s.primary_id = primary.as_ref().map(|pk| pk.key_id);
            s.primary_level = primary.as_ref().map(|pk| pk.security_level);
            s.storage = Some(storage);
            if s.active.is_none() {
                s.active = active;
            }
            if load_error.is_some() {
                s.last_error = load_error;
            }
        });
    }

    /// The cached minted key, if the ledger says it is active and the store still holds it.
    async fn restore_minted(&self, profile: &str) -> Option<ActiveKey> {
        let entry = self.with_ledger(|l| l.active(profile).cloned())?;
        let id = entry.id?;
        let raw = self
            .inner
            .store
            .get(&minted_account(profile))
            .await
            .ok()??;
        let stored: StoredMinted = serde_json::from_str(raw.expose()).ok()?;
        (stored.id == id).then_some(ActiveKey {
            id,
            key: stored.key,
            expires_ms: stored.expires_ms,
            generation: stored.generation,
            role: entry.role,
        })
    }

    fn tenant_of(&self, profile: &str) -> Result<Arc<dyn Tenant>, BrokerError> {
        self.with_state(profile, |s| match (&s.tenant, s.refused) {
            (Some(_), true) => Err(s
                .last_error
                .clone()
                .unwrap_or_else(|| BrokerError::needs_login(profile))),
            (Some(t), false) => Ok(t.clone()),
            (None, _) => Err(BrokerError::needs_login(profile)),
        })
    }

    /// The current key if it stays valid for `min_valid_ms` by the tenant's clock.
    fn valid_active(&self, profile: &str, min_valid_ms: i64) -> Option<Credentials> {
        let offset = self.with_state(profile, |s| {
            s.tenant.as_ref().map(|t| t.clock_offset_ms()).unwrap_or(0)
        });
        let now = self.now() + offset;
        self.with_state(profile, |s| {
            let a = s.active.as_ref()?;
            (a.expires_ms - min_valid_ms > now).then(|| Credentials {
                profile: profile.to_string(),
                base_url: s.base_url.clone().unwrap_or_default(),
                key_id: a.id,
                key: a.key.clone(),
                expires_ms: a.expires_ms,
                generation: a.generation,
                role: a.role.clone(),
            })
        })
    }

    /// A key valid for at least `min_valid`: the cached one, or a new one. Concurrent callers
    /// share one mint.
    pub async fn credentials(
        &self,
        profile: &str,
        min_valid: Duration,
    ) -> Result<Credentials, BrokerError> {
        // A fresh key must satisfy the caller, or every call would mint: cap the ask at half a TTL.
        let ttl_ms = self.profile(profile).ttl.as_millis() as i64;
        let min_valid_ms = (min_valid.as_millis() as i64).min(ttl_ms / 2);
        self.load(profile).await;
        if let Some(c) = self.valid_active(profile, min_valid_ms) {
            return Ok(c);
        }
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;
        // Someone may have minted while we waited: that is the single flight.
        if let Some(c) = self.valid_active(profile, min_valid_ms) {
            return Ok(c);
        }
        // After a transient failure, callers get the error until the backoff ends: no tight loop.
        let backoff = self.with_state(profile, |s| {
            (s.failures > 0 && self.now() < s.retry_after_ms)
                .then(|| s.last_error.clone())
                .flatten()
        });
        if let Some(e) = backoff {
            return Err(e);
        }
        self.mint_now(profile, false).await
    }

    /// Replace the active key now, whatever its age.
    pub async fn rotate(&self, profile: &str) -> Result<Credentials, BrokerError> {
        self.load(profile).await;
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;
        self.mint_now(profile, true).await
    }

    /// Mark `key_id` as in use until the returned lease is dropped.
    pub fn lease(&self, profile: &str, key_id: i64) -> Lease {
        self.with_state(profile, |s| *s.leases.entry(key_id).or_default() += 1);
        Lease {
            broker: self.clone(),
            profile: profile.to_string(),
            key_id,
        }
    }

    /// Mint, with the mint lock held, and record the outcome in the profile's state.
    async fn mint_now(&self, profile: &str, rotating: bool) -> Result<Credentials, BrokerError> {
        let tenant = self.tenant_of(profile)?;
        let p = self.profile(profile);
        let had_key = self.with_state(profile, |s| s.active.is_some());
        let rotating = rotating || had_key;
        self.with_state(profile, |s| {
            s.phase = if rotating {
                Phase::Rotating
            } else {
                Phase::Minting
            }
        });
        let progress = self
            .inner
            .progress_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let title = if rotating {
            "scanmint: rotating key"
        } else {
            "scanmint: minting key"
        };
        self.emit(Event::Progress {
            profile: profile.into(),
            id: progress,
            title: Some(title.into()),
        });
        self.emit_status(profile);

        let result = self.mint_verified(&tenant, &p).await;

        let now = self.now();
        self.with_state(profile, |s| {
            s.phase = Phase::Idle;
            match &result {
                Ok((active, store_problem)) => {
                    s.active = Some(active.clone());
                    s.failures = 0;
                    s.retry_after_ms = 0;
                    s.last_error = store_problem.clone();
                }
                Err((e, kind)) => {
                    if kind.is_some_and(|k| k.is_auth()) {
                        s.refused = true;
                    }
                    if kind.is_some_and(|k| k.is_transient()) {
                        s.failures += 1;
                        s.retry_after_ms = now + backoff_ms(s.failures);
                    }
                    s.last_error = Some(e.clone());
                }
            }
        });
        self.emit(Event::Progress {
            profile: profile.into(),
            id: progress,
            title: None,
        });
        self.emit_status(profile);
        self.inner.wake.notify_one();
        match result {
            Ok((active, _)) => {
                self.emit(Event::KeyChanged {
                    profile: profile.into(),
                    generation: Some(active.generation),
                });
                Ok(self.valid_active(profile, 0).ok_or_else(|| {
                    BrokerError::new(
                        "expired",
                        "the new key expired before it could be used: check the clocks",
                    )
                })?)
            }
            Err((e, _)) => Err(e),
        }
    }

    /// pending → generate → verify → store → active; the previous key starts retiring.
    async fn mint_verified(
        &self,
        tenant: &Arc<dyn Tenant>,
        p: &Profile,
    ) -> Result<(ActiveKey, Option<BrokerError>), (BrokerError, Option<ErrorKind>)> {
        let primary_id = self.with_state(&p.name, |s| s.primary_id);
        self.measure_clock(tenant, &p.name, primary_id).await;
        let now = self.tenant_now(tenant);
        let ttl_ms = p.ttl.as_millis() as i64;
        let expires_ms = now + ttl_ms;
        let jitter: f64 = rand::rng().random_range(0.9..1.1);
        let rotate_at_ms = now + ((ttl_ms as f64) * (p.rotate_at * jitter).min(0.97)) as i64;
        let tag = format!(
            "{}{}",
            self.tag_prefix(&p.name),
            secret::random_alphanumeric(16)
        );
        let mut generation = 0;
        let reply = self
            .generate_tracked(tenant, p, |l| {
                generation = l.next_generation(&p.name);
                LedgerKey {
                    id: None,
                    profile: p.name.clone(),
                    generation,
                    tag: tag.clone(),
                    role: p.role.clone(),
                    created_ms: now,
                    expires_ms,
                    rotate_at_ms,
                    retire_at_ms: None,
                    state: KeyState::Pending,
                    note: None,
                }
            })
            .await?;
        let id = reply.id;

        let stored = StoredMinted {
            id,
            key: reply.key.clone(),
            expires_ms,
            generation,
        };
        // A store that fails does not stop the mint: the key is usable from memory (and revoked
        // at the next start as a key we cannot use). The failure shows in the status.
        let store_problem = match self
            .inner
            .store
            .set(&minted_account(&p.name), &to_secret_json(&stored))
            .await
        {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot cache the minted key in the store");
                Some(BrokerError::new(
                    "store_unavailable",
                    format!("the new key works, but the secret store failed: {e}"),
                ))
            }
        };
        crash_point("after-store");

        let local_now = self.now();
        let grace_ms = p.grace.as_millis() as i64;
        let _ = self.update_ledger(|l| {
            for k in l
                .keys
                .iter_mut()
                .filter(|k| k.profile == p.name && k.state == KeyState::Active)
            {
                k.state = KeyState::Retiring;
                k.retire_at_ms = Some((local_now + grace_ms).min(k.expires_ms));
            }
            if let Some(k) = l.key_mut(&tag) {
                k.state = KeyState::Active;
            }
        });
        tracing::info!(key_id = id, generation, fingerprint = %reply.key.fingerprint(), "minted and verified a new key");
        let active = ActiveKey {
            id,
            key: reply.key,
            expires_ms,
            generation,
            role: p.role.clone(),
        };
        Ok((active, store_problem))
    }

    /// The crash-safe heart of every mint: a pending ledger entry on disk first (`entry` builds
    /// it), then `generate`, then the id recorded, then verification. A key that fails
    /// verification is revoked at once; a `generate` that may have minted leaves its entry
    /// pending, so reconciliation finds the key by its tag.
    async fn generate_tracked(
        &self,
        tenant: &Arc<dyn Tenant>,
        p: &Profile,
        entry: impl FnOnce(&mut Ledger) -> LedgerKey,
    ) -> Result<GenerateReply, (BrokerError, Option<ErrorKind>)> {
        let pending = self
            .update_ledger(|l| {
                let k = entry(l);
                l.keys.push(k.clone());
                k
            })
            .map_err(|e| (e, None))?;
        let tag = pending.tag.clone();
        crash_point("before-generate");

        let request = GenerateRequest {
            roles: vec![p.role.clone()],
            security_level: SecurityLevel::Standard,
            expiration: Some(pending.expires_ms),
            comment: tag.clone(),
        };
        let reply = match tenant.generate(&request).await {
            Ok(reply) => reply,
            Err(e) => {
                // A refusal minted nothing; anything else may have.
                let refused = matches!(
                    e.kind,
                    ErrorKind::BadRequest
                        | ErrorKind::Forbidden
                        | ErrorKind::Unauthorized
                        | ErrorKind::PaymentRequired
                ) || (e.kind == ErrorKind::Server && e.status == Some(500));
                if refused {
                    let _ = self.update_ledger(|l| {
                        if let Some(k) = l.key_mut(&tag) {
                            k.state = KeyState::Revoked;
                            k.note = Some(format!("generate refused: {}", e.message));
                        }
                    });
                } else {
                    self.with_state(&p.name, |s| s.next_reconcile_ms = 0);
                }
                return Err((explain_generate_error(&e, p), Some(e.kind)));
            }
        };
        // Without the id on disk a crash here still leaves the tag to find the key by.
        let _ = self.update_ledger(|l| {
            if let Some(k) = l.key_mut(&tag) {
                k.id = Some(reply.id);
            }
        });
        crash_point("after-generate");

        if let Err(why) = self.verify(tenant, reply.id, p, pending.expires_ms).await {
            tracing::warn!(key_id = reply.id, reason = %why.message, "minted key failed verification; revoking it");
            self.revoke_ids(tenant, &p.name, &[reply.id], "failed verification")
                .await;
            return Err((why, None));
        }
        Ok(reply)
    }

    /// The seed's last step: the key in the inventory must be exactly what was asked for.
    async fn verify(
        &self,
        tenant: &Arc<dyn Tenant>,
        id: i64,
        p: &Profile,
        expires_ms: i64,
    ) -> Result<(), BrokerError> {
        let records = tenant.list(vec![Filter::ids(&[id])]).await.map_err(|e| {
            BrokerError::new(
                "unverified",
                format!(
                    "cannot verify the new key, so it is not used: {}",
                    e.message
                ),
            )
        })?;
        let mut matching = records.iter().filter(|r| r.id == id);
        let record = matching.next().ok_or_else(|| {
            BrokerError::new(
                "unverified",
                format!("the new key {id} is missing from the tenant's inventory"),
            )
        })?;
        if matching.next().is_some() {
            return Err(BrokerError::new(
                "unverified",
                format!(
                    "the tenant's inventory lists the new key {id} more than once; it cannot be verified, so it is not used"
                ),
            ));
        }
        check_record(record, p, expires_ms)
    }

    /// Delete keys now; failures wait in the outbox. Marks them revoked in the ledger.
    async fn revoke_ids(
        &self,
        tenant: &Arc<dyn Tenant>,
        profile: &str,
        ids: &[i64],
        why: &str,
    ) -> Vec<i64> {
        if ids.is_empty() {
            return Vec::new();
        }
        crash_point("before-delete");
        let result = tenant.delete(ids).await;
        let now = self.now();
        let _ = self.update_ledger(|l| {
            for &id in ids {
                match &result {
                    Ok(_) => {
                        l.outbox.retain(|o| o.id != id);
                        if let Some(k) = l.by_id_mut(id) {
                            k.state = KeyState::Revoked;
                            k.note = Some(why.to_string());
                        }
                    }
                    Err(e) => {
                        if let Some(k) = l.by_id_mut(id)
                            && k.state != KeyState::Revoked
                        {
                            k.state = KeyState::Retiring;
                            k.retire_at_ms = Some(now);
                        }
                        let attempts = l
                            .outbox
                            .iter()
                            .find(|o| o.id == id)
                            .map_or(0, |o| o.attempts);
                        l.queue_delete(
                            id,
                            profile,
                            &e.message,
                            now + backoff_ms(attempts.saturating_add(1)),
                        );
                    }
                }
            }
        });
        match result {
            Ok(_) => {
                tracing::info!(?ids, reason = why, "revoked keys");
                self.with_state(profile, |s| {
                    if s.active.as_ref().is_some_and(|a| ids.contains(&a.id)) {
                        s.active = None;
                    }
                });
                ids.to_vec()
            }
            Err(e) => {
                tracing::warn!(?ids, error = %e, "revocation failed; queued for retry");
                if e.kind.is_auth() {
                    self.with_state(profile, |s| {
                        s.refused = true;
                        s.last_error = Some(e.clone().into());
                    });
                    self.emit_status(profile);
                }
                Vec::new()
            }
        }
    }

    /// The scanner could not authenticate with `key_id`: validate it, and replace it if the
    /// tenant rejects it.
    pub async fn scan_failed(
        &self,
        profile: &str,
        key_id: i64,
    ) -> Result<ScanFailure, BrokerError> {
        self.load(profile).await;
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;
        let active = self.with_state(profile, |s| s.active.clone());
        let Some(active) = active else {
            // The key is already gone (reconciliation found it deleted): the scanner needs one now.
            let fresh = self.mint_now(profile, true).await?;
            return Ok(ScanFailure::Replaced(fresh.generation));
        };
        if active.id != key_id {
            return Ok(ScanFailure::AlreadyReplaced);
        }
        let now = self.now();
        if self.with_state(profile, |s| {
            s.validated_at
                .get(&key_id)
                .is_some_and(|t| now - t < VALIDATED_FRESH_MS)
        }) {
            return Ok(ScanFailure::KeyWorks);
        }
        let tenant = self.tenant_of(profile)?;
        if tenant.validate(key_id, &active.key).await? {
            self.with_state(profile, |s| s.validated_at.insert(key_id, now));
            return Ok(ScanFailure::KeyWorks);
        }
        tracing::warn!(key_id, "the tenant rejects the active key; replacing it");
        self.revoke_ids(&tenant, profile, &[key_id], "rejected by the tenant")
            .await;
        self.with_state(profile, |s| s.active = None);
        let _ = self.update_ledger(|l| {
            if let Some(k) = l.by_id_mut(key_id) {
                k.state = KeyState::Revoked;
            }
        });
        let fresh = self.mint_now(profile, true).await?;
        Ok(ScanFailure::Replaced(fresh.generation))
    }

    /// Check a Primary key against the tenant and store it. The check is a canary: a short-lived
    /// key of the configured role, minted, verified and deleted again, which proves the key has
    /// Public API View/Edit and may grant that role.
    pub async fn login(
        &self,
        profile: &str,
        req: LoginRequest,
    ) -> Result<LoginOutcome, BrokerError> {
        let p = self.profile(profile);
        let base_url = req
            .base_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .or(p.base_url.clone())
            .ok_or_else(|| BrokerError::new("config", "no tenant URL: pass --base-url (copy it from the console, e.g. https://api-acme.xdr.us.paloaltonetworks.com) or set base_url in the profile"))?;
        if req.key.is_empty() || req.key_id <= 0 {
            return Err(BrokerError::new(
                "config",
                "a Primary key needs a positive integer key id and a non-empty secret",
            ));
        }
        let primary = PrimaryKey {
            base_url: base_url.trim_end_matches('/').to_string(),
            key_id: req.key_id,
            key: req.key,
            security_level: req.security_level,
        };
        let tenant = self
            .inner
            .connector
            .connect(&primary, p.ca_file.as_deref())?;
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;

        // The canary, through the same crash-safe ledger path as every mint.
        let (canary, _) = self.canary(&tenant, &p, primary.key_id).await?;
        let mut notes = Vec::new();
        if self
            .revoke_ids(&tenant, profile, &[canary], "login canary")
            .await
            .is_empty()
        {
            notes.push(format!("could not delete the login canary key {canary} yet; it is queued and expires within 2 minutes"));
        }
        notes.extend(primary_key_notes(&tenant, &primary).await);

        let record = StoredPrimary {
            base_url: primary.base_url.clone(),
            key_id: primary.key_id,
            key: primary.key.clone(),
            security_level: primary.security_level,
        };
        self.inner
            .store
            .set(&primary_account(profile), &to_secret_json(&record))
            .await
            .map_err(|e| {
                BrokerError::new(
                    "store_unavailable",
                    format!("the key works, but storing it failed: {e}"),
                )
            })?;
        let storage = self.inner.store.tier();
        self.with_state(profile, |s| {
            s.loaded = true;
            s.tenant = Some(tenant);
            s.base_url = Some(primary.base_url.clone());
            s.primary_id = Some(primary.key_id);
            s.primary_level = Some(primary.security_level);
            s.storage = Some(storage);
            s.refused = false;
            s.last_error = None;
            s.failures = 0;
            s.next_reconcile_ms = 0;
        });
        self.emit_status(profile);
        self.inner.wake.notify_one();
        tracing::info!(profile, storage = storage.as_str(), "logged in");
        Ok(LoginOutcome {
            profile: profile.to_string(),
            storage,
            notes,
        })
    }

    /// Mint, verify and return the id of a short-lived key; it is not stored and not active.
    async fn canary(
        &self,
        tenant: &Arc<dyn Tenant>,
        p: &Profile,
        primary_id: i64,
    ) -> Result<(i64, Secret), BrokerError> {
        self.measure_clock(tenant, &p.name, Some(primary_id)).await;
        let now = self.tenant_now(tenant);
        let tag = format!(
            "{}canary-{}",
            self.tag_prefix(&p.name),
            secret::random_alphanumeric(12)
        );
        let expires_ms = now + CANARY_TTL_MS;
        let reply = self
            .generate_tracked(tenant, p, |_| LedgerKey {
                id: None,
                profile: p.name.clone(),
                generation: 0,
                tag: tag.clone(),
                role: p.role.clone(),
                created_ms: now,
                expires_ms,
                rotate_at_ms: expires_ms,
                retire_at_ms: Some(now),
                state: KeyState::Pending,
                note: Some("login canary".into()),
            })
            .await
            .map_err(|(e, _)| e)?;
        // Retiring with its grace already over: if the caller cannot delete it, the scheduler will.
        let _ = self.update_ledger(|l| {
            if let Some(k) = l.by_id_mut(reply.id) {
                k.state = KeyState::Retiring;
            }
        });
        Ok((reply.id, reply.key))
    }

    /// `doctor`'s end-to-end check: mint a canary, verify it, validate it as the scanner
    /// would, revoke it. Returns the canary's id.
    pub async fn canary_check(&self, profile: &str) -> Result<i64, BrokerError> {
        self.load(profile).await;
        let tenant = self.tenant_of(profile)?;
        let p = self.profile(profile);
        let (id, key) = {
            let lock = self.mint_lock(profile);
            let _guard = lock.lock().await;
            let primary_id = self
                .with_state(profile, |s| s.primary_id)
                .unwrap_or_default();
            self.canary(&tenant, &p, primary_id).await?
        };
        let works = tenant.validate(id, &key).await;
        let revoked = !self
            .revoke_ids(&tenant, profile, &[id], "doctor canary")
            .await
            .is_empty();
        match works {
            Ok(true) if revoked => Ok(id),
            Ok(true) => Err(BrokerError::new(
                "revoke_failed",
                format!("canary {id} works but could not be revoked yet (queued)"),
            )),
            Ok(false) => Err(BrokerError::new(
                "canary_rejected",
                format!("the tenant minted canary {id} but does not accept it"),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Revoke every key this machine minted for the profile (by the ledger and by the tags on
    /// the tenant), then forget the Primary key. If any delete fails, nothing is forgotten.
    pub async fn logout(&self, profile: &str) -> Result<Vec<i64>, BrokerError> {
        self.load(profile).await;
        let revoked = match self.tenant_of(profile) {
            Ok(_) => self.revoke_all(profile).await?,
            Err(_) => Vec::new(),
        };
        let store = &self.inner.store;
        let _ = store.delete(&minted_account(profile)).await;
        store.delete(&primary_account(profile)).await.map_err(|e| {
            BrokerError::new(
                "store_unavailable",
                format!("keys revoked, but forgetting the Primary key failed: {e}"),
            )
        })?;
        self.with_state(profile, |s| {
            *s = ProfileState {
                loaded: true,
                storage: Some(store.tier()),
                ..Default::default()
            }
        });
        self.emit(Event::KeyChanged {
            profile: profile.into(),
            generation: None,
        });
        self.emit_status(profile);
        Ok(revoked)
    }

    /// Revoke the active and retiring keys (`all`: also every key on the tenant tagged as this
    /// machine's for the profile). The next request mints a fresh key.
    pub async fn revoke(&self, profile: &str, all: bool) -> Result<Vec<i64>, BrokerError> {
        self.load(profile).await;
        if all {
            return self.revoke_all(profile).await;
        }
        let tenant = self.tenant_of(profile)?;
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;
        let ids: Vec<i64> = self.with_ledger(|l| l.live(profile).filter_map(|k| k.id).collect());
        let revoked = self
            .revoke_ids(&tenant, profile, &ids, "revoked on request")
            .await;
        // Asked to go, so never handed out again, even while a failed delete waits in the
        // outbox: the next request mints a fresh key.
        self.with_state(profile, |s| s.active = None);
        let _ = self.inner.store.delete(&minted_account(profile)).await;
        self.emit(Event::KeyChanged {
            profile: profile.into(),
            generation: None,
        });
        self.emit_status(profile);
        if revoked.len() != ids.len() {
            return Err(BrokerError::new(
                "revoke_failed",
                "the tenant did not accept the revocation; it is queued and will be retried",
            ));
        }
        Ok(revoked)
    }

    async fn revoke_all(&self, profile: &str) -> Result<Vec<i64>, BrokerError> {
        let tenant = self.tenant_of(profile)?;
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;
        let prefix = self.tag_prefix(profile);
        let mut ids = self.with_ledger(|l| l.live_ids(profile));
        let on_tenant = tenant
            .list(vec![unexpired(self.tenant_now(&tenant))])
            .await?;
        ids.extend(
            on_tenant
                .iter()
                .filter(|r| tagged(r, &prefix))
                .map(|r| r.id),
        );
        ids.sort();
        ids.dedup();
        let revoked = self
            .revoke_ids(&tenant, profile, &ids, "revoked on logout")
            .await;
        if revoked.len() != ids.len() {
            return Err(BrokerError::new(
                "revoke_failed",
                "the tenant did not accept the revocation; nothing was forgotten, try again",
            ));
        }
        let _ = self.update_ledger(|l| {
            for k in l
                .keys
                .iter_mut()
                .filter(|k| k.profile == profile && k.state != KeyState::Revoked)
            {
                k.state = KeyState::Revoked;
                k.note.get_or_insert_with(|| "revoked on logout".into());
            }
        });
        self.with_state(profile, |s| s.active = None);
        Ok(revoked)
    }

    /// Bring the ledger and the tenant into agreement: resolve pending entries, revoke tagged
    /// keys we do not hold, forget keys the tenant no longer has, enforce `max_live_keys`.
    pub async fn reconcile(&self, profile: &str) -> Result<ReconcileReport, BrokerError> {
        self.load(profile).await;
        let tenant = self.tenant_of(profile)?;
        let p = self.profile(profile);
        let prefix = self.tag_prefix(profile);
        // List without the mint lock (a slow tenant must not block mints), decide with it: a
        // key minted meanwhile is active in the ledger by then, so it is never taken for an orphan.
        let listed_at = self.tenant_now(&tenant);
        self.with_state(profile, |s| s.listing = true);
        let listing = self.reconcile_listing(&tenant, profile, listed_at).await;
        self.with_state(profile, |s| s.listing = false);
        self.inner.listing_done.notify_waiters();
        let records = match listing {
            Ok(r) => r,
            Err(e) => {
                self.note_failure(profile, &e);
                return Err(e.into());
            }
        };
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;
        let now = self.tenant_now(&tenant);
        let active_id = self.with_state(profile, |s| s.active.as_ref().map(|a| a.id));
        let mut report = ReconcileReport::default();
        let mut orphans = Vec::new();
        let ledger = self.ledger_snapshot();
        for record in records.iter().filter(|r| tagged(r, &prefix)) {
            let entry = ledger
                .keys
                .iter()
                .find(|k| k.id == Some(record.id) || record.comment.as_deref() == Some(&k.tag));
            let keep = match entry {
                // The active key counts only if we hold its secret (a memory store forgets).
                Some(k) if k.state == KeyState::Active => active_id == Some(record.id),
                Some(k) if k.state == KeyState::Retiring => k.id == Some(record.id),
                _ => false,
            };
            let expired = record.expiration.is_some_and(|e| e <= now);
            if !keep && !expired {
                orphans.push(record.id);
            }
        }
        // Ledger keys the tenant no longer lists: deleted elsewhere, or expired and purged.
        // Only keys older than the listing can be judged by it.
        let listed: Vec<i64> = records.iter().map(|r| r.id).collect();
        let mut unresolved = false;
        let _ =
            self.update_ledger(|l| {
                for k in l.keys.iter_mut().filter(|k| {
                    k.profile == profile && k.created_ms < listed_at - LISTING_MARGIN_MS
                }) {
                    let gone = match k.id {
                        Some(id) => !listed.contains(&id) && k.state != KeyState::Revoked,
                        // Pending without an id and not on the tenant: generate never landed, unless
                        // it is still in flight (a killed process's request can land after it died):
                        // look again soon, and give up once no request could still be in flight.
                        None if k.state == KeyState::Pending
                            && !records.iter().any(|r| r.comment.as_deref() == Some(&k.tag)) =>
                        {
                            let settled = listed_at - k.created_ms > PENDING_SETTLE_MS;
                            unresolved |= !settled;
                            settled
                        }
                        None => false,
                    };
                    if gone {
                        k.state = KeyState::Revoked;
                        k.note = Some("not on the tenant".into());
                        if let Some(id) = k.id {
                            report.forgotten.push(id);
                        }
                    }
                }
            });
        if active_id.is_some_and(|id| report.forgotten.contains(&id)) {
            self.with_state(profile, |s| s.active = None);
            let _ = self.inner.store.delete(&minted_account(profile)).await;
        }
        // Live keys beyond the cap: oldest retiring first.
        let mut live: Vec<LedgerKey> = self.with_ledger(|l| {
            l.live(profile)
                .filter(|k| k.state == KeyState::Retiring && k.id.is_some())
                .cloned()
                .collect()
        });
        live.sort_by_key(|k| k.generation);
        let allowed_retiring = p.max_live_keys.saturating_sub(1);
        while live.len() > allowed_retiring {
            orphans.push(live.remove(0).id.unwrap_or_default());
        }
        orphans.sort();
        orphans.dedup();
        if !orphans.is_empty() {
            tracing::info!(
                ?orphans,
                "reconcile: revoking keys the ledger does not hold"
            );
            report.revoked = self
                .revoke_ids(
                    &tenant,
                    profile,
                    &orphans,
                    "reconciled: not held by this machine",
                )
                .await;
        }
        let next = if unresolved {
            PENDING_RECHECK_MS
        } else {
            RECONCILE_EVERY_MS
        };
        self.with_state(profile, |s| s.next_reconcile_ms = self.now() + next);
        if !report.revoked.is_empty() || !report.forgotten.is_empty() {
            self.emit_status(profile);
        }
        Ok(report)
    }

    /// What reconciliation must see, in as few calls as the tenant's size allows: the keys the
    /// ledger knows (by id), the key of each pending entry without an id (by its exact expiry:
    /// we asked for it to the millisecond), and, once after the ledger was lost, every unexpired
    /// key (to find our tags). One call in the common case (with an empty ledger, the one call
    /// only learns the tenant's clock).
    async fn reconcile_listing(
        &self,
        tenant: &Arc<dyn Tenant>,
        profile: &str,
        now: i64,
    ) -> Result<Vec<KeyRecord>, PapiError> {
        let (ids, pending_expiries) = self.with_ledger(|l| {
            let ids = l.live_ids(profile);
            let pending: Vec<i64> = l
                .keys
                .iter()
                .filter(|k| k.profile == profile && k.state == KeyState::Pending && k.id.is_none())
                .map(|k| k.expires_ms)
                .collect();
            (ids, pending)
        });
        let mut records = Vec::new();
        if !ids.is_empty() {
            records.extend(tenant.list(vec![Filter::ids(&ids)]).await?);
        } else if !tenant.clock_offset_known() {
            // Nothing to look up, but the first mint needs the tenant's clock: read the Primary
            // key's own record now (the mint waits for this listing instead of probing itself).
            let primary = self
                .with_state(profile, |s| s.primary_id)
                .unwrap_or_default();
            tenant.list(vec![Filter::ids(&[primary])]).await?;
        }
        for expires in pending_expiries {
            let window = vec![
                Filter {
                    field: "expiration".into(),
                    operator: "gte".into(),
                    value: serde_json::json!(expires - 1000),
                },
                Filter {
                    field: "expiration".into(),
                    operator: "lte".into(),
                    value: serde_json::json!(expires + 1000),
                },
            ];
            records.extend(tenant.list(window).await?);
        }
        let lost = self.inner.ledger_file.recovered_from.is_some()
            && !self.with_state(profile, |s| s.full_scan_done);
        if lost {
            records.extend(tenant.list(vec![unexpired(now)]).await?);
            self.with_state(profile, |s| s.full_scan_done = true);
        }
        records.sort_by_key(|r| r.id);
        records.dedup_by_key(|r| r.id);
        Ok(records)
    }

    fn note_failure(&self, profile: &str, e: &PapiError) {
        self.with_state(profile, |s| {
            if e.kind.is_auth() {
                s.refused = true;
            }
            s.last_error = Some(e.clone().into());
        });
        self.emit_status(profile);
    }

    /// The profile's status for callers (editors, `scanmint status`).
    pub async fn status(&self, profile: &str) -> StatusReport {
        self.load(profile).await;
        let key = self.valid_active(profile, 0).map(|c| KeyInfo {
            key_id: c.key_id,
            fingerprint: c.key.fingerprint(),
            role: c.role.clone(),
            expires_at: c.expires_ms,
            generation: c.generation,
        });
        let store_tier = self.inner.store.tier();
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

    /// The tenant connection of a logged-in profile (for `doctor`).
    pub async fn tenant(&self, profile: &str) -> Result<Arc<dyn Tenant>, BrokerError> {
        self.load(profile).await;
        self.tenant_of(profile)
    }

    /// Do whatever is due now: rotations, retirements, outbox retries, reconciliation. Returns
    /// the wall-clock time (ms) of the next thing due.
    pub async fn tick(&self) -> i64 {
        let mut next = self.now() + MAX_SLEEP.as_millis() as i64;
        for profile in self.known_profiles() {
            self.load(&profile).await;
            if self.tenant_of(&profile).is_err() {
                continue;
            }
            next = next.min(self.tick_profile(&profile).await);
        }
        next
    }

    async fn tick_profile(&self, profile: &str) -> i64 {
        let Ok(tenant) = self.tenant_of(profile) else {
            return i64::MAX;
        };
        let now = self.now();
        let mut next = i64::MAX;

        // Reconcile: at start, hourly, and soon after an uncertain generate.
        if self.with_state(profile, |s| {
            s.next_reconcile_ms.max(s.reconcile_retry_after_ms) <= now
        }) {
            match self.reconcile(profile).await {
                Ok(_) => self.with_state(profile, |s| {
                    s.reconcile_failures = 0;
                    s.reconcile_retry_after_ms = 0;
                }),
                Err(e) => {
                    tracing::warn!(profile, error = %e, "reconcile failed");
                    // Back off more after each failure, counted from when this attempt (with its
                    // retries) ended; a failed generate asking for a reconcile waits for it too.
                    let ended = self.now();
                    self.with_state(profile, |s| {
                        s.reconcile_failures += 1;
                        s.reconcile_retry_after_ms = ended + backoff_ms(s.reconcile_failures + 2);
                    });
                }
            }
        }
        next = next.min(self.with_state(profile, |s| {
            s.next_reconcile_ms.max(s.reconcile_retry_after_ms)
        }));

        // Outbox: failed deletes, with backoff.
        let due: Vec<i64> = self.with_ledger(|l| {
            l.outbox
                .iter()
                .filter(|o| o.profile == profile && o.next_try_ms <= now)
                .map(|o| o.id)
                .collect()
        });
        if !due.is_empty() {
            self.revoke_ids(&tenant, profile, &due, "revoked (retried)")
                .await;
        }

        // Retiring keys: revoke once their users are gone, or when grace ends.
        let retiring: Vec<(i64, i64)> = self.with_ledger(|l| {
            l.live(profile)
                .filter(|k| k.state == KeyState::Retiring)
                .filter_map(|k| Some((k.id?, k.retire_at_ms.unwrap_or(now))))
                .filter(|(id, _)| !l.outbox.iter().any(|o| o.id == *id))
                .collect()
        });
        let mut retire_now = Vec::new();
        for (id, retire_at) in retiring {
            let in_use = self.with_state(profile, |s| s.leases.contains_key(&id));
            if !in_use || retire_at <= now {
                retire_now.push(id);
            } else {
                next = next.min(retire_at);
            }
        }
        if !retire_now.is_empty() {
            self.revoke_ids(&tenant, profile, &retire_now, "retired after rotation")
                .await;
            self.emit_status(profile);
        }

        // Rotation of the active key at its (jittered) point, unless failing or refused.
        let rotate_at = self.with_ledger(|l| l.active(profile).map(|k| k.rotate_at_ms));
        let (retry_after, refused, has_active) = self.with_state(profile, |s| {
            (s.retry_after_ms, s.refused, s.active.is_some())
        });
        if let Some(rotate_at) = rotate_at.filter(|_| has_active && !refused) {
            // The rotation point is on the tenant's clock, the backoff on ours: compare on ours,
            // or a tenant whose clock runs ahead would skip the backoff altogether.
            let due_at = (rotate_at - tenant.clock_offset_ms()).max(retry_after);
            if self.now() >= due_at {
                let lock = self.mint_lock(profile);
                let _guard = lock.lock().await;
                if let Err(e) = self.mint_now(profile, true).await {
                    tracing::warn!(profile, error = %e, "scheduled rotation failed; the current key is served until it expires");
                }
                next = next.min(self.now() + 1000);
            } else {
                next = next.min(due_at);
            }
        }

        let outbox_next = self.with_ledger(|l| {
            l.outbox
                .iter()
                .filter(|o| o.profile == profile)
                .map(|o| o.next_try_ms)
                .min()
        });
        next.min(outbox_next.unwrap_or(i64::MAX))
    }

    /// The scheduler: wakes at the next wall-clock deadline (re-checked at least every minute,
    /// so suspend cannot make it miss one), or when something changed.
    pub async fn run(&self) {
        loop {
            let next = self.tick().await;
            let wait_ms = (next - self.now()).clamp(0, MAX_SLEEP.as_millis() as i64);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                _ = self.inner.wake.notified() => {}
            }
        }
    }

    /// Record a problem found outside the lifecycle (delivery, say) so every editor sees it.
    pub fn report_problem(&self, profile: &str, code: &str, message: &str) {
        tracing::warn!(profile, code, message, "problem reported");
        self.with_state(profile, |s| {
            s.last_error = Some(BrokerError::new(code, message))
        });
        self.emit_status(profile);
    }

    /// Finish in-flight mints (bounded), then write the ledger.
    pub async fn shutdown(&self) {
        let locks: Vec<_> = self
            .inner
            .mint_locks
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        for lock in locks {
            let _ = tokio::time::timeout(Duration::from_secs(10), lock.lock_owned()).await;
        }
        if let Err(e) = self.persist() {
            tracing::error!(error = %e, "could not write the ledger on shutdown");
        }
    }

    /// Wake the scheduler now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }
}

/// Keys that have not expired by `now` (tenant time).
fn unexpired(now: i64) -> Filter {
    Filter {
        field: "expiration".into(),
        operator: "gte".into(),
        value: serde_json::json!(now),
    }
}

fn tagged(record: &KeyRecord, prefix: &str) -> bool {
    record
        .comment
        .as_deref()
        .is_some_and(|c| c.starts_with(prefix))
}

/// The inventory record of a fresh key must match the request exactly.
fn check_record(record: &KeyRecord, p: &Profile, expires_ms: i64) -> Result<(), BrokerError> {
    let mut roles = record.roles.clone();
    roles.sort();
    if roles != [p.role.clone()] {
        return Err(BrokerError::new(
            "too_broad",
            format!(
                "the tenant gave the new key {} the roles {:?}, but scanmint asked for exactly [{:?}]; the key was revoked and not used",
                record.id, record.roles, p.role
            ),
        ));
    }
    if let Some(level) = record.security_level.as_deref()
        && SecurityLevel::parse_lenient(level) != Some(SecurityLevel::Standard)
    {
        return Err(BrokerError::new(
            "wrong_level",
            format!(
                "the new key {} has security level {level:?}; scanners need Standard; the key was revoked",
                record.id
            ),
        ));
    }
    match record.expiration {
        Some(e) if e.abs_diff(expires_ms) <= 1000 => Ok(()),
        other => Err(BrokerError::new(
            "wrong_expiry",
            format!(
                "the new key {} expires at {:?}, not at {expires_ms} as asked; the key was revoked",
                record.id, other
            ),
        )),
    }
}

fn explain_generate_error(e: &PapiError, p: &Profile) -> BrokerError {
    match e.kind {
        ErrorKind::Forbidden => BrokerError::new(
            "primary_refused",
            format!(
                "the Primary key may not mint keys with the role {:?}: {}. {PRIMARY_KEY_GUIDANCE}",
                p.role, e.message
            ),
        ),
        ErrorKind::Unauthorized => BrokerError::new(
            "primary_refused",
            format!(
                "the tenant does not accept the Primary key (wrong id or secret, expired or deleted): run `scanmint login` again. ({})",
                e.message
            ),
        ),
        ErrorKind::Server if e.status == Some(500) => BrokerError::new(
            "tenant_rejected",
            format!(
                "the tenant refused to mint a key with role {:?} (does that role exist? set `role` in the profile): {}",
                p.role, e.message
            ),
        ),
        _ => e.clone().into(),
    }
}

/// What is worth telling a person about their Primary key (its own inventory record).
async fn primary_key_notes(tenant: &Arc<dyn Tenant>, primary: &PrimaryKey) -> Vec<String> {
    let mut notes = Vec::new();
    if primary.security_level == SecurityLevel::Standard {
        notes.push(
            "the Primary key is Standard; an Advanced key is safer for it (replay protection)"
                .into(),
        );
    }
    if let Ok(records) = tenant.list(vec![Filter::ids(&[primary.key_id])]).await
        && let Some(r) = records.iter().find(|r| r.id == primary.key_id)
        && let Some(admin) = r
            .roles
            .iter()
            .find(|role| ADMIN_ROLES.contains(&role.as_str()))
    {
        notes.push(format!(
            "the Primary key holds the admin role {admin:?} (Path A); a narrower \"Public API (PAPI) Edit\" role with the CLI roles (Path B) limits the damage if it leaks"
        ));
    }
    notes
}

/// Exponential backoff with full jitter: 1 s·2^n, capped at 10 minutes, at least 500 ms.
fn backoff_ms(attempt: u32) -> i64 {
    let ceiling = (1000i64 << attempt.min(10)).min(600_000);
    rand::rng().random_range(500..=ceiling.max(500))
}

/// Test hook: `SCANMINT_CRASH_AT=<point>` aborts the process at that step of a mint, so crash
/// recovery is tested against a real kill, not a simulation.
fn crash_point(point: &str) {
    if std::env::var("SCANMINT_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("scanmint: SCANMINT_CRASH_AT={point}: aborting");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(roles: &[&str], level: Option<&str>, expiration: Option<i64>) -> KeyRecord {
        KeyRecord {
            id: 7,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            created_by: None,
            creation_time: None,
            expiration,
            comment: None,
            user_name: None,
            security_level: level.map(String::from),
        }
    }

    #[test]
    fn verification_demands_exactly_what_was_asked() {
        let p = Profile::defaults("p");
        assert!(
            check_record(
                &record(&[crate::config::DEFAULT_ROLE], Some("standard"), Some(1000)),
                &p,
                1000
            )
            .is_ok()
        );
        let broad = check_record(
            &record(
                &[crate::config::DEFAULT_ROLE, "Instance Administrator"],
                None,
                Some(1000),
            ),
            &p,
            1000,
        )
        .unwrap_err();
        assert_eq!(broad.code, "too_broad");
        assert!(
            broad.message.contains("Instance Administrator"),
            "{}",
            broad.message
        );
        assert_eq!(
            check_record(
                &record(&[crate::config::DEFAULT_ROLE], Some("Advanced"), Some(1000)),
                &p,
                1000
            )
            .unwrap_err()
            .code,
            "wrong_level"
        );
        assert_eq!(
            check_record(
                &record(&[crate::config::DEFAULT_ROLE], None, None),
                &p,
                1000
            )
            .unwrap_err()
            .code,
            "wrong_expiry"
        );
        assert_eq!(
            check_record(
                &record(&[crate::config::DEFAULT_ROLE], None, Some(900_000)),
                &p,
                1000
            )
            .unwrap_err()
            .code,
            "wrong_expiry"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for n in 0..30 {
            let b = backoff_ms(n);
            assert!((500..=600_000).contains(&b));
        }
    }
}
