//! The tenant's state: key inventory, roles and permissions, clock, counters, rate window.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{AdminKeyView, CallCounts, Dialect, Faults, KeyEdit, KeyState};
use crate::domain::secret::{self, Secret};
use crate::tenant::papi::wire::{KeyRecord, SecurityLevel};

pub const INSTANCE_ADMINISTRATOR: &str = "Instance Administrator";
pub const ACCOUNT_ADMIN: &str = "Account Admin";
pub const CLI_READ_ONLY_CUSTOM: &str = "CLI Read-Only Custom";
pub const CLI_WRITE_CUSTOM: &str = "CLI Write Custom";
pub const PAPI_EDIT: &str = "Public API (PAPI) Edit";
pub const PAPI_VIEW: &str = "Public API (PAPI) View";
pub const CLI_ROLE: &str = "CLI Role";
pub const CLI_READ_ONLY_ROLE: &str = "CLI Read Only Role";

/// Every role the emulated tenant knows.
pub const KNOWN_ROLES: &[&str] = &[
    INSTANCE_ADMINISTRATOR,
    ACCOUNT_ADMIN,
    CLI_READ_ONLY_CUSTOM,
    CLI_WRITE_CUSTOM,
    PAPI_EDIT,
    PAPI_VIEW,
    CLI_ROLE,
    CLI_READ_ONLY_ROLE,
];

/// The Primary key's roles on Path B (the seed's non-admin setup).
pub const PATH_B_PRIMARY_ROLES: &[&str] = &[CLI_READ_ONLY_CUSTOM, CLI_WRITE_CUSTOM, PAPI_EDIT];

/// The user behind the Primary key (and so behind every key it mints).
pub const PRIMARY_USER: &str = "primary@emulator";
/// The user behind keys made "in the console" (the admin API).
pub const CONSOLE_USER: &str = "console@emulator";

/// How far an Advanced timestamp may be from the tenant clock (unverified; assumed ±5 min).
pub const ADVANCED_SKEW_MS: i64 = 5 * 60 * 1000;
/// Expirations further ahead than this are refused as absurd.
pub const MAX_EXPIRATION_AHEAD_MS: i64 = 10 * 365 * 24 * 3600 * 1000;
/// Ids of the first key; later keys count up from here.
const FIRST_KEY_ID: i64 = 1000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perms {
    pub papi_view: bool,
    pub papi_edit: bool,
    pub cli_view: bool,
    pub cli_edit: bool,
    /// May grant any role.
    pub admin: bool,
}

impl Perms {
    fn union(self, o: Perms) -> Perms {
        Perms {
            papi_view: self.papi_view || o.papi_view,
            papi_edit: self.papi_edit || o.papi_edit,
            cli_view: self.cli_view || o.cli_view,
            cli_edit: self.cli_edit || o.cli_edit,
            admin: self.admin || o.admin,
        }
    }
}

/// The permissions a role grants; `None` for a role the tenant does not know.
/// Edit implies View.
pub fn role_perms(role: &str) -> Option<Perms> {
    let p = |papi_view, papi_edit, cli_view, cli_edit, admin| Perms {
        papi_view,
        papi_edit,
        cli_view,
        cli_edit,
        admin,
    };
    Some(match role {
        INSTANCE_ADMINISTRATOR | ACCOUNT_ADMIN => p(true, true, true, true, true),
        CLI_READ_ONLY_CUSTOM | CLI_READ_ONLY_ROLE => p(false, false, true, false, false),
        CLI_WRITE_CUSTOM | CLI_ROLE => p(false, false, true, true, false),
        PAPI_EDIT => p(true, true, false, false, false),
        PAPI_VIEW => p(true, false, false, false, false),
        _ => return None,
    })
}

pub struct KeyEntry {
    pub id: i64,
    pub secret: Secret,
    pub roles: Vec<String>,
    pub level: SecurityLevel,
    pub expiration: Option<i64>,
    pub comment: String,
    pub created_by: String,
    pub user_name: String,
    pub creation_time: i64,
    pub deleted_at: Option<i64>,
    pub is_primary: bool,
}

impl KeyEntry {
    pub fn state(&self, now: i64) -> KeyState {
        if self.deleted_at.is_some() {
            KeyState::Deleted
        } else if self.expiration.is_some_and(|e| e <= now) {
            KeyState::Expired
        } else {
            KeyState::Active
        }
    }

    /// Union of the permissions of the key's roles (unknown roles grant nothing).
    pub fn perms(&self) -> Perms {
        self.roles
            .iter()
            .filter_map(|r| role_perms(r))
            .fold(Perms::default(), Perms::union)
    }

    /// Whether this key may attach `role` to a key it mints: admins may grant anything,
    /// everyone else only roles they hold themselves.
    pub fn may_grant(&self, role: &str) -> bool {
        self.perms().admin || self.roles.iter().any(|r| r == role)
    }

    pub fn view(&self, now: i64) -> AdminKeyView {
        AdminKeyView {
            id: self.id,
            roles: self.roles.clone(),
            security_level: self.level,
            expiration: self.expiration,
            comment: self.comment.clone(),
            created_by: self.created_by.clone(),
            creation_time: self.creation_time,
            state: self.state(now),
            is_primary: self.is_primary,
        }
    }

    /// The key as `get_api_keys` lists it, timestamps in the dialect's unit.
    pub fn record(&self, dialect: &Dialect) -> KeyRecord {
        KeyRecord {
            id: self.id,
            roles: self.roles.clone(),
            created_by: Some(self.created_by.clone()),
            creation_time: Some(dialect.from_ms(self.creation_time)),
            expiration: self.expiration.map(|e| dialect.from_ms(e)),
            comment: Some(self.comment.clone()),
            user_name: Some(self.user_name.clone()),
            security_level: Some(self.level.as_str().to_string()),
        }
    }
}

pub struct NewKey {
    pub roles: Vec<String>,
    pub level: SecurityLevel,
    pub expiration: Option<i64>,
    pub comment: String,
    /// Becomes both `created_by` and `user_name`.
    pub user: String,
    pub is_primary: bool,
}

pub struct State {
    pub keys: BTreeMap<i64, KeyEntry>,
    next_id: i64,
    /// Advanced nonces seen, with their request timestamps (for pruning).
    pub nonces: HashMap<String, i64>,
    /// Arrival times of the requests admitted in the last rolling second.
    pub window: VecDeque<Instant>,
    pub calls: CallCounts,
    pub faults: Faults,
}

impl State {
    /// The tenant clock: real time plus the configured offset, epoch ms.
    pub fn now_ms(&self) -> i64 {
        real_now_ms().saturating_add(self.faults.clock_offset_ms)
    }

    pub fn insert_key(&mut self, new: NewKey) -> (i64, Secret) {
        let id = self.next_id;
        self.next_id += 1;
        let secret = Secret::new(secret::random_alphanumeric(128));
        let now = self.now_ms();
        self.keys.insert(
            id,
            KeyEntry {
                id,
                secret: secret.clone(),
                roles: new.roles,
                level: new.level,
                expiration: new.expiration,
                comment: new.comment,
                created_by: new.user.clone(),
                user_name: new.user,
                creation_time: now,
                deleted_at: None,
                is_primary: new.is_primary,
            },
        );
        (id, secret)
    }

    /// Mark a key deleted; false when unknown or already deleted.
    pub fn delete_key(&mut self, id: i64) -> bool {
        let now = self.now_ms();
        match self.keys.get_mut(&id) {
            Some(k) if k.deleted_at.is_none() => {
                k.deleted_at = Some(now);
                true
            }
            _ => false,
        }
    }

    /// Apply a console edit to a live key; false when unknown or deleted.
    pub fn edit_key(&mut self, id: i64, edit: KeyEdit) -> bool {
        match self.keys.get_mut(&id) {
            Some(k) if k.deleted_at.is_none() => {
                if let Some(roles) = edit.roles {
                    k.roles = roles;
                }
                if let Some(level) = edit.security_level {
                    k.level = level;
                }
                if let Some(comment) = edit.comment {
                    k.comment = comment;
                }
                true
            }
            _ => false,
        }
    }

    /// Admit one request into the rolling one-second window, or refuse it (limit 0 = off).
    pub fn admit(&mut self, limit: u32) -> bool {
        if limit == 0 {
            return true;
        }
        let now = Instant::now();
        while let Some(front) = self.window.front() {
            if now.duration_since(*front).as_millis() >= 1000 {
                self.window.pop_front();
            } else {
                break;
            }
        }
        if self.window.len() >= limit as usize {
            return false;
        }
        self.window.push_back(now);
        true
    }
}

/// What every connection shares.
pub struct Shared {
    state: Mutex<State>,
    pub base_url: String,
    pub rate_limit: u32,
    /// The admin endpoint's token (`/_emulator/{token}/…`): it guards the Primary key.
    pub admin_token: Secret,
}

impl Shared {
    pub fn new(base_url: String, rate_limit: u32, faults: Faults) -> Shared {
        Shared {
            state: Mutex::new(State {
                keys: BTreeMap::new(),
                next_id: FIRST_KEY_ID,
                nonces: HashMap::new(),
                window: VecDeque::new(),
                calls: CallCounts::default(),
                faults,
            }),
            base_url,
            rate_limit,
            admin_token: Secret::new(secret::random_alphanumeric(32)),
        }
    }

    /// The state lock. A panic while holding it cannot leave the state half-updated in a way
    /// that matters to an emulator, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn create_key(&self, new: NewKey) -> (i64, Secret) {
        self.lock().insert_key(new)
    }

    pub fn revoke(&self, id: i64) -> bool {
        self.lock().delete_key(id)
    }

    pub fn views(&self) -> Vec<AdminKeyView> {
        let st = self.lock();
        let now = st.now_ms();
        st.keys.values().map(|k| k.view(now)).collect()
    }
}

pub fn real_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Epoch ms to a `SystemTime` (for the `Date` header).
pub fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(roles: &[&str]) -> KeyEntry {
        KeyEntry {
            id: 1,
            secret: Secret::new("s"),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            level: SecurityLevel::Standard,
            expiration: None,
            comment: String::new(),
            created_by: String::new(),
            user_name: String::new(),
            creation_time: 0,
            deleted_at: None,
            is_primary: false,
        }
    }

    #[test]
    fn path_b_primary_may_grant_only_its_own_roles() {
        let primary = key(PATH_B_PRIMARY_ROLES);
        let p = primary.perms();
        assert!(p.papi_view && p.papi_edit && p.cli_view && p.cli_edit && !p.admin);
        assert!(primary.may_grant(CLI_READ_ONLY_CUSTOM));
        assert!(!primary.may_grant(CLI_READ_ONLY_ROLE));
        assert!(!primary.may_grant(INSTANCE_ADMINISTRATOR));
        assert!(!primary.may_grant(PAPI_VIEW));
    }

    #[test]
    fn admins_may_grant_anything_and_edit_implies_view() {
        assert!(key(&[ACCOUNT_ADMIN]).may_grant(CLI_ROLE));
        assert!(key(&[INSTANCE_ADMINISTRATOR]).may_grant(PAPI_VIEW));
        assert!(role_perms(PAPI_EDIT).unwrap().papi_view);
        assert!(role_perms(CLI_ROLE).unwrap().cli_view);
        assert!(!role_perms(PAPI_VIEW).unwrap().papi_edit);
        assert_eq!(role_perms("Nope"), None);
        assert_eq!(key(&["Nope"]).perms(), Perms::default());
    }

    #[test]
    fn expiry_and_deletion_states() {
        let mut k = key(&[]);
        k.expiration = Some(100);
        assert_eq!(k.state(99), KeyState::Active);
        assert_eq!(k.state(100), KeyState::Expired);
        k.deleted_at = Some(1);
        assert_eq!(k.state(0), KeyState::Deleted);
    }

    #[test]
    fn rate_window_admits_the_limit_then_refuses() {
        let shared = Shared::new(String::new(), 3, Faults::default());
        let mut st = shared.lock();
        assert!(st.admit(3) && st.admit(3) && st.admit(3));
        assert!(!st.admit(3));
        assert!(st.admit(0), "0 turns the limit off");
    }
}
