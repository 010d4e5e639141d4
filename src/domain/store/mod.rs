//! Secret storage: one trait, and the ladder of stores it is backed by, chosen at run time.
//!
//! Secret Service (probed with a timeout; locked or absent falls through) → kernel keyutils →
//! memory. The `file` store (0600 in `$XDG_RUNTIME_DIR`) is used only when asked for by name.
//! There is never a silent fall back to plaintext: the tier in use is reported to every caller.

mod file;
mod keyring;
mod memory;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyring_core::{CredentialStore, Entry};
use zeroize::Zeroizing;

use crate::domain::config::StoreChoice;
use crate::domain::secret::Secret;
use crate::platform::fs as fsutil;

pub use file::FileStore;
pub use keyring::KeyringStore;
use keyring::probe;
pub use memory::MemoryStore;

/// Keychain calls that take longer than this are given up on (a locked collection can hang on a
/// prompt nobody will answer).
const STORE_TIMEOUT: Duration = Duration::from_secs(5);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    SecretService,
    Keyutils,
    File,
    Memory,
    /// Not a store: the Primary key came from `SCANMINT_PRIMARY_KEY*` environment variables.
    Env,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::SecretService => "secret-service",
            Tier::Keyutils => "keyutils",
            Tier::File => "file",
            Tier::Memory => "memory",
            Tier::Env => "env",
        }
    }

    /// Whether secrets survive the daemon exiting.
    pub fn persists(self) -> bool {
        !matches!(self, Tier::Memory | Tier::Env)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{tier} store: {message}")]
pub struct StoreError {
    pub tier: &'static str,
    pub message: String,
}

/// A blocking secret store. Implementations never log secret values.
pub trait SecretBackend: Send + Sync {
    fn tier(&self) -> Tier;
    fn get(&self, account: &str) -> Result<Option<Secret>, StoreError>;
    fn set(&self, account: &str, value: &Secret) -> Result<(), StoreError>;
    fn delete(&self, account: &str) -> Result<(), StoreError>;
}

/// The store in use, with async calls that run off the runtime under a timeout. Opening is
/// lazy: probing the keychain can take a while, and the daemon must answer `initialize` first.
#[derive(Clone)]
pub struct Store {
    opened: Arc<std::sync::OnceLock<Opened>>,
    open: Arc<dyn Fn() -> Opened + Send + Sync>,
}

struct Opened {
    backend: Arc<dyn SecretBackend>,
    /// Why higher tiers were passed over (shown by `doctor`), or why the chosen one failed.
    skipped: Vec<String>,
}

impl Store {
    pub fn from_backend(backend: Arc<dyn SecretBackend>) -> Store {
        let cell = std::sync::OnceLock::new();
        let _ = cell.set(Opened {
            backend: backend.clone(),
            skipped: Vec::new(),
        });
        Store {
            opened: Arc::new(cell),
            open: Arc::new(move || Opened {
                backend: backend.clone(),
                skipped: Vec::new(),
            }),
        }
    }

    pub fn memory() -> Store {
        Store::from_backend(Arc::new(MemoryStore::default()))
    }

    /// A store for `choice`, opened on first use. A store that was asked for by name and cannot
    /// be opened is not replaced by another: it stays unavailable and says why.
    pub fn lazy(choice: StoreChoice, runtime_dir: PathBuf) -> Store {
        Store {
            opened: Arc::new(std::sync::OnceLock::new()),
            open: Arc::new(move || match open(choice, &runtime_dir) {
                Ok(opened) => opened,
                Err(e) => Opened {
                    backend: Arc::new(Unavailable(e.clone())),
                    skipped: vec![e.to_string()],
                },
            }),
        }
    }

    fn opened(&self) -> &Opened {
        self.opened.get_or_init(|| (self.open)())
    }

    /// Open the store off the async runtime (the keychain probe blocks).
    pub async fn ready(&self) {
        if self.opened.get().is_none() {
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                this.opened();
            })
            .await;
        }
    }

    pub fn tier(&self) -> Tier {
        self.opened().backend.tier()
    }

    pub fn skipped(&self) -> &[String] {
        &self.opened().skipped
    }

    pub async fn get(&self, account: &str) -> Result<Option<Secret>, StoreError> {
        self.ready().await;
        let (b, a) = (self.opened().backend.clone(), account.to_string());
        self.blocking(move || b.get(&a)).await
    }

    pub async fn set(&self, account: &str, value: &Secret) -> Result<(), StoreError> {
        self.ready().await;
        let (b, a, v) = (
            self.opened().backend.clone(),
            account.to_string(),
            value.clone(),
        );
        self.blocking(move || b.set(&a, &v)).await
    }

    pub async fn delete(&self, account: &str) -> Result<(), StoreError> {
        self.ready().await;
        let (b, a) = (self.opened().backend.clone(), account.to_string());
        self.blocking(move || b.delete(&a)).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let tier = self.tier().as_str();
        match tokio::time::timeout(STORE_TIMEOUT, tokio::task::spawn_blocking(f)).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(StoreError {
                tier,
                message: format!("store call failed: {join}"),
            }),
            Err(_) => Err(StoreError {
                tier,
                message: format!(
                    "no answer within {}s (is the keychain locked?)",
                    STORE_TIMEOUT.as_secs()
                ),
            }),
        }
    }
}

/// A store that was asked for and could not be opened: every call says why.
struct Unavailable(StoreError);

impl SecretBackend for Unavailable {
    fn tier(&self) -> Tier {
        match self.0.tier {
            "secret-service" => Tier::SecretService,
            "keyutils" => Tier::Keyutils,
            _ => Tier::File,
        }
    }
    fn get(&self, _: &str) -> Result<Option<Secret>, StoreError> {
        Err(self.0.clone())
    }
    fn set(&self, _: &str, _: &Secret) -> Result<(), StoreError> {
        Err(self.0.clone())
    }
    fn delete(&self, _: &str) -> Result<(), StoreError> {
        Err(self.0.clone())
    }
}

/// The keyring service name entries are filed under. Tests set `SCANMINT_KEYRING_SERVICE` so
/// parallel runs sharing one keychain cannot see each other's entries.
pub fn service_name() -> String {
    std::env::var("SCANMINT_KEYRING_SERVICE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "scanmint".to_string())
}

/// Open the store for `choice`, walking the ladder for `Auto`. Blocking.
fn open(choice: StoreChoice, runtime_dir: &Path) -> Result<Opened, StoreError> {
    let service = service_name();
    let mut skipped = Vec::new();
    let backend: Arc<dyn SecretBackend> = match choice {
        StoreChoice::SecretService => Arc::new(probe(KeyringStore::secret_service(&service))?),
        StoreChoice::Keyutils => Arc::new(probe(KeyringStore::keyutils(&service))?),
        StoreChoice::File => Arc::new(FileStore::open(runtime_dir.join("secrets.json"))?),
        StoreChoice::Memory => Arc::new(MemoryStore::default()),
        StoreChoice::Auto => {
            let mut chosen: Option<Arc<dyn SecretBackend>> = None;
            for candidate in [
                KeyringStore::secret_service as fn(&str) -> _,
                KeyringStore::keyutils,
            ] {
                match probe(candidate(&service)) {
                    Ok(store) => {
                        chosen = Some(Arc::new(store));
                        break;
                    }
                    Err(e) => skipped.push(e.to_string()),
                }
            }
            chosen.unwrap_or_else(|| {
                skipped.push("file store: not configured (set store = \"file\" to use it)".into());
                Arc::new(MemoryStore::default())
            })
        }
    };
    for note in &skipped {
        tracing::info!(skipped = %note, "secret store tier passed over");
    }
    tracing::info!(tier = backend.tier().as_str(), "secret store in use");
    Ok(Opened { backend, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn file_store_round_trip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path().join("rt/secrets.json")).unwrap();
        assert!(store.get("a").unwrap().is_none());
        store.set("a", &Secret::new("s3cret")).unwrap();
        store.set("b", &Secret::new("other")).unwrap();
        assert_eq!(store.get("a").unwrap().unwrap().expose(), "s3cret");
        store.delete("a").unwrap();
        assert!(store.get("a").unwrap().is_none());
        assert_eq!(store.get("b").unwrap().unwrap().expose(), "other");
        let mode = std::fs::metadata(dir.path().join("rt/secrets.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn file_store_refuses_a_loose_file() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("rt");
        fsutil::ensure_private_dir(&private).unwrap();
        let file = private.join("secrets.json");
        std::fs::write(&file, "{}").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = FileStore::open(file)
            .err()
            .expect("must refuse")
            .to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[tokio::test]
    async fn memory_store_through_the_async_wrapper() {
        let store = Store::memory();
        assert_eq!(store.tier(), Tier::Memory);
        store.set("x", &Secret::new("v")).await.unwrap();
        assert_eq!(store.get("x").await.unwrap().unwrap().expose(), "v");
        store.delete("x").await.unwrap();
        assert!(store.get("x").await.unwrap().is_none());
    }
}
