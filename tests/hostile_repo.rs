//! A hostile repository against the shared daemon (issue 12, finding 5): huge one-line `.env.*`
//! buffers opened from two editor windows, and a workspace whose scanned files are a link to
//! `/dev/zero`, a FIFO and links out of the workspace. The daemon must keep answering a third
//! session within a second, go quiet again, and never read outside the workspace.
//!
//! Runs the real binary (`scanmint lsp` → daemon) against the emulator, as an editor would.

mod common;

use std::time::{Duration, Instant};

use common::Env;
use scanmint::cli::client::LspClient;
use serde_json::{Value, json};

/// CPU time (user + system, in clock ticks) the process has used so far.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the daemon runs");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Every diagnostics notification that arrives within `wait`.
async fn drain_diagnostics(client: &mut LspClient, wait: Duration) -> Vec<Value> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + wait;
    while let Some(d) = client
        .wait_for(
            "textDocument/publishDiagnostics",
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
    {
        seen.push(d);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_repository_opened_in_two_windows_does_not_take_the_daemon_down() {
    let env = Env::new().await;
    let ws = env.path("workspace");
    let outside = env.path("outside");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::create_dir_all(outside.join("workflows")).unwrap();
    let secret_outside = "CORTEX_API_KEY=Outside0123456789abcdef\n";
    std::fs::write(outside.join("secrets.env"), secret_outside).unwrap();
    std::fs::write(outside.join("workflows/ci.yml"), secret_outside).unwrap();
    std::os::unix::fs::symlink("/dev/zero", ws.join(".env")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", ws.join(".env.passwd")).unwrap();
    std::os::unix::fs::symlink(outside.join("secrets.env"), ws.join(".env.link")).unwrap();
    std::os::unix::fs::symlink(&outside, ws.join(".github")).unwrap();
    let fifo = std::ffi::CString::new(ws.join(".env.fifo").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    // A file inside the workspace with a literal key: the scan still works.
    std::fs::write(
        ws.join(".env.real"),
        "CORTEX_API_KEY=Inside0123456789abcdef\n",
    )
    .unwrap();
    let folders = json!({ "workspaceFolders": [{ "uri": format!("file://{}", ws.display()), "name": "ws" }] });

    // Two editor windows, each opening a one-line 4 MiB `.env.x` buffer.
    let huge = "a".repeat(4 << 20);
    let mut windows = Vec::new();
    for n in 0..2 {
        let s = env.lsp_with(json!({}), folders.clone()).await;
        let uri = format!("file://{}/.env.x{n}", ws.display());
        s.client
            .notify(
                "textDocument/didOpen",
                json!({ "textDocument": { "uri": uri, "languageId": "dotenv", "version": 1, "text": huge } }),
            )
            .await
            .unwrap();
        windows.push(s);
    }

    // A third window: its `initialize` is answered within a second.
    let mut child = env
        .cmd(&["lsp"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let third = LspClient::over(child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let started = Instant::now();
    let init = tokio::time::timeout(
        Duration::from_secs(10),
        third.request(
            "initialize",
            json!({ "processId": null, "capabilities": {} }),
        ),
    )
    .await;
    let took = started.elapsed();
    assert!(
        matches!(init, Ok(Ok(_))),
        "the third session is answered: {init:?}"
    );
    assert!(took < Duration::from_secs(1), "initialize took {took:?}");

    // The daemon goes quiet again: under 10% of one core over two seconds.
    let pid = env.daemon_pid().await.expect("the daemon runs");
    let mut diagnostics = Vec::new();
    for s in &mut windows {
        diagnostics.extend(drain_diagnostics(&mut s.client, Duration::from_secs(1)).await);
    }
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - before;
    assert!(used < 20, "the daemon used {used} ticks in 2 s of quiet");

    // Nothing outside the workspace was read: no diagnostic for the links, the FIFO, /dev/zero
    // or the linked directory; the real file inside is reported.
    for s in &mut windows {
        diagnostics.extend(drain_diagnostics(&mut s.client, Duration::from_millis(300)).await);
    }
    let reported: Vec<String> = diagnostics
        .iter()
        .filter(|d| !d["diagnostics"].as_array().unwrap().is_empty())
        .map(|d| d["uri"].as_str().unwrap().to_string())
        .collect();
    assert!(
        reported.iter().all(|u| u.ends_with("/.env.real")),
        "only the real file inside the workspace is reported: {reported:?}"
    );
    assert!(
        reported.iter().any(|u| u.ends_with("/.env.real")),
        "the scan still works: {reported:?}"
    );
    let text = serde_json::to_string(&diagnostics).unwrap();
    assert!(
        !text.contains("outside") && !text.contains("passwd"),
        "{text}"
    );
    let _ = child.start_kill();
}
