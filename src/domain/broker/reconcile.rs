//! Reconciliation: list the tenant's keys carrying our tag and settle them against the ledger
//! (orphans revoked, pending entries resolved), measuring the tenant's clock on the way.

use super::*;

pub(super) fn tagged(record: &KeyRecord, prefix: &str) -> bool {
    record
        .comment
        .as_deref()
        .is_some_and(|c| c.starts_with(prefix))
}

impl Broker {
    /// Keys that have not expired by `now` (tenant time, ms), in the tenant's unit.
    pub(super) fn unexpired(&self, tenant: &Arc<dyn Tenant>, now: i64) -> Filter {
        self.expiration_filter(tenant, "gte", now)
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
        self.with_state(profile, |s| {
            s.listing = false;
            s.listings_done += 1;
        });
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
        let mut changed: Vec<(i64, String)> = Vec::new();
        let ledger = self.ledger_snapshot();
        let url = tenant.base_url().to_string();
        for record in records.iter().filter(|r| tagged(r, &prefix)) {
            let entry = ledger.keys.iter().find(|k| {
                (k.id == Some(record.id) && k.on_tenant(&url))
                    || record.comment.as_deref() == Some(&k.tag)
            });
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
            // Verified again: the console may have broadened it since.
            if keep && !expired {
                match reverify::changed_message(record, &p) {
                    Some(why) => changed.push((record.id, why)),
                    None => report.verified.push(record.id),
                }
            }
        }
        if let Some(id) = active_id.filter(|id| report.verified.contains(id)) {
            self.with_state(profile, |s| {
                if let Some(a) = s.active.as_mut().filter(|a| a.id == id) {
                    a.verified = true;
                }
            });
        }
        // Ledger keys the tenant no longer lists: deleted elsewhere, or expired and purged.
        // Only keys older than the listing can be judged by it.
        let listed: Vec<i64> = records.iter().map(|r| r.id).collect();
        let mut unresolved = false;
        let _ = self.update_ledger(|l| {
            for k in l.keys.iter_mut().filter(|k| {
                k.profile == profile
                    && k.on_tenant(&url)
                    && k.created_ms < listed_at - LISTING_MARGIN_MS
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
            // Keys minted on a tenant the profile no longer uses (the config or the
            // environment moved it without a login): never touched here; forgotten once
            // they have expired.
            let local_now = self.now();
            for k in l.keys.iter_mut().filter(|k| {
                k.profile == profile
                    && k.state != KeyState::Revoked
                    && !k.on_tenant(&url)
                    && k.expires_ms <= local_now
            }) {
                k.state = KeyState::Revoked;
                k.note = Some("expired on a tenant this profile no longer uses".into());
            }
        });
        if active_id.is_some_and(|id| report.forgotten.contains(&id)) {
            self.with_state(profile, |s| s.active = None);
            let _ = self.inner.store.delete(&minted_account(profile)).await;
        }
        orphans.extend(self.over_cap(&p, &url));
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
        for (id, why) in &changed {
            self.drop_changed(&tenant, profile, *id, why).await;
            report.changed.push(why.clone());
        }
        // The active key was one of them: replace it now rather than at the next scan.
        if changed.iter().any(|(id, _)| Some(*id) == active_id)
            && let Err(e) = self.mint_now(profile, true).await
        {
            tracing::warn!(profile, error = %e, "could not replace a key changed on the tenant");
        }
        let next = self.next_reconcile_in(profile, unresolved);
        self.with_state(profile, |s| s.next_reconcile_ms = self.now() + next);
        if !report.revoked.is_empty() || !report.forgotten.is_empty() || !report.changed.is_empty()
        {
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
        let url = tenant.base_url().to_string();
        // A mint in flight settles its own pending entry, and this listing could not judge an
        // entry that young anyway: looking it up would be a call spent for nothing.
        let minting = self.mint_lock(profile).try_lock().is_err();
        let (ids, pending_expiries) = self.with_ledger(|l| {
            let ids = l.live_ids(profile, &url);
            let pending: Vec<i64> = l
                .keys
                .iter()
                .filter(|k| k.profile == profile && k.state == KeyState::Pending && k.id.is_none())
                .filter(|k| k.on_tenant(&url))
                .filter(|k| !(minting && k.created_ms >= now - LISTING_MARGIN_MS))
                .map(|k| k.expires_ms)
                .collect();
            (ids, pending)
        });
        let file = &self.inner.ledger_file;
        let lost = (file.recovered_from.is_some() || file.missing_at_load)
            && !file.installation_new
            && !self.with_state(profile, |s| s.full_scan_done);
        let mut records = Vec::new();
        if !ids.is_empty() {
            records.extend(
                self.list_ms(tenant, profile, vec![Filter::ids(&ids)])
                    .await?,
            );
        } else if !tenant.clock_offset_known() && !lost {
            // Nothing to look up, but the first mint needs the tenant's clock: read the Primary
            // key's own record now (the mint waits for this listing instead of probing itself).
            let primary = self
                .with_state(profile, |s| s.primary_id)
                .unwrap_or_default();
            self.list_ms(tenant, profile, vec![Filter::ids(&[primary])])
                .await?;
        }
        for expires in pending_expiries {
            let window = vec![
                self.expiration_filter(tenant, "gte", expires - 1000),
                self.expiration_filter(tenant, "lte", expires + 1000),
            ];
            records.extend(self.list_ms(tenant, profile, window).await?);
        }
        // Once after the ledger was lost (or missing: its absence cannot tell a first start from
        // a loss), every unexpired key, to find our tags; it measures the clock on the way.
        if lost {
            records.extend(
                self.list_ms(tenant, profile, vec![self.unexpired(tenant, now)])
                    .await?,
            );
            self.with_state(profile, |s| s.full_scan_done = true);
        }
        records.sort_by_key(|r| r.id);
        records.dedup_by_key(|r| r.id);
        Ok(records)
    }

    /// Retiring keys beyond `max_live_keys` (the active key counts as one), oldest first: the
    /// cap holds even for keys still in use.
    pub(super) fn over_cap(&self, p: &Profile, url: &str) -> Vec<i64> {
        // Remote sessions' keys have their own cap (`remote_key.rs`).
        let prefix = self.tag_prefix(&p.name);
        let mut live: Vec<LedgerKey> = self.with_ledger(|l| {
            l.live(&p.name, url)
                .filter(|k| k.state == KeyState::Retiring && k.id.is_some())
                .filter(|k| !remote_key::is_remote_tag(&k.tag, &prefix))
                .cloned()
                .collect()
        });
        live.sort_by_key(|k| k.generation);
        let allowed_retiring = p.max_live_keys.saturating_sub(1);
        let excess = live.len().saturating_sub(allowed_retiring);
        live.iter().take(excess).filter_map(|k| k.id).collect()
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
