//! Keys for sessions on the restricted (remote) socket: minted under their own tag, `scanmint
//! <owner> <profile> remote-<random>`, so the console shows which keys went to another machine,
//! and kept apart from the workstation's cached key.
//!
//! A remote key is never written to the store. It is a retiring ledger entry (retired at its
//! expiry) leased by the remote sessions using it: reconciliation keeps it (a retiring key we
//! hold by id), the scheduler revokes it once no session uses it, and logout or `revoke --all`
//! revoke it like any other key of the profile. Remote sessions share one such key (single
//! flight under the profile's mint lock) while it is valid enough.

use super::*;

/// What follows the profile in a remote key's tag.
pub const REMOTE_TAG: &str = "remote-";

/// The key is one minted for a remote session of the profile whose tag prefix is `prefix`.
pub(super) fn is_remote_tag(tag: &str, prefix: &str) -> bool {
    tag.strip_prefix(prefix)
        .is_some_and(|rest| rest.starts_with(REMOTE_TAG))
}

impl Broker {
    /// A key for a remote session, valid for at least `min_valid`, with the lease that keeps it
    /// alive while the session uses it. Never the workstation's own key.
    pub async fn remote_credentials(
        &self,
        profile: &str,
        min_valid: Duration,
    ) -> Result<(Credentials, Lease), BrokerError> {
        let p = self.profile(profile);
        let ttl_ms = p.ttl.as_millis() as i64;
        let min_valid_ms = (min_valid.as_millis() as i64).min(ttl_ms / 2);
        self.load(profile).await;
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;
        if let Some(c) = self.cached_remote(profile, min_valid_ms) {
            let lease = self.lease(profile, c.key_id);
            return Ok((c, lease));
        }
        self.backoff(profile)?;
        let tenant = self.tenant_of(profile)?;
        let primary_key_id = self.with_state(profile, |s| s.primary_id);
        self.measure_clock(&tenant, profile, primary_key_id, true)
            .await;
        let now = self.tenant_now(&tenant);
        let expires_ms = now + ttl_ms;
        let local_expiry = self.now() + ttl_ms;
        let prefix = self.tag_prefix(profile);
        let new_tag = || format!("{prefix}{REMOTE_TAG}{}", secret::random_alphanumeric(16));
        let tag = new_tag();
        let mut generation = 0;
        let reply = self
            .generate_tracked(
                &tenant,
                &p,
                |l| {
                    generation = l.next_generation(profile);
                    LedgerKey {
                        id: None,
                        profile: profile.to_string(),
                        generation,
                        tag: tag.clone(),
                        role: p.role.clone(),
                        created_ms: now,
                        expires_ms,
                        rotate_at_ms: expires_ms,
                        retire_at_ms: Some(local_expiry),
                        state: KeyState::Pending,
                        note: Some("handed to a remote session".into()),
                        base_url: Some(tenant.base_url().trim_end_matches('/').to_string()),
                        primary_key_id,
                    }
                },
                new_tag,
            )
            .await
            .map_err(|(e, kind)| {
                if kind.is_some_and(|k| k.is_auth()) {
                    self.with_state(profile, |s| s.refused = true);
                }
                e
            })?;
        // Leased before it becomes a retiring entry: the scheduler never sees it unused.
        let lease = self.lease(profile, reply.id);
        let _ = self.update_ledger(|l| {
            if let Some(k) = l.by_id_mut(reply.id, tenant.base_url()) {
                k.state = KeyState::Retiring;
                k.retire_at_ms = Some(local_expiry);
            }
        });
        tracing::info!(key_id = reply.id, generation, fingerprint = %reply.key.fingerprint(), "minted a key for a remote session");
        let active = ActiveKey {
            id: reply.id,
            key: reply.key,
            expires_ms,
            generation,
            role: p.role.clone(),
            verified: true,
        };
        self.with_state(profile, |s| s.remote = Some(active));
        // Remote keys have their own cap: the oldest beyond `max_live_keys` go.
        let excess = self.remote_over_cap(&p, tenant.base_url());
        if !excess.is_empty() {
            self.revoke_ids(&tenant, profile, &excess, "over max_live_keys (remote)")
                .await;
        }
        self.emit_status(profile);
        self.inner.wake.notify_one();
        let c = self.cached_remote(profile, 0).ok_or_else(|| {
            BrokerError::new(
                "expired",
                "the new key expired before it could be used: check the clocks",
            )
        })?;
        Ok((c, lease))
    }

    /// A remote session's scanner says `key_id` failed: if the tenant rejects it, it is revoked
    /// and the next remote session gets a new key. Checked first, so a remote cannot make the
    /// workstation mint at will by reporting failures.
    pub async fn remote_scan_failed(&self, profile: &str, key_id: i64) -> Result<(), BrokerError> {
        self.load(profile).await;
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;
        let Some(key) = self.with_state(profile, |s| {
            s.remote
                .as_ref()
                .filter(|a| a.id == key_id)
                .map(|a| a.key.clone())
        }) else {
            return Ok(());
        };
        let now = self.now();
        if self.with_state(profile, |s| {
            s.validated_at
                .get(&key_id)
                .is_some_and(|t| now - t < VALIDATED_FRESH_MS)
        }) {
            return Ok(());
        }
        let tenant = self.tenant_of(profile)?;
        if tenant.validate(key_id, &key).await? {
            self.with_state(profile, |s| s.validated_at.insert(key_id, now));
            return Ok(());
        }
        tracing::warn!(
            key_id,
            "the tenant rejects a remote session's key; revoking it"
        );
        self.with_state(profile, |s| s.remote = None);
        self.revoke_ids(&tenant, profile, &[key_id], "rejected by the tenant")
            .await;
        Ok(())
    }

    /// The remote key handed out last, if it is still live in the ledger and valid long enough.
    fn cached_remote(&self, profile: &str, min_valid_ms: i64) -> Option<Credentials> {
        let offset = self.with_state(profile, |s| {
            s.tenant.as_ref().map(|t| t.clock_offset_ms()).unwrap_or(0)
        });
        let now = self.now() + offset;
        let id = self.with_state(profile, |s| s.remote.as_ref().map(|a| a.id))?;
        let url = self
            .with_state(profile, |s| s.base_url.clone())
            .unwrap_or_default();
        // Revoked meanwhile (unused, logout, reconciliation): never handed out again.
        let live = self.with_ledger(|l| {
            l.live(profile, &url)
                .any(|k| k.id == Some(id) && k.state == KeyState::Retiring)
        });
        self.with_state(profile, |s| {
            if !live {
                s.remote = None;
            }
            let a = s.remote.as_ref()?;
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

    /// Live remote keys beyond `max_live_keys`, oldest first.
    fn remote_over_cap(&self, p: &Profile, url: &str) -> Vec<i64> {
        let prefix = self.tag_prefix(&p.name);
        let mut live: Vec<LedgerKey> = self.with_ledger(|l| {
            l.live(&p.name, url)
                .filter(|k| k.id.is_some() && is_remote_tag(&k.tag, &prefix))
                .cloned()
                .collect()
        });
        live.sort_by_key(|k| k.generation);
        let excess = live.len().saturating_sub(p.max_live_keys);
        live.iter().take(excess).filter_map(|k| k.id).collect()
    }
}
