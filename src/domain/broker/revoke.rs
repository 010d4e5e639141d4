//! Revocation: deleting keys on the tenant, and the outbox that retries deletes the tenant
//! did not confirm, with backoff.

use super::*;

impl Broker {
    /// Delete keys now; failures wait in the outbox. Marks them revoked in the ledger.
    pub(super) async fn revoke_ids(
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
        // Ids the tenant did not delete, with why: all of them when the call failed; after a
        // reply that does not say (`{"reply": true}`, or a count short of the ids), the ones a
        // listing still shows.
        let (failed, error): (Vec<i64>, Option<TenantError>) = match tenant.delete(ids).await {
            Ok(DeleteOutcome::Count(n)) if n >= ids.len() as u64 => (Vec::new(), None),
            Ok(outcome) => match self.still_listed(tenant, profile, ids).await {
                Some(left) if !left.is_empty() => {
                    let e = TenantError {
                        kind: ErrorKind::Server,
                        status: None,
                        message: format!(
                            "the tenant answered delete with {outcome:?} but still lists key(s) {left:?}"
                        ),
                        uncertain: false,
                    };
                    (left, Some(e))
                }
                // Gone, or the listing failed: the tenant said it accepted the call.
                _ => (Vec::new(), None),
            },
            Err(e) => (ids.to_vec(), Some(e)),
        };
        let now = self.now();
        let _ = self.update_ledger(|l| {
            for &id in ids {
                match &error {
                    Some(e) if failed.contains(&id) => {
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
                    _ => {
                        l.outbox.retain(|o| o.id != id);
                        if let Some(k) = l.by_id_mut(id) {
                            k.state = KeyState::Revoked;
                            k.note = Some(why.to_string());
                        }
                    }
                }
            }
        });
        let revoked: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !failed.contains(id))
            .collect();
        if !revoked.is_empty() {
            tracing::info!(ids = ?revoked, reason = why, "revoked keys");
            self.with_state(profile, |s| {
                if s.active.as_ref().is_some_and(|a| revoked.contains(&a.id)) {
                    s.active = None;
                }
            });
        }
        if let Some(e) = error {
            tracing::warn!(ids = ?failed, error = %e, "revocation failed; queued for retry");
            if e.kind.is_auth() {
                self.with_state(profile, |s| {
                    s.refused = true;
                    s.last_error = Some(e.clone().into());
                });
                self.emit_status(profile);
            }
        }
        revoked
    }

    /// Which of `ids` the tenant still lists unexpired; `None` when it cannot be asked.
    async fn still_listed(
        &self,
        tenant: &Arc<dyn Tenant>,
        profile: &str,
        ids: &[i64],
    ) -> Option<Vec<i64>> {
        let now = self.tenant_now(tenant);
        let records = self
            .list_ms(tenant, profile, vec![Filter::ids(ids)])
            .await
            .ok()?;
        Some(
            records
                .iter()
                .filter(|r| ids.contains(&r.id) && r.expiration.is_none_or(|e| e > now))
                .map(|r| r.id)
                .collect(),
        )
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

    pub(super) async fn revoke_all(&self, profile: &str) -> Result<Vec<i64>, BrokerError> {
        let tenant = self.tenant_of(profile)?;
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;
        let prefix = self.tag_prefix(profile);
        let mut ids = self.with_ledger(|l| l.live_ids(profile));
        let now = self.tenant_now(&tenant);
        let on_tenant = self
            .list_ms(&tenant, profile, vec![self.unexpired(&tenant, now)])
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
}
