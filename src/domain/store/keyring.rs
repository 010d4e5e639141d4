//! The keyring rungs of the ladder: Secret Service and kernel keyutils through `keyring-core`,
//! probed with a timeout, reconnecting to the same tier when the keychain goes away.

use super::*;

/// Check a keyring store answers at all, in a thread so a hung D-Bus call cannot hang us.
pub(super) fn probe(store: Result<KeyringStore, StoreError>) -> Result<KeyringStore, StoreError> {
    let store = store?;
    let tier = store.tier.as_str();
    let (tx, rx) = std::sync::mpsc::channel();
    let probe_store = store.clone();
    std::thread::spawn(move || {
        let _ = tx.send(probe_store.get("probe").map(|_| ()));
    });
    match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(Ok(())) => Ok(store),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreError {
            tier,
            message: "did not answer within 2s (locked or absent)".into(),
        }),
    }
}

/// A `keyring-core` store: Secret Service or kernel keyutils. If the keychain goes away under
/// us (the D-Bus session restarted, say), the next call reconnects to the same tier once: never
/// to another tier, so secrets never move somewhere weaker on their own.
#[derive(Clone)]
pub struct KeyringStore {
    tier: Tier,
    store: Arc<Mutex<Arc<CredentialStore>>>,
    service: String,
}

impl KeyringStore {
    fn connect(tier: Tier) -> Result<Arc<CredentialStore>, StoreError> {
        let store: Result<Arc<CredentialStore>, keyring_core::Error> = match tier {
            Tier::SecretService => {
                dbus_secret_service_keyring_store::Store::new().map(|s| s as Arc<CredentialStore>)
            }
            _ => linux_keyutils_keyring_store::Store::new().map(|s| s as Arc<CredentialStore>),
        };
        store.map_err(|e| StoreError {
            tier: tier.as_str(),
            message: format!("unavailable: {e}"),
        })
    }

    fn new(tier: Tier, service: &str) -> Result<KeyringStore, StoreError> {
        Ok(KeyringStore {
            tier,
            store: Arc::new(Mutex::new(Self::connect(tier)?)),
            service: service.to_string(),
        })
    }

    pub fn secret_service(service: &str) -> Result<KeyringStore, StoreError> {
        Self::new(Tier::SecretService, service)
    }

    pub fn keyutils(service: &str) -> Result<KeyringStore, StoreError> {
        Self::new(Tier::Keyutils, service)
    }

    /// Run `op` on the account's entry; on a platform failure, reconnect once and retry.
    fn with_entry<T>(
        &self,
        account: &str,
        op: impl Fn(&Entry) -> keyring_core::Result<T>,
    ) -> Result<T, StoreError> {
        let store = self.store.lock().unwrap().clone();
        let entry = Entry::new_in_store(&store, &self.service, account).map_err(|e| self.err(e))?;
        match op(&entry) {
            Err(
                keyring_core::Error::PlatformFailure(_) | keyring_core::Error::NoStorageAccess(_),
            ) => {
                let fresh = Self::connect(self.tier)?;
                *self.store.lock().unwrap() = fresh.clone();
                let entry =
                    Entry::new_in_store(&fresh, &self.service, account).map_err(|e| self.err(e))?;
                op(&entry).map_err(|e| self.err(e))
            }
            other => other.map_err(|e| self.err(e)),
        }
    }

    fn err(&self, e: keyring_core::Error) -> StoreError {
        StoreError {
            tier: self.tier.as_str(),
            message: e.to_string(),
        }
    }
}

impl SecretBackend for KeyringStore {
    fn tier(&self) -> Tier {
        self.tier
    }

    fn get(&self, account: &str) -> Result<Option<Secret>, StoreError> {
        self.with_entry(account, |entry| match entry.get_password() {
            Ok(value) => Ok(Some(Secret::new(Zeroizing::new(value).as_str()))),
            Err(keyring_core::Error::NoEntry) => Ok(None),
            Err(e) => Err(e),
        })
    }

    fn set(&self, account: &str, value: &Secret) -> Result<(), StoreError> {
        self.with_entry(account, |entry| entry.set_password(value.expose()))
    }

    fn delete(&self, account: &str) -> Result<(), StoreError> {
        self.with_entry(account, |entry| match entry.delete_credential() {
            Ok(()) | Err(keyring_core::Error::NoEntry) => Ok(()),
            Err(e) => Err(e),
        })
    }
}
