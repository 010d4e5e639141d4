//! Scanner sessions (`clientKind: "exec"`, `scannerOnly: true`) served without tower-lsp: a
//! scanner's launch asks for one thing, a key, and every launch pays for its session. The first
//! frame of every local connection is read here; an `initialize` from such a client (it promised
//! to use a scanner's methods only) is answered by this loop
//! (initialize, credentials, scanFailed, shutdown, exit), anything else goes to tower-lsp with
//! that frame in front. Messages are taken in order, so a client may send its ask right behind
//! `initialize` without waiting; requests then run concurrently, as in tower-lsp.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

use super::handlers::credentials::{Asker, CredentialsParams, hand_out};
use super::handlers::initialize::initialize_result;
use super::handlers::scan_failed::{ScanFailedParams, report_scan_failed};
use super::*;
use crate::domain::wipe;
use crate::serve::framing::{Frame, consume_frame, split_frame};

/// A first frame bigger than this is no exec client's `initialize`: it goes to tower-lsp as is.
const PEEK_LIMIT: usize = 64 << 10;

/// What the first frame of a connection turned out to be.
pub(crate) enum FirstFrame {
    /// An exec client's `initialize` (its id and options) and the bytes read behind it.
    Exec {
        id: Value,
        options: Option<Value>,
        rest: Zeroizing<Vec<u8>>,
    },
    /// Anything else (or a frame the guard will refuse): tower-lsp's, these bytes first.
    Other(Vec<u8>),
    /// The client went away first.
    Closed,
}

/// Read until the first frame is whole (or cannot be an exec client's), and say whose it is.
pub(crate) async fn first_frame<R: AsyncRead + Unpin>(read: &mut R) -> FirstFrame {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match split_frame(&buf) {
            Frame::Complete { header_len, len } => {
                let Some((id, options)) = exec_initialize(&buf[header_len..len]) else {
                    return FirstFrame::Other(buf);
                };
                let mut rest = Zeroizing::new(buf);
                consume_frame(&mut rest, len);
                return FirstFrame::Exec { id, options, rest };
            }
            Frame::Incomplete if buf.len() < PEEK_LIMIT => {}
            _ => return FirstFrame::Other(buf),
        }
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => return FirstFrame::Closed,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `(id, initializationOptions)` if `body` is an `initialize` from a scanner-only exec client.
fn exec_initialize(body: &[u8]) -> Option<(Value, Option<Value>)> {
    #[derive(Deserialize)]
    struct Initialize {
        id: Value,
        method: String,
        #[serde(default)]
        params: Option<InitializeBody>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct InitializeBody {
        #[serde(default)]
        initialization_options: Option<Value>,
    }
    let msg: Initialize = serde_json::from_slice(body).ok()?;
    let options = msg.params?.initialization_options;
    let kind = options.as_ref()?.get("clientKind")?.as_str()?;
    let scanner_only = options.as_ref()?.get("scannerOnly")?.as_bool()?;
    (msg.method == "initialize" && kind == "exec" && scanner_only && !msg.id.is_null())
        .then_some((msg.id, options))
}

/// Counts a scanner session as open (the daemon does not idle out under it) until dropped.
struct Open(Arc<Hub>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.exec_sessions.fetch_sub(1, Ordering::Relaxed);
        self.0.session_ended.notify_one();
    }
}

/// One scanner session, from its `initialize` on.
pub(crate) async fn serve<R, W>(
    hub: Arc<Hub>,
    (id, options, mut buf): (Value, Option<Value>, Zeroizing<Vec<u8>>),
    mut read: R,
    write: W,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    hub.exec_sessions.fetch_add(1, Ordering::Relaxed);
    let _open = Open(hub.clone());
    let session = Arc::new(Scanner {
        hub: hub.clone(),
        own_profile: InitOptions::read(options.as_ref()).profile,
        leases: Mutex::new(Vec::new()),
        out: tokio::sync::Mutex::new(write),
    });
    let init = serde_json::to_value(initialize_result()).unwrap_or(Value::Null);
    if session.reply(&id, Ok(init)).await.is_err() {
        return;
    }
    let mut running = tokio::task::JoinSet::new();
    let mut chunk = Zeroizing::new(vec![0u8; 16 << 10]);
    loop {
        match split_frame(&buf) {
            Frame::Complete { header_len, len } => {
                let msg = serde_json::from_slice::<Value>(&buf[header_len..len]);
                consume_frame(&mut buf, len);
                let Ok(msg) = msg else {
                    let _ = session.reply(&Value::Null, Err(Error::parse_error())).await;
                    continue;
                };
                if msg.get("method").and_then(Value::as_str) == Some("exit") {
                    break;
                }
                // As many requests at once as a tower-lsp session takes; the next waits.
                while running.len() >= CONCURRENCY {
                    running.join_next().await;
                }
                let session = session.clone();
                running.spawn(async move { session.handle(msg).await });
            }
            Frame::Incomplete => match read.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    chunk[..n].fill(0);
                }
            },
            Frame::HeaderTooLong | Frame::BadLength { .. } => {
                tracing::warn!(
                    "a scanner session sent a frame without a usable length or over 16 MiB; closing it"
                );
                break;
            }
        }
    }
    // The client is gone: nothing is left to answer, and its leases end with the session.
    running.abort_all();
}

/// A scanner session's state: its profile, its leases and the writing half of its connection.
struct Scanner<W> {
    hub: Arc<Hub>,
    own_profile: Option<String>,
    leases: Mutex<Vec<Lease>>,
    out: tokio::sync::Mutex<W>,
}

impl<W: AsyncWrite + Unpin + Send> Scanner<W> {
    fn profile(&self, asked: Option<&str>) -> String {
        self.hub
            .broker
            .resolve_profile(asked.or(self.own_profile.as_deref()))
    }

    async fn handle(&self, mut msg: Value) {
        let method = msg
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let id = msg.get("id").cloned();
        let params = msg.get_mut("params").map(Value::take);
        let params = params.filter(|p| !p.is_null()).unwrap_or_else(|| json!({}));
        let result = match method.as_str() {
            protocol::Credentials::METHOD => {
                match serde_json::from_value::<CredentialsParams>(params) {
                    Ok(params) => {
                        let asker = Asker {
                            broker: &self.hub.broker,
                            profile: self.profile(params.profile.as_deref()),
                            remote: false,
                            exec: true,
                            may_see_secret: true,
                            leases: &self.leases,
                        };
                        hand_out(asker, params).await.map_err(err)
                    }
                    Err(e) => Err(invalid(format!("invalid params: {e}"))),
                }
            }
            protocol::ScanFailed::METHOD => {
                if let Ok(params) = serde_json::from_value::<ScanFailedParams>(params) {
                    let profile = self.profile(params.profile.as_deref());
                    report_scan_failed(&self.hub.broker, &profile, false, params).await;
                }
                return;
            }
            "shutdown" => Ok(Value::Null),
            _ => Err(Error::method_not_found()),
        };
        // Notifications (no id) get no reply; `initialized` and `$/` ones end here.
        if let Some(id) = id {
            let _ = self.reply(&id, result).await;
        }
    }

    /// Write one reply; the copy of a key in it is wiped once it is on its way.
    async fn reply(&self, id: &Value, result: Result<Value>) -> std::io::Result<()> {
        let mut msg = match result {
            Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Err(e) => json!({ "jsonrpc": "2.0", "id": id, "error": e }),
        };
        let body = Zeroizing::new(serde_json::to_vec(&msg).unwrap_or_default());
        wipe::zeroize_strings(&mut msg);
        let mut frame =
            Zeroizing::new(format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes());
        frame.extend_from_slice(&body);
        let mut out = self.out.lock().await;
        out.write_all(&frame).await?;
        out.flush().await
    }
}
