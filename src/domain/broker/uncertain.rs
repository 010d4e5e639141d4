//! Exactly-once minting when `generate`'s outcome is unknown (a 5xx, a dropped connection, a
//! timeout): the key may exist, but its secret was lost with the reply, so it can never be
//! adopted. Before `generate` is sent again, the key is looked up by its unique comment tag
//! and revoked; a key that did not show up stays pending for reconciliation to catch if its
//! request lands late.

use super::*;

impl Broker {
    /// Settle the pending entry of an uncertain `generate`: `Ok` when no key of it is live
    /// (found and revoked, or not on the tenant), so another `generate` cannot make two; `Err`
    /// when that cannot be told (the lookup or the delete failed).
    pub(super) async fn settle_uncertain(
        &self,
        tenant: &Arc<dyn Tenant>,
        profile: &str,
        pending: &LedgerKey,
    ) -> Result<(), BrokerError> {
        // The tenant has no comment filter: the exact expiry we asked for narrows the listing
        // to a few keys, the tag picks ours.
        let window = vec![
            self.expiration_filter(tenant, "gte", pending.expires_ms - 1000),
            self.expiration_filter(tenant, "lte", pending.expires_ms + 1000),
        ];
        let landed: Vec<i64> = self
            .list_ms(tenant, profile, window)
            .await?
            .into_iter()
            .filter(|r| r.comment.as_deref() == Some(pending.tag.as_str()))
            .map(|r| r.id)
            .collect();
        let Some(&first) = landed.first() else {
            tracing::info!(
                tag = pending.tag,
                "the uncertain generate minted nothing (yet)"
            );
            // Looked for again by reconciliation until no request could still land.
            self.with_state(profile, |s| s.next_reconcile_ms = 0);
            return Ok(());
        };
        let _ = self.update_ledger(|l| {
            if let Some(k) = l.key_mut(&pending.tag) {
                k.id = Some(first);
            }
        });
        tracing::info!(
            ?landed,
            "the uncertain generate minted a key whose secret was lost; revoking it"
        );
        let revoked = self
            .revoke_ids(
                tenant,
                profile,
                &landed,
                "uncertain generate: minted, but its secret was lost with the reply",
            )
            .await;
        if revoked.len() == landed.len() {
            Ok(())
        } else {
            Err(BrokerError::new(
                "revoke_failed",
                format!(
                    "an uncertain generate minted key(s) {landed:?} that could not be revoked yet (queued)"
                ),
            ))
        }
    }
}
