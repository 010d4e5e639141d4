//! The lock on the state itself. The ledger and the keychain entries belong to a state
//! directory, not to a socket: a daemon started with another `XDG_RUNTIME_DIR`, or
//! `scanmint lsp --standalone`, would otherwise run a second broker on the same ledger and the
//! two would overwrite each other's writes. Every broker holds this lock for its whole life.

use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::domain::config;
use crate::platform::{self, fs as fsutil};

/// Next to the ledger.
pub fn state_lock_path() -> PathBuf {
    config::state_dir().join("broker.lock")
}

/// Take the state's lock, or say who holds it. Keep the file open as long as the broker runs:
/// the `flock` ends when it is closed (or the process dies, crash included).
pub fn take_state_lock(holder_hint: &str) -> anyhow::Result<std::fs::File> {
    let dir = config::state_dir();
    fsutil::ensure_private_dir(&dir)
        .with_context(|| format!("refusing the state directory {}", dir.display()))?;
    let path = state_lock_path();
    // Created once, then held open read-only: a file open for writing would keep the state's
    // file system from being remounted read-only under a running daemon.
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let file =
        std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    if !platform::try_lock_exclusive(&file) {
        bail!(
            "another scanmint broker (a daemon or `scanmint lsp --standalone`) is using the state in {} (it holds {}); {holder_hint}",
            dir.display(),
            path.display()
        );
    }
    Ok(file)
}
