//! The scheduler: one tick per profile (rotate ahead of expiry, retry the outbox, reconcile),
//! the loop that runs ticks until shutdown, and the wake-up when something changes.

use super::*;

/// With nothing to settle, the next reconcile comes after a uniformly random 6 to 8 hours: a
/// fleet started together (a morning, an office) spreads out instead of listing in waves. See
/// docs/benchmarks.md ("Scale on paper") for what this costs a tenant.
const RECONCILE_IDLE_MS: std::ops::RangeInclusive<i64> = (6 * 3_600_000)..=(8 * 3_600_000);

impl Broker {
    /// How long until `profile` is reconciled again: soon while a pending entry is unresolved,
    /// hourly while a failed delete waits in the outbox, rarely otherwise. Start-up, a login, an
    /// uncertain generate and a failed verification ask for one at once (`next_reconcile_ms = 0`).
    pub(super) fn next_reconcile_in(&self, profile: &str, unresolved: bool) -> i64 {
        if unresolved {
            return PENDING_RECHECK_MS;
        }
        if self.with_ledger(|l| l.outbox.iter().any(|o| o.profile == profile)) {
            return RECONCILE_EVERY_MS;
        }
        rand::rng().random_range(RECONCILE_IDLE_MS)
    }

    /// Do whatever is due now: rotations, retirements, outbox retries, reconciliation. Returns
    /// the wall-clock time (ms) of the next thing due.
    pub async fn tick(&self) -> i64 {
        let mut next = self.now() + MAX_SLEEP.as_millis() as i64;
        for profile in self.known_profiles() {
            self.load(&profile).await;
            if self.tenant_of(&profile).is_err() {
                continue;
            }
            next = next.min(self.tick_profile(&profile).await);
        }
        next
    }

    pub(super) async fn tick_profile(&self, profile: &str) -> i64 {
        let Ok(tenant) = self.tenant_of(profile) else {
            return i64::MAX;
        };
        let now = self.now();
        let mut next = i64::MAX;

        // Reconcile: at start, when something needs settling, and rarely otherwise.
        if self.with_state(profile, |s| {
            s.next_reconcile_ms.max(s.reconcile_retry_after_ms) <= now
        }) {
            match self.reconcile(profile).await {
                Ok(_) => self.with_state(profile, |s| {
                    s.reconcile_failures = 0;
                    s.reconcile_retry_after_ms = 0;
                }),
                Err(e) => {
                    tracing::warn!(profile, error = %e, "reconcile failed");
                    // Back off more after each failure, counted from when this attempt (with its
                    // retries) ended; a failed generate asking for a reconcile waits for it too.
                    let ended = self.now();
                    self.with_state(profile, |s| {
                        s.reconcile_failures += 1;
                        s.reconcile_retry_after_ms = ended + backoff_ms(s.reconcile_failures + 2);
                    });
                }
            }
        }
        next = next.min(self.with_state(profile, |s| {
            s.next_reconcile_ms.max(s.reconcile_retry_after_ms)
        }));

        // Outbox: failed deletes, with backoff.
        // Only deletes queued for this tenant: an id queued on another is someone else's here.
        let url = tenant.base_url().to_string();
        let due: Vec<i64> = self.with_ledger(|l| {
            l.outbox
                .iter()
                .filter(|o| o.profile == profile && o.on_tenant(&url) && o.next_try_ms <= now)
                .map(|o| o.id)
                .collect()
        });
        if !due.is_empty() {
            self.revoke_ids(&tenant, profile, &due, "revoked (retried)")
                .await;
        }

        // Retiring keys: revoke once their users are gone, or when grace ends.
        let retiring: Vec<(i64, i64)> = self.with_ledger(|l| {
            l.live(profile, &url)
                .filter(|k| k.state == KeyState::Retiring)
                .filter_map(|k| Some((k.id?, k.retire_at_ms.unwrap_or(now))))
                .filter(|(id, _)| !l.outbox.iter().any(|o| o.id == *id && o.on_tenant(&url)))
                .collect()
        });
        let mut retire_now = Vec::new();
        for (id, retire_at) in retiring {
            let in_use = self.with_state(profile, |s| s.leases.contains_key(&id));
            if !in_use || retire_at <= now {
                retire_now.push(id);
            } else {
                next = next.min(retire_at);
            }
        }
        if !retire_now.is_empty() {
            self.revoke_ids(&tenant, profile, &retire_now, "retired after rotation")
                .await;
            self.emit_status(profile);
        }

        // Rotation of the active key at its (jittered) point, unless failing or refused.
        let rotate_at = self.with_ledger(|l| l.active(profile, &url).map(|k| k.rotate_at_ms));
        let (retry_after, refused, has_active) = self.with_state(profile, |s| {
            (s.retry_after_ms, s.refused, s.active.is_some())
        });
        if let Some(rotate_at) = rotate_at.filter(|_| has_active && !refused) {
            // The rotation point is on the tenant's clock, the backoff on ours: compare on ours,
            // or a tenant whose clock runs ahead would skip the backoff altogether.
            let due_at = (rotate_at - tenant.clock_offset_ms()).max(retry_after);
            if self.now() >= due_at {
                let lock = self.mint_lock(profile);
                let _guard = lock.lock().await;
                if let Err(e) = self.mint_now(profile, true).await {
                    tracing::warn!(profile, error = %e, "scheduled rotation failed; the current key is served until it expires");
                }
                next = next.min(self.now() + 1000);
            } else {
                next = next.min(due_at);
            }
        }

        let outbox_next = self.with_ledger(|l| {
            l.outbox
                .iter()
                .filter(|o| o.profile == profile && o.on_tenant(&url))
                .map(|o| o.next_try_ms)
                .min()
        });
        next.min(outbox_next.unwrap_or(i64::MAX))
    }

    /// The scheduler: wakes at the next wall-clock deadline (re-checked at least every minute,
    /// so suspend cannot make it miss one), or when something changed. From this call on (not
    /// the future's first poll), a mint counts on it for the start-up listing (`measure_clock`).
    pub fn run(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.inner
            .scheduled
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let broker = self.clone();
        async move {
            loop {
                let next = broker.tick().await;
                let wait_ms = (next - broker.now()).clamp(0, MAX_SLEEP.as_millis() as i64);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait_ms as u64)) => {}
                    _ = broker.inner.wake.notified() => {}
                }
            }
        }
    }

    /// Finish in-flight mints (bounded), then write the ledger.
    pub async fn shutdown(&self) {
        let locks: Vec<_> = self
            .inner
            .mint_locks
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        for lock in locks {
            let _ = tokio::time::timeout(Duration::from_secs(10), lock.lock_owned()).await;
        }
        if let Err(e) = self.persist() {
            tracing::error!(error = %e, "could not write the ledger on shutdown");
        }
    }

    /// Wake the scheduler now.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }
}
