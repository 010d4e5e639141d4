//! The echo responder, the LSP baseline: this binary run with `--echo-server`, a separate
//! process like the daemon.

use super::*;

pub(crate) fn echo_server(socket: &Path, replies: &Path) -> anyhow::Result<()> {
    let replies: serde_json::Map<String, Value> = serde_json::from_slice(&std::fs::read(replies)?)?;
    let replies = Arc::new(replies);
    // Like the daemon: a two-worker runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::UnixListener::bind(socket)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
        println!("ready");
        std::io::stdout().flush()?;
        loop {
            let (stream, _) = listener.accept().await?;
            let replies = replies.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                while let Ok(Some(msg)) = read_frame(&mut read).await {
                    let method = msg
                        .get("method")
                        .and_then(|m| m.as_str())
                        .unwrap_or_default();
                    if method == "exit" {
                        break;
                    }
                    let Some(id) = msg.get("id") else { continue };
                    let result = replies.get(method).cloned().unwrap_or(Value::Null);
                    let reply = json!({ "jsonrpc": "2.0", "id": id, "result": result });
                    if write_frame(&mut write, &reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// Start the echo responder on `socket` with these canned results per method.
pub(crate) async fn start_echo(
    sb: &Sandbox,
    socket: &Path,
    replies: &Value,
) -> anyhow::Result<Child> {
    let file = sb.path("echo-replies.json");
    std::fs::write(&file, serde_json::to_vec(replies)?)?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--echo-server")
        .arg(socket)
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the echo server")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let line = step("echo server start", lines.next_line()).await?;
    ensure!(
        line.as_deref() == Some("ready"),
        "echo server said {line:?}"
    );
    Ok(child)
}
