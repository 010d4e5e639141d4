//! The restricted (remote) socket against the real daemon: what a session on it may do (keys,
//! status), everything it may not (every command, any other method), the Primary key never in
//! a reply, and the far side (`SCANMINT_SOCKET`) without a local daemon or Primary key.
//! Over real ssh: tests/remote_ssh.rs.

mod common;

use std::time::Duration;

use common::*;
use scanmint::cli::client::{LspClient, RpcError};
use scanmint::serve::lsp::COMMANDS;
use serde_json::{Value, json};

fn remote_socket(env: &Env) -> std::path::PathBuf {
    env.path("run/scanmint/remote-v1.sock")
}

/// Start the daemon (through a local CLI call) and connect to its restricted socket.
async fn remote_client(env: &Env, options: Value) -> LspClient {
    let (code, _, err) = env.run(&["status"]).await;
    assert_eq!(code, 0, "{err}");
    let stream = tokio::net::UnixStream::connect(remote_socket(env))
        .await
        .expect("the daemon listens on the restricted socket");
    let (read, write) = stream.into_split();
    let client = LspClient::over(read, write);
    client.initialize(options).await.expect("initialize");
    client
}

/// Every id-like number and every string anywhere in `v`.
fn scan(v: &Value, ids: &mut Vec<i64>, texts: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k.to_lowercase().contains("id")
                    && let Some(n) = v.as_i64()
                {
                    ids.push(n);
                }
                texts.push(k.clone());
                scan(v, ids, texts);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| scan(v, ids, texts)),
        Value::String(s) => texts.push(s.clone()),
        other => texts.push(other.to_string()),
    }
}

/// Nothing of the Primary key: neither its secret nor its id (as an id field or "key N" text).
fn assert_no_primary(env: &Env, what: &str, v: &Value) {
    let secret = env.emulator.primary_key().expose().to_string();
    let id = env.emulator.primary_key_id();
    let whole = v.to_string();
    assert!(!whole.contains(&secret), "{what} holds the Primary secret");
    let (mut ids, mut texts) = (Vec::new(), Vec::new());
    scan(v, &mut ids, &mut texts);
    assert!(
        !ids.contains(&id),
        "{what} names the Primary key id {id}: {whole}"
    );
    for t in texts {
        assert!(
            !t.contains(&format!("key {id} ")) && !t.contains(&format!("key {id})")),
            "{what} names the Primary key: {t}"
        );
    }
}

fn assert_refused(what: &str, result: Result<Value, RpcError>) {
    let e = result.expect_err(&format!("{what} must be refused on the remote socket"));
    assert_eq!(
        e.data.as_ref().and_then(|d| d["code"].as_str()),
        Some("remote_refused"),
        "{what}: {e:?}"
    );
    assert!(e.message.contains("remote socket"), "{what}: {}", e.message);
}

#[tokio::test]
async fn the_remote_socket_hands_out_keys_and_refuses_everything_else() {
    let env = Env::new().await;
    let mut client = remote_client(&env, json!({ "clientKind": "editor" })).await;
    assert_eq!(mode(&remote_socket(&env)), 0o600);
    let mut replies = Vec::new();

    let creds = client
        .request("scanmint/credentials", json!({}))
        .await
        .expect("credentials on the remote socket");
    assert!(
        creds["key"].is_string(),
        "a remote session gets the key: {creds}"
    );
    assert_ne!(creds["keyId"], json!(env.emulator.primary_key_id()));
    replies.push(creds.clone());
    let status = client.request("scanmint/status", json!({})).await.unwrap();
    assert_eq!(status["state"], "ready", "{status}");
    replies.push(status);
    client
        .notify(
            "scanmint/scanFailed",
            json!({ "keyId": creds["keyId"], "exitCode": 2 }),
        )
        .await
        .unwrap();

    // Every command the server advertises, one it might add later, and methods outside the list.
    let mut commands: Vec<&str> = COMMANDS.to_vec();
    commands.push("scanmint.someFutureCommand");
    for command in commands {
        let args = if command == "scanmint.login" {
            json!({ "keyId": 1, "key": "attacker-key", "baseUrl": "https://evil.example" })
        } else {
            json!({ "all": true })
        };
        let r = client.command(command, Some(args)).await;
        if let Err(e) = &r {
            replies.push(json!({ "message": e.message, "data": e.data }));
        }
        assert_refused(command, r);
    }
    for method in [
        "scanmint/somethingNew",
        "workspace/symbol",
        "textDocument/hover",
        "workspace/executeCommand",
    ] {
        let r = client.request(method, json!({})).await;
        if let Err(e) = &r {
            replies.push(json!({ "message": e.message, "data": e.data }));
        }
        assert_refused(method, r);
    }

    // Still served, still logged in: the key was not revoked, the Primary key not forgotten.
    let again = client
        .request("scanmint/credentials", json!({}))
        .await
        .unwrap();
    assert_eq!(again["keyId"], creds["keyId"]);
    replies.push(again);
    let (code, out, _) = env.run(&["status"]).await;
    assert_eq!(code, 0, "the workstation stays logged in: {out}");
    assert!(env.emulator.live_keys().iter().any(|k| k.is_primary));

    for (i, r) in replies.iter().enumerate() {
        assert_no_primary(&env, &format!("reply {i}"), r);
    }
    for m in client.drain() {
        assert_no_primary(&env, &m.method, &m.params);
    }
}

#[tokio::test]
async fn remote_sessions_are_not_editors_of_the_workstation() {
    let env = Env::new().await;
    // A folder of the workstation with a literal key: a remote session naming it learns nothing.
    let folder = env.path("secret-project");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join(".env"),
        "CORTEX_API_KEY=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL\n",
    )
    .unwrap();
    let uri = format!("file://{}", folder.display());
    let stream = {
        let (code, _, err) = env.run(&["status"]).await;
        assert_eq!(code, 0, "{err}");
        tokio::net::UnixStream::connect(remote_socket(&env))
            .await
            .unwrap()
    };
    let (read, write) = stream.into_split();
    let mut client = LspClient::over(read, write);
    client
        .request(
            "initialize",
            json!({ "processId": null, "capabilities": {}, "rootUri": uri,
                "workspaceFolders": [{ "uri": uri, "name": "p" }] }),
        )
        .await
        .unwrap();
    client.notify("initialized", json!({})).await.unwrap();
    let file_uri = format!("{uri}/.env");
    client
        .notify(
            "textDocument/didClose",
            json!({ "textDocument": { "uri": file_uri } }),
        )
        .await
        .unwrap();
    client.request("scanmint/status", json!({})).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen: Vec<_> = client
        .drain()
        .into_iter()
        .filter(|m| m.method == "textDocument/publishDiagnostics")
        .collect();
    assert!(
        seen.is_empty(),
        "the workstation's files were read for a remote session: {seen:?}"
    );
}

#[tokio::test]
async fn the_remote_socket_can_be_turned_off_at_the_top_or_per_profile() {
    let env = Env::new().await;
    env.write_config("[profile.closed]\nremote_socket = false\n");
    let mut client = remote_client(&env, json!({ "clientKind": "exec" })).await;
    client
        .request("scanmint/credentials", json!({}))
        .await
        .expect("the default profile allows remote sessions");
    let r = client
        .request("scanmint/credentials", json!({ "profile": "closed" }))
        .await;
    assert_refused("a profile with remote_socket = false", r);
    let _ = client.drain();
    drop(client);
    env.kill_daemon(libc::SIGTERM).await;

    let env = Env::new().await;
    std::fs::write(
        env.path("config/scanmint/config.toml"),
        format!(
            "remote_socket = false\n[profile.default]\nbase_url = \"{}\"\n",
            env.emulator.base_url()
        ),
    )
    .unwrap();
    let (code, _, err) = env.run(&["status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(env.socket().exists());
    assert!(
        !remote_socket(&env).exists(),
        "remote_socket = false: no restricted socket"
    );
}

/// The far side: a "remote" home with no Primary key, no keychain and no daemon of its own.
fn far_side(env: &Env, home: &std::path::Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("SCANMINT_SOCKET", remote_socket(env))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn output(mut cmd: tokio::process::Command) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("finishes")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_far_side_uses_the_forwarded_socket_and_nothing_else() {
    let env = Env::new().await;
    let (code, _, err) = env.run(&["status"]).await;
    assert_eq!(code, 0, "{err}");
    let home = tempfile::tempdir().unwrap();
    let env_file = home.path().join("scanner.env");

    let (code, out, err) = output(far_side(
        &env,
        home.path(),
        &[
            "exec",
            "--",
            "sh",
            "-c",
            &format!("env > {} && {BIN} stand-in-scanner", env_file.display()),
        ],
    ))
    .await;
    assert_eq!(code, 0, "the scan on the far side works: {out}{err}");
    let seen = std::fs::read_to_string(&env_file).unwrap();
    assert!(seen.contains("CORTEX_API_KEY="));
    assert!(!seen.contains(env.emulator.primary_key().expose()));

    let (code, out, _) = output(far_side(&env, home.path(), &["status"])).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("forwarded workstation daemon"), "{out}");

    let (code, _, err) = output(far_side(&env, home.path(), &["logout"])).await;
    assert_ne!(code, 0);
    assert!(err.contains("remote socket"), "{err}");
    let (code, _, err) = output(far_side(&env, home.path(), &["login", "--key-id", "1"])).await;
    assert_ne!(code, 0);
    assert!(err.contains("stays on the workstation"), "{err}");

    // No daemon, runtime directory or ledger was created on the far side.
    assert!(!home.path().join("run/scanmint").exists());
    assert!(!home.path().join("state/scanmint").exists());
    let (code, out, _) = env.run(&["status"]).await;
    assert_eq!(code, 0, "the workstation stays logged in: {out}");
}

#[tokio::test]
async fn the_far_side_refuses_a_socket_others_could_use() {
    let env = Env::new().await;
    let (code, _, err) = env.run(&["status"]).await;
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(remote_socket(&env), std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, err) = output(far_side(&env, home.path(), &["status"])).await;
    assert_ne!(code, 0);
    assert!(err.contains("lets others use it"), "{err}");

    std::fs::set_permissions(remote_socket(&env), std::fs::Permissions::from_mode(0o600)).unwrap();
    // A directory anyone may write to (without the sticky bit): the socket could be swapped.
    let loose = tempfile::tempdir().unwrap();
    std::fs::set_permissions(loose.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let link = loose.path().join("remote.sock");
    std::os::unix::fs::symlink(remote_socket(&env), &link).unwrap();
    let mut cmd = far_side(&env, home.path(), &["status"]);
    cmd.env("SCANMINT_SOCKET", &link);
    let (code, _, err) = output(cmd).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("not a socket") || err.contains("replace"),
        "{err}"
    );

    let mut cmd = far_side(&env, home.path(), &["status"]);
    cmd.env("SCANMINT_SOCKET", home.path().join("absent.sock"));
    let (code, _, err) = output(cmd).await;
    assert_ne!(code, 0);
    assert!(err.contains("no socket there"), "{err}");
    assert!(
        !home.path().join("run/scanmint").exists(),
        "no daemon spawned"
    );
}

/// The tenant's comment on key `id` (the emulator's admin view: what the console shows).
fn comment_of(env: &Env, id: &Value) -> String {
    let id = id.as_i64().expect("a key id");
    env.emulator
        .keys()
        .into_iter()
        .find(|k| k.id == id)
        .map(|k| k.comment)
        .unwrap_or_else(|| panic!("key {id} is not on the tenant"))
}

fn is_live(env: &Env, id: &Value) -> bool {
    env.emulator
        .live_keys()
        .iter()
        .any(|k| Some(k.id) == id.as_i64())
}

/// Issue 15: keys handed out over the restricted socket carry their own tag, are never the
/// workstation's cached key, live while a remote session uses them and go with logout.
#[tokio::test]
async fn remote_keys_carry_their_own_tag_and_are_kept_apart() {
    let env = Env::new().await;
    let local = env.lsp(json!({ "clientKind": "exec" })).await;
    let own = local.request("scanmint/credentials", json!({})).await;
    let remote = remote_client(&env, json!({})).await;
    let handed = remote
        .request("scanmint/credentials", json!({}))
        .await
        .expect("credentials on the remote socket");
    assert_ne!(
        handed["keyId"], own["keyId"],
        "a remote session never gets the workstation's key"
    );
    let tag = comment_of(&env, &handed["keyId"]);
    assert!(
        tag.starts_with("scanmint ") && tag.contains(" default remote-"),
        "the console shows the key went to a remote: {tag}"
    );
    assert!(
        !comment_of(&env, &own["keyId"]).contains("remote"),
        "the workstation's key is not tagged remote"
    );
    // Remote sessions share one key (no mint per session), and the workstation keeps its own.
    let second = remote_client(&env, json!({})).await;
    let shared = second
        .request("scanmint/credentials", json!({}))
        .await
        .unwrap();
    assert_eq!(shared["keyId"], handed["keyId"]);
    let again = local.request("scanmint/credentials", json!({})).await;
    assert_eq!(again["keyId"], own["keyId"]);
    // A failure report for a key the tenant still accepts changes nothing.
    remote
        .request(
            "scanmint/credentials",
            json!({ "rejectedKeyId": handed["keyId"] }),
        )
        .await
        .unwrap();
    assert!(is_live(&env, &handed["keyId"]));

    // Logout on the workstation revokes both, the remote one while still in use.
    let (code, _, err) = env.run(&["logout"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !is_live(&env, &handed["keyId"]),
        "logout revokes the remote key"
    );
    assert!(
        !is_live(&env, &own["keyId"]),
        "logout revokes the workstation's key"
    );
}

/// A remote key nobody uses any more is revoked; while used, nothing revokes it.
#[tokio::test]
async fn a_remote_key_lives_while_a_remote_session_uses_it() {
    let env = Env::new().await;
    let remote = remote_client(&env, json!({})).await;
    let handed = remote
        .request("scanmint/credentials", json!({}))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(is_live(&env, &handed["keyId"]), "in use: kept");
    drop(remote);
    assert!(
        eventually(5, || !is_live(&env, &handed["keyId"])).await,
        "once the remote session is gone its key is revoked"
    );
    assert!(
        env.emulator.live_keys().iter().all(|k| k.is_primary),
        "nothing else was minted: {:?}",
        env.emulator.live_keys()
    );
}
