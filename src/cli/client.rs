//! A small LSP client: what the CLI, `scanmint exec`, tests and benchmarks use to talk to the
//! daemon. Server requests (progress, prompts) are answered with `null` and passed on as
//! messages, so callers can see them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::domain::wipe::{zeroize_bytes, zeroize_strings};

/// An error answered by the server, or a broken connection.
#[derive(Debug, Clone)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
    pub data: Option<Value>,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RpcError {}

impl RpcError {
    fn closed() -> Self {
        RpcError {
            code: -32099,
            message: "the scanmint daemon closed the connection".into(),
            data: None,
        }
    }
}

/// A message from the server that is not a reply: a notification or a server request.
#[derive(Debug, Clone)]
pub struct ServerMessage {
    pub method: String,
    pub params: Value,
}

type Pending = Arc<std::sync::Mutex<HashMap<i64, oneshot::Sender<Result<Value, RpcError>>>>>;

pub struct LspClient {
    writer: Arc<Mutex<Box<dyn AsyncWrite + Unpin + Send>>>,
    pending: Pending,
    next_id: AtomicI64,
    messages: mpsc::UnboundedReceiver<ServerMessage>,
}

/// Write one framed message.
pub async fn write_frame<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    msg: &Value,
) -> std::io::Result<()> {
    let mut body = serde_json::to_vec(msg)?;
    let mut frame = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    frame.extend_from_slice(&body);
    // A login request carries the Primary key: neither copy outlives the write.
    zeroize_bytes(&mut body);
    let written = w.write_all(&frame).await;
    zeroize_bytes(&mut frame);
    written?;
    w.flush().await
}

/// Parse a frame's body, then overwrite the body with zeros: a credentials reply or a login
/// request holds a secret, and the buffer would otherwise be freed with it still inside.
pub fn parse_and_wipe(body: &mut Vec<u8>) -> serde_json::Result<Value> {
    let parsed = serde_json::from_slice(body);
    zeroize_bytes(body);
    parsed
}

/// Read one framed message; `None` at end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> std::io::Result<Option<Value>> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
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
    let length = length.ok_or_else(|| std::io::Error::other("frame without Content-Length"))?;
    // Refuse a length we would never send rather than allocate whatever a frame claims.
    if length > crate::serve::framing::MAX_FRAME {
        return Err(std::io::Error::other(format!(
            "frame of {length} bytes, over the {} MiB limit",
            crate::serve::framing::MAX_FRAME >> 20
        )));
    }
    let mut body = vec![0; length];
    if let Err(e) = r.read_exact(&mut body).await {
        zeroize_bytes(&mut body);
        return Err(e);
    }
    parse_and_wipe(&mut body)
        .map(Some)
        .map_err(std::io::Error::other)
}

impl LspClient {
    /// Start a client over any byte stream (the socket, or a child's stdio).
    pub fn over<R, W>(read: R, write: W) -> LspClient
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let writer: Arc<Mutex<Box<dyn AsyncWrite + Unpin + Send>>> =
            Arc::new(Mutex::new(Box::new(write)));
        let pending: Pending = Arc::default();
        let (tx, messages) = mpsc::unbounded_channel();
        // The reader holds the writer weakly: dropping the client closes the connection.
        tokio::spawn(read_loop(
            BufReader::new(read),
            Arc::downgrade(&writer),
            pending.clone(),
            tx,
        ));
        LspClient {
            writer,
            pending,
            next_id: AtomicI64::new(1),
            messages,
        }
    }

    /// Connect to the daemon (starting it if needed) and initialize as `kind` ("exec"/"editor").
    /// A daemon older than this binary is replaced first (asked to stop, then started anew).
    pub async fn connect_daemon(kind: &str, profile: Option<&str>) -> anyhow::Result<LspClient> {
        use crate::serve::{upgrade, version};
        let mut options = json!({ "clientKind": kind, "profile": profile });
        if kind == "exec" {
            // `scanmint exec` asks for keys only: the daemon's lean scanner sessions serve it.
            options["scannerOnly"] = json!(true);
        }
        let stream = crate::serve::socket::connect_or_spawn().await?;
        let (read, write) = stream.into_split();
        let client = LspClient::over(read, write);
        let init = client.initialize(options.clone()).await?;
        let daemon = upgrade::version_of(&init);
        if !daemon
            .as_deref()
            .is_some_and(|d| version::is_newer(&version::own(), d))
        {
            return Ok(client);
        }
        client.close().await;
        upgrade::replace(daemon.as_deref()).await?;
        let stream = crate::serve::socket::connect_or_spawn().await?;
        let (read, write) = stream.into_split();
        let client = LspClient::over(read, write);
        client.initialize(options).await?;
        Ok(client)
    }

    /// `initialize` + `initialized`.
    pub async fn initialize(&self, options: Value) -> Result<Value, RpcError> {
        let result = self
            .request(
                "initialize",
                json!({
                    "processId": std::process::id(),
                    "capabilities": {},
                    "initializationOptions": options,
                }),
            )
            .await?;
        self.notify("initialized", json!({})).await?;
        Ok(result)
    }

    pub async fn request(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut msg = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let written = write_frame(&mut *self.writer.lock().await, &msg).await;
        // The params may hold the Primary key (`scanmint.login`): wipe our copy once sent.
        zeroize_strings(&mut msg);
        if written.is_err() {
            self.pending.lock().unwrap().remove(&id);
            return Err(RpcError::closed());
        }
        rx.await.unwrap_or_else(|_| Err(RpcError::closed()))
    }

    /// `workspace/executeCommand` with one argument object (or none).
    pub async fn command(&self, command: &str, argument: Option<Value>) -> Result<Value, RpcError> {
        let arguments: Vec<Value> = argument.into_iter().collect();
        self.request(
            "workspace/executeCommand",
            json!({ "command": command, "arguments": arguments }),
        )
        .await
    }

    pub async fn notify(&self, method: &str, params: Value) -> Result<(), RpcError> {
        let msg = json!({ "jsonrpc": "2.0", "method": method, "params": params });
        write_frame(&mut *self.writer.lock().await, &msg)
            .await
            .map_err(|_| RpcError::closed())
    }

    /// The next server message with this method, within `timeout`; others are skipped.
    pub async fn wait_for(&mut self, method: &str, timeout: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.messages.recv())
                .await
                .ok()??;
            if msg.method == method {
                return Some(msg.params);
            }
        }
    }

    /// Every server message received so far, without waiting.
    pub fn drain(&mut self) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        while let Ok(m) = self.messages.try_recv() {
            out.push(m);
        }
        out
    }

    /// `shutdown` + `exit`, politely.
    pub async fn close(self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.request("shutdown", Value::Null),
        )
        .await;
        let _ = self.notify("exit", Value::Null).await;
        let _ = self.writer.lock().await.shutdown().await;
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut read: BufReader<R>,
    writer: std::sync::Weak<Mutex<Box<dyn AsyncWrite + Unpin + Send>>>,
    pending: Pending,
    messages: mpsc::UnboundedSender<ServerMessage>,
) {
    while let Ok(Some(mut msg)) = read_frame(&mut read).await {
        let id = msg.get("id").cloned();
        let method = msg
            .get("method")
            .and_then(|m| m.as_str())
            .map(str::to_owned);
        match (method, id) {
            (Some(method), Some(id)) => {
                // A server request: answer null (no progress UI, no prompt), and pass it on.
                let reply = json!({ "jsonrpc": "2.0", "id": id, "result": null });
                if let Some(writer) = writer.upgrade() {
                    let _ = write_frame(&mut *writer.lock().await, &reply).await;
                }
                let _ = messages.send(ServerMessage {
                    method,
                    params: msg["params"].take(),
                });
            }
            (Some(method), None) => {
                let _ = messages.send(ServerMessage {
                    method,
                    params: msg["params"].take(),
                });
            }
            (None, Some(id)) => {
                let Some(id) = id.as_i64() else { continue };
                let Some(tx) = pending.lock().unwrap().remove(&id) else {
                    continue;
                };
                let result = match msg.get("error") {
                    Some(e) => Err(RpcError {
                        code: e["code"].as_i64().unwrap_or(0),
                        message: e["message"].as_str().unwrap_or("error").to_string(),
                        data: e.get("data").cloned(),
                    }),
                    // Moved, not cloned: a credentials reply's key is then in one place only,
                    // the Value the caller owns and wipes (`exec::take_credentials`).
                    None => Ok(msg["result"].take()),
                };
                let _ = tx.send(result);
            }
            (None, None) => {}
        }
        // Whatever is left of the message (an error's text, an unused field) is wiped too.
        zeroize_strings(&mut msg);
    }
    // Connection closed: fail every waiting request.
    for (_, tx) in pending.lock().unwrap().drain() {
        let _ = tx.send(Err(RpcError::closed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_over_the_limit_are_refused_not_allocated() {
        let input = b"Content-Length: 99999999999999999\r\n\r\n{}".as_slice();
        assert!(read_frame(&mut BufReader::new(input)).await.is_err());
        let input = b"Content-Length: 2\r\n\r\n{}".as_slice();
        let frame = read_frame(&mut BufReader::new(input)).await.unwrap();
        assert_eq!(frame, Some(json!({})));
    }

    #[test]
    fn a_credentials_reply_leaves_no_secret_in_its_frame_buffer() {
        let secret = "MintedKeySecret-0123456789abcdefXYZ";
        let reply = json!({ "jsonrpc": "2.0", "id": 3, "result": {
            "keyId": 7, "key": secret, "env": { "CORTEX_API_KEY": secret } } });
        let mut body = serde_json::to_vec(&reply).unwrap();
        let len = body.len();
        let parsed = parse_and_wipe(&mut body).unwrap();
        assert_eq!(parsed["result"]["key"], secret);
        assert_eq!(body.len(), len);
        assert!(
            body.iter().all(|&b| b == 0),
            "the frame buffer still holds bytes"
        );
        // A body that does not parse is wiped all the same.
        let mut bad = format!("{{\"key\":\"{secret}\"").into_bytes();
        assert!(parse_and_wipe(&mut bad).is_err());
        assert!(bad.iter().all(|&b| b == 0));
    }
}
