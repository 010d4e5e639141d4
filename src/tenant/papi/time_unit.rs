//! The unit of the tenant's epoch timestamps. The vendor's documents disagree (13-digit ms in
//! the list examples, 10-digit seconds in the self-service `generate` example), so the unit is
//! learned from the tenant's own timestamps rather than assumed. Pure functions only: papi
//! passes timestamps through as received and the broker converts with these.

use serde::{Deserialize, Serialize};

use super::wire::KeyRecord;

/// Epoch milliseconds or epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    Millis,
    Seconds,
}

/// Between 2001 and 2286 a ms timestamp has 13 digits and a seconds one 10: the digit count
/// tells the unit apart for any key that exists today.
const MS_PER_S: i64 = 1000;
/// Expiries beyond this many years from now are absurd (the unit was wrong).
const ABSURD_YEARS_AHEAD: i64 = 100;
const MS_PER_YEAR: i64 = 365 * 24 * 3600 * MS_PER_S;
/// Timestamps before 2001 (in ms) are absurd for a key that exists today.
const EARLIEST_PLAUSIBLE_MS: i64 = 1_000_000_000_000;

impl TimeUnit {
    /// The unit of one tenant timestamp by its digit count: 13 digits are ms, 10 are seconds,
    /// anything else (negative, zero, other lengths) says nothing.
    pub fn detect(timestamp: i64) -> Option<TimeUnit> {
        match timestamp {
            1_000_000_000_000..=9_999_999_999_999 => Some(TimeUnit::Millis),
            1_000_000_000..=9_999_999_999 => Some(TimeUnit::Seconds),
            _ => None,
        }
    }

    /// The unit the tenant's own timestamps agree on: `creation_time` (stamped by the tenant
    /// itself, so the best evidence) if any record has one, else `expiration`. `None` when there
    /// is no evidence or it conflicts.
    pub fn from_records(records: &[KeyRecord]) -> Option<TimeUnit> {
        let created = Self::agreed(records.iter().filter_map(|r| r.creation_time));
        if created.is_some() {
            return created;
        }
        if records.iter().any(|r| r.creation_time.is_some()) {
            // creation times exist but are unrecognisable or disagree: do not guess from
            // expirations, which we may have sent in the wrong unit ourselves.
            return None;
        }
        Self::agreed(records.iter().filter_map(|r| r.expiration))
    }

    /// The one unit every recognisable timestamp has; `None` for none or a mix.
    pub fn agreed(timestamps: impl IntoIterator<Item = i64>) -> Option<TimeUnit> {
        let mut found = None;
        for unit in timestamps.into_iter().filter_map(Self::detect) {
            match found {
                None => found = Some(unit),
                Some(u) if u == unit => {}
                Some(_) => return None,
            }
        }
        found
    }

    /// Our epoch ms in this unit (seconds round down, so a key never outlives what was asked).
    pub fn from_ms(self, ms: i64) -> i64 {
        match self {
            TimeUnit::Millis => ms,
            TimeUnit::Seconds => ms.div_euclid(MS_PER_S),
        }
    }

    /// A tenant timestamp in this unit as epoch ms (saturating, so absurd values stay absurd
    /// instead of wrapping).
    pub fn to_ms(self, timestamp: i64) -> i64 {
        match self {
            TimeUnit::Millis => timestamp,
            TimeUnit::Seconds => timestamp.saturating_mul(MS_PER_S),
        }
    }

    /// Whether a recorded expiry, read in this unit, is absurd: before 2001 (1970 is where a
    /// seconds value read as ms lands) or more than a century after `now_ms` (where a ms value
    /// read as seconds lands). Such a key was sent the wrong unit and must not be handed out.
    pub fn is_absurd_expiry(self, recorded: i64, now_ms: i64) -> bool {
        let ms = self.to_ms(recorded);
        ms < EARLIEST_PLAUSIBLE_MS
            || ms > now_ms.saturating_add(ABSURD_YEARS_AHEAD.saturating_mul(MS_PER_YEAR))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Millis => "ms",
            TimeUnit::Seconds => "s",
        }
    }
}

impl std::fmt::Display for TimeUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(creation_time: Option<i64>, expiration: Option<i64>) -> KeyRecord {
        KeyRecord {
            id: 1,
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
    fn detects_by_digit_count() {
        assert_eq!(TimeUnit::detect(1_721_149_909_250), Some(TimeUnit::Millis));
        assert_eq!(TimeUnit::detect(1_773_147_108), Some(TimeUnit::Seconds));
        for unknown in [
            0,
            -1_721_149_909_250,
            12_345,
            17_211_499_092,
            17_211_499_092_500,
        ] {
            assert_eq!(TimeUnit::detect(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn learns_from_creation_time_first() {
        let ms = 1_721_149_909_250;
        let s = 1_773_147_108;
        assert_eq!(
            TimeUnit::from_records(&[record(Some(ms), None), record(Some(ms + 1), Some(ms))]),
            Some(TimeUnit::Millis)
        );
        // Our own wrong-unit expiration does not outvote the tenant's creation_time.
        assert_eq!(
            TimeUnit::from_records(&[record(Some(s), Some(ms))]),
            Some(TimeUnit::Seconds)
        );
        assert_eq!(
            TimeUnit::from_records(&[record(None, Some(s))]),
            Some(TimeUnit::Seconds)
        );
        assert_eq!(
            TimeUnit::from_records(&[record(Some(s), None), record(Some(ms), None)]),
            None,
            "conflicting evidence"
        );
        assert_eq!(TimeUnit::from_records(&[record(Some(7), Some(ms))]), None);
        assert_eq!(TimeUnit::from_records(&[record(None, None)]), None);
        assert_eq!(TimeUnit::from_records(&[]), None);
    }

    #[test]
    fn converts_both_ways() {
        let ms = 1_773_147_108_999;
        assert_eq!(TimeUnit::Seconds.from_ms(ms), 1_773_147_108);
        assert_eq!(TimeUnit::Seconds.to_ms(1_773_147_108), 1_773_147_108_000);
        assert_eq!(TimeUnit::Millis.from_ms(ms), ms);
        assert_eq!(TimeUnit::Millis.to_ms(ms), ms);
        assert_eq!(TimeUnit::Seconds.to_ms(i64::MAX), i64::MAX, "saturates");
        assert_eq!(TimeUnit::Seconds.from_ms(-1), -1, "rounds down");
    }

    #[test]
    fn wrong_unit_expiries_are_absurd() {
        let now = 1_773_147_108_000;
        let in_a_day_ms = now + 86_400_000;
        assert!(!TimeUnit::Millis.is_absurd_expiry(in_a_day_ms, now));
        assert!(!TimeUnit::Seconds.is_absurd_expiry(in_a_day_ms / 1000, now));
        // ms sent to a seconds tenant: year ~58,000.
        assert!(TimeUnit::Seconds.is_absurd_expiry(in_a_day_ms, now));
        // seconds sent to a ms tenant: January 1970.
        assert!(TimeUnit::Millis.is_absurd_expiry(in_a_day_ms / 1000, now));
        assert!(TimeUnit::Millis.is_absurd_expiry(-5, now));
        assert_eq!(TimeUnit::Seconds.to_string(), "s");
    }
}
