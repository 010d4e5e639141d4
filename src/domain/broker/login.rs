//! Login (storing a Primary key after checking it can mint), logout, and the canary that proves
//! a Primary key still mints without handing the key to anyone.

use super::*;

/// What is worth telling a person about their Primary key (its own inventory record).
pub(super) async fn primary_key_notes(
    tenant: &Arc<dyn Tenant>,
    primary: &PrimaryKey,
) -> Vec<String> {
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

impl Broker {
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
        // What was logged in before: its keys are dealt with below if the tenant changes.
        self.load(profile).await;
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
        // The stored key is bound to this URL: a profile naming another one will not use it.
        if let Some(configured) = url_moved(p.base_url.as_deref(), &primary.base_url) {
            notes.push(format!(
                "the profile's base_url is {configured}, not {}: once the daemon restarts, this key is not used until base_url says {}",
                primary.base_url, primary.base_url
            ));
        }
        notes.extend(self.leave_old_tenant(profile, &primary.base_url).await);

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

    /// Logging in to another tenant: revoke the keys minted on the old one there, while its
    /// Primary key is still at hand; what cannot be revoked is left to expire, and the login
    /// outcome says so. Their ids are never sent to the new tenant, where they are someone
    /// else's keys.
    async fn leave_old_tenant(&self, profile: &str, new_url: &str) -> Vec<String> {
        let (old_url, old_tenant) = self.with_state(profile, |s| {
            (s.base_url.clone(), s.tenant.clone().filter(|_| !s.refused))
        });
        let Some(old_url) = old_url.filter(|u| !same_tenant(u, new_url)) else {
            return Vec::new();
        };
        let ids = self.with_ledger(|l| l.live_ids(profile, &old_url));
        if ids.is_empty() {
            return Vec::new();
        }
        if let Some(old) = old_tenant.filter(|t| same_tenant(t.base_url(), &old_url)) {
            self.revoke_ids(&old, profile, &ids, "revoked: logged in to another tenant")
                .await;
        }
        let left = self.update_ledger(|l| {
            l.outbox
                .retain(|o| !(o.profile == profile && o.on_tenant(&old_url)));
            let mut left = Vec::new();
            for k in l.keys.iter_mut().filter(|k| {
                k.profile == profile && k.state != KeyState::Revoked && k.on_tenant(&old_url)
            }) {
                k.state = KeyState::Revoked;
                k.note = Some(format!(
                    "left to expire on {old_url}: logged in to another tenant"
                ));
                left.push((k.id, k.expires_ms));
            }
            left
        });
        let left = left.unwrap_or_default();
        if left.is_empty() {
            return vec![format!(
                "revoked the keys minted on the previous tenant {old_url}"
            )];
        }
        let last = left.iter().map(|(_, e)| *e).max().unwrap_or_default();
        vec![format!(
            "{} key(s) minted on the previous tenant {old_url} could not be revoked there; they are left to expire (by {})",
            left.len(),
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_millis(last.max(0) as u64)
            )
        )]
    }

    /// Mint, verify and return the id of a short-lived key; it is not stored and not active.
    pub(super) async fn canary(
        &self,
        tenant: &Arc<dyn Tenant>,
        p: &Profile,
        primary_id: i64,
    ) -> Result<(i64, Secret), BrokerError> {
        self.measure_clock(tenant, &p.name, Some(primary_id), false)
            .await;
        let now = self.tenant_now(tenant);
        let new_tag = || {
            format!(
                "{}canary-{}",
                self.tag_prefix(&p.name),
                secret::random_alphanumeric(12)
            )
        };
        let tag = new_tag();
        let expires_ms = now + CANARY_TTL_MS;
        let reply = self
            .generate_tracked(
                tenant,
                p,
                |_| LedgerKey {
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
                    base_url: Some(tenant.base_url().trim_end_matches('/').to_string()),
                    primary_key_id: Some(primary_id),
                },
                new_tag,
            )
            .await
            .map_err(|(e, _)| e)?;
        // Retiring with its grace already over: if the caller cannot delete it, the scheduler will.
        let _ = self.update_ledger(|l| {
            if let Some(k) = l.by_id_mut(reply.id, tenant.base_url()) {
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
}
