//! The daemon's lifecycle, end to end with the real binary: `scanmint stop` (keys stay cached, the
//! next daemon restores them without minting, editors are told), upgrades (a newer client replaces
//! an older daemon: tested by swapping binaries), config edits under a running daemon, and the
//! order of work-done progress notifications.
//!
//! The key must outlive the daemon, so these tests use the keyutils store: run them under
//! `scripts/with-keychain.sh` (a fresh session keyring); without keyutils they fail, not skip.
//!
//! The upgrade test needs a daemon older than its client without building two releases: the
//! daemon runs from a copy of the binary, and reports `SCANMINT_TEST_VERSION=0.0.1`, a variable
//! only debug builds read (`serve/version.rs`); the client is the real binary, unmodified.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn keyutils_env() -> Env {
    let mut env = Env::new().await;
    env.store = "keyutils";
    // Tests run in parallel in one session keyring: each files its keys under its own service.
    let service = format!("scanmint-test-{}", env.dir.path().display());
    env.extra_env
        .push(("SCANMINT_KEYRING_SERVICE".into(), service));
    env
}

const PRINT_KEY_ID: &[&str] = &["exec", "--", "sh", "-c", "echo $CORTEX_API_KEY_ID"];

/// `scanmint exec` printing the key id its child got.
async fn exec_key_id(env: &Env) -> i64 {
    let (code, out, err) = env.run(PRINT_KEY_ID).await;
    assert_eq!(code, 0, "exec failed: {err}\n{}", env.daemon_log());
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("a key id, got {out:?}"))
}

async fn status_json(env: &Env) -> Value {
    let (_, out, err) = env.run(&["status", "--json"]).await;
    serde_json::from_str(&out).unwrap_or_else(|_| panic!("status JSON: {out} {err}"))
}

async fn wait_daemon_gone(pid: i32) {
    let gone = eventually(15, || unsafe { libc::kill(pid, 0) } != 0 || is_zombie(pid)).await;
    assert!(gone, "daemon {pid} still running");
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[tokio::test]
async fn stop_keeps_the_cached_key_and_the_next_daemon_restores_it_without_minting() {
    let env = keyutils_env().await;
    let first = exec_key_id(&env).await;
    let pid = env.daemon_pid().await.expect("a daemon");
    let generated = env.emulator.calls().generate;

    let (code, out, err) = env.run(&["stop"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stopped the scanmint daemon"), "{out}");
    wait_daemon_gone(pid).await;
    assert!(!env.socket().exists(), "the socket is removed");

    let again = exec_key_id(&env).await;
    assert_eq!(again, first, "the fresh daemon restored the cached key");
    assert_ne!(env.daemon_pid().await, Some(pid), "a fresh daemon");
    assert_eq!(env.emulator.calls().generate, generated, "no new generate");

    // Nothing running: `stop` says so and succeeds.
    env.run(&["stop"]).await;
    let (code, out, _) = env.run(&["stop"]).await;
    assert_eq!((code, out.trim()), (0, "no scanmint daemon is running"));
}

#[tokio::test]
async fn stop_tells_open_editors_instead_of_crashing_them() {
    let env = keyutils_env().await;
    let mut editor = env.lsp(json!({})).await;
    let (code, _, err) = env.run(&["stop"]).await;
    assert_eq!(code, 0, "{err}");
    let stop = editor
        .client
        .wait_for("scanmint/didStop", Duration::from_secs(10))
        .await
        .expect("scanmint/didStop before the daemon exits");
    assert_eq!(stop["reason"], "stop");
    let shown = editor
        .client
        .wait_for("window/showMessage", Duration::from_secs(5))
        .await
        .expect("a message the editor shows");
    assert!(
        shown["message"]
            .as_str()
            .unwrap_or_default()
            .contains("scanmint stop"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_newer_client_replaces_an_older_daemon_and_the_key_survives() {
    let env = keyutils_env().await;
    // The "old release": a copy of the binary, reporting an older version.
    let old = old_binary(&env).await;
    let out = env
        .cmd_of(&old, PRINT_KEY_ID)
        .env("SCANMINT_TEST_VERSION", "0.0.1")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let old_pid = env.daemon_pid().await.expect("the old daemon");
    assert_eq!(
        exe_of(old_pid),
        old.with_file_name("scanmint-core").canonicalize().unwrap(),
        "the old binary serves"
    );
    let generated = env.emulator.calls().generate;

    // An editor attached to the old daemon (through the old binary's proxy).
    let mut old_editor = {
        let mut child = env
            .cmd_of(&old, &["lsp"])
            .env("SCANMINT_TEST_VERSION", "0.0.1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let client = scanmint::cli::client::LspClient::over(
            child.stdout.take().unwrap(),
            child.stdin.take().unwrap(),
        );
        let init = client
            .request(
                "initialize",
                json!({ "processId": null, "capabilities": {} }),
            )
            .await
            .unwrap();
        assert_eq!(init["serverInfo"]["version"], "0.0.1");
        client.notify("initialized", json!({})).await.unwrap();
        (child, client)
    };

    // The upgraded CLI (the real binary) connects: it replaces the daemon, and gets the same key.
    let again = exec_key_id(&env).await;
    assert_eq!(
        again,
        first,
        "the cached key survived the upgrade\n{}",
        env.daemon_log()
    );
    assert_eq!(env.emulator.calls().generate, generated, "no new generate");
    let new_pid = env.daemon_pid().await.expect("the new daemon");
    assert_ne!(new_pid, old_pid);
    wait_daemon_gone(old_pid).await;
    assert_eq!(
        exe_of(new_pid),
        Path::new(CORE).canonicalize().unwrap(),
        "new code serves"
    );

    let told = old_editor
        .1
        .wait_for("scanmint/didStop", Duration::from_secs(10))
        .await
        .expect("the old daemon's editor is told");
    assert_eq!(told["reason"], "upgrade");
    assert_eq!(told["version"], env!("CARGO_PKG_VERSION"));
    let _ = old_editor.0.start_kill();

    // An older client meets the newer daemon: it uses it, and does not stop it.
    let out = env
        .cmd_of(&old, &["status"])
        .env("SCANMINT_TEST_VERSION", "0.0.1")
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert_eq!(env.daemon_pid().await, Some(new_pid), "no downgrade");
}

#[tokio::test]
async fn the_editor_proxy_replaces_an_older_daemon_before_initialize() {
    let env = keyutils_env().await;
    let old = old_binary(&env).await;
    let out = env
        .cmd_of(&old, &["status"])
        .env("SCANMINT_TEST_VERSION", "0.0.1")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let old_pid = env.daemon_pid().await.expect("the old daemon");
    let editor = env.lsp(json!({})).await;
    assert_eq!(
        editor.init["serverInfo"]["version"],
        env!("CARGO_PKG_VERSION")
    );
    let new_pid = env.daemon_pid().await.expect("a daemon");
    assert_ne!(new_pid, old_pid);
    assert_eq!(exe_of(new_pid), Path::new(CORE).canonicalize().unwrap());
}

/// A copy of the binaries standing for the previous release (the launcher runs the core next
/// to it); the launcher's path.
async fn old_binary(env: &Env) -> std::path::PathBuf {
    let old = env.path("old/scanmint");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::copy(CORE, old.with_file_name("scanmint-core")).unwrap();
    std::fs::copy(BIN, &old).unwrap();
    // Another test thread forking while the copy was open for writing holds that descriptor
    // for a moment (ETXTBSY): wait until the copy runs.
    for _ in 0..100 {
        match std::process::Command::new(&old).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            _ => break,
        }
    }
    old
}

fn exe_of(pid: i32) -> std::path::PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

/// Wait until the daemon has applied the config file as it is now (the log says so).
async fn wait_reloaded(env: &Env, times: usize) {
    let ok = eventually(10, || {
        env.daemon_log().matches("configuration reloaded").count() >= times
    })
    .await;
    assert!(ok, "the daemon reloaded its config\n{}", env.daemon_log());
}

fn lifetime_hours(env: &Env, status: &Value) -> f64 {
    let expires = status["key"]["expiresAt"].as_i64().expect("a key");
    (expires - env.emulator.now_ms()) as f64 / 3_600_000.0
}

#[tokio::test]
async fn config_edits_apply_without_a_restart_and_a_broken_edit_is_reported() {
    let env = keyutils_env().await;
    exec_key_id(&env).await;
    let pid = env.daemon_pid().await;
    let s = status_json(&env).await;
    assert!((0.9..1.01).contains(&lifetime_hours(&env, &s)), "{s}");
    let mut editor = env.lsp(json!({})).await;

    // A new ttl applies from the next mint.
    env.write_config("ttl = \"3h\"\ngrace = \"1m\"\n");
    wait_reloaded(&env, 1).await;
    let (code, _, err) = env.run(&["rotate"]).await;
    assert_eq!(code, 0, "{err}");
    let s = status_json(&env).await;
    assert!((2.9..3.01).contains(&lifetime_hours(&env, &s)), "{s}");

    // An edit that does not parse: reported with file, line and key; the old config serves on.
    env.write_config("grace = \"1m\"\nttl = \"soon\"\n");
    let ok = eventually(10, || env.daemon_log().contains("does not parse")).await;
    assert!(ok, "{}", env.daemon_log());
    let s = status_json(&env).await;
    let problem = s["configProblem"].as_str().unwrap_or_default().to_string();
    assert!(problem.contains("config.toml: line 5"), "{s}");
    assert!(problem.contains("profile.default.ttl"), "{s}");
    let (code, out, _) = env.run(&["status"]).await;
    assert!(
        out.contains("config   ") && out.contains("line 5"),
        "plain status names it ({code}): {out}"
    );
    let shown = editor
        .client
        .wait_for("window/showMessage", Duration::from_secs(5))
        .await
        .expect("editors are told");
    assert!(
        shown["message"]
            .as_str()
            .unwrap()
            .contains("profile.default.ttl")
    );
    editor
        .status_where(|s| {
            s["configProblem"]
                .as_str()
                .is_some_and(|p| p.contains("line 5"))
        })
        .await;
    let (code, _, err) = env.run(&["rotate"]).await;
    assert_eq!(code, 0, "{err}");
    let s = status_json(&env).await;
    assert!(
        (2.9..3.01).contains(&lifetime_hours(&env, &s)),
        "old config still serves: {s}"
    );

    // Fixed: the problem clears, the fix applies.
    env.write_config("ttl = \"2h\"\ngrace = \"1m\"\n");
    wait_reloaded(&env, 2).await;
    let s = status_json(&env).await;
    assert!(s.get("configProblem").is_none(), "{s}");
    editor
        .status_where(|s| s.get("configProblem").is_none())
        .await;
    assert_eq!(env.daemon_pid().await, pid, "all without a restart");
}

/// A client that answers `window/workDoneProgress/create` slowly must still see `begin` before
/// `end` for the token: the server used to send `end` without waiting for `begin`.
#[tokio::test]
async fn progress_end_never_precedes_begin_when_the_client_is_slow_to_create() {
    use scanmint::cli::client::{read_frame, write_frame};
    let env = Env::new().await;
    let (code, _, err) = env.run(&["status"]).await;
    assert!(code == 0 || code == 1, "{err}");
    let stream = tokio::net::UnixStream::connect(env.socket()).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    write_frame(
        &mut write,
        &json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "processId": null, "capabilities": { "window": { "workDoneProgress": true } } } }),
    )
    .await
    .unwrap();
    let init = read_frame(&mut read)
        .await
        .unwrap()
        .expect("initialize answered");
    assert_eq!(init["id"], 1);
    write_frame(
        &mut write,
        &json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }),
    )
    .await
    .unwrap();
    // The editor prefetches a key: record the progress of that mint, answering create late.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen.len() < 2 {
        let msg = tokio::time::timeout_at(deadline, read_frame(&mut read))
            .await
            .expect("progress within 15 s")
            .unwrap()
            .expect("the daemon stays connected");
        eprintln!("got {msg}");
        match msg["method"].as_str() {
            Some("window/workDoneProgress/create") => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let reply = json!({ "jsonrpc": "2.0", "id": msg["id"], "result": null });
                write_frame(&mut write, &reply).await.unwrap();
            }
            Some("$/progress") => {
                seen.push(msg["params"]["value"]["kind"].as_str().unwrap().to_string())
            }
            _ => {}
        }
    }
    assert_eq!(seen, ["begin", "end"]);
}

/// A changed `base_url` is another tenant: the profile is loaded again for it (binding the stored
/// Primary key to its own URL, so that the new tenant needs its own login, is the store's part).
#[tokio::test]
async fn a_changed_base_url_is_loaded_again_without_a_restart() {
    let mut env = Env::without_primary().await;
    env.store = "memory";
    let mut login = env
        .cmd(&[
            "login",
            "--base-url",
            env.emulator.base_url(),
            "--key-id",
            &env.emulator.primary_key_id().to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = login.stdin.take().unwrap();
    let secret = format!("{}\n", env.emulator.primary_key().expose());
    stdin.write_all(secret.as_bytes()).await.unwrap();
    drop(stdin);
    assert!(login.wait_with_output().await.unwrap().status.success());
    let s = status_json(&env).await;
    assert_eq!(s["baseUrl"], env.emulator.base_url());
    let pid = env.daemon_pid().await;

    let other = "https://api-other.example.invalid";
    std::fs::write(
        env.path("config/scanmint/config.toml"),
        format!("idle_exit = \"10m\"\n[profile.default]\nbase_url = \"{other}\"\n"),
    )
    .unwrap();
    wait_reloaded(&env, 1).await;
    let s = status_json(&env).await;
    assert_eq!(s["baseUrl"], other, "{s}");
    assert_eq!(env.daemon_pid().await, pid, "without a restart");
}
