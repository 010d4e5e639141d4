//! Minting: the cache, single flight per profile, backoff after failures, and the crash points
//! that let tests kill the process between generating a key and recording it.

use super::*;

pub(super) fn explain_generate_error(e: &TenantError, p: &Profile) -> BrokerError {
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
        ErrorKind::Server if e.status == Some(500) => BrokerError::new(
            "tenant_rejected",
            format!(
                "the tenant refused to mint a key with role {:?} (does that role exist? set `role` in the profile): {}",
                p.role, e.message
            ),
        ),
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
        if let Some(c) = self.valid_active(profile, min_valid_ms) {
            return Ok(c);
        }
        let lock = self.mint_lock(profile);
        let _guard = lock.lock().await;
        // Someone may have minted while we waited: that is the single flight.
        if let Some(c) = self.valid_active(profile, min_valid_ms) {
            return Ok(c);
        }
        // After a transient failure, callers get the error until the backoff ends: no tight loop.
        let backoff = self.with_state(profile, |s| {
            (s.failures > 0 && self.now() < s.retry_after_ms)
                .then(|| s.last_error.clone())
                .flatten()
        });
        if let Some(e) = backoff {
            return Err(e);
        }
        self.mint_now(profile, false).await
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
                Ok(self.valid_active(profile, 0).ok_or_else(|| {
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
        self.measure_clock(tenant, &p.name, primary_id).await;
        let now = self.tenant_now(tenant);
        let ttl_ms = p.ttl.as_millis() as i64;
        let expires_ms = now + ttl_ms;
        let jitter: f64 = rand::rng().random_range(0.9..1.1);
        let rotate_at_ms = now + ((ttl_ms as f64) * (p.rotate_at * jitter).min(0.97)) as i64;
        let tag = format!(
            "{}{}",
            self.tag_prefix(&p.name),
            secret::random_alphanumeric(16)
        );
        let mut generation = 0;
        let reply = self
            .generate_tracked(tenant, p, |l| {
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
                }
            })
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
            {
                k.state = KeyState::Retiring;
                k.retire_at_ms = Some((local_now + grace_ms).min(k.expires_ms));
            }
            if let Some(k) = l.key_mut(&tag) {
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
        };
        Ok((active, store_problem))
    }

    /// The crash-safe heart of every mint: a pending ledger entry on disk first (`entry` builds
    /// it), then `generate`, then the id recorded, then verification. A key that fails
    /// verification is revoked at once; a `generate` that may have minted leaves its entry
    /// pending, so reconciliation finds the key by its tag.
    pub(super) async fn generate_tracked(
        &self,
        tenant: &Arc<dyn Tenant>,
        p: &Profile,
        entry: impl FnOnce(&mut Ledger) -> LedgerKey,
    ) -> Result<GenerateReply, (BrokerError, Option<ErrorKind>)> {
        let pending = self
            .update_ledger(|l| {
                let k = entry(l);
                l.keys.push(k.clone());
                k
            })
            .map_err(|e| (e, None))?;
        let tag = pending.tag.clone();
        crash_point("before-generate");

        let request = GenerateRequest {
            roles: vec![p.role.clone()],
            security_level: SecurityLevel::Standard,
            expiration: Some(pending.expires_ms),
            comment: tag.clone(),
        };
        let reply = match tenant.generate(&request).await {
            Ok(reply) => reply,
            Err(e) => {
                // A refusal minted nothing; anything else may have.
                let refused = matches!(
                    e.kind,
                    ErrorKind::BadRequest
                        | ErrorKind::Forbidden
                        | ErrorKind::Unauthorized
                        | ErrorKind::PaymentRequired
                ) || (e.kind == ErrorKind::Server && e.status == Some(500));
                if refused {
                    let _ = self.update_ledger(|l| {
                        if let Some(k) = l.key_mut(&tag) {
                            k.state = KeyState::Revoked;
                            k.note = Some(format!("generate refused: {}", e.message));
                        }
                    });
                } else {
                    self.with_state(&p.name, |s| s.next_reconcile_ms = 0);
                }
                return Err((explain_generate_error(&e, p), Some(e.kind)));
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
            return Err((why, None));
        }
        Ok(reply)
    }
}
