//! The daemon's socket and everything both sides do with it: the runtime directory and the
//! socket and lock paths, their private modes (checked for `doctor` too), the lock that keeps a
//! second daemon out, the stale socket a crash leaves, and, for clients, connecting to the
//! daemon or starting it. The daemon (`daemon.rs`) and its clients (the proxy, the CLI) both
//! use this module, so neither needs the other.
//!
//! Clients authenticate the daemon before sending a byte: the directory must be ours and 0700,
//! the socket ours and a socket, and the process behind it ours (`SO_PEERCRED`). Otherwise
//! whoever created the directory first would receive `scanmint login`'s secret.

use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;

/// A socket path too long to bind or connect to is a clear error, not a mysterious one.
fn check_path_length(socket: &Path) -> anyhow::Result<()> {
    let len = socket.as_os_str().len();
    if len > SUN_PATH_MAX {
        bail!(
            "the socket path {} is {len} bytes, over the {SUN_PATH_MAX}-byte limit of Unix sockets: \
             set XDG_RUNTIME_DIR (or XDG_STATE_HOME) to a shorter directory of your own",
            socket.display()
        );
    }
    Ok(())
}

/// The socket at `socket` is a socket, ours, and private to us.
fn check_socket_file(socket: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    if !meta.file_type().is_socket() {
        return Err(std::io::Error::other(format!(
            "{} is not a socket",
            socket.display()
        )));
    }
    if meta.uid() != platform::euid() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {}, not by you (uid {})",
                socket.display(),
                meta.uid(),
                platform::euid()
            ),
        ));
    }
    // 0600 once `listen` is done; 0700 (the umask's) for a moment before: both are private.
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(std::io::Error::other(format!(
            "{} has mode {mode:03o}; want 600",
            socket.display()
        )));
    }
    Ok(())
}

/// For `doctor`: the runtime directory and socket are private, or why not.
pub fn check_runtime_dir() -> std::io::Result<String> {
    let dir = config::runtime_dir();
    fsutil::check_private(&dir, true)?;
    let socket = socket_path();
    match std::fs::symlink_metadata(&socket) {
        Ok(m) => {
            check_socket_file(&socket, &m)?;
            Ok(format!(
                "{} (directory 0700, socket 0600, both yours)",
                socket.display()
            ))
        }
        Err(_) => Ok(format!(
            "{} is private (0700); no daemon socket yet",
            dir.display()
        )),
    }
}

/// Connect to the daemon at `socket` if one of ours serves it; `None` if nothing does (no
/// directory, no socket, or a stale one). Anything that is not ours is an error, found before a
/// byte is sent.
fn connect_checked_blocking(
    socket: &Path,
) -> anyhow::Result<Option<std::os::unix::net::UnixStream>> {
    check_path_length(socket)?;
    let refuse = || {
        format!(
            "refusing to talk to the scanmint daemon at {}: it may be another user's impersonation",
            socket.display()
        )
    };
    let dir = socket
        .parent()
        .context("the socket path has no directory")?;
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(refuse),
        Ok(_) => fsutil::check_private(dir, true).with_context(refuse)?,
    }
    match std::fs::symlink_metadata(socket) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(refuse),
        Ok(meta) => check_socket_file(socket, &meta).with_context(refuse)?,
    }
    let Ok(stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return Ok(None);
    };
    // The file was ours; the process listening on it must be too.
    let (uid, pid) = platform::peer_uid(&stream).with_context(refuse)?;
    if uid != platform::euid() {
        bail!(
            "{}: the process serving it (pid {}) runs as uid {uid}, not as you (uid {})",
            refuse(),
            pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            platform::euid()
        );
    }
    Ok(Some(stream))
}

/// `connect_checked_blocking` for the runtime's clients.
async fn connect_checked(socket: &Path) -> anyhow::Result<Option<UnixStream>> {
    match connect_checked_blocking(socket)? {
        Some(stream) => {
            stream.set_nonblocking(true)?;
            Ok(Some(UnixStream::from_std(stream)?))
        }
        None => Ok(None),
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
    check_path_length(socket)?;
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
    connect_checked_blocking(&socket_path())
}

/// Connect to the daemon, starting it (detached, logging to the state dir) if it is not there.
/// With `SCANMINT_SOCKET` set, the daemon is a forwarded one (`remote.rs`): connect to it only.
/// Only a daemon of ours is ever talked to (see `connect_checked`).
pub async fn connect_or_spawn() -> anyhow::Result<UnixStream> {
    if let Some(forwarded) = crate::serve::remote::forwarded_socket() {
        return crate::serve::remote::connect_forwarded(&forwarded).await;
    }
    let socket = socket_path();
    if let Some(stream) = connect_checked(&socket).await? {
        return Ok(stream);
    }
    spawn_daemon()?;
    let mut delay = Duration::from_millis(2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(stream) = connect_checked(&socket).await? {
            return Ok(stream);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the scanmint daemon did not start (socket {}); see {}",
                socket.display(),
                log_path().display()
            )
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(100));
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
