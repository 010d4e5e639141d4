//! Verification again, whenever the inventory is read. The console can edit a key's roles and
//! level after scanmint verified it, so a live key is checked again at start-up (before a key
//! restored from the store is handed out), at every reconcile and in `doctor`. A key that is no
//! longer exactly the narrow role at the Standard level is revoked and replaced, and every
//! editor is told why.

use super::verify::check_grant;
use super::*;

/// Why a live key is no longer acceptable, in words for a person.
pub(super) fn changed_message(record: &KeyRecord, p: &Profile) -> Option<String> {
    check_grant(record, p).err()?;
    Some(format!(
        "key {} was changed on the tenant after scanmint verified it: it now has the roles {:?} at the {} level, not exactly [{:?}] at Standard; scanmint revoked it and no longer hands it out",
        record.id,
        record.roles,
        record.security_level.as_deref().unwrap_or("unlisted"),
        p.role
    ))
}

impl Broker {
    /// Check a key restored from the store (at start-up) against the inventory before anyone
    /// gets it. Called with the mint lock held. A key the tenant no longer lists is forgotten;
    /// a changed one is revoked; either way the caller mints a fresh one. A tenant that cannot
    /// be asked right now does not stop a key that was verified when it was minted: it is
    /// handed out, and the next reconcile checks it.
    pub(super) async fn recheck_restored(&self, profile: &str) -> Result<(), BrokerError> {
        let Some(active) = self.with_state(profile, |s| s.active.clone().filter(|a| !a.verified))
        else {
            return Ok(());
        };
        let tenant = self.tenant_of(profile)?;
        let p = self.profile(profile);
        let records = match self
            .list_ms(&tenant, profile, vec![Filter::ids(&[active.id])])
            .await
        {
            Ok(records) => records,
            Err(e) if e.kind.is_transient() => {
                tracing::warn!(key_id = active.id, error = %e, "cannot check the restored key now; serving it, the next reconcile checks it");
                self.with_state(profile, |s| {
                    if let Some(a) = s.active.as_mut() {
                        a.verified = true;
                    }
                    s.next_reconcile_ms = 0;
                });
                return Ok(());
            }
            Err(e) => {
                self.note_failure(profile, &e);
                return Err(e.into());
            }
        };
        let listed: Vec<&KeyRecord> = records.iter().filter(|r| r.id == active.id).collect();
        match listed.as_slice() {
            [record] => match changed_message(record, &p) {
                None => self.with_state(profile, |s| {
                    if let Some(a) = s.active.as_mut().filter(|a| a.id == active.id) {
                        a.verified = true;
                    }
                }),
                Some(why) => self.drop_changed(&tenant, profile, active.id, &why).await,
            },
            [] => {
                tracing::info!(
                    key_id = active.id,
                    "the restored key is gone from the tenant; minting a new one"
                );
                let _ = self.update_ledger(|l| {
                    if let Some(k) = l.by_id_mut(active.id, tenant.base_url()) {
                        k.state = KeyState::Revoked;
                        k.note = Some("not on the tenant".into());
                    }
                });
                self.forget_active(profile, active.id).await;
            }
            _ => {
                let why = format!(
                    "the tenant lists key {} more than once, so it cannot be verified; scanmint revoked it",
                    active.id
                );
                self.drop_changed(&tenant, profile, active.id, &why).await;
            }
        }
        Ok(())
    }

    /// Revoke a live key that failed re-verification, make sure it is never handed out again
    /// (even while a failed delete waits in the outbox), and tell every editor why.
    pub(super) async fn drop_changed(
        &self,
        tenant: &Arc<dyn Tenant>,
        profile: &str,
        id: i64,
        why: &str,
    ) {
        tracing::warn!(key_id = id, reason = why, "a live key failed verification");
        self.revoke_ids(
            tenant,
            profile,
            &[id],
            "changed on the tenant after verification",
        )
        .await;
        let _ = self.update_ledger(|l| {
            if let Some(k) = l.by_id_mut(id, tenant.base_url()) {
                if k.state == KeyState::Active {
                    k.state = KeyState::Retiring;
                }
                k.note = Some(why.to_string());
            }
        });
        self.forget_active(profile, id).await;
        self.with_state(profile, |s| {
            s.last_error = Some(BrokerError::new("key_changed", why))
        });
        self.emit(Event::Notice {
            profile: profile.into(),
            message: format!("scanmint: {why}"),
        });
        self.emit_status(profile);
    }

    /// The active key `id` is not to be handed out any more: out of memory and the store.
    async fn forget_active(&self, profile: &str, id: i64) {
        let was_active = self.with_state(profile, |s| {
            let hit = s.active.as_ref().is_some_and(|a| a.id == id);
            if hit {
                s.active = None;
            }
            hit
        });
        if was_active {
            let _ = self.inner.store.delete(&minted_account(profile)).await;
            self.emit(Event::KeyChanged {
                profile: profile.into(),
                generation: None,
            });
        }
    }
}
