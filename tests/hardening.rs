//! What scanmint survives: a failing or hostile tenant, crashes at every step of a mint, a
//! broken machine, and what it must never do: leak a secret or loosen a permission.
//! docs/reliability.md has the table; each row names the test here that proves it.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::Duration;

use common::other_user::{nobody_dir, run_as_nobody, traversable};
use common::{Env, eventually, mode};
use scanmint::tenant::emulator::{EmulatorConfig, Failure, FailureKind, Faults, Hostile};
use serde_json::{Value, json};

fn failing(endpoint: &str, kind: FailureKind) -> Faults {
    Faults {
        failures: BTreeMap::from([(endpoint.to_string(), Failure { kind, rate: 1.0 })]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_5xx_429_and_drops_keep_the_key_served_without_a_tight_loop() {
    for (name, faults) in [
        ("5xx", failing("all", FailureKind::Status(503))),
        ("429 storm", failing("all", FailureKind::Status(429))),
        ("dropped connections", failing("all", FailureKind::Drop)),
    ] {
        let env = Env::new().await;
        // Rotation due a few seconds after the mint, so the scheduler tries during the outage.
        env.write_config("ttl = \"40s\"\nrotate_at = 0.1\ngrace = \"1m\"\n");
        let mut editor = env.lsp(json!({})).await;
        let exec = env.lsp(json!({ "clientKind": "exec" })).await;
        let key = exec
            .request("scanmint/credentials", json!({ "minValidSecs": 5 }))
            .await;
        env.emulator.set_faults(faults);
        let before = env.emulator.calls().total;
        // Ten seconds of outage, with scans asking all the while.
        for _ in 0..20 {
            let again = exec
                .request("scanmint/credentials", json!({ "minValidSecs": 5 }))
                .await;
            assert_eq!(
                again["keyId"], key["keyId"],
                "{name}: the current key is served"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let calls = env.emulator.calls().total - before;
        println!("{name}: {calls} tenant calls in 10 s of outage");
        assert!(calls <= 30, "{name}: {calls} calls in 10 s is a tight loop");
        assert!(calls >= 1, "{name}: the scheduler did try to rotate");
        let degraded = editor.status_where(|v| v["state"] == "degraded").await;
        assert!(
            degraded["lastError"]["message"].as_str().unwrap().len() > 10,
            "{name}: a clear message"
        );
        assert_eq!(degraded["key"]["keyId"], key["keyId"]);
        // The tenant answers again: a rotation goes through without a restart.
        env.emulator.set_faults(Faults::default());
        let rotated = exec
            .request(
                "workspace/executeCommand",
                json!({ "command": "scanmint.rotate" }),
            )
            .await;
        assert!(
            rotated["generation"].as_i64().unwrap() > key["generation"].as_i64().unwrap(),
            "{name}"
        );
        editor.status_where(|v| v["state"] == "ready").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_and_a_dead_tenant_is_an_error_not_a_hang() {
    let env = Env::new().await;
    env.emulator.set_faults(failing("all", FailureKind::Drop));
    let exec = env.lsp(json!({ "clientKind": "exec" })).await;
    let err = exec
        .client
        .request("scanmint/credentials", json!({}))
        .await
        .unwrap_err();
    assert!(err.message.contains("tenant"), "{}", err.message);
    // Twenty more asks in a row: answered from the last error during the backoff, so the
    // tenant sees a handful of attempts, not twenty (generate is never retried blindly).
    for _ in 0..20 {
        let again = exec
            .client
            .request("scanmint/credentials", json!({}))
            .await
            .unwrap_err();
        assert!(again.message.contains("tenant"), "{}", again.message);
    }
    let generates = env.emulator.calls().generate;
    println!("dead tenant: {generates} generate calls for 21 asks");
    assert!(generates <= 4, "{generates} generate calls for 21 asks");
    let status = exec.request("scanmint/status", json!({})).await;
    assert_eq!(status["state"], "error");
    // A dropped generate may have minted: nothing is left behind once the tenant is back.
    env.emulator.set_faults(Faults::default());
    assert!(eventually(15, || env.minted_live().len() <= 1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tenant_times_out_cleanly() {
    let env = Env::new().await;
    env.emulator.set_faults(Faults {
        latency_ms: 11_000,
        ..Default::default()
    });
    let exec = env.lsp(json!({ "clientKind": "exec" })).await;
    let started = std::time::Instant::now();
    let err = exec
        .client
        .request("scanmint/credentials", json!({}))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "bounded by the client timeout"
    );
    assert!(err.message.contains("tenant"), "{}", err.message);
    // Meanwhile other sessions are answered at once.
    let other = env.lsp(json!({})).await;
    let t = std::time::Instant::now();
    let _ = other.request("scanmint/status", json!({})).await;
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "status took {:?} while a mint hung",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_clock_ten_minutes_off_either_way() {
    for offset in [600_000i64, -600_000] {
        let env = Env::with(
            EmulatorConfig {
                rate_limit_per_sec: 1000,
                security_level: scanmint::tenant::papi::wire::SecurityLevel::Advanced,
                faults: Faults {
                    clock_offset_ms: offset,
                    ..Default::default()
                },
                ..Default::default()
            },
            true,
        )
        .await;
        let mut env = env;
        env.extra_env
            .push(("SCANMINT_PRIMARY_SECURITY_LEVEL".into(), "advanced".into()));
        let exec = env.lsp(json!({ "clientKind": "exec" })).await;
        let c = exec.request("scanmint/credentials", json!({})).await;
        let record = env
            .emulator
            .keys()
            .into_iter()
            .find(|k| k.id == c["keyId"].as_i64().unwrap())
            .unwrap();
        let tenant_now = env.emulator.now_ms();
        let expires = record.expiration.unwrap();
        // One hour by the tenant's clock, not ours.
        assert!(
            (expires - tenant_now - 3_600_000).abs() < 10_000,
            "offset {offset}: expires {expires} vs tenant now {tenant_now}"
        );
        assert_eq!(c["expiresAt"].as_i64().unwrap(), expires);
        let status = exec.request("scanmint/status", json!({})).await;
        assert_eq!(status["state"], "ready", "offset {offset}: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_replies_hand_out_nothing() {
    for hostile in [
        Hostile::HugeBody,
        Hostile::WrongTypes,
        Hostile::GenerateWithoutKey,
        Hostile::NegativeExpiration,
        Hostile::AbsurdExpiration,
        Hostile::DuplicateIds,
    ] {
        let env = Env::new().await;
        env.emulator.set_faults(Faults {
            hostile: Some(hostile),
            ..Default::default()
        });
        let exec = env.lsp(json!({ "clientKind": "exec" })).await;
        let err = exec.client.request("scanmint/credentials", json!({})).await;
        let err = err.expect_err(&format!("{hostile:?}: a key was handed out"));
        assert!(!err.message.is_empty(), "{hostile:?}");
        for secret in env.emulator.issued_secrets() {
            assert!(
                !err.message.contains(secret.expose()),
                "{hostile:?}: the error leaks a secret"
            );
        }
        // Whatever the tenant minted is revoked once it answers sanely again.
        env.emulator.set_faults(Faults::default());
        let _ = exec
            .request(
                "workspace/executeCommand",
                json!({ "command": "scanmint.revoke", "arguments": [{ "all": true }] }),
            )
            .await;
        assert!(
            eventually(10, || env.minted_live().is_empty()).await,
            "{hostile:?}: left {:?}",
            env.minted_live()
        );
    }
}

/// After a crash and a restart: nothing live on the tenant but the current and retiring keys,
/// the ledger readable, and the key handed out is one that passed verification.
async fn check_after_restart(env: &Env, what: &str) {
    let exec = env.lsp(json!({ "clientKind": "exec" })).await;
    let c = exec.request("scanmint/credentials", json!({})).await;
    let id = c["keyId"].as_i64().unwrap();
    let record = env
        .emulator
        .keys()
        .into_iter()
        .find(|k| k.id == id)
        .unwrap();
    assert_eq!(record.roles, ["CLI Read-Only Custom"], "{what}");
    let ledger: Value = serde_json::from_str(&std::fs::read_to_string(env.ledger()).unwrap())
        .expect("ledger readable");
    let held: Vec<i64> = ledger["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["state"] == "active" || k["state"] == "retiring")
        .filter_map(|k| k["id"].as_i64())
        .collect();
    // Retiring keys without users go on the scheduler's next tick: give it a moment.
    let ok = eventually(15, || {
        let live = env.minted_live();
        live.len() <= 2 && live.iter().all(|k| *k == id || held.contains(k))
    })
    .await;
    assert!(
        ok,
        "{what}: orphans left: live {:?}, held {held:?}, current {id}",
        env.minted_live()
    );
    assert!(
        env.minted_live().len() <= 2,
        "{what}: {:?}",
        env.minted_live()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_each_step_of_a_mint_leaves_no_orphan() {
    for point in ["before-generate", "after-generate", "after-store"] {
        let mut env = Env::new().await;
        env.store = "file";
        env.extra_env
            .push(("SCANMINT_CRASH_AT".into(), point.into()));
        let exec = env.lsp(json!({ "clientKind": "exec" })).await;
        let err = exec.client.request("scanmint/credentials", json!({})).await;
        assert!(err.is_err(), "{point}: the daemon should have died");
        drop(exec);
        assert!(eventually(5, || std::fs::metadata(env.socket()).is_ok()).await);
        env.extra_env.clear();
        check_after_restart(&env, point).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_rotation_and_revocation_leaves_no_orphan() {
    // Rotation: killed after the new key is generated, before it is stored.
    let mut env = Env::new().await;
    env.store = "file";
    let exec = env.lsp(json!({ "clientKind": "exec" })).await;
    let _ = exec.request("scanmint/credentials", json!({})).await;
    drop(exec);
    env.kill_daemon(libc::SIGTERM).await;
    env.extra_env
        .push(("SCANMINT_CRASH_AT".into(), "after-generate".into()));
    let s = env.lsp(json!({ "clientKind": "exec" })).await;
    assert!(
        s.client
            .request(
                "workspace/executeCommand",
                json!({ "command": "scanmint.rotate" })
            )
            .await
            .is_err()
    );
    drop(s);
    env.extra_env.clear();
    check_after_restart(&env, "during rotation").await;

    // Revocation: killed just before the delete of the retired key.
    let mut env = Env::new().await;
    env.store = "file";
    let exec = env.lsp(json!({ "clientKind": "exec" })).await;
    let _ = exec.request("scanmint/credentials", json!({})).await;
    drop(exec);
    env.kill_daemon(libc::SIGTERM).await;
    env.extra_env
        .push(("SCANMINT_CRASH_AT".into(), "before-delete".into()));
    let s = env.lsp(json!({ "clientKind": "exec" })).await;
    let _ = s
        .client
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.revoke" }),
        )
        .await;
    drop(s);
    env.extra_env.clear();
    check_after_restart(&env, "during revocation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_random_kills_with_scans_running() {
    let env = Env::new().await;
    let mut handed = std::collections::BTreeSet::new();
    for round in 0..100u64 {
        let scans: Vec<_> = (0..2)
            .map(|_| {
                env.cmd(&["exec", "--", "sh", "-c", "echo $CORTEX_API_KEY_ID"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        tokio::time::sleep(Duration::from_millis((round * 7919) % 40)).await;
        if let Some(pid) = env.daemon_pid().await {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // A dying daemon's socket can still accept for a moment: wait until it is gone.
            for _ in 0..100 {
                if env.daemon_pid().await != Some(pid) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        for scan in scans {
            let out = scan.wait_with_output().await.unwrap();
            if out.status.success()
                && let Ok(id) = String::from_utf8_lossy(&out.stdout).trim().parse::<i64>()
            {
                handed.insert(id);
            }
        }
    }
    // Every key a scanner ever got was exactly as narrow as asked.
    for id in &handed {
        let record = env
            .emulator
            .keys()
            .into_iter()
            .find(|k| k.id == *id)
            .unwrap();
        assert_eq!(record.roles, ["CLI Read-Only Custom"]);
    }
    check_after_restart(&env, "after 100 kills").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_read_only_state_directory_is_an_error_state_and_recovers() {
    let env = Env::new().await;
    let state = env.path("state");
    let mount = |opts: &str| {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", opts, "tmpfs"])
            .arg(&state)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs (the tests run as root)");
    };
    mount("size=64k,mode=0700");
    // The daemon logs outside the state directory, so nothing keeps a file in it open for
    // writing (a read-only remount would be refused as busy).
    let log = std::fs::File::create(env.path("daemon-outside.log")).unwrap();
    let _daemon = env
        .cmd(&["daemon"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(eventually(5, || env.socket().exists()).await);
    let exec = env.lsp(json!({ "clientKind": "exec" })).await;
    let first = exec.request("scanmint/credentials", json!({})).await;
    let ledger_before = std::fs::read(env.ledger()).unwrap();
    // Fill the disk.
    let _ = std::fs::write(state.join("filler"), vec![0u8; 80 << 10]);
    let err = exec
        .client
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.rotate" }),
        )
        .await
        .unwrap_err();
    assert!(
        err.message.contains("cannot write the ledger"),
        "{}",
        err.message
    );
    // The current key is still served, and the ledger on disk is intact.
    let again = exec.request("scanmint/credentials", json!({})).await;
    assert_eq!(again["keyId"], first["keyId"]);
    assert_eq!(std::fs::read(env.ledger()).unwrap(), ledger_before);
    // Space again: recovery without a restart.
    std::fs::remove_file(state.join("filler")).unwrap();
    let rotated = exec
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.rotate" }),
        )
        .await;
    let after_full = rotated["generation"].as_i64().unwrap();
    assert!(after_full > first["generation"].as_i64().unwrap());

    // Read-only.
    let ro = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(ro.success());
    let err = exec
        .client
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.rotate" }),
        )
        .await
        .unwrap_err();
    assert!(
        err.message.contains("cannot write the ledger"),
        "{}",
        err.message
    );
    let rw = std::process::Command::new("mount")
        .args(["-o", "remount,rw"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(rw.success());
    let rotated = exec
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.rotate" }),
        )
        .await;
    assert!(rotated["generation"].as_i64().unwrap() > after_full);
    drop(exec);
    env.kill_daemon(libc::SIGTERM).await;
    let _ = std::process::Command::new("umount")
        .arg("-l")
        .arg(&state)
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_directory_deleted_under_a_running_daemon() {
    let env = Env::new().await;
    let exec = env.lsp(json!({ "clientKind": "exec" })).await;
    let first = exec.request("scanmint/credentials", json!({})).await;
    let pid = env.daemon_pid().await.unwrap();
    std::fs::remove_dir_all(env.path("run/scanmint")).unwrap();
    // The running daemon notices and listens again; a new editor joins it, not a second daemon.
    assert!(
        eventually(10, || env.socket().exists()).await,
        "socket recreated"
    );
    assert_eq!(mode(&env.path("run/scanmint")), 0o700);
    assert_eq!(mode(&env.socket()), 0o600);
    let again = env.lsp(json!({ "clientKind": "exec" })).await;
    let c = again.request("scanmint/credentials", json!({})).await;
    assert_eq!(
        c["keyId"],
        first["keyId"],
        "same daemon, same key: {}",
        env.daemon_log()
    );
    assert_eq!(env.daemon_pid().await, Some(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_a_log_a_file_or_an_editor() {
    let mut env = Env::new().await;
    env.store = "file";
    env.extra_env.push(("SCANMINT_LOG".into(), "trace".into()));
    let ws = env.path("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let mut corpus = String::new();
    let mut editor = env
        .lsp_with(json!({}), json!({ "workspaceFolders": [{ "uri": format!("file://{}", ws.display()), "name": "ws" }], "capabilities": { "window": { "workDoneProgress": true } } }))
        .await;
    // Every command and path that touches a secret, with the most verbose logging.
    for args in [
        vec!["exec", "--", "true"],
        vec!["status", "--json"],
        vec!["rotate"],
        vec!["doctor", "--json"],
        vec!["revoke"],
        vec!["exec", "--", "sh", "-c", "exit 2"],
    ] {
        let (_, out, err) = env.run(&args).await;
        corpus.push_str(&out);
        corpus.push_str(&err);
    }
    let exe = common::BIN;
    let (_, out, err) = env.run(&["exec", "--", exe, "stand-in-scanner"]).await;
    corpus.push_str(&out);
    corpus.push_str(&err);
    let id = env.minted_live()[0];
    env.emulator.revoke(id);
    let (_, out, err) = env.run(&["exec", "--", exe, "stand-in-scanner"]).await;
    corpus.push_str(&out);
    corpus.push_str(&err);
    // A login over LSP with the secret as an argument, then logout.
    let login = editor
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.login", "arguments": [{ "baseUrl": env.emulator.base_url(), "keyId": env.emulator.primary_key_id(), "key": env.emulator.primary_key().expose(), "profile": "second" }] }),
        )
        .await;
    corpus.push_str(&login.to_string());
    let (_, out, err) = env.run(&["logout"]).await;
    corpus.push_str(&out);
    corpus.push_str(&err);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for m in editor.client.drain() {
        corpus.push_str(&m.method);
        corpus.push_str(&m.params.to_string());
    }
    env.kill_daemon(libc::SIGTERM).await;
    // Every file scanmint wrote, except the file store that exists to hold secrets.
    for entry in walk(env.dir.path()) {
        let name = entry.to_string_lossy();
        if name.ends_with("secrets.json") {
            continue;
        }
        corpus.push_str(&String::from_utf8_lossy(
            &std::fs::read(&entry).unwrap_or_default(),
        ));
    }
    assert!(
        corpus.contains("TRACE") || corpus.contains("DEBUG"),
        "verbose logs were collected"
    );
    let secrets = env.emulator.issued_secrets();
    assert!(secrets.len() >= 5);
    for secret in &secrets {
        let s = secret.expose();
        for start in 0..=s.len().saturating_sub(20) {
            assert!(
                !corpus.contains(&s[start..start + 20]),
                "a 20-character piece of an issued secret leaked"
            );
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            out.extend(walk(&path));
        } else if meta.is_file() {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_is_private_and_another_user_can_read_none() {
    let mut env = Env::new().await;
    env.store = "file";
    let cortex_env = env.path("home/cortex.env");
    std::fs::create_dir_all(env.path("home")).unwrap();
    env.write_config(&format!(
        "ttl = \"1h\"\ncortex_env = \"{}\"\n",
        cortex_env.display()
    ));
    let exec = env.lsp(json!({ "clientKind": "exec" })).await;
    let _ = exec.request("scanmint/credentials", json!({})).await;
    let (code, _, _) = env
        .run(&[
            "wrapper",
            "--cli",
            "/bin/true",
            "--out",
            env.path("home/cortexcli-scanmint").to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, 0);
    assert!(eventually(5, || cortex_env.exists()).await);
    let expected = [
        ("run/scanmint", 0o700),
        ("run/scanmint/scanmint-v1.sock", 0o600),
        ("run/scanmint/scanmint-v1.lock", 0o600),
        ("run/scanmint/secrets.json", 0o600),
        ("state/scanmint", 0o700),
        ("state/scanmint/ledger.json", 0o600),
        ("state/scanmint/broker.lock", 0o600),
        ("state/scanmint/daemon.log", 0o600),
        ("home/cortex.env", 0o600),
        ("home/cortexcli-scanmint", 0o700),
    ];
    for (rel, want) in expected {
        assert_eq!(mode(&env.path(rel)), want, "{rel}");
    }
    // uid 65534 can read neither the ledger nor the file store nor the log. It must really run
    // as 65534 (checked, so a refused setpriv fails the test), and the test's own directories
    // let it through: what stops it is scanmint's modes alone.
    let scratch = nobody_dir(env.dir.path(), "other-user");
    for dir in ["", "state", "run", "home"] {
        traversable(&env.path(dir));
    }
    for rel in [
        "state/scanmint/ledger.json",
        "run/scanmint/secrets.json",
        "state/scanmint/daemon.log",
        "home/cortex.env",
    ] {
        let path = env.path(rel);
        let out = run_as_nobody(&[], &scratch, &["/bin/cat", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{rel} is readable by another user");
        assert!(err.contains("Permission denied"), "{rel}: {err}");
    }
    // The same reader does read a file nobody made private: the check above can fail.
    let public = env.path("home/public.txt");
    std::fs::write(&public, "x").unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_as_nobody(&[], &scratch, &["/bin/cat", public.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A state directory with loose permissions is refused, with the fix.
    let loose = Env::new().await;
    loose.loose_dir("state/scanmint");
    let (code, _, err) = loose.run(&["lsp", "--standalone"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("chmod 700"), "{err}");
}

/// A private D-Bus session with an unlocked GNOME Keyring, at a fixed address so it can be
/// stopped and started again.
struct Keychain {
    dir: std::path::PathBuf,
    bus_pid: i32,
}

impl Keychain {
    fn address(dir: &std::path::Path) -> String {
        format!("unix:path={}", dir.join("bus").display())
    }

    fn start(dir: &std::path::Path) -> Keychain {
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::create_dir_all(dir.join("rt")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("rt"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let _ = std::fs::remove_file(dir.join("bus"));
        let out = std::process::Command::new("dbus-daemon")
            .args(["--session", "--fork", "--print-pid=1"])
            .arg(format!("--address={}", Self::address(dir)))
            .stderr(Stdio::null())
            .output()
            .expect("dbus-daemon (package dbus) is installed");
        let bus_pid: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("dbus-daemon prints its pid");
        let mut keyring = std::process::Command::new("gnome-keyring-daemon")
            .args(["--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", Self::address(dir))
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_RUNTIME_DIR", dir.join("rt"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon is installed");
        use std::io::Write;
        keyring
            .stdin
            .take()
            .unwrap()
            .write_all(b"throwaway")
            .unwrap();
        keyring.wait().unwrap();
        Keychain {
            dir: dir.to_path_buf(),
            bus_pid,
        }
    }

    /// Lock the login collection, as a screen locker or a timeout would.
    fn lock(&self) {
        let ok = std::process::Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--dest=org.freedesktop.secrets",
                "/org/freedesktop/secrets",
            ])
            .args([
                "org.freedesktop.Secret.Service.Lock",
                "array:objpath:/org/freedesktop/secrets/collection/login",
            ])
            .env("DBUS_SESSION_BUS_ADDRESS", Self::address(&self.dir))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(ok.success(), "dbus-send Lock");
    }

    /// Unlock it again with the password, as the person would at the prompt.
    fn unlock(&self) {
        let mut keyring = std::process::Command::new("gnome-keyring-daemon")
            .args(["--replace", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", Self::address(&self.dir))
            .env("XDG_DATA_HOME", self.dir.join("data"))
            .env("XDG_RUNTIME_DIR", self.dir.join("rt"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        keyring
            .stdin
            .take()
            .unwrap()
            .write_all(b"throwaway")
            .unwrap();
        keyring.wait().unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }

    fn stop(&self) {
        unsafe { libc::kill(self.bus_pid, libc::SIGTERM) };
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::fs::remove_file(self.dir.join("bus"));
    }
}

impl Drop for Keychain {
    fn drop(&mut self) {
        unsafe { libc::kill(self.bus_pid, libc::SIGTERM) };
    }
}

/// Log in with the Secret Service store on a private keychain, get a key, put the keychain in
/// `trouble`, and check the daemon says so while serving the key; then `mend` it and check the
/// daemon recovers without a restart.
async fn survives_keychain_trouble(
    name: &str,
    trouble: impl FnOnce(&Keychain),
    mend: impl FnOnce(&Keychain) -> Option<Keychain>,
) {
    let mut env = Env::without_primary().await;
    env.store = "secret-service";
    let kc_dir = env.path("keychain");
    let keychain = Keychain::start(&kc_dir);
    env.extra_env.push((
        "DBUS_SESSION_BUS_ADDRESS".into(),
        Keychain::address(&kc_dir),
    ));
    env.extra_env.push((
        "SCANMINT_KEYRING_SERVICE".into(),
        format!("scanmint-{name}-{}", std::process::id()),
    ));
    let mut s = env.lsp(json!({ "clientKind": "exec" })).await;
    let login = s
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.login", "arguments": [{ "baseUrl": env.emulator.base_url(), "keyId": env.emulator.primary_key_id(), "key": env.emulator.primary_key().expose() }] }),
        )
        .await;
    assert_eq!(login["storage"], "secret-service");
    let first = s.request("scanmint/credentials", json!({})).await;

    trouble(&keychain);
    let rotated = s
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.rotate" }),
        )
        .await;
    let degraded = s
        .status_where(|v| v["lastError"]["code"] == "store_unavailable")
        .await;
    assert_eq!(
        degraded["state"], "degraded",
        "{name}: a clear error state: {degraded}"
    );
    assert_eq!(
        degraded["key"]["keyId"], rotated["keyId"],
        "{name}: the new key is still served from memory"
    );
    let ledger: Value =
        serde_json::from_str(&std::fs::read_to_string(env.ledger()).unwrap()).unwrap();
    assert!(
        ledger["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == first["keyId"]),
        "{name}: no ledger lost"
    );

    // Mended: the next store call reconnects (same tier), without a daemon restart.
    let _restarted = mend(&keychain);
    let again = s
        .request(
            "workspace/executeCommand",
            json!({ "command": "scanmint.rotate" }),
        )
        .await;
    let ready = s
        .status_where(|v| v["state"] == "ready" && v["key"]["keyId"] == again["keyId"])
        .await;
    assert!(ready.get("lastError").is_none(), "{name}: {ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keychain_going_away_under_a_running_daemon() {
    // The D-Bus session (and the keyring with it) goes away, then starts again.
    survives_keychain_trouble("gone", |k| k.stop(), |k| Some(Keychain::start(&k.dir))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keychain_locked_under_a_running_daemon() {
    survives_keychain_trouble(
        "locked",
        |k| k.lock(),
        |k| {
            k.unlock();
            None
        },
    )
    .await;
}
