//! The per-user daemon: a private Unix socket, one LSP session per connection, one broker.
//!
//! Also `scanmint lsp` (the proxy editors launch: join the daemon, starting it if needed, and
//! pipe bytes) and `scanmint lsp --standalone` (the same server in-process on stdio).

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::{UnixListener, UnixStream};

use crate::broker::{Broker, BrokerOptions, HttpConnector, PrimaryKey};
use crate::clock::SystemClock;
use crate::config::{self, Config};
use crate::ledger::LedgerFile;
use crate::lsp::Hub;
use crate::papi::wire::SecurityLevel;
use crate::secret::Secret;
use crate::store::Store;
use crate::{deliver, fsutil};

/// Bumped when the protocol changes incompatibly: it is part of the socket's name, so an old
/// daemon and a new proxy never talk past each other.
pub const PROTOCOL_VERSION: u32 = 1;

pub fn socket_path() -> PathBuf {
    config::runtime_dir().join(format!("scanmint-v{PROTOCOL_VERSION}.sock"))
}

fn lock_path() -> PathBuf {
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

/// The Primary key from `SCANMINT_PRIMARY_KEY_ID`/`SCANMINT_PRIMARY_KEY`, for CI and headless use.
pub fn env_primary(config: &Config) -> anyhow::Result<Option<PrimaryKey>> {
    let (Ok(id), Ok(key)) = (
        std::env::var("SCANMINT_PRIMARY_KEY_ID"),
        std::env::var("SCANMINT_PRIMARY_KEY"),
    ) else {
        return Ok(None);
    };
    let key = Secret::new(key);
    let key_id: i64 = id
        .trim()
        .parse()
        .context("SCANMINT_PRIMARY_KEY_ID must be an integer key id")?;
    let security_level = match std::env::var("SCANMINT_PRIMARY_SECURITY_LEVEL") {
        Ok(level) => level.parse::<SecurityLevel>().map_err(anyhow::Error::msg)?,
        Err(_) => SecurityLevel::Standard,
    };
    let base_url = config
        .profile(None)
        .base_url
        .context("SCANMINT_PRIMARY_KEY is set but no tenant URL: set SCANMINT_BASE_URL or base_url in the profile")?;
    Ok(Some(PrimaryKey {
        base_url,
        key_id,
        key,
        security_level,
    }))
}

/// The broker as configured by files and environment.
pub fn build_broker() -> anyhow::Result<Broker> {
    let config = Config::load()?;
    let env_primary = env_primary(&config)?;
    let store = Store::lazy(config.profile(None).store, config::runtime_dir());
    let broker = Broker::new(BrokerOptions {
        config,
        store,
        connector: Arc::new(HttpConnector),
        clock: Arc::new(SystemClock),
        ledger: LedgerFile::new(&config::state_dir()),
        env_primary,
    })
    .context("cannot open the ledger")?;
    Ok(broker)
}

/// Hold an exclusive lock on the lock file for the life of the process.
fn take_lock(path: &Path) -> anyhow::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        bail!(
            "another scanmint daemon is already serving {}",
            socket_path().display()
        );
    }
    Ok(file)
}

/// `scanmint daemon`: serve until idle for `idle_exit` (with nothing left to revoke) or SIGTERM.
pub async fn run() -> anyhow::Result<()> {
    // Everything we create is private, socket included, from the first byte.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
    let dir = config::runtime_dir();
    fsutil::ensure_private_dir(&dir)
        .with_context(|| format!("refusing the runtime directory {}", dir.display()))?;
    // Held (not read) for the life of the process: the flock is what keeps a second daemon out.
    let mut _lock = take_lock(&lock_path())?;
    let socket = socket_path();
    if socket.exists() {
        // We hold the lock, so no daemon serves it: a crashed daemon left it behind.
        tracing::info!(socket = %socket.display(), "replacing a stale socket");
        std::fs::remove_file(&socket)
            .with_context(|| format!("cannot remove stale socket {}", socket.display()))?;
    }
    let mut listener = listen(&socket)?;
    let (mut _dir_watch, mut dir_events) = watch_runtime_dir(&dir);

    let broker = build_broker()?;
    let idle_exit = broker.config().idle_exit;
    let hub = Hub::start(broker.clone());
    tokio::spawn({
        let broker = broker.clone();
        async move { broker.run().await }
    });
    deliver::CortexEnvWriter::start(broker.clone());
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "scanmint daemon serving");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let me = fsutil::euid();
    let mut idle_since = tokio::time::Instant::now();
    loop {
        let check_in = if hub.session_count() > 0 {
            Duration::from_secs(60)
        } else {
            idle_exit.saturating_sub(idle_since.elapsed())
        };
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                match stream.peer_cred() {
                    Ok(cred) if cred.uid() == me => {
                        let hub = hub.clone();
                        let (read, write) = stream.into_split();
                        tokio::spawn(async move { hub.serve(read, write).await });
                    }
                    Ok(cred) => tracing::warn!(peer_uid = cred.uid(), pid = ?cred.pid(), "refused a connection from another user"),
                    Err(e) => tracing::warn!(error = %e, "refused a connection whose peer cannot be identified"),
                }
            }
            _ = tokio::time::sleep(check_in) => {
                if hub.session_count() > 0 {
                    idle_since = tokio::time::Instant::now();
                } else if idle_since.elapsed() >= idle_exit {
                    if broker.outbox_len() == 0 {
                        tracing::info!("idle with no sessions; exiting");
                        break;
                    }
                    tracing::info!("idle, but revocations are still queued; staying");
                    idle_since = tokio::time::Instant::now();
                }
            }
            Some(()) = dir_events.recv() => {
                if !socket.exists() {
                    // Someone deleted the runtime directory or the socket: listen again rather
                    // than let the next editor start a second daemon.
                    tracing::warn!(socket = %socket.display(), "the socket disappeared; listening again");
                    fsutil::ensure_private_dir(&dir)?;
                    _lock = take_lock(&lock_path())?;
                    listener = listen(&socket)?;
                    (_dir_watch, dir_events) = watch_runtime_dir(&dir);
                }
            }
            // The idle clock starts when the last session ends, not when it began.
            _ = hub.session_ended.notified() => idle_since = tokio::time::Instant::now(),
            _ = sigterm.recv() => { tracing::info!("SIGTERM: finishing"); break; }
            _ = sigint.recv() => { tracing::info!("SIGINT: finishing"); break; }
        }
        if hub.session_count() > 0 {
            idle_since = tokio::time::Instant::now();
        }
    }
    broker.shutdown().await;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

fn listen(socket: &Path) -> anyhow::Result<UnixListener> {
    let listener = UnixListener::bind(socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
    fsutil::check_private(socket, false)?;
    Ok(listener)
}

/// Events when entries of the runtime directory (or the directory itself) are removed.
fn watch_runtime_dir(
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

/// `scanmint lsp --standalone`: the same server on stdio, in this process.
pub async fn run_standalone() -> anyhow::Result<()> {
    let broker = build_broker()?;
    let hub = Hub::start(broker.clone());
    tokio::spawn({
        let broker = broker.clone();
        async move { broker.run().await }
    });
    deliver::CortexEnvWriter::start(broker.clone());
    hub.serve(tokio::io::stdin(), tokio::io::stdout()).await;
    broker.shutdown().await;
    Ok(())
}

/// Connect to the daemon, starting it (detached, logging to the state dir) if it is not there.
pub async fn connect_or_spawn() -> anyhow::Result<UnixStream> {
    let socket = socket_path();
    if let Ok(stream) = UnixStream::connect(&socket).await {
        return Ok(stream);
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
    use std::os::unix::process::CommandExt;
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
    // SAFETY: setsid is async-signal-safe; it detaches the daemon from the editor's session so
    // closing the editor's terminal does not kill it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn().context("cannot start the scanmint daemon")?;
    Ok(())
}

/// `scanmint lsp`: pipe stdio to the daemon until the editor closes stdin.
pub async fn run_proxy() -> anyhow::Result<()> {
    let stream = connect_or_spawn().await?;
    let (mut from_daemon, mut to_daemon) = stream.into_split();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let upstream = async {
        let _ = tokio::io::copy(&mut stdin, &mut to_daemon).await;
        // The editor is gone: tell the daemon this session is over.
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut to_daemon).await;
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut from_daemon, &mut stdout).await;
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        _ = &mut upstream => {
            // Let the last replies through, briefly.
            let _ = tokio::time::timeout(Duration::from_millis(500), &mut downstream).await;
        }
        _ = &mut downstream => {}
    }
    Ok(())
}
