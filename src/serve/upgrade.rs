//! Clients learn the daemon's version when they connect, and a client newer than the daemon
//! replaces it: it asks the daemon to stop (`scanmint/stop`, graceful: the ledger is saved and
//! the cached key stays in the store), waits for it to exit, and starts its own. `scanmint stop`
//! uses the same request. The exchange here is a few raw JSON-RPC frames, because the serving
//! layer cannot use the CLI's client.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::platform;
use crate::serve::protocol::Method;
use crate::serve::socket::{connect_or_spawn, socket_path};
use crate::serve::version;

/// How long a stopping daemon may take to finish (it waits for mints in flight, up to 10 s).
const STOP_WAIT: Duration = Duration::from_secs(15);

/// No answer from a daemon to these few requests is awaited longer than this.
const ANSWER_WAIT: Duration = Duration::from_secs(10);

/// A short JSON-RPC exchange with the daemon over one connection.
struct Raw {
    read: BufReader<tokio::net::unix::OwnedReadHalf>,
    write: tokio::net::unix::OwnedWriteHalf,
    pid: Option<i32>,
}

impl Raw {
    fn new(stream: UnixStream) -> Raw {
        let pid = stream.peer_cred().ok().and_then(|c| c.pid());
        let (read, write) = stream.into_split();
        Raw {
            read: BufReader::new(read),
            write,
            pid,
        }
    }

    /// Send a request and wait (bounded) for its answer, skipping notifications.
    async fn request(&mut self, id: i64, method: &str, params: Value) -> anyhow::Result<Value> {
        tokio::time::timeout(ANSWER_WAIT, self.exchange(id, method, params))
            .await
            .with_context(|| {
                format!("the scanmint daemon did not answer {method} within {ANSWER_WAIT:?}")
            })?
    }

    async fn exchange(&mut self, id: i64, method: &str, params: Value) -> anyhow::Result<Value> {
        let body = serde_json::to_vec(
            &json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }),
        )?;
        self.write
            .write_all(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes())
            .await?;
        self.write.write_all(&body).await?;
        loop {
            let msg = self.read_frame().await?;
            if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                if let Some(e) = msg.get("error") {
                    bail!("{}", e["message"].as_str().unwrap_or("error"));
                }
                return Ok(msg.get("result").cloned().unwrap_or(Value::Null));
            }
        }
    }

    async fn read_frame(&mut self) -> anyhow::Result<Value> {
        let mut length = None;
        loop {
            let mut line = String::new();
            if self.read.read_line(&mut line).await? == 0 {
                bail!("the daemon closed the connection");
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse::<usize>().ok();
            }
        }
        let length = length
            .filter(|&n| n <= crate::serve::framing::MAX_FRAME)
            .context("a frame without a usable Content-Length")?;
        let mut body = vec![0; length];
        self.read.read_exact(&mut body).await?;
        Ok(serde_json::from_slice(&body)?)
    }
}

/// The version in an `initialize` result (`serverInfo.version`).
pub fn version_of(initialize_result: &Value) -> Option<String> {
    initialize_result["serverInfo"]["version"]
        .as_str()
        .map(String::from)
}

/// Wait until process `pid` has exited (it is our own daemon: same user, by the socket).
pub async fn wait_gone(pid: Option<i32>) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + STOP_WAIT;
    loop {
        let alive = match pid {
            Some(pid) => platform::alive(pid),
            // No pid from the socket: the socket answering is the sign of life.
            None => UnixStream::connect(socket_path()).await.is_ok(),
        };
        if !alive {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the scanmint daemon (pid {pid:?}) did not stop within {STOP_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ask the running daemon, if any, to stop; wait until it has. Its pid and version, or `None`
/// when no daemon was running.
pub async fn stop_running(reason: &str) -> anyhow::Result<Option<(Option<i32>, Option<String>)>> {
    let Ok(stream) = UnixStream::connect(socket_path()).await else {
        return Ok(None);
    };
    let mut raw = Raw::new(stream);
    let init = raw
        .request(
            1,
            "initialize",
            json!({ "processId": std::process::id(), "capabilities": {},
                    "initializationOptions": { "clientKind": "cli" } }),
        )
        .await?;
    raw.request(
        2,
        crate::serve::protocol::Stop::METHOD,
        json!({ "reason": reason, "version": version::own() }),
    )
    .await?;
    wait_gone(raw.pid).await?;
    Ok(Some((raw.pid, version_of(&init))))
}

/// For the `scanmint lsp` proxy: a connection to a daemon at least as new as this binary. A
/// separate short session learns the daemon's version, so the editor's own `initialize` goes to
/// the daemon that will serve it.
pub async fn connect_current() -> anyhow::Result<UnixStream> {
    let stream = connect_or_spawn().await?;
    let mut raw = Raw::new(stream);
    let init = raw
        .request(
            1,
            "initialize",
            json!({ "processId": std::process::id(), "capabilities": {},
                    "initializationOptions": { "clientKind": "cli" } }),
        )
        .await;
    drop(raw);
    let daemon = match init {
        Ok(init) => version_of(&init),
        Err(e) => {
            // The editor's own session will meet the same daemon and report what is wrong.
            tracing::warn!(error = %e, "cannot learn the daemon's version; using it as it is");
            None
        }
    };
    if daemon
        .as_deref()
        .is_some_and(|d| version::is_newer(&version::own(), d))
    {
        replace(daemon.as_deref()).await?;
    }
    connect_or_spawn().await
}

/// Stop an older daemon so that the next connection starts this binary's.
pub async fn replace(daemon: Option<&str>) -> anyhow::Result<()> {
    tracing::info!(
        daemon = daemon.unwrap_or("?"),
        mine = %version::own(),
        "the daemon is older than this client: replacing it"
    );
    stop_running("upgrade").await?;
    Ok(())
}
