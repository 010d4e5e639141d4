//! Per-profile state and its transitions in one place: what is loaded, which key is active,
//! failures and backoff, and the ledger updates that must survive a crash; loading at start.

use super::*;

#[derive(Clone)]
pub(super) struct ActiveKey {
    pub(super) id: i64,
    pub(super) key: Secret,
    pub(super) expires_ms: i64,
    pub(super) generation: u64,
    pub(super) role: String,
    /// Checked against the inventory by this process: a key restored from the store is not
    /// handed out before it is checked again (the console may have broadened it meanwhile).
    pub(super) verified: bool,
}

#[derive(Clone, Copy, PartialEq, Default)]
pub(super) enum Phase {
    #[default]
    Idle,
    Minting,
    Rotating,
}

#[derive(Default)]
pub(super) struct ProfileState {
    pub(super) loaded: bool,
    pub(super) tenant: Option<Arc<dyn Tenant>>,
    pub(super) primary_level: Option<SecurityLevel>,
    pub(super) primary_id: Option<i64>,
    pub(super) base_url: Option<String>,
    pub(super) storage: Option<Tier>,
    /// The tenant refused the Primary key (401/403/402): a person must log in again.
    pub(super) refused: bool,
    pub(super) phase: Phase,
    pub(super) active: Option<ActiveKey>,
    /// The key remote sessions share (`remote_key.rs`): never stored, never the active one.
    pub(super) remote: Option<ActiveKey>,
    pub(super) last_error: Option<BrokerError>,
    /// Consecutive transient failures, and when the next attempt may start.
    pub(super) failures: u32,
    pub(super) retry_after_ms: i64,
    /// Sessions using a key (by id): a retiring key is kept until they finish, within grace.
    pub(super) leases: HashMap<i64, usize>,
    pub(super) validated_at: HashMap<i64, i64>,
    pub(super) next_reconcile_ms: i64,
    /// A reconciliation listing is in flight (it measures the tenant's clock on the way).
    pub(super) listing: bool,
    /// Reconciliation listings ended (successful or not) since the daemon started.
    pub(super) listings_done: u64,
    /// The whole (unexpired) inventory was searched for our tags since the ledger was lost.
    pub(super) full_scan_done: bool,
    /// Consecutive failed reconciliations, and when the next may start (a reconcile asked for
    /// "as soon as possible" still waits for this).
    pub(super) reconcile_failures: u32,
    pub(super) reconcile_retry_after_ms: i64,
}

/// The secret record of a Primary key in the store.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredPrimary {
    pub(super) base_url: String,
    pub(super) key_id: i64,
    #[serde(serialize_with = "secret::serialize")]
    pub(super) key: Secret,
    pub(super) security_level: SecurityLevel,
}

/// The cached minted key in the store.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredMinted {
    pub(super) id: i64,
    #[serde(serialize_with = "secret::serialize")]
    pub(super) key: Secret,
    pub(super) expires_ms: i64,
    pub(super) generation: u64,
}

pub(super) fn to_secret_json<T: Serialize>(value: &T) -> Secret {
    let text = zeroize::Zeroizing::new(serde_json::to_string(value).unwrap_or_default());
    Secret::new(text.as_str())
}

/// The profile's URL now, if it is not the one the stored Primary key was logged in with.
pub(super) fn url_moved<'a>(configured: Option<&'a str>, stored: &str) -> Option<&'a str> {
    let same = |a: &str, b: &str| a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/');
    configured.filter(|now| !same(now, stored))
}

pub(super) fn url_changed(profile: &str, stored: &str, now: &str) -> BrokerError {
    BrokerError::new(
        "needs_login",
        format!(
            "the tenant URL of profile {profile:?} changed from {stored} to {now} (config or SCANMINT_BASE_URL): \
             the stored Primary key is only sent to the tenant it was logged in with; log in again for {now} \
             (`scanmint login --profile {profile}`), or set the URL back"
        ),
    )
}

pub(super) fn primary_account(profile: &str) -> String {
    format!("{profile}/primary")
}

pub(super) fn minted_account(profile: &str) -> String {
    format!("{profile}/minted")
}

impl Broker {
    pub(super) fn with_state<T>(&self, profile: &str, f: impl FnOnce(&mut ProfileState) -> T) -> T {
        let mut profiles = self.inner.profiles.lock().unwrap();
        f(profiles.entry(profile.to_string()).or_default())
    }

    pub(super) fn with_ledger<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        f(&mut self.inner.ledger.lock().unwrap())
    }

    /// Apply `f` to the ledger and write it to disk. A write failure is an error: the mint path
    /// must not call the tenant unless its pending entry is on disk.
    pub(super) fn update_ledger<T>(
        &self,
        f: impl FnOnce(&mut Ledger) -> T,
    ) -> Result<T, BrokerError> {
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

    /// Load the profile's Primary key and cached minted key from the store, once.
    pub(super) async fn load(&self, profile: &str) {
        if self.with_state(profile, |s| s.loaded) {
            return;
        }
        self.inner.store.ready().await;
        let p = self.profile(profile);
        let mut primary = None;
        let mut storage = self.inner.store.tier();
        let mut load_error = None;
        let mut url_moved_away = false;
        if let Some(env) = &self.inner.env_primary
            && profile == self.config().default_profile
        {
            primary = Some(env.clone());
            storage = Tier::Env;
        } else {
            match self.inner.store.get(&primary_account(profile)).await {
                Ok(Some(raw)) => match serde_json::from_str::<StoredPrimary>(raw.expose()) {
                    // The stored key goes only to the tenant it was logged in with: a
                    // `SCANMINT_BASE_URL` in some terminal, or an edited config, must not send
                    // it elsewhere (issue 12, finding 4).
                    Ok(sp) => match url_moved(p.base_url.as_deref(), &sp.base_url) {
                        Some(now) => {
                            url_moved_away = true;
                            load_error = Some(url_changed(profile, &sp.base_url, now))
                        }
                        None => {
                            primary = Some(PrimaryKey {
                                base_url: sp.base_url,
                                key_id: sp.key_id,
                                key: sp.key,
                                security_level: sp.security_level,
                            })
                        }
                    },
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
        let base_url = primary
            .as_ref()
            .map(|pk| pk.base_url.clone())
            .or(p.base_url.clone());
        if let Some(url) = &base_url {
            self.adopt_legacy_entries(profile, url);
        }
        // A key minted on the old tenant is not handed out with the new tenant's URL either.
        let active = if url_moved_away {
            None
        } else {
            self.restore_minted(profile, base_url.as_deref()).await
        };
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
            s.base_url = base_url;
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

    /// Entries of ledgers written before keys recorded their tenant: nothing else is known about
    /// them, so they are taken to belong to the tenant the profile uses when they are first
    /// seen (and stamped with it, so a later move to another tenant cannot take them along).
    fn adopt_legacy_entries(&self, profile: &str, url: &str) {
        let legacy = self.with_ledger(|l| {
            l.keys
                .iter()
                .any(|k| k.profile == profile && k.base_url.is_none())
                || l.outbox
                    .iter()
                    .any(|o| o.profile == profile && o.base_url.is_none())
        });
        if !legacy {
            return;
        }
        let url = url.trim_end_matches('/').to_string();
        let _ = self.update_ledger(|l| {
            for k in l.keys.iter_mut().filter(|k| k.profile == profile) {
                k.base_url.get_or_insert_with(|| url.clone());
            }
            for o in l.outbox.iter_mut().filter(|o| o.profile == profile) {
                o.base_url.get_or_insert_with(|| url.clone());
            }
        });
    }

    /// The cached minted key, if the ledger says it is active and the store still holds it.
    pub(super) async fn restore_minted(
        &self,
        profile: &str,
        base_url: Option<&str>,
    ) -> Option<ActiveKey> {
        // A key minted on another tenant is never handed out for this one.
        let base_url = base_url?;
        let entry = self.with_ledger(|l| l.active(profile, base_url).cloned())?;
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
            verified: false,
        })
    }

    /// The current key if it stays valid for `min_valid_ms` by the tenant's clock and (when
    /// `verified_only`, as for anything handed out) was checked against the inventory.
    pub(super) fn valid_active(
        &self,
        profile: &str,
        min_valid_ms: i64,
        verified_only: bool,
    ) -> Option<Credentials> {
        let offset = self.with_state(profile, |s| {
            s.tenant.as_ref().map(|t| t.clock_offset_ms()).unwrap_or(0)
        });
        let now = self.now() + offset;
        self.with_state(profile, |s| {
            let a = s.active.as_ref().filter(|a| a.verified || !verified_only)?;
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
}
