//! The per-user daemon: one broker, one LSP session per connection on a private Unix socket,
//! and an exit when idle with nothing left to revoke. `socket.rs` holds the socket's rules;
//! `proxy.rs` the editor-facing `scanmint lsp`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::domain::broker::SecurityLevel;
use crate::domain::broker::{Broker, BrokerOptions, PrimaryKey};
use crate::domain::clock::SystemClock;
use crate::domain::config::{self, Config};
use crate::domain::ledger::LedgerFile;
use crate::domain::secret::Secret;
use crate::domain::store::Store;
use crate::platform::{self, fs as fsutil};
use crate::serve::config_watch::ConfigWatch;
use crate::serve::cortex_env::CortexEnvWriter;
use crate::serve::lsp::{Hub, StopReason};
use crate::serve::remote::remote_socket_path;
use crate::serve::socket::{listen, lock_path, socket_path, take_lock, watch_runtime_dir};
use crate::serve::state_lock::take_state_lock;
use crate::tenant::connector::HttpConnector;

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

/// The lock, waiting briefly if a daemon still holds it while finishing: one that stops has
/// removed its socket already, and the client that started us is waiting for ours.
async fn take_lock_after_predecessor(socket: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(12);
    loop {
        match take_lock(&lock_path()) {
            Ok(lock) => return Ok(lock),
            Err(e) if socket.exists() || tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

/// `scanmint daemon`: serve until idle for `idle_exit` (with nothing left to revoke) or SIGTERM.
pub async fn run() -> anyhow::Result<()> {
    // Everything we create is private, socket included, from the first byte.
    platform::private_umask();
    let dir = config::runtime_dir();
    fsutil::ensure_private_dir(&dir)
        .with_context(|| format!("refusing the runtime directory {}", dir.display()))?;
    // Held (not read) for the life of the process: the flock is what keeps a second daemon out.
    let socket = socket_path();
    let mut _lock = take_lock_after_predecessor(&socket).await?;
    // And the state's own lock, whatever socket another broker on it may be serving.
    let _state_lock = take_state_lock("stop it first, or point XDG_STATE_HOME elsewhere")?;
    if socket.exists() {
        // We hold the lock, so no daemon serves it: a crashed daemon left it behind.
        tracing::info!(socket = %socket.display(), "replacing a stale socket");
        std::fs::remove_file(&socket)
            .with_context(|| format!("cannot remove stale socket {}", socket.display()))?;
    }
    let mut listener = listen(&socket)?;
    let (mut _dir_watch, mut dir_events) = watch_runtime_dir(&dir);

    let broker = build_broker()?;
    let remote_socket = broker.config().remote_socket.then(remote_socket_path);
    let mut remote_listener = match &remote_socket {
        Some(path) => Some(listen_fresh(path)?),
        None => None,
    };
    let idle_exit = broker.config().idle_exit;
    let hub = Hub::start(broker.clone());
    hub.stoppable
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _config_watch = ConfigWatch::start(hub.clone());
    tokio::spawn(broker.run());
    CortexEnvWriter::start(broker.clone());
    tracing::info!(socket = %socket.display(), pid = std::process::id(), "scanmint daemon serving");

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let me = platform::euid();
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
                accept(&hub, stream, me, false);
            }
            // Across ssh the peer is sshd running as us: the same uid check holds.
            accepted = accept_remote(&remote_listener) => {
                let Ok((stream, _)) = accepted else { continue };
                accept(&hub, stream, me, true);
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
                    if let Some(path) = &remote_socket {
                        remote_listener = Some(listen_fresh(path)?);
                    }
                    (_dir_watch, dir_events) = watch_runtime_dir(&dir);
                } else if let Some(path) = remote_socket.as_ref().filter(|p| !p.exists()) {
                    // Only the restricted socket went: remote machines need it back too.
                    tracing::warn!(socket = %path.display(), "the remote socket disappeared; listening again");
                    remote_listener = Some(listen_fresh(path)?);
                }
            }
            // The idle clock starts when the last session ends, not when it began.
            _ = hub.session_ended.notified() => idle_since = tokio::time::Instant::now(),
            _ = hub.stop_requested.notified() => {
                let reason = hub.take_stop_reason();
                tracing::info!(reason = ?reason.reason, "asked to stop: finishing");
                hub.announce_stop(&reason).await;
                break;
            }
            _ = sigterm.recv() => {
                tracing::info!("SIGTERM: finishing");
                let reason = StopReason { reason: Some("signal".into()), version: None };
                hub.announce_stop(&reason).await;
                break;
            }
            _ = sigint.recv() => { tracing::info!("SIGINT: finishing"); break; }
        }
        if hub.session_count() > 0 {
            idle_since = tokio::time::Instant::now();
        }
    }
    // No new client may reach a daemon that is finishing: the next one starts a fresh daemon,
    // which waits on the lock until this one is gone.
    let _ = std::fs::remove_file(&socket);
    if let Some(path) = &remote_socket {
        let _ = std::fs::remove_file(path);
    }
    drop(listener);
    drop(remote_listener);
    broker.shutdown().await;
    Ok(())
}

/// Listen on `path`, replacing a socket a crashed daemon left (we hold the lock).
fn listen_fresh(path: &std::path::Path) -> anyhow::Result<tokio::net::UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    listen(path)
}

async fn accept_remote(
    listener: &Option<tokio::net::UnixListener>,
) -> std::io::Result<(tokio::net::UnixStream, tokio::net::unix::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Serve a connection of our own user; refuse anyone else's.
fn accept(hub: &std::sync::Arc<Hub>, stream: tokio::net::UnixStream, me: u32, remote: bool) {
    match platform::peer_uid(&stream) {
        Ok((uid, _)) if uid == me => {
            let hub = hub.clone();
            let (read, write) = stream.into_split();
            if remote {
                tokio::spawn(async move { hub.serve_remote(read, write).await });
            } else {
                tokio::spawn(async move { hub.serve(read, write).await });
            }
        }
        Ok((uid, pid)) => {
            tracing::warn!(peer_uid = uid, pid = ?pid, remote, "refused a connection from another user")
        }
        Err(e) => {
            tracing::warn!(error = %e, remote, "refused a connection whose peer cannot be identified")
        }
    }
}
