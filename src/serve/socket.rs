//! The daemon's socket and everything both sides do with it: the runtime directory and the
//! socket and lock paths, their private modes (checked for `doctor` too), the lock that keeps a
//! second daemon out, the stale socket a crash leaves, and, for clients, connecting to the
//! daemon or starting it. The daemon (`daemon.rs`) and its clients (the proxy, the CLI) both
//! use this module, so neither needs the other.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{UnixListener, UnixStream};

use crate::domain::config;
use crate::platform::{self, fs as fsutil};

/// Bumped when the protocol changes incompatibly: it is part of the socket's name, so an old
/// daemon and a new proxy never talk past each other.
pub const PROTOCOL_VERSION: u32 = 1;

pub fn socket_path() -> PathBuf {
    config::runtime_dir().join(format!("scanmint-v{PROTOCOL_VERSION}.sock"))
}

pub fn lock_path() -> PathBuf {
    config::runtime_dir().join(format!("scanmint-v{PROTOCOL_VERSION}.lock"))
}

/// The daemon's log when the proxy starts it.
pub fn log_path() -> PathBuf {
    config::state_dir().join("daemon.log")
}

/// For `doctor`: the runtime directory and socket are private, or why not.
pub fn check_runtime_dir() -> std::io::Result<String> {
    let dir = config::runtime_dir();
    fsutil::check_private(&dir, true)?;
    let socket = socket_path();
    match std::fs::symlink_metadata(&socket) {
        Ok(m) => {
            let mode = m.permissions().mode() & 0o777;
            if mode != 0o600 {
                return Err(std::io::Error::other(format!(
                    "{} has mode {mode:03o}; want 600",
                    socket.display()
                )));
            }
            Ok(format!(
                "{} (directory 0700, socket 0600)",
                socket.display()
            ))
        }
        Err(_) => Ok(format!(
            "{} is private (0700); no daemon socket yet",
            dir.display()
        )),
    }
}

/// Hold an exclusive lock on the lock file for the life of the process.
pub fn take_lock(path: &Path) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    if !platform::try_lock_exclusive(&file) {
        bail!(
            "another scanmint daemon is already serving {}",
            socket_path().display()
        );
    }
    Ok(file)
}

pub fn listen(socket: &Path) -> anyhow::Result<UnixListener> {
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    fsutil::check_private(socket, false)?;
    Ok(listener)
}

/// Events when entries of the runtime directory (or the directory itself) are removed.
pub fn watch_runtime_dir(
    dir: &Path,
) -> (
    Option<notify::RecommendedWatcher>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    use notify::Watcher;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| matches!(e.kind, notify::EventKind::Remove(_))) {
            let _ = tx.send(());
        }
    });
    let watcher = watcher.ok().and_then(|mut w| {
        w.watch(dir, notify::RecursiveMode::NonRecursive)
            .ok()
            .map(|_| w)
    });
    if watcher.is_none() {
        tracing::warn!(dir = %dir.display(), "cannot watch the runtime directory");
    }
    (watcher, rx)
}

/// Connect to a running daemon, blocking (no runtime needed: `exec`'s fast path uses this
/// directly); `None` when no daemon answers. Every client connection starts here, so the checks
/// on who serves the socket live in one place: the process behind it must be ours.
pub fn connect_running() -> anyhow::Result<Option<std::os::unix::net::UnixStream>> {
    let socket = socket_path();
    let Ok(stream) = std::os::unix::net::UnixStream::connect(&socket) else {
        return Ok(None);
    };
    let (uid, pid) = platform::peer_uid(&stream)
        .with_context(|| format!("cannot tell who serves {}", socket.display()))?;
    if uid != platform::euid() {
        bail!(
            "refusing to talk to the scanmint daemon at {}: the process serving it (pid {}) runs as uid {uid}, not as you (uid {})",
            socket.display(),
            pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            platform::euid()
        );
    }
    Ok(Some(stream))
}

/// Connect to the daemon, starting it (detached, logging to the state dir) if it is not there.
pub async fn connect_or_spawn() -> anyhow::Result<UnixStream> {
    let socket = socket_path();
    if let Some(stream) = connect_running()? {
        stream.set_nonblocking(true)?;
        return Ok(UnixStream::from_std(stream)?);
    }
    spawn_daemon()?;
    let mut delay = Duration::from_millis(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match UnixStream::connect(&socket).await {
            Ok(stream) => return Ok(stream),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                bail!(
                    "the scanmint daemon did not start (socket {}: {e}); see {}",
                    socket.display(),
                    log_path().display()
                )
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
        }
    }
}

fn spawn_daemon() -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the scanmint binary")?;
    let state = config::state_dir();
    fsutil::ensure_private_dir(&state)
        .with_context(|| format!("refusing the state directory {}", state.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log_path())
        .with_context(|| format!("cannot open {}", log_path().display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("daemon")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log);
    // Its own session: closing the editor's terminal does not kill it.
    platform::detach_session(&mut cmd);
    cmd.spawn().context("cannot start the scanmint daemon")?;
    Ok(())
}
