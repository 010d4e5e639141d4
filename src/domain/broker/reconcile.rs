//! Reconciliation: list the tenant's keys carrying our tag and settle them against the ledger
//! (orphans revoked, pending entries resolved), measuring the tenant's clock on the way.

use super::*;

/// Keys that have not expired by `now` (tenant time).
pub(super) fn unexpired(now: i64) -> Filter {
    Filter {
        field: "expiration".into(),
        operator: "gte".into(),
        value: serde_json::json!(now),
    }
}

pub(super) fn tagged(record: &KeyRecord, prefix: &str) -> bool {
    record
        .comment
        .as_deref()
        .is_some_and(|c| c.starts_with(prefix))
}

impl Broker {
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
        let next = self.next_reconcile_in(profile, unresolved);
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
    pub(super) async fn reconcile_listing(
        &self,
        tenant: &Arc<dyn Tenant>,
        profile: &str,
        now: i64,
    ) -> Result<Vec<KeyRecord>, TenantError> {
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

    pub(super) fn note_failure(&self, profile: &str, e: &TenantError) {
        self.with_state(profile, |s| {
            if e.kind.is_auth() {
                s.refused = true;
            }
            s.last_error = Some(e.clone().into());
        });
        self.emit_status(profile);
    }
}
