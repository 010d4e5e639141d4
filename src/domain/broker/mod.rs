//! The key lifecycle: mint on demand (single-flight), verify, store, rotate, revoke, reconcile.
//!
//! This is the domain core. It knows nothing of LSP or sockets and talks to the tenant only
//! through the [`Tenant`] trait. Every state change is announced on [`Broker::subscribe`].

pub mod health;
mod lease;
mod login;
mod mint;
mod reconcile;
mod reload;
mod remote_key;
mod reverify;
mod revoke;
mod rotate;
mod schedule;
mod state;
mod status;
mod tenant;
mod types;
mod uncertain;
mod units;
mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};

pub use lease::Lease;
use mint::{backoff_ms, crash_point};
use reconcile::tagged;
pub use remote_key::REMOTE_TAG;
use state::*;
pub use status::{KeyInfo, State, StatusError, StatusReport};
pub use tenant::{
    Connector, DeleteOutcome, DialectSeen, ErrorKind, Filter, GenerateReply, GenerateRequest,
    KeyRecord, PrimaryKey, SecurityLevel, Tenant, TenantError,
};
pub use types::*;
pub use units::TimeUnit;

use crate::domain::clock::Clock;
use crate::domain::config::{Config, Profile};
use crate::domain::ledger::{KeyState, Ledger, LedgerFile, LedgerKey, Origin, same_tenant};
use crate::domain::secret::{self, Secret};
use crate::domain::store::{Store, Tier};

/// Reconcile with the tenant this often while a failed delete waits in the outbox.
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
impl std::error::Error for BrokerError {}

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
    /// Replaced whole when the config file changes (`reload.rs`); readers take a snapshot.
    config: std::sync::RwLock<Arc<Config>>,
    /// Why the config file on disk is not the one in use (it does not parse), if it is not.
    config_problem: Mutex<Option<String>>,
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
    /// `user@host#installation`: the part of every comment tag that says the key is this
    /// installation's. `user@host` alone is shared by every container or state directory of the
    /// same user on the same host; the random installation id (from the state directory) is not.
    owner: String,
    progress_ids: std::sync::atomic::AtomicU64,
    listing_done: Notify,
    /// A mint for a waiting caller ended (`credentials`): the other waiters look again.
    minted: Notify,
    /// The scheduler runs (`run`): a reconcile that is due will be made without being asked.
    scheduled: std::sync::atomic::AtomicBool,
    /// The time unit learned per tenant (by base URL), shared by profiles on one tenant;
    /// `None` once a listing was read that had no evidence. Seeded from the ledger at start.
    units: Mutex<HashMap<String, Option<TimeUnit>>>,
    /// Each tenant's clock offset as the last run measured it (ledger `tenants`): used until
    /// this run measures it, so a restarted daemon's first mint need not wait for a listing.
    remembered_offsets: Mutex<HashMap<String, i64>>,
}

/// The key broker. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

fn owner() -> String {
    // In a CI job the tag names the job (one job's keys are never another job's).
    if let Some(job) = crate::domain::ci_job::owner() {
        return job;
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid{}", crate::platform::euid()));
    let host = crate::platform::hostname().unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}").replace(' ', "_")
}

impl Broker {
    /// Build the broker from its parts. Loads the ledger (moving a corrupt one aside).
    pub fn new(opts: BrokerOptions) -> std::io::Result<Broker> {
        let mut ledger_file = opts.ledger;
        let mut ledger = ledger_file.load(opts.clock.now_ms())?;
        let installation = ledger_file.installation_id()?;
        ledger.prune(opts.clock.now_ms());
        let (units, remembered_offsets) = units::recall(&ledger, opts.clock.now_ms());
        let (events, _) = broadcast::channel(256);
        Ok(Broker {
            inner: Arc::new(Inner {
                config: std::sync::RwLock::new(Arc::new(opts.config)),
                config_problem: Mutex::new(None),
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
                owner: format!("{}#{installation}", owner()),
                progress_ids: std::sync::atomic::AtomicU64::new(1),
                listing_done: Notify::new(),
                minted: Notify::new(),
                scheduled: Default::default(),
                units: Mutex::new(units),
                remembered_offsets: Mutex::new(remembered_offsets),
            }),
        })
    }

    /// The configuration in use now (a snapshot: a reload replaces it for later calls).
    pub fn config(&self) -> Arc<Config> {
        self.inner.config.read().unwrap().clone()
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

    /// The comment-tag prefix of every key this installation mints for `profile`.
    pub fn tag_prefix(&self, profile: &str) -> String {
        format!("scanmint {} {} ", self.inner.owner, profile)
    }

    /// Every profile we know of: configured ones and ones in the ledger.
    pub fn known_profiles(&self) -> Vec<String> {
        let config = self.config();
        let mut names: Vec<String> = config.profiles.keys().cloned().collect();
        names.push(config.default_profile.clone());
        let ledger = self.inner.ledger.lock().unwrap();
        names.extend(ledger.keys.iter().map(|k| k.profile.clone()));
        names.extend(ledger.outbox.iter().map(|o| o.profile.clone()));
        names.sort();
        names.dedup();
        names
    }

    pub fn resolve_profile(&self, name: Option<&str>) -> String {
        match name.filter(|n| !n.is_empty()) {
            Some(n) => n.to_string(),
            None => self.config().default_profile.clone(),
        }
    }

    fn profile(&self, name: &str) -> Profile {
        self.config().profile(Some(name))
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

    /// The tenant's idea of now: our clock plus the offset measured from its `Date` header
    /// (or remembered from the last run until this one measures it).
    fn tenant_now(&self, tenant: &Arc<dyn Tenant>) -> i64 {
        self.now() + self.clock_offset(tenant)
    }

    /// Before the first expiry is computed from the tenant's clock, make sure its offset and
    /// time unit are known: a cheap inventory read (of the Primary key's own record) carries a `Date`
    /// header. Without it a fresh connection assumes offset 0, and a skewed tenant gets keys
    /// that expire at the wrong time (or a login canary "in the past"). Errors are left to the
    /// call that follows, which reports them properly.
    ///
    /// A restarted daemon's mints (`remembered_ok`) go ahead on what the last run learned; a
    /// login's canary, which lives two minutes, always measures.
    async fn measure_clock(
        &self,
        tenant: &Arc<dyn Tenant>,
        profile: &str,
        primary_id: Option<i64>,
        remembered_ok: bool,
    ) {
        if tenant.clock_offset_known() && self.unit_probed(tenant) {
            return;
        }
        if remembered_ok && self.tenant_remembered(tenant) {
            return;
        }
        // A reconciliation listing will measure it: wait for that rather than spend another
        // call (registered before the check, so its end cannot slip past).
        let listing_done = self.inner.listing_done.notified();
        tokio::pin!(listing_done);
        listing_done.as_mut().enable();
        // In flight, or the daemon's start-up listing, due and about to be made by the
        // scheduler (a scanner's first ask can reach here before it starts).
        let scheduled = self
            .inner
            .scheduled
            .load(std::sync::atomic::Ordering::Relaxed);
        let now = self.now();
        if self.with_state(profile, |s| {
            s.listing
                || (scheduled
                    && s.listings_done == 0
                    && s.next_reconcile_ms.max(s.reconcile_retry_after_ms) <= now)
        }) {
            let _ = tokio::time::timeout(CLOCK_PROBE_TIMEOUT, listing_done).await;
            if tenant.clock_offset_known() && self.unit_probed(tenant) {
                return;
            }
        }
        // Bounded: a slow tenant must not hold a mint up here; without a measurement the mint
        // goes ahead on our clock.
        // The Primary key's record also carries the tenant's own timestamps: the time unit.
        let probe = self.list_ms(
            tenant,
            profile,
            vec![Filter::ids(&[primary_id.unwrap_or_default()])],
        );
        let _ = tokio::time::timeout(CLOCK_PROBE_TIMEOUT, probe).await;
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

    fn tenant_of(&self, profile: &str) -> Result<Arc<dyn Tenant>, BrokerError> {
        self.with_state(profile, |s| match (&s.tenant, s.refused) {
            (Some(_), true) => Err(s
                .last_error
                .clone()
                .unwrap_or_else(|| BrokerError::needs_login(profile))),
            (Some(t), false) => Ok(t.clone()),
            // Say why (a changed tenant URL, say) when loading found out.
            (None, _) => Err(s
                .last_error
                .clone()
                .filter(|e| e.code == "needs_login")
                .unwrap_or_else(|| BrokerError::needs_login(profile))),
        })
    }

    /// The tenant connection of a logged-in profile (for `doctor`).
    pub async fn tenant(&self, profile: &str) -> Result<Arc<dyn Tenant>, BrokerError> {
        self.load(profile).await;
        self.tenant_of(profile)
    }
}
