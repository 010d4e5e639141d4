//! The unit of the tenant's epoch timestamps. The vendor's documents disagree (13-digit ms in
//! the list examples, 10-digit seconds in the self-service `generate` example), so the broker
//! learns the unit from the tenant's own timestamps, per tenant (by base URL), and converts at
//! the boundary: inside the broker and the ledger every time is epoch ms on the tenant's clock;
//! `expiration` values and filters go out in the tenant's unit, and listed records come back
//! converted to ms. A key whose recorded expiry is absurd was sent the wrong unit.

use serde::Serialize;

use super::*;

/// Epoch milliseconds or epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Millis,
    Seconds,
}

/// Before 2001, a timestamp is absurd for a key that exists today (seconds read as ms land in
/// January 1970)...
const EARLIEST_PLAUSIBLE_MS: i64 = 1_000_000_000_000;
/// ...and so is one more than a century ahead (ms read as seconds land millennia away).
const ABSURD_AHEAD_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

impl TimeUnit {
    /// The unit of one tenant timestamp by its digit count (between 2001 and 2286 ms have 13
    /// digits and seconds 10); anything else says nothing.
    pub fn detect(timestamp: i64) -> Option<TimeUnit> {
        match timestamp {
            1_000_000_000_000..=9_999_999_999_999 => Some(TimeUnit::Millis),
            1_000_000_000..=9_999_999_999 => Some(TimeUnit::Seconds),
            _ => None,
        }
    }

    /// Epoch ms in this unit (seconds round down: a key never outlives what was asked).
    pub fn from_ms(self, ms: i64) -> i64 {
        match self {
            TimeUnit::Millis => ms,
            TimeUnit::Seconds => ms.div_euclid(1000),
        }
    }

    /// A timestamp in this unit as epoch ms (saturating: an absurd value stays absurd).
    pub fn to_ms(self, timestamp: i64) -> i64 {
        match self {
            TimeUnit::Millis => timestamp,
            TimeUnit::Seconds => timestamp.saturating_mul(1000),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Millis => "milliseconds",
            TimeUnit::Seconds => "seconds",
        }
    }

    /// The unit [`TimeUnit::name`] names.
    pub fn from_name(name: &str) -> Option<TimeUnit> {
        [TimeUnit::Millis, TimeUnit::Seconds]
            .into_iter()
            .find(|u| u.name() == name)
    }
}

/// What the last run learned of a tenant is trusted this long: a clock may be reset since.
const REMEMBERED_FOR_MS: i64 = 7 * 24 * 3600 * 1000;

/// The units and clock offsets the ledger remembers (recent ones), by base URL.
pub(super) fn recall(
    ledger: &Ledger,
    now_ms: i64,
) -> (HashMap<String, Option<TimeUnit>>, HashMap<String, i64>) {
    let (mut units, mut offsets) = (HashMap::new(), HashMap::new());
    for (url, facts) in &ledger.tenants {
        let Some(unit) = TimeUnit::from_name(&facts.unit) else {
            continue;
        };
        if (now_ms - facts.learned_ms).abs() < REMEMBERED_FOR_MS {
            units.insert(url.clone(), Some(unit));
            offsets.insert(url.clone(), facts.clock_offset_ms);
        }
    }
    (units, offsets)
}

/// An expiry (epoch ms) no key made today can have: the unit it was sent or read in was wrong.
pub(super) fn absurd(expiry_ms: i64, now_ms: i64) -> bool {
    expiry_ms < EARLIEST_PLAUSIBLE_MS || expiry_ms > now_ms.saturating_add(ABSURD_AHEAD_MS)
}

/// The unit the tenant's own timestamps agree on: every `creation_time` (the tenant stamps it
/// itself), else the Primary key's `expiration` (set in the console, not by us). Expirations of
/// keys we minted are never evidence: we may have sent them in the wrong unit. `None` when
/// there is no evidence or it conflicts.
pub(super) fn learn(records: &[KeyRecord], primary_id: Option<i64>) -> Option<TimeUnit> {
    let created: Vec<i64> = records.iter().filter_map(|r| r.creation_time).collect();
    if !created.is_empty() {
        return agreed(created);
    }
    agreed(
        records
            .iter()
            .filter(|r| Some(r.id) == primary_id)
            .filter_map(|r| r.expiration),
    )
}

fn agreed(timestamps: impl IntoIterator<Item = i64>) -> Option<TimeUnit> {
    let mut found = None;
    for unit in timestamps.into_iter().map(TimeUnit::detect) {
        match (found, unit) {
            (_, None) => return None,
            (None, u) => found = u,
            (Some(f), Some(u)) if f == u => {}
            _ => return None,
        }
    }
    found
}

impl Broker {
    /// The tenant's clock minus ours: measured on this connection, else as the last run
    /// remembered it, else 0.
    pub(super) fn clock_offset(&self, tenant: &Arc<dyn Tenant>) -> i64 {
        if tenant.clock_offset_known() {
            return tenant.clock_offset_ms();
        }
        let remembered = self.inner.remembered_offsets.lock().unwrap();
        remembered.get(tenant.base_url()).copied().unwrap_or(0)
    }

    /// Both the unit and the clock are known from the last run (a restart, not a first start).
    pub(super) fn tenant_remembered(&self, tenant: &Arc<dyn Tenant>) -> bool {
        let remembered = self.inner.remembered_offsets.lock().unwrap();
        remembered.contains_key(tenant.base_url()) && self.learned_unit(tenant).is_some()
    }

    /// Keep what this tenant's replies taught (unit and clock) in the ledger, for the next
    /// start; it is written with the ledger's next save.
    fn remember_tenant(&self, tenant: &Arc<dyn Tenant>, unit: TimeUnit) {
        if !tenant.clock_offset_known() {
            return;
        }
        let facts = crate::domain::ledger::TenantFacts {
            unit: unit.name().to_string(),
            clock_offset_ms: tenant.clock_offset_ms(),
            learned_ms: self.now(),
        };
        self.with_ledger(|l| l.tenants.insert(tenant.base_url().to_string(), facts));
    }

    /// The unit learned for this tenant; the documented reading (ms) until something told.
    pub(super) fn unit(&self, tenant: &Arc<dyn Tenant>) -> TimeUnit {
        self.learned_unit(tenant).unwrap_or(TimeUnit::Millis)
    }

    /// The unit learned for this tenant, if any evidence was seen yet.
    pub fn learned_unit(&self, tenant: &Arc<dyn Tenant>) -> Option<TimeUnit> {
        self.inner
            .units
            .lock()
            .unwrap()
            .get(tenant.base_url())
            .copied()
            .flatten()
    }

    /// Whether a listing of this tenant was read (with or without evidence of the unit).
    pub(super) fn unit_probed(&self, tenant: &Arc<dyn Tenant>) -> bool {
        self.inner
            .units
            .lock()
            .unwrap()
            .contains_key(tenant.base_url())
    }

    /// Read the Primary key's record again for the tenant's own timestamps; the unit now.
    pub(super) async fn relearn_unit(&self, tenant: &Arc<dyn Tenant>, profile: &str) -> TimeUnit {
        let primary = self
            .with_state(profile, |s| s.primary_id)
            .unwrap_or_default();
        if let Err(e) = self
            .list_ms(tenant, profile, vec![Filter::ids(&[primary])])
            .await
        {
            tracing::debug!(error = %e, "cannot read the Primary key's record to re-learn the unit");
        }
        self.unit(tenant)
    }

    /// An `expiration` filter with its value (epoch ms) in the tenant's unit.
    pub(super) fn expiration_filter(
        &self,
        tenant: &Arc<dyn Tenant>,
        operator: &str,
        ms: i64,
    ) -> Filter {
        Filter {
            field: "expiration".into(),
            operator: operator.into(),
            value: serde_json::json!(self.unit(tenant).from_ms(ms)),
        }
    }

    /// List, learn the unit from what came back (re-learning when the evidence changed), and
    /// return every record with its timestamps in epoch ms.
    pub(super) async fn list_ms(
        &self,
        tenant: &Arc<dyn Tenant>,
        profile: &str,
        filters: Vec<Filter>,
    ) -> Result<Vec<KeyRecord>, TenantError> {
        let records = tenant.list(filters).await?;
        let primary_id = self.with_state(profile, |s| s.primary_id);
        let learned = learn(&records, primary_id);
        let before = {
            let mut units = self.inner.units.lock().unwrap();
            let entry = units.entry(tenant.base_url().to_string()).or_default();
            let before = *entry;
            if learned.is_some() {
                *entry = learned;
            }
            before
        };
        if let Some(unit) = learned {
            self.remember_tenant(tenant, unit);
        }
        if let Some(unit) = learned
            && before != Some(unit)
        {
            tracing::info!(
                base_url = tenant.base_url(),
                unit = unit.name(),
                previously = before.map(|u| u.name()),
                "learned the tenant's time unit from its own timestamps"
            );
        }
        let unit = self.unit(tenant);
        Ok(records
            .into_iter()
            .map(|mut r| {
                r.expiration = r.expiration.map(|e| unit.to_ms(e));
                r.creation_time = r.creation_time.map(|c| unit.to_ms(c));
                r
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64, creation_time: Option<i64>, expiration: Option<i64>) -> KeyRecord {
        KeyRecord {
            id,
            roles: vec![],
            created_by: None,
            creation_time,
            expiration,
            comment: None,
            user_name: None,
            security_level: None,
        }
    }

    #[test]
    fn learns_from_the_tenants_own_stamps_only() {
        let ms = 1_721_149_909_250;
        let s = 1_773_147_108;
        assert_eq!(
            learn(&[record(1, Some(s), Some(ms))], None),
            Some(TimeUnit::Seconds)
        );
        assert_eq!(
            learn(&[record(1, Some(ms), Some(s))], None),
            Some(TimeUnit::Millis)
        );
        assert_eq!(
            learn(&[record(1, Some(ms), None), record(2, Some(s), None)], None),
            None
        );
        // A minted key's expiration is ours, not evidence; the Primary key's is.
        assert_eq!(learn(&[record(1, None, Some(s))], Some(9)), None);
        assert_eq!(
            learn(&[record(9, None, Some(s))], Some(9)),
            Some(TimeUnit::Seconds)
        );
        assert_eq!(learn(&[record(1, Some(7), None)], None), None);
        assert_eq!(learn(&[], None), None);
    }

    #[test]
    fn converts_and_flags_absurd_expiries() {
        let now = 1_773_147_108_000;
        assert_eq!(TimeUnit::Seconds.from_ms(now + 999), 1_773_147_108);
        assert_eq!(TimeUnit::Seconds.to_ms(1_773_147_108), now);
        assert_eq!(TimeUnit::Seconds.to_ms(i64::MAX), i64::MAX);
        assert!(!absurd(now + 3_600_000, now));
        assert!(
            absurd(TimeUnit::Seconds.to_ms(now + 3_600_000), now),
            "ms read as s"
        );
        assert!(absurd((now + 3_600_000) / 1000, now), "s read as ms");
    }
}
