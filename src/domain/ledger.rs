//! The ledger: every key this machine minted, with its state. JSON, 0600, atomic writes, and
//! never a secret. A corrupt ledger is moved aside, not fatal: reconciliation rebuilds from the
//! tenant's inventory, where every key we mint carries our comment tag.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::platform::fs as fsutil;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// `generate` is being (or was) sent; the secret is not stored yet.
    Pending,
    Active,
    /// A newer key is active; kept until its users finish or the grace period ends.
    Retiring,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerKey {
    /// `None` until the tenant answers `generate`.
    pub id: Option<i64>,
    pub profile: String,
    pub generation: u64,
    /// The unique comment the key was minted with: how we find it on the tenant after a crash.
    pub tag: String,
    pub role: String,
    pub created_ms: i64,
    pub expires_ms: i64,
    /// When to replace it (jittered once, at mint, so restarts do not re-roll it).
    pub rotate_at_ms: i64,
    /// For retiring keys: revoke no later than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at_ms: Option<i64>,
    pub state: KeyState,
    /// Why it ended, for people reading the ledger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A delete that failed and waits to be retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub id: i64,
    pub profile: String,
    pub attempts: u32,
    pub next_try_ms: i64,
    pub last_error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub version: u32,
    #[serde(default)]
    pub keys: Vec<LedgerKey>,
    #[serde(default)]
    pub outbox: Vec<OutboxItem>,
    /// The last generation issued per profile: generations only grow, across restarts too.
    #[serde(default)]
    pub generations: BTreeMap<String, u64>,
}

/// Revoked entries are kept this long for people to read, then dropped.
const KEEP_REVOKED_MS: i64 = 7 * 24 * 3600 * 1000;

impl Ledger {
    pub fn next_generation(&mut self, profile: &str) -> u64 {
        let g = self.generations.entry(profile.to_string()).or_insert(0);
        // Saturating: a hand-edited or corrupt ledger may hold any number.
        *g = g.saturating_add(1);
        *g
    }

    pub fn key_mut(&mut self, tag: &str) -> Option<&mut LedgerKey> {
        self.keys.iter_mut().find(|k| k.tag == tag)
    }

    pub fn by_id_mut(&mut self, id: i64) -> Option<&mut LedgerKey> {
        self.keys.iter_mut().find(|k| k.id == Some(id))
    }

    pub fn active(&self, profile: &str) -> Option<&LedgerKey> {
        self.keys
            .iter()
            .filter(|k| k.profile == profile && k.state == KeyState::Active)
            .max_by_key(|k| k.generation)
    }

    /// Keys of `profile` that may still work on the tenant (not known to be revoked).
    pub fn live(&self, profile: &str) -> impl Iterator<Item = &LedgerKey> {
        self.keys
            .iter()
            .filter(move |k| k.profile == profile && k.state != KeyState::Revoked)
    }

    /// Ids of keys of `profile` that may still work on the tenant: live ones and queued deletes.
    pub fn live_ids(&self, profile: &str) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .live(profile)
            .filter_map(|k| k.id)
            .chain(
                self.outbox
                    .iter()
                    .filter(|o| o.profile == profile)
                    .map(|o| o.id),
            )
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn queue_delete(&mut self, id: i64, profile: &str, error: &str, next_try_ms: i64) {
        if let Some(item) = self.outbox.iter_mut().find(|o| o.id == id) {
            item.attempts = item.attempts.saturating_add(1);
            item.next_try_ms = next_try_ms;
            item.last_error = error.to_string();
        } else {
            self.outbox.push(OutboxItem {
                id,
                profile: profile.to_string(),
                attempts: 1,
                next_try_ms,
                last_error: error.to_string(),
            });
        }
    }

    pub fn prune(&mut self, now_ms: i64) {
        self.keys.retain(|k| {
            k.state != KeyState::Revoked
                || k.expires_ms
                    .max(k.created_ms)
                    .saturating_add(KEEP_REVOKED_MS)
                    > now_ms
        });
    }
}

/// The ledger file on disk.
pub struct LedgerFile {
    path: PathBuf,
    /// Set when the file on disk was unreadable at load and was moved aside.
    pub recovered_from: Option<PathBuf>,
}

impl LedgerFile {
    pub fn new(state_dir: &Path) -> LedgerFile {
        LedgerFile {
            path: state_dir.join("ledger.json"),
            recovered_from: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Load the ledger; a missing file is an empty ledger; a corrupt one is moved aside.
    pub fn load(&mut self, now_ms: i64) -> std::io::Result<Ledger> {
        if let Some(dir) = self.path.parent() {
            fsutil::ensure_private_dir(dir)?;
        }
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Ledger {
                    version: 1,
                    ..Default::default()
                });
            }
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<Ledger>(&bytes) {
            Ok(ledger) => Ok(ledger),
            Err(e) => {
                let aside = self
                    .path
                    .with_file_name(format!("ledger.json.corrupt-{now_ms}"));
                std::fs::rename(&self.path, &aside)?;
                tracing::warn!(
                    error = %e,
                    moved_to = %aside.display(),
                    "the ledger was unreadable; moved aside, reconciliation will rebuild what it can"
                );
                self.recovered_from = Some(aside);
                Ok(Ledger {
                    version: 1,
                    ..Default::default()
                })
            }
        }
    }

    pub fn save(&self, ledger: &Ledger) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(ledger).map_err(std::io::Error::other)?;
        fsutil::write_private_atomic(&self.path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tag: &str, state: KeyState) -> LedgerKey {
        LedgerKey {
            id: Some(1),
            profile: "p".into(),
            generation: 1,
            tag: tag.into(),
            role: "r".into(),
            created_ms: 0,
            expires_ms: 10,
            rotate_at_ms: 6,
            retire_at_ms: None,
            state,
            note: None,
        }
    }

    #[test]
    fn round_trip_and_corrupt_file_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = LedgerFile::new(&dir.path().join("state"));
        let mut ledger = file.load(0).unwrap();
        assert_eq!(ledger.next_generation("p"), 1);
        assert_eq!(ledger.next_generation("p"), 2);
        ledger.keys.push(key("t", KeyState::Active));
        file.save(&ledger).unwrap();
        assert_eq!(file.load(0).unwrap(), ledger);

        std::fs::write(file.path(), b"{ not json").unwrap();
        let recovered = file.load(42).unwrap();
        assert!(recovered.keys.is_empty());
        let aside = file.recovered_from.clone().unwrap();
        assert!(aside.ends_with("ledger.json.corrupt-42"));
        assert_eq!(std::fs::read(aside).unwrap(), b"{ not json", "nothing lost");
    }

    #[test]
    fn extreme_numbers_in_a_ledger_do_not_overflow() {
        let mut ledger = Ledger::default();
        let mut revoked = key("a", KeyState::Revoked);
        revoked.expires_ms = i64::MAX;
        ledger.keys.push(revoked);
        ledger.prune(i64::MAX - 1);
        assert_eq!(ledger.keys.len(), 1, "expires at the end of time: kept");
        ledger.generations.insert("p".into(), u64::MAX);
        assert_eq!(ledger.next_generation("p"), u64::MAX);
        ledger.queue_delete(1, "p", "e", 0);
        ledger.outbox[0].attempts = u32::MAX;
        ledger.queue_delete(1, "p", "e", 0);
        assert_eq!(ledger.outbox[0].attempts, u32::MAX);
    }

    #[test]
    fn prune_keeps_live_and_recent() {
        let mut ledger = Ledger::default();
        ledger.keys.push(key("a", KeyState::Revoked));
        ledger.keys.push(key("b", KeyState::Active));
        ledger.prune(KEEP_REVOKED_MS + 100);
        assert_eq!(ledger.keys.len(), 1);
        assert_eq!(ledger.keys[0].tag, "b");
    }
}
