//! Trust boundaries (issue 12): attacks by another local user, a foreign tenant URL in the
//! environment, and a second broker on the same state. Each test performs the attack and checks
//! that nothing reached the attacker, not merely that a command failed.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::other_user::{nobody_dir, traversable};
use common::squatter::Squatter;
use common::{Env, eventually};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Run a prepared `scanmint` command with `stdin` to completion: (exit code, stdout, stderr).
async fn finish(mut cmd: Command, stdin: &[u8]) -> (i32, String, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin).await;
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("the command finishes")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn initialize_frame() -> Vec<u8> {
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "processId": null, "capabilities": {}, "initializationOptions": {} } })
    .to_string();
    format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// The four kinds of client, each as an editor, a person or a CI job would run it: `login`
/// (the secret on stdin), `exec`, `status`, and the editor's `lsp` proxy. Each must refuse
/// with `refusal` in its error.
async fn every_client_refuses(
    env: &Env,
    squatter: &Squatter,
    adjust: impl Fn(&mut Command),
    refusal: &str,
) {
    let secret = env.emulator.primary_key();
    let key_id = env.emulator.primary_key_id().to_string();
    let clients: [(&str, Vec<&str>, Vec<u8>); 4] = [
        (
            "login",
            vec![
                "login",
                "--base-url",
                env.emulator.base_url(),
                "--key-id",
                &key_id,
            ],
            format!("{}\n", secret.expose()).into_bytes(),
        ),
        ("exec", vec!["exec", "--", "/bin/true"], Vec::new()),
        ("status", vec!["status"], Vec::new()),
        ("lsp", vec!["lsp"], initialize_frame()),
    ];
    for (name, args, stdin) in clients {
        let mut cmd = env.cmd(&args);
        adjust(&mut cmd);
        let (code, out, err) = finish(cmd, &stdin).await;
        assert_ne!(
            code, 0,
            "{name} must refuse the squatted socket: {out}{err}"
        );
        assert!(err.contains(refusal), "{name}: {err}");
        assert!(!err.contains(secret.expose()) && !out.contains(secret.expose()));
        assert_eq!(
            String::from_utf8_lossy(&squatter.received()),
            "",
            "{name} sent bytes to the squatter"
        );
    }
}

/// The scratch space another user needs: the test's directory must be passable.
fn open_for_squatter(env: &Env) -> std::path::PathBuf {
    traversable(env.dir.path());
    nobody_dir(env.dir.path(), "shared")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_squatted_temp_dir_is_never_used() {
    // No XDG_RUNTIME_DIR: before, the socket sat at $TMPDIR/scanmint-<uid>, a name another user
    // can take first. Now it lives in the private state directory.
    let env = Env::new().await;
    let tmp = open_for_squatter(&env);
    let squatted = tmp.join(format!("scanmint-{}", scanmint::platform::euid()));
    let squatter = Squatter::start(&tmp, &squatted.join("scanmint-v1.sock"), true, &[]).await;
    let adjust = |cmd: &mut Command| {
        cmd.env_remove("XDG_RUNTIME_DIR").env("TMPDIR", &tmp);
    };
    let mut status = env.cmd(&["status"]);
    adjust(&mut status);
    let (code, out, err) = finish(status, b"").await;
    assert_eq!(
        String::from_utf8_lossy(&squatter.received()),
        "",
        "status talked to the squatter"
    );
    assert_eq!(squatter.connections(), 0);
    assert!(code == 0 || code == 1, "{out}{err}");
    // The daemon it started listens in the state directory, privately.
    let ours = env.path("state/scanmint/run/scanmint-v1.sock");
    assert!(ours.exists(), "{err}");
    assert_eq!(common::mode(&env.path("state/scanmint/run")), 0o700);
    stop_daemon_at(&ours).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_refuse_a_runtime_directory_another_user_created() {
    // XDG_RUNTIME_DIR shared with another user (a misconfigured /tmp, say), who created
    // scanmint/ first and answers on its socket.
    let env = Env::new().await;
    let shared = open_for_squatter(&env);
    let squatter = Squatter::start(
        &shared,
        &shared.join("scanmint/scanmint-v1.sock"),
        true,
        &[],
    )
    .await;
    let adjust = |cmd: &mut Command| {
        cmd.env("XDG_RUNTIME_DIR", &shared);
    };
    every_client_refuses(&env, &squatter, adjust, "owned by uid 65534").await;
    assert_eq!(squatter.connections(), 0, "not even a connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_refuse_another_users_socket_in_our_directory() {
    // Our private directory, but a socket file of another user's in it (it could pass the
    // directory's mode with CAP_DAC_OVERRIDE).
    let env = Env::new().await;
    let scratch = open_for_squatter(&env);
    let dir = env.path("run/scanmint");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let squatter = Squatter::start(
        &scratch,
        &dir.join("scanmint-v1.sock"),
        false,
        &["dac_override"],
    )
    .await;
    every_client_refuses(&env, &squatter, |_| {}, "owned by uid 65534").await;
    assert_eq!(squatter.connections(), 0, "not even a connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_refuse_a_socket_served_by_another_user() {
    // Every file check passes (our directory, a socket file of ours, 0600), but the process
    // behind it is another user's: only the peer's uid (SO_PEERCRED) can tell.
    let env = Env::new().await;
    let scratch = open_for_squatter(&env);
    let dir = env.path("run/scanmint");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = dir.join("scanmint-v1.sock");
    let squatter = Squatter::start(&scratch, &socket, false, &["dac_override"]).await;
    let me = scanmint::platform::euid();
    std::os::unix::fs::chown(&socket, Some(me), Some(me)).unwrap();
    every_client_refuses(&env, &squatter, |_| {}, "runs as uid 65534").await;
    // The squatter notes a connection after accepting it, maybe after the client has gone.
    eventually(5, || squatter.connections() == 4).await;
    assert_eq!(
        squatter.connections(),
        4,
        "each client reached the peer check, and sent nothing"
    );
    assert_eq!(String::from_utf8_lossy(&squatter.received()), "");
}

/// SIGTERM the daemon serving `socket` and wait for it to go.
async fn stop_daemon_at(socket: &Path) {
    let Ok(stream) = tokio::net::UnixStream::connect(socket).await else {
        return;
    };
    let Some(pid) = stream.peer_cred().ok().and_then(|c| c.pid()) else {
        return;
    };
    drop(stream);
    unsafe { libc::kill(pid, libc::SIGTERM) };
    eventually(5, || unsafe { libc::kill(pid, 0) } != 0).await;
}

/// A stand-in for a foreign tenant: records every byte any HTTP client sends it.
struct Recorder {
    url: String,
    bytes: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start() -> Recorder {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bytes = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = bytes.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    use std::io::Read;
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        sink.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                });
            }
        });
        Recorder { url, bytes }
    }

    fn received(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

async fn login_cli(env: &Env) {
    let cmd = env.cmd(&[
        "login",
        "--base-url",
        env.emulator.base_url(),
        "--key-id",
        &env.emulator.primary_key_id().to_string(),
    ]);
    let secret = format!("{}\n", env.emulator.primary_key().expose());
    let (code, out, err) = finish(cmd, secret.as_bytes()).await;
    assert_eq!(code, 0, "login: {out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_primary_key_never_follows_a_foreign_base_url() {
    // Logged in against tenant A; then some terminal's SCANMINT_BASE_URL (a workspace's
    // environment) points at B when it happens to start the daemon.
    let mut env = Env::without_primary().await;
    env.store = "file";
    login_cli(&env).await;
    // A minted key cached too: it must not be handed out with the foreign URL either.
    let s = env.lsp(json!({ "clientKind": "exec" })).await;
    let minted = s.request("scanmint/credentials", json!({})).await;
    drop(s);
    env.kill_daemon(libc::SIGTERM).await;

    let foreign = Recorder::start();
    env.extra_env = vec![("SCANMINT_BASE_URL".into(), foreign.url.clone())];
    let mut s = env.lsp(json!({ "clientKind": "exec" })).await;
    let status = s.status_where(|v| v["state"] == "needs_login").await;
    let message = status["lastError"]["message"].as_str().unwrap_or_default();
    assert_eq!(status["lastError"]["code"], "needs_login");
    assert!(
        message.contains("changed") && message.contains(env.emulator.base_url()),
        "{message}"
    );
    let refused = s
        .client
        .request("scanmint/credentials", json!({}))
        .await
        .unwrap_err();
    assert!(
        refused.message.contains("log in again"),
        "{}",
        refused.message
    );
    let (_, out, _) = env.run(&["status"]).await;
    assert!(out.contains("needs_login"), "{out}");
    let (_, out, _) = env.run(&["doctor"]).await;
    assert!(out.contains("FAIL"), "{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = foreign.received();
    let minted_key = minted["key"].as_str().unwrap_or("?");
    assert!(
        !sent.contains(minted_key),
        "the minted key went to the foreign URL"
    );
    assert!(
        !sent.contains(env.emulator.primary_key().expose())
            && !sent.contains(&env.emulator.primary_key_id().to_string()),
        "the foreign tenant got the Primary key: {sent}"
    );
    assert_eq!(sent, "", "the foreign tenant got no request at all");
    drop(s);

    // Back on the URL it was logged in with, the stored key works again: nothing was lost.
    env.kill_daemon(libc::SIGTERM).await;
    env.extra_env.clear();
    let mut s = env.lsp(json!({ "clientKind": "exec" })).await;
    let creds = s.request("scanmint/credentials", json!({})).await;
    assert_eq!(creds["baseUrl"], env.emulator.base_url());
    let _ = s.status_where(|v| v["state"] == "ready").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_on_one_state_dir_cannot_both_run() {
    let env = Env::new().await;
    let s = env.lsp(json!({ "clientKind": "exec" })).await;
    let _ = s.request("scanmint/credentials", json!({})).await;
    // Let the daemon's own writes after the mint settle: the ledger unchanged for half a second.
    let modified = || std::fs::metadata(env.ledger()).unwrap().modified().unwrap();
    let mut written = modified();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if modified() == written {
            break;
        }
        written = modified();
    }
    let ledger = std::fs::read(env.ledger()).unwrap();

    // A second daemon through another runtime directory, on the same state.
    std::fs::create_dir(env.path("run2")).unwrap();
    std::fs::set_permissions(env.path("run2"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut second = env.cmd(&["daemon"]);
    second.env("XDG_RUNTIME_DIR", env.path("run2"));
    let (code, _, err) = finish(second, b"").await;
    assert_ne!(
        code, 0,
        "a second daemon on the same state must not run: {err}"
    );
    assert!(err.contains("another scanmint broker"), "{err}");

    // `lsp --standalone` while the daemon runs: refused with the way out, the ledger untouched.
    let (code, _, err) = finish(env.cmd(&["lsp", "--standalone"]), &initialize_frame()).await;
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("without --standalone"), "{err}");
    assert_eq!(std::fs::read(env.ledger()).unwrap(), ledger);
    assert_eq!(
        modified(),
        written,
        "the standalone server wrote the daemon's ledger"
    );
    // The daemon still serves.
    let status = s.request("scanmint/status", json!({})).await;
    assert_eq!(status["state"], "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_fails_a_config_that_no_longer_parses() {
    // Before, the config check passed whatever the file said: the daemon had parsed it at start.
    let env = Env::new().await;
    let (code, out, err) = env.run(&["doctor"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("PASS  config"), "{out}");
    std::fs::write(
        env.path("config/scanmint/config.toml"),
        "[profile.default]\nttl = \"forever\"\n",
    )
    .unwrap();
    let (code, out, _) = env.run(&["doctor"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  config") && out.contains("does not parse"),
        "{out}"
    );
    assert!(
        out.contains("config.toml: line 2"),
        "the error names the place: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_path_over_the_sun_path_limit_is_a_clear_error() {
    // A private runtime directory whose socket path would not fit in `sun_path` (108 bytes).
    let env = Env::new().await;
    let long = env.path(&"r".repeat(110));
    std::fs::create_dir(&long).unwrap();
    std::fs::set_permissions(&long, std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut status = env.cmd(&["status"]);
    status.env("XDG_RUNTIME_DIR", &long);
    let (code, out, err) = finish(status, b"").await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("107-byte limit"), "{err}");
    assert!(err.contains("XDG_RUNTIME_DIR"), "says what to do: {err}");
}
