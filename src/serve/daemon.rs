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
use crate::serve::cortex_env::CortexEnvWriter;
use crate::serve::lsp::Hub;
use crate::serve::socket::{listen, lock_path, socket_path, take_lock, watch_runtime_dir};
use crate::serve::state_lock::take_state_lock;
use crate::tenant::connector::HttpConnector;

/// The Primary key from `SCANMINT_PRIMARY_KEY_ID`/`SCANMINT_PRIMARY_KEY`, for CI and headless use.
fn env_primary(config: &Config) -> anyhow::Result<Option<PrimaryKey>> {
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

/// `scanmint daemon`: serve until idle for `idle_exit` (with nothing left to revoke) or SIGTERM.
pub async fn run() -> anyhow::Result<()> {
    // Everything we create is private, socket included, from the first byte.
    platform::private_umask();
    let dir = config::runtime_dir();
    fsutil::ensure_private_dir(&dir)
        .with_context(|| format!("refusing the runtime directory {}", dir.display()))?;
    // Held (not read) for the life of the process: the flock is what keeps a second daemon out.
    let mut _lock = take_lock(&lock_path())?;
    // And the state's own lock, whatever socket another broker on it may be serving.
    let _state_lock = take_state_lock("stop it first, or point XDG_STATE_HOME elsewhere")?;
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
                match platform::peer_uid(&stream) {
                    Ok((uid, _)) if uid == me => {
                        let hub = hub.clone();
                        let (read, write) = stream.into_split();
                        tokio::spawn(async move { hub.serve(read, write).await });
                    }
                    Ok((uid, pid)) => tracing::warn!(peer_uid = uid, pid = ?pid, "refused a connection from another user"),
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
