//! The last rung: secrets held only while the daemon runs.

use super::*;

/// Secrets held only while the daemon runs.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Secret>>,
}

impl SecretBackend for MemoryStore {
    fn tier(&self) -> Tier {
        Tier::Memory
    }
    fn get(&self, account: &str) -> Result<Option<Secret>, StoreError> {
        Ok(self.entries.lock().unwrap().get(account).cloned())
    }
    fn set(&self, account: &str, value: &Secret) -> Result<(), StoreError> {
        self.entries
            .lock()
            .unwrap()
            .insert(account.to_string(), value.clone());
        Ok(())
    }
    fn delete(&self, account: &str) -> Result<(), StoreError> {
        self.entries.lock().unwrap().remove(account);
        Ok(())
    }
}
