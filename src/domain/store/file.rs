//! The file store, used only when named: 0600 in a 0700 runtime directory, replaced
//! atomically, a looser file or directory refused.

use super::*;

/// An explicitly chosen file in the runtime directory (tmpfs on most systems): 0600 in a 0700
/// directory, replaced atomically; a looser file or directory is refused.
pub struct FileStore {
    path: PathBuf,
    lock: Mutex<()>,
}

#[derive(serde::Serialize)]
struct FileEntries<'a>(#[serde(serialize_with = "serialize_entries")] &'a HashMap<String, Secret>);

fn serialize_entries<S: serde::Serializer>(
    map: &&HashMap<String, Secret>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(map.len()))?;
    for (k, v) in map.iter() {
        m.serialize_entry(k, v.expose())?;
    }
    m.end()
}

impl FileStore {
    pub fn open(path: PathBuf) -> Result<FileStore, StoreError> {
        let err = |message: String| StoreError {
            tier: Tier::File.as_str(),
            message,
        };
        let dir = path.parent().ok_or_else(|| err("no directory".into()))?;
        fsutil::ensure_private_dir(dir).map_err(|e| err(e.to_string()))?;
        if path.exists() {
            fsutil::check_private(&path, false).map_err(|e| err(e.to_string()))?;
        }
        Ok(FileStore {
            path,
            lock: Mutex::new(()),
        })
    }

    fn err(&self, message: String) -> StoreError {
        StoreError {
            tier: Tier::File.as_str(),
            message: format!("{}: {message}", self.path.display()),
        }
    }

    fn read(&self) -> Result<HashMap<String, Secret>, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                fsutil::check_private(&self.path, false).map_err(|e| self.err(e.to_string()))?;
                serde_json::from_slice(&bytes)
                    .map_err(|_| self.err("is not a scanmint secrets file".into()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
            Err(e) => Err(self.err(e.to_string())),
        }
    }

    fn write(&self, map: &HashMap<String, Secret>) -> Result<(), StoreError> {
        let bytes = Zeroizing::new(
            serde_json::to_vec(&FileEntries(map)).map_err(|e| self.err(e.to_string()))?,
        );
        fsutil::write_private_atomic(&self.path, &bytes).map_err(|e| self.err(e.to_string()))
    }
}

impl SecretBackend for FileStore {
    fn tier(&self) -> Tier {
        Tier::File
    }
    fn get(&self, account: &str) -> Result<Option<Secret>, StoreError> {
        let _guard = self.lock.lock().unwrap();
        Ok(self.read()?.remove(account))
    }
    fn set(&self, account: &str, value: &Secret) -> Result<(), StoreError> {
        let _guard = self.lock.lock().unwrap();
        let mut map = self.read()?;
        map.insert(account.to_string(), value.clone());
        self.write(&map)
    }
    fn delete(&self, account: &str) -> Result<(), StoreError> {
        let _guard = self.lock.lock().unwrap();
        let mut map = self.read()?;
        if map.remove(account).is_some() {
            self.write(&map)?;
        }
        Ok(())
    }
}
