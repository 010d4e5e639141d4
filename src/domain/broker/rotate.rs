//! Rotation on demand and after a scanner says the key failed (`scan_failed`); scheduled
//! rotation runs from `schedule.rs`.

use super::*;

impl Broker {
    /// Replace the active key now, whatever its age.
    pub async fn rotate(&self, profile: &str) -> Result<Credentials, BrokerError> {
        self.load(profile).await;
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;
        self.mint_now(profile, true).await
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
            // The key is already gone (reconciliation found it deleted): the scanner needs one now,
            // unless minting failed just now and its backoff has not ended (every scanner in a
            // retry loop would otherwise hammer the tenant).
            self.backoff(profile)?;
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
            if let Some(k) = l.by_id_mut(key_id, tenant.base_url()) {
                k.state = KeyState::Revoked;
            }
        });
        self.backoff(profile)?;
        let fresh = self.mint_now(profile, true).await?;
        Ok(ScanFailure::Replaced(fresh.generation))
    }
}
