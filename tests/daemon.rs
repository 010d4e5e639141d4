//! The daemon and its LSP surface, end to end: `scanmint lsp` as editors launch it, the real
//! socket, the real daemon, against the emulator.

mod common;

use std::time::Duration;

use common::other_user::{nobody_dir, run_as_nobody, traversable};
use common::{Env, eventually, generation, mode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_advertises_commands_and_status_accepts_any_empty_params() {
    let env = Env::new().await;
    let s = env.lsp(json!({ "clientKind": "editor" })).await;
    let commands = &s.init["capabilities"]["executeCommandProvider"]["commands"];
    for c in [
        "scanmint.login",
        "scanmint.logout",
        "scanmint.rotate",
        "scanmint.revoke",
        "scanmint.doctor",
    ] {
        assert!(
            commands.as_array().unwrap().iter().any(|x| x == c),
            "{c} missing from {commands}"
        );
    }
    assert_eq!(s.init["serverInfo"]["name"], "scanmint");
    // Absent params, null and {} mean the same.
    let absent = s
        .client
        .request("scanmint/status", Value::Null)
        .await
        .unwrap();
    let empty = s.request("scanmint/status", json!({})).await;
    let named = s
        .request("scanmint/status", json!({ "profile": "default" }))
        .await;
    for r in [&absent, &empty, &named] {
        assert_eq!(r["profile"], "default");
        assert_eq!(r["baseUrl"], env.emulator.base_url());
        assert_eq!(r["storage"], "env");
    }
    // A raw request without a params member at all.
    let mut raw = tokio::net::UnixStream::connect(env.socket()).await.unwrap();
    let (read, mut write) = raw.split();
    let mut reader = tokio::io::BufReader::new(read);
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":{}}});
    scanmint::cli::client::write_frame(&mut write, &init)
        .await
        .unwrap();
    let init_reply = scanmint::cli::client::read_frame(&mut reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(init_reply["id"], 1);
    for f in [
        json!({"jsonrpc":"2.0","method":"initialized","params":{}}),
        json!({"jsonrpc":"2.0","id":2,"method":"scanmint/status"}),
    ] {
        scanmint::cli::client::write_frame(&mut write, &f)
            .await
            .unwrap();
    }
    let reply = loop {
        let msg = scanmint::cli::client::read_frame(&mut reader)
            .await
            .unwrap()
            .unwrap();
        if msg["id"] == 2 {
            break msg;
        }
    };
    assert_eq!(reply["result"]["profile"], "default", "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_hidden_from_editors_and_given_to_exec_sessions() {
    let env = Env::new().await;
    let editor = env.lsp(json!({ "clientKind": "editor" })).await;
    let hidden = editor.request("scanmint/credentials", json!({})).await;
    assert!(
        hidden.get("key").is_none() && hidden.get("env").is_none(),
        "editor got the secret: {hidden}"
    );
    assert!(hidden["keyId"].as_i64().unwrap() > 0);
    assert_eq!(hidden["baseUrl"], env.emulator.base_url());
    assert!(
        !hidden
            .to_string()
            .contains(&env.emulator.primary_key().expose()[..20])
    );

    let exec = env.lsp(json!({ "clientKind": "exec" })).await;
    let shown = exec
        .request("scanmint/credentials", json!({ "minValidSecs": 60 }))
        .await;
    assert_eq!(
        shown["keyId"], hidden["keyId"],
        "same key for every session"
    );
    let key = shown["key"].as_str().unwrap();
    assert!(key.len() >= 64);
    assert_eq!(shown["env"]["CORTEX_API_KEY"], key);
    assert_eq!(
        shown["env"]["CORTEX_API_KEY_ID"],
        shown["keyId"].as_i64().unwrap().to_string()
    );
    assert_eq!(shown["env"]["CORTEX_API_BASE_URL"], env.emulator.base_url());

    let exposed = env
        .lsp(json!({ "clientKind": "editor", "exposeSecretToEditor": true }))
        .await;
    let got = exposed.request("scanmint/credentials", json!({})).await;
    assert_eq!(got["key"], key);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sessions_asking_at_once_cause_one_mint() {
    let env = Env::new().await;
    // Bring the daemon up first so all twenty join one daemon.
    let first = env.lsp(json!({ "clientKind": "exec" })).await;
    let _ = first.request("scanmint/status", json!({})).await;
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(env.lsp(json!({ "clientKind": "exec" })).await);
    }
    let asks = sessions
        .iter()
        .map(|s| s.request("scanmint/credentials", json!({})));
    let replies = futures_util::future::join_all(asks).await;
    let ids: std::collections::BTreeSet<i64> = replies
        .iter()
        .map(|r| r["keyId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "every session got the same key");
    assert_eq!(env.emulator.calls().generate, 1, "exactly one mint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_hears_about_a_rotation() {
    let env = Env::new().await;
    let mut a = env.lsp(json!({})).await;
    let mut b = env.lsp(json!({})).await;
    let c = env.lsp(json!({ "clientKind": "exec" })).await;
    let before = c.request("scanmint/credentials", json!({})).await["generation"]
        .as_i64()
        .unwrap();
    let rotated = c
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.rotate", "arguments": [] }),
        )
        .await;
    assert_eq!(rotated["generation"].as_i64().unwrap(), before + 1);
    for s in [&mut a, &mut b] {
        let status = s.status_where(|v| generation(v) == before + 1).await;
        assert_eq!(status["state"], "ready");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_failed_on_a_revoked_key_brings_a_new_key() {
    let env = Env::new().await;
    let mut editor = env.lsp(json!({})).await;
    let exec = env.lsp(json!({ "clientKind": "exec" })).await;
    let first = exec.request("scanmint/credentials", json!({})).await;
    let id = first["keyId"].as_i64().unwrap();
    assert!(env.emulator.revoke(id));
    exec.client
        .notify(
            "scanmint/scanFailed",
            json!({ "keyId": id, "exitCode": 2, "reason": "test" }),
        )
        .await
        .unwrap();
    let status = editor
        .status_where(|v| generation(v) > first["generation"].as_i64().unwrap())
        .await;
    assert_ne!(status["key"]["keyId"].as_i64().unwrap(), id);
    // A key that still works is kept.
    let now = exec.request("scanmint/credentials", json!({})).await;
    exec.client
        .notify(
            "scanmint/scanFailed",
            json!({ "keyId": now["keyId"], "reason": "flaky" }),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = exec.request("scanmint/credentials", json!({})).await;
    assert_eq!(
        after["keyId"], now["keyId"],
        "a working key is not replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mints_are_wrapped_in_work_done_progress() {
    let env = Env::new().await;
    env.write_config("ttl = \"1h\"\nprefetch = false\n");
    let mut s = env
        .lsp_with(
            json!({ "clientKind": "exec" }),
            json!({ "capabilities": { "window": { "workDoneProgress": true } } }),
        )
        .await;
    let _ = s.request("scanmint/credentials", json!({})).await;
    let created = s
        .client
        .wait_for("window/workDoneProgress/create", Duration::from_secs(5))
        .await
        .expect("progress created");
    let token = created["token"].clone();
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let p = s
            .client
            .wait_for("$/progress", Duration::from_secs(5))
            .await
            .expect("progress notifications");
        assert_eq!(p["token"], token);
        kinds.push(p["value"]["kind"].as_str().unwrap().to_string());
    }
    assert_eq!(kinds, ["begin", "end"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_flow_over_lsp() {
    let mut env = Env::without_primary().await;
    env.store = "memory";
    let mut s = env.lsp(json!({})).await;
    let status = s.status_where(|v| v["state"] == "needs_login").await;
    assert_eq!(status["lastError"]["code"], "needs_login");
    let prompt = s
        .client
        .wait_for("window/showMessageRequest", Duration::from_secs(5))
        .await
        .expect("a log-in prompt");
    assert_eq!(prompt["actions"][0]["title"], "Log in");

    // A wrong secret: a readable LSP error, nothing stored.
    let bad = s
        .client
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.login", "arguments": [{ "baseUrl": env.emulator.base_url(), "keyId": env.emulator.primary_key_id(), "key": "wrong-secret-wrong-secret" }] }),
        )
        .await
        .unwrap_err();
    assert!(
        bad.message.contains("does not accept the Primary key"),
        "{}",
        bad.message
    );
    assert!(!bad.message.contains("wrong-secret"));

    let ok = s
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.login", "arguments": [{
                "baseUrl": env.emulator.base_url(), "keyId": env.emulator.primary_key_id(),
                "key": env.emulator.primary_key().expose(), "securityLevel": "standard" }] }),
        )
        .await;
    assert_eq!(ok["storage"], "memory");
    // The canary is gone; a prefetch the login starts may already have minted the scan key.
    let canaries: Vec<_> = env
        .emulator
        .live_keys()
        .into_iter()
        .filter(|k| !k.is_primary && k.comment.contains("canary"))
        .collect();
    assert!(
        canaries.is_empty(),
        "login leaves no canary alive: {canaries:?}"
    );
    let ready = s.status_where(|v| v["state"] == "ready").await;
    assert_eq!(ready["baseUrl"], env.emulator.base_url());
    // Only one prompt was sent, however many status changes there were.
    let prompts = s
        .client
        .drain()
        .into_iter()
        .filter(|m| m.method == "window/showMessageRequest")
        .count();
    assert_eq!(prompts, 0);
    env.env_primary = false;
}

/// A client that cannot run `scanmint.login` (LSP4IJ) says `loginPrompt: "terminal"`: it is told
/// the terminal command, once, with no "Log in" action; a mistyped option beside it does not
/// reset the others (the profile still applies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_prompt_terminal_names_the_command_and_offers_no_action() {
    let mut env = Env::without_primary().await;
    env.store = "memory";
    let mut s = env
        .lsp(json!({ "loginPrompt": "terminal", "profile": "work", "exposeSecretToEditor": "yes" }))
        .await;
    let status = s.status_where(|v| v["state"] == "needs_login").await;
    assert_eq!(status["profile"], "work", "one bad field kept the others");
    let shown = s
        .client
        .wait_for("window/showMessage", Duration::from_secs(5))
        .await
        .expect("a log-in notice");
    assert_eq!(
        shown["message"],
        "scanmint: profile \"work\" has no Primary key: run `scanmint login --profile work` in a terminal"
    );
    assert_eq!(shown["type"], 2, "a warning");
    s.request("scanmint/status", json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again: Vec<_> = s
        .client
        .drain()
        .into_iter()
        .filter(|m| m.method.starts_with("window/showMessage"))
        .collect();
    assert!(again.is_empty(), "once per session: {again:?}");
    env.env_primary = false;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_keys_get_a_diagnostic_and_a_quick_fix_updated_from_disk() {
    let env = Env::new().await;
    let ws = env.path("workspace");
    std::fs::create_dir_all(&ws).unwrap();
    let file = ws.join("cortex.env");
    std::fs::write(
        &file,
        "CORTEX_API_BASE_URL=https://x\nCORTEX_API_KEY=Abcdefghijklmnop123456\n",
    )
    .unwrap();
    let uri = format!("file://{}", file.display());
    let mut s = env
        .lsp_with(json!({}), json!({ "workspaceFolders": [{ "uri": format!("file://{}", ws.display()), "name": "ws" }] }))
        .await;
    let diags = loop {
        let d = s
            .client
            .wait_for("textDocument/publishDiagnostics", Duration::from_secs(10))
            .await
            .expect("diagnostics");
        if d["uri"] == uri.as_str() {
            break d;
        }
    };
    let d = &diags["diagnostics"][0];
    assert_eq!(d["source"], "scanmint");
    assert_eq!(d["code"], "literal-key");
    assert_eq!(d["severity"], 2);
    assert_eq!(d["range"]["start"]["line"], 1);

    let actions = s
        .request(
            "textDocument/codeAction",
            json!({ "textDocument": { "uri": uri }, "range": d["range"], "context": { "diagnostics": [d] } }),
        )
        .await;
    let edit = &actions[0]["edit"]["changes"][uri.as_str()][0];
    assert_eq!(actions[0]["kind"], "quickfix");
    // Only the value goes (issue 12, finding 8): `CORTEX_API_KEY=` stays, the file stays valid.
    assert_eq!(
        edit["range"]["start"],
        json!({ "line": 1, "character": 15 })
    );
    assert_eq!(edit["range"]["end"], json!({ "line": 1, "character": 37 }));
    assert_eq!(edit["newText"], "");

    // The user removes the key on disk: the diagnostic goes away.
    std::fs::write(&file, "CORTEX_API_BASE_URL=https://x\n").unwrap();
    loop {
        let d = s
            .client
            .wait_for("textDocument/publishDiagnostics", Duration::from_secs(10))
            .await
            .expect("updated diagnostics");
        if d["uri"] == uri.as_str() && d["diagnostics"].as_array().unwrap().is_empty() {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_end_only_their_own_session() {
    let env = Env::new().await;
    let good = env.lsp(json!({})).await;
    for garbage in [
        b"Content-Length: 5\r\n\r\n{oops".to_vec(),
        b"Content-Length: 99999999999\r\n\r\n".to_vec(),
        b"no header at all\r\n\r\n".to_vec(),
        format!("Content-Length: {}\r\n\r\n", 64 << 20).into_bytes(),
    ] {
        let mut raw = tokio::net::UnixStream::connect(env.socket()).await.unwrap();
        raw.write_all(&garbage).await.unwrap();
        let mut sink = Vec::new();
        // The daemon answers (a parse error) or closes; it never hangs the session open forever.
        let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut sink)).await;
    }
    // An unknown method is an error for that request only.
    let unknown = good
        .client
        .request("scanmint/nope", json!({}))
        .await
        .unwrap_err();
    assert_eq!(unknown.code, -32601);
    let status = good.request("scanmint/status", json!({})).await;
    assert_eq!(status["profile"], "default");
    assert!(env.daemon_pid().await.is_some(), "daemon still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_and_directory_are_private_and_loose_ones_are_refused() {
    let env = Env::new().await;
    let _s = env.lsp(json!({})).await;
    assert_eq!(mode(&env.path("run/scanmint")), 0o700);
    assert_eq!(mode(&env.socket()), 0o600);
    assert_eq!(mode(env.ledger().parent().unwrap()), 0o700);

    let loose = Env::new().await;
    loose.loose_dir("run/scanmint");
    let (code, _, err) = loose.run(&["daemon"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("chmod 700"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_cannot_connect() {
    let env = Env::new().await;
    let _s = env.lsp(json!({})).await;
    let socket = env.socket();
    // uid 65534 must really run (checked), and the test's own directories let it through: what
    // keeps it out is the mode of scanmint's directory alone.
    let scratch = nobody_dir(env.dir.path(), "other-user");
    traversable(env.dir.path());
    traversable(&env.path("run"));
    let blocked = run_as_nobody(
        &[],
        &scratch,
        &[
            "/usr/bin/python3",
            "-c",
            &format!(
                "import socket; s=socket.socket(socket.AF_UNIX); s.connect('{}')",
                socket.display()
            ),
        ],
    );
    assert!(!blocked.status.success());
    assert!(
        String::from_utf8_lossy(&blocked.stderr).contains("Permission denied"),
        "{}",
        String::from_utf8_lossy(&blocked.stderr)
    );
    // Even past the directory (CAP_DAC_OVERRIDE), the daemon checks the peer's uid and hangs up.
    let past_dir = run_as_nobody(
        &["dac_override"],
        &scratch,
        &[
            "/usr/bin/python3",
            "-c",
            &format!(
                "import socket; s=socket.socket(socket.AF_UNIX); s.connect('{}'); b=b'{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{{\"capabilities\":{{}}}}}}'; \ntry:\n  s.sendall(b'Content-Length: %d\\r\\n\\r\\n' % len(b) + b); s.settimeout(5); print(repr(s.recv(100)))\nexcept (BrokenPipeError, ConnectionResetError):\n  print(repr(b''))",
                socket.display()
            ),
        ],
    );
    let out = String::from_utf8_lossy(&past_dir.stdout);
    assert!(
        past_dir.status.success(),
        "{}",
        String::from_utf8_lossy(&past_dir.stderr)
    );
    assert_eq!(out.trim(), "b''", "the daemon must hang up without a reply");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        env.daemon_log()
            .contains("refused a connection from another user"),
        "{}",
        env.daemon_log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_is_replaced_and_the_ledger_survives() {
    let mut env = Env::new().await;
    env.store = "file";
    let s = env.lsp(json!({ "clientKind": "exec" })).await;
    let first = s.request("scanmint/credentials", json!({})).await;
    let old_pid = env.daemon_pid().await.unwrap();
    drop(s);
    env.kill_daemon(libc::SIGKILL).await;
    assert!(
        env.socket().exists(),
        "a killed daemon leaves its socket behind"
    );

    // The next editor brings up a fresh daemon over the stale socket.
    let s = env.lsp(json!({ "clientKind": "exec" })).await;
    let new_pid = env.daemon_pid().await.unwrap();
    assert_ne!(old_pid, new_pid);
    let again = s.request("scanmint/credentials", json!({})).await;
    assert_eq!(
        again["keyId"], first["keyId"],
        "the cached key is restored from the file store"
    );
    let ledger: Value =
        serde_json::from_str(&std::fs::read_to_string(env.ledger()).unwrap()).unwrap();
    let ids: Vec<i64> = ledger["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["id"].as_i64())
        .collect();
    assert!(ids.contains(&first["keyId"].as_i64().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lsp_exits_when_the_editor_closes_stdin() {
    let env = Env::new().await;
    let mut s = env.lsp(json!({})).await;
    drop(s.client);
    let status = tokio::time::timeout(Duration::from_secs(5), s.child.wait())
        .await
        .expect("scanmint lsp exits")
        .unwrap();
    assert!(status.success());
    assert!(
        env.daemon_pid().await.is_some(),
        "the daemon stays for other editors"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_serves_on_stdio_without_a_daemon() {
    let env = Env::new().await;
    let mut child = env
        .cmd(&["lsp", "--standalone"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = scanmint::cli::client::LspClient::over(
        child.stdout.take().unwrap(),
        child.stdin.take().unwrap(),
    );
    client
        .initialize(json!({ "clientKind": "exec" }))
        .await
        .unwrap();
    let c = client
        .request("scanmint/credentials", json!({}))
        .await
        .unwrap();
    assert!(c["key"].as_str().is_some());
    assert!(!env.socket().exists(), "standalone does not start a daemon");
    client.close().await;
    let status = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exits on stdin close")
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_tolerates_a_client_that_omits_required_capability_fields() {
    let env = Env::new().await;
    let s = env
        .lsp_with(
            json!({}),
            json!({ "capabilities": { "general": { "staleRequestSupport": { "cancel": true } } } }),
        )
        .await;
    assert_eq!(s.init["serverInfo"]["name"], "scanmint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_editor_arriving_gets_a_key_prefetched() {
    let env = Env::new().await;
    let mut s = env.lsp(json!({ "clientKind": "editor" })).await;
    // Nobody asked for credentials: the editor's arrival alone mints the key.
    let status = s.status_where(|v| v.get("key").is_some()).await;
    assert_eq!(status["state"], "ready");
    assert_eq!(env.emulator.calls().generate, 1);
    assert_eq!(
        env.minted_live(),
        vec![status["key"]["keyId"].as_i64().unwrap()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_exits_when_idle_and_on_sigterm_keeps_the_ledger() {
    let env = Env::new().await;
    std::fs::write(
        env.path("config/scanmint/config.toml"),
        format!(
            "idle_exit = \"1s\"\n[profile.default]\nbase_url = \"{}\"\n",
            env.emulator.base_url()
        ),
    )
    .unwrap();
    let s = env.lsp(json!({ "clientKind": "exec" })).await;
    let _ = s.request("scanmint/credentials", json!({})).await;
    let pid = env.daemon_pid().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        env.daemon_pid().await.is_some(),
        "a session is open: the daemon stays"
    );
    drop(s);
    let gone = eventually(
        5,
        || unsafe { libc::kill(pid, 0) } != 0 || !env.socket().exists(),
    )
    .await;
    assert!(gone, "idle with no sessions: the daemon exits");

    // SIGTERM: finishes, writes the ledger, removes its socket.
    let s = env.lsp(json!({ "clientKind": "exec" })).await;
    let c = s.request("scanmint/credentials", json!({})).await;
    env.kill_daemon(libc::SIGTERM).await;
    assert!(!env.socket().exists(), "socket removed on SIGTERM");
    let ledger: Value =
        serde_json::from_str(&std::fs::read_to_string(env.ledger()).unwrap()).unwrap();
    assert!(
        ledger["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == c["keyId"])
    );
}
