//! A lease keeps a key a session still uses from being revoked before its grace ends.

use super::*;

/// While held, the key it names counts as in use and is not revoked before its grace ends.
pub struct Lease {
    broker: Broker,
    profile: String,
    key_id: i64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut profiles = self.broker.inner.profiles.lock().unwrap();
        if let Some(state) = profiles.get_mut(&self.profile)
            && let Some(n) = state.leases.get_mut(&self.key_id)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                state.leases.remove(&self.key_id);
            }
        }
        drop(profiles);
        self.broker.inner.wake.notify_one();
    }
}

impl Lease {
    pub fn key_id(&self) -> i64 {
        self.key_id
    }
}

impl Broker {
    /// Mark `key_id` as in use until the returned lease is dropped.
    pub fn lease(&self, profile: &str, key_id: i64) -> Lease {
        self.with_state(profile, |s| *s.leases.entry(key_id).or_default() += 1);
        Lease {
            broker: self.clone(),
            profile: profile.to_string(),
            key_id,
        }
    }
}
