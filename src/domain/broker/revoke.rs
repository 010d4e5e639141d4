//! Revocation: deleting keys on the tenant, and the outbox that retries deletes the tenant
//! did not confirm, with backoff.

use super::*;

/// What a delete must find on the tenant before it is sent.
enum Expect {
    /// The exact comment the key was minted with (the ledger or the outbox knows it).
    Tag(String),
    /// Found by our installation's tag prefix (an orphan): the prefix, and the tenant's record
    /// of who created it must match the Primary key's own where the tenant says.
    Prefix,
}

impl Broker {
    /// Delete keys on `tenant` now; failures wait in the outbox. Marks them revoked in the
    /// ledger. A delete goes only to the tenant that minted the key and only for ids that tenant
    /// lists with our tag: ids are small integers, and on another tenant (or after the tenant
    /// reused one) the same id is someone else's key. Ids the tenant does not list so are
    /// forgotten, never deleted. Returns the ids deleted.
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
        let origin = Origin {
            base_url: tenant.base_url().trim_end_matches('/').to_string(),
            primary_key_id: self.with_state(profile, |s| s.primary_id),
        };
        let expected: Vec<(i64, Expect)> = self.with_ledger(|l| {
            ids.iter()
                .map(|&id| {
                    let e = l
                        .tag_of(id, &origin.base_url)
                        .map_or(Expect::Prefix, Expect::Tag);
                    (id, e)
                })
                .collect()
        });
        // One listing: the ids, and the Primary key's own record (who we are on this tenant).
        let mut probe: Vec<i64> = ids.to_vec();
        probe.extend(origin.primary_key_id);
        let listed = self
            .list_ms(tenant, profile, vec![Filter::ids(&probe)])
            .await;
        let (targets, foreign) = match &listed {
            Ok(records) => {
                let creator = origin
                    .primary_key_id
                    .and_then(|pid| records.iter().find(|r| r.id == pid))
                    .and_then(|r| r.user_name.clone().or(r.created_by.clone()));
                let prefix = self.tag_prefix(profile);
                let mut targets = Vec::new();
                let mut foreign = Vec::new();
                for (id, expect) in &expected {
                    let record = records.iter().find(|r| r.id == *id);
                    let ours = record.is_some_and(|r| match expect {
                        Expect::Tag(tag) => r.comment.as_deref() == Some(tag.as_str()),
                        Expect::Prefix => tagged(r, &prefix) && created_by(r, creator.as_deref()),
                    });
                    if ours {
                        targets.push(*id);
                    } else {
                        foreign.push(*id);
                    }
                }
                (targets, foreign)
            }
            // Without the listing nothing is known: nothing is deleted, all wait for a retry.
            Err(_) => (Vec::new(), Vec::new()),
        };
        if !foreign.is_empty() {
            tracing::warn!(
                ?foreign,
                tenant = %origin.base_url,
                "not deleting keys the tenant does not list with our tag; forgetting them"
            );
            let _ = self.update_ledger(|l| {
                for &id in &foreign {
                    l.unqueue(id, &origin.base_url);
                    if let Some(k) = l.by_id_mut(id, &origin.base_url)
                        && k.state != KeyState::Revoked
                    {
                        k.state = KeyState::Revoked;
                        k.note = Some("not on the tenant with our tag: forgotten".into());
                    }
                }
            });
        }
        // Ids the tenant did not delete, with why: all of them when the listing or the call
        // failed; after a reply that does not say (`{"reply": true}`, or a count short of the
        // ids), the ones a listing still shows.
        let (failed, error): (Vec<i64>, Option<TenantError>) = match listed {
            Err(e) => (ids.to_vec(), Some(e)),
            Ok(_) if targets.is_empty() => (Vec::new(), None),
            Ok(_) => {
                crash_point("before-delete");
                match tenant.delete(&targets).await {
                    Ok(DeleteOutcome::Count(n)) if n >= targets.len() as u64 => (Vec::new(), None),
                    Ok(outcome) => match self.still_listed(tenant, profile, &targets).await {
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
                    Err(e) => (targets.clone(), Some(e)),
                }
            }
        };
        let revoked: Vec<i64> = targets
            .iter()
            .copied()
            .filter(|id| !failed.contains(id))
            .collect();
        let now = self.now();
        let _ = self.update_ledger(|l| {
            for &id in &revoked {
                l.unqueue(id, &origin.base_url);
                if let Some(k) = l.by_id_mut(id, &origin.base_url) {
                    k.state = KeyState::Revoked;
                    k.note = Some(why.to_string());
                }
            }
            let Some(e) = &error else { return };
            for &id in &failed {
                let tag = l
                    .tag_of(id, &origin.base_url)
                    .or_else(|| listed_tag(&expected, id).map(str::to_string));
                if let Some(k) = l.by_id_mut(id, &origin.base_url)
                    && k.state != KeyState::Revoked
                {
                    k.state = KeyState::Retiring;
                    k.retire_at_ms = Some(now);
                }
                let attempts = l
                    .outbox
                    .iter()
                    .find(|o| o.id == id && o.on_tenant(&origin.base_url))
                    .map_or(0, |o| o.attempts);
                l.queue_delete(
                    id,
                    profile,
                    &origin,
                    tag,
                    &e.message,
                    now + backoff_ms(attempts.saturating_add(1)),
                );
            }
        });
        // Forgotten ids count as settled: the caller's key is gone from our view either way.
        let settled: Vec<i64> = revoked.iter().chain(&foreign).copied().collect();
        self.with_state(profile, |s| {
            if s.active.as_ref().is_some_and(|a| settled.contains(&a.id)) {
                s.active = None;
            }
        });
        if !revoked.is_empty() {
            tracing::info!(ids = ?revoked, reason = why, "revoked keys");
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
        let url = tenant.base_url().to_string();
        let ids: Vec<i64> =
            self.with_ledger(|l| l.live(profile, &url).filter_map(|k| k.id).collect());
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
        if self.queued(&url, &ids) {
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
        let url = tenant.base_url().to_string();
        let mut ids = self.with_ledger(|l| l.live_ids(profile, &url));
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
        if self.queued(&url, &ids) {
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
                .filter(|k| k.on_tenant(&url))
            {
                k.state = KeyState::Revoked;
                k.note.get_or_insert_with(|| "revoked on logout".into());
            }
        });
        self.with_state(profile, |s| s.active = None);
        Ok(revoked)
    }
}

impl Broker {
    /// Whether a delete of any of `ids` on the tenant at `url` still waits in the outbox.
    fn queued(&self, url: &str, ids: &[i64]) -> bool {
        self.with_ledger(|l| {
            l.outbox
                .iter()
                .any(|o| ids.contains(&o.id) && o.on_tenant(url))
        })
    }
}

/// Whether the tenant's record of who created `r` matches `creator` (the Primary key's user);
/// a tenant that records neither is taken at its word.
fn created_by(r: &KeyRecord, creator: Option<&str>) -> bool {
    let Some(creator) = creator else {
        return true;
    };
    let recorded = r.created_by.as_deref().or(r.user_name.as_deref());
    recorded.is_none_or(|who| who == creator)
}

fn listed_tag(expected: &[(i64, Expect)], id: i64) -> Option<&str> {
    expected
        .iter()
        .find(|(i, _)| *i == id)
        .and_then(|(_, e)| match e {
            Expect::Tag(t) => Some(t.as_str()),
            Expect::Prefix => None,
        })
}
