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
    /// The tenant that minted it: deletes go there and nowhere else (key ids are small integers
    /// that another tenant reuses). `None` only in ledgers written before this was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The Primary key that minted it (for people, and to tell logins apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key_id: Option<i64>,
}

/// Two spellings of one tenant URL (a trailing slash, letter case) are the same tenant.
pub fn same_tenant(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// Whether an entry recorded with `recorded` belongs to the tenant at `base_url`. Entries of old
/// ledgers carry no tenant: nothing else is known about them, so they are taken to belong to
/// the profile's current tenant; every delete still checks the tenant lists the id with our
/// exact tag first, so a wrong guess deletes nothing.
fn on_tenant(recorded: Option<&str>, base_url: &str) -> bool {
    recorded.is_none_or(|u| same_tenant(u, base_url))
}

impl LedgerKey {
    pub fn on_tenant(&self, base_url: &str) -> bool {
        on_tenant(self.base_url.as_deref(), base_url)
    }
}

/// A delete that failed and waits to be retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxItem {
    pub id: i64,
    pub profile: String,
    /// The tenant the delete must go to (see [`LedgerKey::base_url`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key_id: Option<i64>,
    /// The exact comment the tenant must list with the id before it is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
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
    /// What listings taught us of each tenant (by base URL), so that a restarted daemon mints
    /// at once instead of waiting for a listing to learn it again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tenants: BTreeMap<String, TenantFacts>,
}

/// A tenant's time unit and clock, as last learned from its replies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantFacts {
    /// `milliseconds` or `seconds`, from its own timestamps.
    pub unit: String,
    /// Its clock minus ours (ms), from a `Date` header.
    pub clock_offset_ms: i64,
    /// When (our clock, epoch ms) both were measured.
    pub learned_ms: i64,
}

/// Revoked entries are kept this long for people to read, then dropped.
const KEEP_REVOKED_MS: i64 = 7 * 24 * 3600 * 1000;

impl OutboxItem {
    pub fn on_tenant(&self, base_url: &str) -> bool {
        on_tenant(self.base_url.as_deref(), base_url)
    }
}

/// Where a key lives: the tenant's URL and the Primary key that minted it.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub base_url: String,
    pub primary_key_id: Option<i64>,
}

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

    /// The entry of key `id` minted on the tenant at `base_url` (ids repeat across tenants).
    pub fn by_id_mut(&mut self, id: i64, base_url: &str) -> Option<&mut LedgerKey> {
        self.keys
            .iter_mut()
            .find(|k| k.id == Some(id) && k.on_tenant(base_url))
    }

    /// The active key of `profile` on the tenant at `base_url`.
    pub fn active(&self, profile: &str, base_url: &str) -> Option<&LedgerKey> {
        self.keys
            .iter()
            .filter(|k| k.profile == profile && k.state == KeyState::Active)
            .filter(|k| k.on_tenant(base_url))
            .max_by_key(|k| k.generation)
    }

    /// Keys of `profile` on the tenant at `base_url` that may still work (not known revoked).
    pub fn live<'a>(
        &'a self,
        profile: &'a str,
        base_url: &'a str,
    ) -> impl Iterator<Item = &'a LedgerKey> {
        self.keys.iter().filter(move |k| {
            k.profile == profile && k.state != KeyState::Revoked && k.on_tenant(base_url)
        })
    }

    /// Keys of `profile` minted on another tenant than `base_url` and not known revoked.
    pub fn live_elsewhere(&self, profile: &str, base_url: &str) -> Vec<LedgerKey> {
        self.keys
            .iter()
            .filter(|k| k.profile == profile && k.state != KeyState::Revoked)
            .filter(|k| !k.on_tenant(base_url))
            .cloned()
            .collect()
    }

    /// Ids of keys of `profile` on the tenant at `base_url` that may still work: live ones and
    /// queued deletes.
    pub fn live_ids(&self, profile: &str, base_url: &str) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .live(profile, base_url)
            .filter_map(|k| k.id)
            .chain(
                self.outbox
                    .iter()
                    .filter(|o| o.profile == profile && o.on_tenant(base_url))
                    .map(|o| o.id),
            )
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// The exact comment key `id` on the tenant at `base_url` was minted with, if we know it.
    pub fn tag_of(&self, id: i64, base_url: &str) -> Option<String> {
        self.keys
            .iter()
            .find(|k| k.id == Some(id) && k.on_tenant(base_url))
            .map(|k| k.tag.clone())
            .or_else(|| {
                self.outbox
                    .iter()
                    .find(|o| o.id == id && o.on_tenant(base_url))
                    .and_then(|o| o.tag.clone())
            })
    }

    /// Forget a queued delete of key `id` on the tenant at `base_url`.
    pub fn unqueue(&mut self, id: i64, base_url: &str) {
        self.outbox
            .retain(|o| !(o.id == id && o.on_tenant(base_url)));
    }

    pub fn queue_delete(
        &mut self,
        id: i64,
        profile: &str,
        origin: &Origin,
        tag: Option<String>,
        error: &str,
        next_try_ms: i64,
    ) {
        if let Some(item) = self
            .outbox
            .iter_mut()
            .find(|o| o.id == id && o.on_tenant(&origin.base_url))
        {
            item.attempts = item.attempts.saturating_add(1);
            item.next_try_ms = next_try_ms;
            item.last_error = error.to_string();
            item.base_url = Some(origin.base_url.clone());
            item.tag = item.tag.take().or(tag);
        } else {
            self.outbox.push(OutboxItem {
                id,
                profile: profile.to_string(),
                base_url: Some(origin.base_url.clone()),
                primary_key_id: origin.primary_key_id,
                tag,
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
    /// Set when there was no file at load: a first start, or a ledger lost (deleted, a wiped
    /// state directory restored in part). Either way the tenant is searched for our tags once.
    pub missing_at_load: bool,
    /// Set when `installation_id` had to make a new id: a new installation, whose tag no key on
    /// the tenant can carry yet, so a missing ledger needs no search.
    pub installation_new: bool,
}

impl LedgerFile {
    pub fn new(state_dir: &Path) -> LedgerFile {
        LedgerFile {
            path: state_dir.join("ledger.json"),
            recovered_from: None,
            missing_at_load: false,
            installation_new: false,
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
                self.missing_at_load = true;
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

    /// This installation's random id, made once and kept 0600 beside the ledger. It goes into
    /// every comment tag, so that logout and `revoke --all` touch only this installation's keys,
    /// not those of another container or state directory of the same user on the same host.
    pub fn installation_id(&mut self) -> std::io::Result<String> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fsutil::ensure_private_dir(dir)?;
        let path = dir.join("installation-id");
        loop {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let id = text.trim();
                    if id.len() >= 12 && id.chars().all(|c| c.is_ascii_alphanumeric()) {
                        return Ok(id.to_string());
                    }
                    return Err(std::io::Error::other(format!(
                        "{} does not hold an installation id; remove it and scanmint makes a new one (keys minted under the old id are then left to expire)",
                        path.display()
                    )));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let id = crate::domain::secret::random_alphanumeric(16);
                    // Another process may create it first: then read theirs.
                    fsutil::write_private_new(&path, format!("{id}\n").as_bytes())?;
                    self.installation_new = true;
                }
                Err(e) => return Err(e),
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
            base_url: None,
            primary_key_id: None,
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
        let origin = Origin {
            base_url: "https://a".into(),
            primary_key_id: Some(1),
        };
        ledger.queue_delete(1, "p", &origin, None, "e", 0);
        ledger.outbox[0].attempts = u32::MAX;
        ledger.queue_delete(1, "p", &origin, None, "e", 0);
        assert_eq!(ledger.outbox[0].attempts, u32::MAX);
    }

    /// Finding 3 (issue 12): ledgers written before entries recorded their tenant still load.
    #[test]
    fn an_old_ledger_without_tenants_loads_and_counts_for_the_current_tenant() {
        let old = r#"{"version":1,"keys":[{"id":7,"profile":"p","generation":1,"tag":"t",
            "role":"r","created_ms":0,"expires_ms":10,"rotate_at_ms":6,"state":"active"}],
            "outbox":[{"id":8,"profile":"p","attempts":1,"next_try_ms":0,"last_error":"e"}]}"#;
        let ledger: Ledger = serde_json::from_str(old).unwrap();
        assert_eq!(ledger.keys[0].base_url, None);
        assert_eq!(ledger.live_ids("p", "https://now"), vec![7, 8]);
        let mut ledger = ledger;
        ledger.keys[0].base_url = Some("https://a/".into());
        assert_eq!(ledger.live_ids("p", "https://A"), vec![7, 8]);
        assert_eq!(ledger.live_ids("p", "https://b"), vec![8]);
        assert!(ledger.by_id_mut(7, "https://b").is_none());
    }

    #[test]
    fn the_installation_id_is_made_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = LedgerFile::new(&dir.path().join("state"));
        let id = file.installation_id().unwrap();
        assert!(file.installation_new, "the first call makes the id");
        let mut again = LedgerFile::new(&dir.path().join("state"));
        assert_eq!(again.installation_id().unwrap(), id);
        assert!(!again.installation_new, "a later start reads it");
        let mut other = LedgerFile::new(&dir.path().join("other"));
        assert_ne!(other.installation_id().unwrap(), id);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("state/installation-id"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
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
