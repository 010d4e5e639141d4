//! Minting: the cache, single flight per profile, backoff after failures, and the crash points
//! that let tests kill the process between generating a key and recording it.

use super::*;

/// Tries of one `generate` through transient failures (each after settling the one before).
const GENERATE_TRIES: u32 = 3;
/// No failed `generate` is settled or tried again once this long has passed since the first:
/// a scan waits for a short outage, not for a slow tenant.
const GENERATE_BUDGET: Duration = Duration::from_secs(8);

/// 250 ms, 500 ms, ... with jitter: a scan waiting for its first key rides through a short
/// outage instead of failing at once.
fn generate_backoff(tries: u32) -> Duration {
    let ceiling = 250u64 << tries.saturating_sub(1).min(4);
    Duration::from_millis(rand::rng().random_range(ceiling / 2..=ceiling))
}

/// A refused `generate`, in words a person can act on, always quoting the tenant; a guess at
/// the cause is added only when the tenant's own words point to it.
pub(super) fn explain_generate_error(e: &TenantError, p: &Profile, unit: TimeUnit) -> BrokerError {
    match e.kind {
        ErrorKind::Forbidden => BrokerError::new(
            "primary_refused",
            format!(
                "the Primary key may not mint keys with the role {:?}: {}. {PRIMARY_KEY_GUIDANCE}",
                p.role, e.message
            ),
        ),
        ErrorKind::Unauthorized => BrokerError::new(
            "primary_refused",
            format!(
                "the tenant does not accept the Primary key (wrong id or secret, expired or deleted): run `scanmint login` again. ({})",
                e.message
            ),
        ),
        ErrorKind::Server if e.status == Some(500) && !e.uncertain => {
            let said = e.message.to_ascii_lowercase();
            let hint = if said.contains("role") {
                " (does that role exist? set `role` in the profile)".to_string()
            } else if said.contains("expir") {
                format!(" (scanmint sent `expiration` in epoch {})", unit.name())
            } else {
                String::new()
            };
            BrokerError::new(
                "tenant_rejected",
                format!(
                    "the tenant refused to mint a key with role {:?}: {}{hint}",
                    p.role, e.message
                ),
            )
        }
        _ => e.clone().into(),
    }
}

/// Exponential backoff with full jitter: 1 s·2^n, capped at 10 minutes, at least 500 ms.
pub(super) fn backoff_ms(attempt: u32) -> i64 {
    let ceiling = (1000i64 << attempt.min(10)).min(600_000);
    rand::rng().random_range(500..=ceiling.max(500))
}

/// Test hook: `SCANMINT_CRASH_AT=<point>` aborts the process at that step of a mint, so crash
/// recovery is tested against a real kill, not a simulation.
pub(super) fn crash_point(point: &str) {
    if std::env::var("SCANMINT_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("scanmint: SCANMINT_CRASH_AT={point}: aborting");
        std::process::abort();
    }
}

impl Broker {
    /// A key valid for at least `min_valid`: the cached one, or a new one. Concurrent callers
    /// share one mint.
    pub async fn credentials(
        &self,
        profile: &str,
        min_valid: Duration,
    ) -> Result<Credentials, BrokerError> {
        // A fresh key must satisfy the caller, or every call would mint: cap the ask at half a TTL.
        let ttl_ms = self.profile(profile).ttl.as_millis() as i64;
        let min_valid_ms = (min_valid.as_millis() as i64).min(ttl_ms / 2);
        self.load(profile).await;
        if let Some(c) = self.valid_active(profile, min_valid_ms, true) {
            return Ok(c);
        }
        // The single flight: one caller mints, the others wait for it. They are woken together
        // when its key is in (`minted`), not handed the lock one by one: a thousand waiters
        // each taking and dropping the lock in turn cost milliseconds of handovers. The lock
        // stays their way in too (a reconcile or a rotation holds it without announcing).
        let lock = self.mint_lock(profile);
        let _guard = loop {
            let minted = self.inner.minted.notified();
            tokio::pin!(minted);
            minted.as_mut().enable();
            if let Some(c) = self.valid_active(profile, min_valid_ms, true) {
                return Ok(c);
            }
            tokio::select! {
                guard = lock.lock() => break guard,
                _ = &mut minted => {}
            }
        };
        // Someone may have minted while we waited for the lock.
        if let Some(c) = self.valid_active(profile, min_valid_ms, true) {
            return Ok(c);
        }
        // A key restored at start is checked against the inventory before it is handed out.
        self.recheck_restored(profile).await?;
        if let Some(c) = self.valid_active(profile, min_valid_ms, true) {
            return Ok(c);
        }
        self.backoff(profile)?;
        let minted = self.mint_now(profile, false).await;
        self.inner.minted.notify_waiters();
        minted
    }

    /// After a transient failure, callers get the error until the backoff ends: no tight loop.
    pub(super) fn backoff(&self, profile: &str) -> Result<(), BrokerError> {
        let backoff = self.with_state(profile, |s| {
            (s.failures > 0 && self.now() < s.retry_after_ms)
                .then(|| s.last_error.clone())
                .flatten()
        });
        match backoff {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Mint, with the mint lock held, and record the outcome in the profile's state.
    pub(super) async fn mint_now(
        &self,
        profile: &str,
        rotating: bool,
    ) -> Result<Credentials, BrokerError> {
        let tenant = self.tenant_of(profile)?;
        let p = self.profile(profile);
        let had_key = self.with_state(profile, |s| s.active.is_some());
        let rotating = rotating || had_key;
        self.with_state(profile, |s| {
            s.phase = if rotating {
                Phase::Rotating
            } else {
                Phase::Minting
            }
        });
        let progress = self
            .inner
            .progress_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let title = if rotating {
            "scanmint: rotating key"
        } else {
            "scanmint: minting key"
        };
        self.emit(Event::Progress {
            profile: profile.into(),
            id: progress,
            title: Some(title.into()),
        });
        self.emit_status(profile);

        let result = self.mint_verified(&tenant, &p).await;
        if result.is_ok() {
            // Enforce `max_live_keys` now, not at the next hourly reconcile.
            let excess = self.over_cap(&p, tenant.base_url());
            if !excess.is_empty() {
                self.revoke_ids(&tenant, profile, &excess, "over max_live_keys")
                    .await;
            }
        }

        let now = self.now();
        self.with_state(profile, |s| {
            s.phase = Phase::Idle;
            match &result {
                Ok((active, store_problem)) => {
                    s.active = Some(active.clone());
                    s.failures = 0;
                    s.retry_after_ms = 0;
                    s.last_error = store_problem.clone();
                }
                Err((e, kind)) => {
                    if kind.is_some_and(|k| k.is_auth()) {
                        s.refused = true;
                    }
                    if kind.is_some_and(|k| k.is_transient()) {
                        s.failures += 1;
                        s.retry_after_ms = now + backoff_ms(s.failures);
                    }
                    s.last_error = Some(e.clone());
                }
            }
        });
        self.emit(Event::Progress {
            profile: profile.into(),
            id: progress,
            title: None,
        });
        self.emit_status(profile);
        self.inner.wake.notify_one();
        match result {
            Ok((active, _)) => {
                self.emit(Event::KeyChanged {
                    profile: profile.into(),
                    generation: Some(active.generation),
                });
                Ok(self.valid_active(profile, 0, true).ok_or_else(|| {
                    BrokerError::new(
                        "expired",
                        "the new key expired before it could be used: check the clocks",
                    )
                })?)
            }
            Err((e, _)) => Err(e),
        }
    }

    /// pending → generate → verify → store → active; the previous key starts retiring.
    pub(super) async fn mint_verified(
        &self,
        tenant: &Arc<dyn Tenant>,
        p: &Profile,
    ) -> Result<(ActiveKey, Option<BrokerError>), (BrokerError, Option<ErrorKind>)> {
        let primary_id = self.with_state(&p.name, |s| s.primary_id);
        let primary_key_id = primary_id;
        self.measure_clock(tenant, &p.name, primary_id, true).await;
        let now = self.tenant_now(tenant);
        let ttl_ms = p.ttl.as_millis() as i64;
        let expires_ms = now + ttl_ms;
        let jitter: f64 = rand::rng().random_range(0.9..1.1);
        let rotate_at_ms = now + ((ttl_ms as f64) * (p.rotate_at * jitter).min(0.97)) as i64;
        let new_tag = || {
            format!(
                "{}{}",
                self.tag_prefix(&p.name),
                secret::random_alphanumeric(16)
            )
        };
        let tag = new_tag();
        let mut generation = 0;
        let reply = self
            .generate_tracked(
                tenant,
                p,
                |l| {
                    generation = l.next_generation(&p.name);
                    LedgerKey {
                        id: None,
                        profile: p.name.clone(),
                        generation,
                        tag: tag.clone(),
                        role: p.role.clone(),
                        created_ms: now,
                        expires_ms,
                        rotate_at_ms,
                        retire_at_ms: None,
                        state: KeyState::Pending,
                        note: None,
                        base_url: Some(tenant.base_url().trim_end_matches('/').to_string()),
                        primary_key_id,
                    }
                },
                new_tag,
            )
            .await?;
        let id = reply.id;

        let stored = StoredMinted {
            id,
            key: reply.key.clone(),
            expires_ms,
            generation,
        };
        // A store that fails does not stop the mint: the key is usable from memory (and revoked
        // at the next start as a key we cannot use). The failure shows in the status.
        let store_problem = match self
            .inner
            .store
            .set(&minted_account(&p.name), &to_secret_json(&stored))
            .await
        {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot cache the minted key in the store");
                Some(BrokerError::new(
                    "store_unavailable",
                    format!("the new key works, but the secret store failed: {e}"),
                ))
            }
        };
        crash_point("after-store");

        let local_now = self.now();
        let grace_ms = p.grace.as_millis() as i64;
        let _ = self.update_ledger(|l| {
            for k in l
                .keys
                .iter_mut()
                .filter(|k| k.profile == p.name && k.state == KeyState::Active)
                .filter(|k| k.on_tenant(tenant.base_url()))
            {
                k.state = KeyState::Retiring;
                k.retire_at_ms = Some((local_now + grace_ms).min(k.expires_ms));
            }
            // By id: a retried generate landed under a fresh tag.
            if let Some(k) = l.by_id_mut(id, tenant.base_url()) {
                k.state = KeyState::Active;
            }
        });
        tracing::info!(key_id = id, generation, fingerprint = %reply.key.fingerprint(), "minted and verified a new key");
        let active = ActiveKey {
            id,
            key: reply.key,
            expires_ms,
            generation,
            role: p.role.clone(),
            verified: true,
        };
        Ok((active, store_problem))
    }

    /// The crash-safe heart of every mint: a pending ledger entry on disk first (`entry` builds
    /// it), then `generate`, then the id recorded, then verification. A key that fails
    /// verification is revoked at once. A transient failure is tried again, at most
    /// `GENERATE_TRIES` times with backoff, each try under a fresh tag (`fresh_tag`); after an
    /// uncertain one the key it may have minted is looked up by its tag and revoked first (its
    /// secret was lost with the reply), so one mint never leaves two live keys. A key recorded
    /// with an absurd expiry (sent in the wrong unit) is revoked and minted once more in the
    /// unit the tenant showed.
    pub(super) async fn generate_tracked(
        &self,
        tenant: &Arc<dyn Tenant>,
        p: &Profile,
        entry: impl FnOnce(&mut Ledger) -> LedgerKey,
        fresh_tag: impl Fn() -> String,
    ) -> Result<GenerateReply, (BrokerError, Option<ErrorKind>)> {
        let mut first = Some(entry);
        let mut template: Option<LedgerKey> = None;
        let mut tries = 0;
        let mut unit_retried = false;
        let started = std::time::Instant::now();
        loop {
            tries += 1;
            let pending = self
                .update_ledger(|l| {
                    let k = match (first.take(), &template) {
                        (Some(entry), _) => entry(l),
                        (None, Some(t)) => LedgerKey {
                            tag: fresh_tag(),
                            id: None,
                            state: KeyState::Pending,
                            ..t.clone()
                        },
                        (None, None) => unreachable!("the first try builds the template"),
                    };
                    l.keys.push(k.clone());
                    k
                })
                .map_err(|e| (e, None))?;
            template = Some(pending.clone());
            let tag = pending.tag.clone();
            crash_point("before-generate");

            let unit = self.unit(tenant);
            let request = GenerateRequest {
                roles: vec![p.role.clone()],
                security_level: SecurityLevel::Standard,
                expiration: Some(unit.from_ms(pending.expires_ms)),
                comment: tag.clone(),
            };
            let reply = match tenant.generate(&request).await {
                Ok(reply) => reply,
                Err(e) => {
                    // A refusal minted nothing; anything else may have.
                    let refused = !e.uncertain
                        && (matches!(
                            e.kind,
                            ErrorKind::BadRequest
                                | ErrorKind::Forbidden
                                | ErrorKind::Unauthorized
                                | ErrorKind::PaymentRequired
                        ) || (e.kind == ErrorKind::Server && e.status == Some(500)));
                    if refused {
                        let _ = self.update_ledger(|l| {
                            if let Some(k) = l.key_mut(&tag) {
                                k.state = KeyState::Revoked;
                                k.note = Some(format!("generate refused: {}", e.message));
                            }
                        });
                        // A refused expiration may mean the tenant's unit changed: read its
                        // timestamps again and, if they now say otherwise, try once more.
                        if !unit_retried
                            && e.message.to_ascii_lowercase().contains("expir")
                            && self.relearn_unit(tenant, &p.name).await != unit
                        {
                            unit_retried = true;
                            continue;
                        }
                        return Err((explain_generate_error(&e, p, unit), Some(e.kind)));
                    }
                    // A slow tenant (a timeout) is not asked again within this mint: the
                    // caller hears at once and reconciliation looks for the key later.
                    let left = GENERATE_BUDGET.saturating_sub(started.elapsed());
                    let settled = if left.is_zero() {
                        Err(BrokerError::new("tenant_timeout", "no time left to look"))
                    } else if e.uncertain {
                        tokio::time::timeout(left, self.settle_uncertain(tenant, &p.name, &pending))
                            .await
                            .unwrap_or_else(|_| {
                                Err(BrokerError::new(
                                    "tenant_timeout",
                                    "the lookup took too long",
                                ))
                            })
                    } else if e.kind.is_transient() {
                        // Surely not processed (the rate limit, a connection never made).
                        let _ = self.update_ledger(|l| {
                            if let Some(k) = l.key_mut(&tag) {
                                k.state = KeyState::Revoked;
                                k.note = Some(format!("generate failed: {}", e.message));
                            }
                        });
                        Ok(())
                    } else {
                        // A reply that breaks the contract may still have minted: the entry
                        // stays pending for reconciliation, and nothing is sent again.
                        Err(BrokerError::new(e.kind.code(), e.message.clone()))
                    };
                    let again = e.kind.is_transient() && tries < GENERATE_TRIES;
                    match settled {
                        Ok(()) if again => {
                            tracing::info!(tries, error = %e.message, "generate failed; trying again");
                            tokio::time::sleep(generate_backoff(tries)).await;
                            continue;
                        }
                        Ok(()) => {}
                        Err(why) => {
                            tracing::warn!(error = %why, "cannot tell now whether a failed generate minted a key; not sending another");
                        }
                    }
                    // Whatever is still pending is looked for again soon by reconciliation.
                    self.with_state(&p.name, |s| s.next_reconcile_ms = 0);
                    let mut err = explain_generate_error(&e, p, unit);
                    if tries > 1 {
                        err.message = format!("after {tries} tries: {}", err.message);
                    }
                    return Err((err, Some(e.kind)));
                }
            };
            // Without the id on disk a crash here still leaves the tag to find the key by.
            let _ = self.update_ledger(|l| {
                if let Some(k) = l.key_mut(&tag) {
                    k.id = Some(reply.id);
                }
            });
            crash_point("after-generate");

            if let Err(why) = self.verify(tenant, reply.id, p, pending.expires_ms).await {
                tracing::warn!(key_id = reply.id, reason = %why.message, "minted key failed verification; revoking it");
                self.revoke_ids(tenant, &p.name, &[reply.id], "failed verification")
                    .await;
                // The tenant disagreed with what it just said: settle the ledger against it soon.
                self.with_state(&p.name, |s| s.next_reconcile_ms = 0);
                // The unit is learned now (from the key's own record): mint again, once.
                if why.code == "wrong_unit" && !unit_retried && self.unit(tenant) != unit {
                    unit_retried = true;
                    tries -= 1;
                    continue;
                }
                return Err((why, None));
            }
            return Ok(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(message: &str) -> TenantError {
        TenantError {
            kind: ErrorKind::Server,
            status: Some(500),
            message: message.into(),
            uncertain: false,
        }
    }

    #[test]
    fn a_refused_mint_quotes_the_tenant_and_guesses_only_what_its_words_support() {
        let p = Profile::defaults("p");
        let role = explain_generate_error(
            &refusal("tenant failed (HTTP 500): Role \"X\" does not exist"),
            &p,
            TimeUnit::Millis,
        );
        assert!(
            role.message.contains("Role \"X\" does not exist"),
            "{}",
            role.message
        );
        assert!(
            role.message.contains("does that role exist?"),
            "{}",
            role.message
        );
        let expiry = explain_generate_error(
            &refusal("tenant failed (HTTP 500): Invalid expiration: in the past"),
            &p,
            TimeUnit::Seconds,
        );
        assert!(expiry.message.contains("Invalid expiration: in the past"));
        assert!(!expiry.message.contains("role exist"), "{}", expiry.message);
        assert!(
            expiry.message.contains("epoch seconds"),
            "{}",
            expiry.message
        );
        let other = explain_generate_error(
            &refusal("tenant failed (HTTP 500): quota"),
            &p,
            TimeUnit::Millis,
        );
        assert!(other.message.ends_with("quota"), "{}", other.message);
    }
}
