//! The command line and scanner delivery, as a person (or an IDE plugin) uses them.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{BIN, Env, eventually, mode};
use scanmint::tenant::emulator::{EmulatorConfig, Faults};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

async fn status_json(env: &Env) -> (i32, Value) {
    let (code, out, err) = env.run(&["status", "--json"]).await;
    (
        code,
        serde_json::from_str(&out).unwrap_or_else(|_| panic!("status --json: {out} {err}")),
    )
}

/// A scanner stand-in that records its environment and argv, then exits with `code`.
fn recorder(env: &Env, code: i32) -> String {
    let script = env.path("scanner.sh");
    let out = env.path("scanner.out");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"argv=$*\" >> '{out}'\necho \"key_id=$CORTEX_API_KEY_ID\" >> '{out}'\necho \"url=$CORTEX_API_BASE_URL\" >> '{out}'\necho \"key_len=${{#CORTEX_API_KEY}}\" >> '{out}'\ntr '\\0' ' ' < /proc/$$/cmdline >> '{out}'; echo >> '{out}'\nexit {code}\n",
            out = out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_puts_the_key_in_the_environment_only_and_passes_exit_codes() {
    let env = Env::new().await;
    let script = recorder(&env, 0);
    let (code, _, err) = env.run(&["exec", "--", &script, "code", "scan"]).await;
    assert_eq!(code, 0, "{err}");
    let out = std::fs::read_to_string(env.path("scanner.out")).unwrap();
    let live = env.minted_live();
    assert_eq!(live.len(), 1);
    assert!(out.contains(&format!("key_id={}", live[0])), "{out}");
    assert!(
        out.contains(&format!("url={}", env.emulator.base_url())),
        "{out}"
    );
    assert!(out.contains("key_len=128"), "{out}");
    assert!(out.contains("argv=code scan"), "{out}");
    // The secret is nowhere in the scanner's command line.
    let secret_prefix = "CORTEX_API_KEY=";
    assert!(!out.lines().any(|l| l.contains(secret_prefix)));

    for wanted in [0, 1, 3, 42] {
        let (code, _, _) = env
            .run(&["exec", "--", "sh", "-c", &format!("exit {wanted}")])
            .await;
        assert_eq!(code, wanted);
    }
    let (code, _, _) = env.run(&["exec", "--", "sh", "-c", "kill -TERM $$"]).await;
    assert_eq!(code, 128 + 15, "killed by a signal: 128 + signal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_secret_is_not_in_any_argv_of_the_process_tree() {
    let env = Env::new().await;
    let mut child = env
        .cmd(&["exec", "--", "sleep", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the key exists and the scanner runs.
    let key_id = env.first_minted().await.expect("a key was minted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Find the secret as the scanner sees it, then look for it in every command line.
    let mut found_env = false;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        let environ = String::from_utf8_lossy(&environ);
        if !environ.contains(&format!("CORTEX_API_KEY_ID={key_id}")) {
            continue;
        }
        found_env = true;
        let secret = environ
            .split('\0')
            .find_map(|v| v.strip_prefix("CORTEX_API_KEY="))
            .unwrap()
            .to_string();
        for other in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(other.path().join("cmdline")).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&cmdline).contains(&secret),
                "secret in argv of {:?}",
                other.path()
            );
        }
    }
    assert!(
        found_env,
        "the scanner process has the key in its environment"
    );
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_2_with_a_revoked_key_remints_and_runs_once_more() {
    let env = Env::new().await;
    let scanner = format!("{BIN} stand-in-scanner");
    let (code, out, err) = env.run(&["exec", "--", "sh", "-c", &scanner]).await;
    assert_eq!(code, 0, "{out}{err}");
    let first = env.minted_live()[0];
    // Let the daemon's start-up reconciliation finish first: it would otherwise notice the
    // deleted key on its own, and the scan would never see it rejected.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(env.emulator.revoke(first));
    let (code, out, err) = env.run(&["exec", "--", "sh", "-c", &scanner]).await;
    assert_eq!(code, 0, "the rerun with a fresh key passes: {out}{err}");
    assert!(err.contains(&format!("rejected key {first}")), "{err}");
    let live = env.minted_live();
    assert_eq!(live.len(), 1);
    assert_ne!(live[0], first);
    assert!(
        out.contains(&format!("authenticated with key {}", live[0])),
        "{out}"
    );

    // Exit 2 with a key that works: no new key, no rerun, exit code passed through.
    let generates = env.emulator.calls().generate;
    let (code, _, _) = env.run(&["exec", "--", "sh", "-c", "exit 2"]).await;
    assert_eq!(code, 2);
    assert_eq!(env.emulator.calls().generate, generates);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_reach_the_scanner() {
    let env = Env::new().await;
    let marker = env.path("got-term");
    let script = format!(
        "trap 'touch {}; exit 7' TERM; while :; do sleep 0.05; done",
        marker.display()
    );
    let child = env
        .cmd(&["exec", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap() as i32;
    env.first_minted().await.expect("a key was minted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(marker.exists(), "the scanner received SIGTERM");
    assert_eq!(out.status.code(), Some(7), "and its exit code came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retiring_key_lives_while_an_exec_child_uses_it() {
    let env = Env::new().await;
    env.write_config("ttl = \"1h\"\ngrace = \"2m\"\n");
    let child = env
        .cmd(&["exec", "--", "sleep", "3"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let old = env.first_minted().await.expect("a key was minted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, out, _) = env.run(&["rotate"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("generation 2"), "{out}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        env.minted_live().contains(&old),
        "revoked while the scan still ran"
    );
    let _ = child.wait_with_output().await;
    // Once its user is gone the old key goes, long before the 2 minute grace.
    assert!(
        eventually(5, || !env.minted_live().contains(&old)).await,
        "the old key outlived its last user"
    );
    assert_eq!(env.minted_live().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_from_stdin_status_and_logout() {
    let mut env = Env::without_primary().await;
    env.store = "memory";
    let (code, out, _) = env.run(&["status"]).await;
    assert_eq!(code, 1, "not logged in: not usable");
    assert!(out.contains("needs_login"), "{out}");

    let mut login = env
        .cmd(&[
            "login",
            "--base-url",
            env.emulator.base_url(),
            "--key-id",
            &env.emulator.primary_key_id().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = login.stdin.take().unwrap();
    stdin
        .write_all(format!("{}\n", env.emulator.primary_key().expose()).as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = login.wait_with_output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("memory store"), "{text}");
    assert!(
        env.minted_live().is_empty(),
        "login leaves no minted key alive"
    );

    let (code, status) = status_json(&env).await;
    assert_eq!(code, 0);
    assert_eq!(status["state"], "ready");
    assert_eq!(status["storage"], "memory");

    let (code, _, _) = env.run(&["exec", "--", "true"]).await;
    assert_eq!(code, 0);
    let (code, status) = status_json(&env).await;
    assert_eq!(code, 0);
    for field in ["keyId", "fingerprint", "role", "expiresAt", "generation"] {
        assert!(
            status["key"].get(field).is_some(),
            "{field} missing: {status}"
        );
    }
    assert!(
        status["key"]["fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    let (code, out, err) = env.run(&["logout"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        env.minted_live().is_empty(),
        "logout leaves zero minted keys"
    );
    let (code, status) = status_json(&env).await;
    assert_eq!(code, 1);
    assert_eq!(status["state"], "needs_login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_refuses_a_key_without_view_edit_with_guidance() {
    let env = Env::without_primary().await;
    let (id, key) = env.emulator.create_key(
        &["Public API (PAPI) View", "CLI Read-Only Custom"],
        scanmint::tenant::papi::wire::SecurityLevel::Standard,
        None,
    );
    let mut login = env
        .cmd(&[
            "login",
            "--base-url",
            env.emulator.base_url(),
            "--key-id",
            &id.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    login
        .stdin
        .take()
        .unwrap()
        .write_all(key.expose().as_bytes())
        .await
        .unwrap();
    let out = login.wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("Public API View/Edit"), "{err}");
    assert!(err.contains("Path A") && err.contains("Path B"), "{err}");
    assert!(!err.contains(key.expose()));
    let (code, status) = status_json(&env).await;
    assert_eq!(code, 1);
    assert_eq!(
        status["state"], "needs_login",
        "the refused key was not stored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_and_revoke_say_what_changed() {
    let env = Env::new().await;
    let (code, _, _) = env.run(&["exec", "--", "true"]).await;
    assert_eq!(code, 0);
    let first = env.minted_live()[0];
    let (code, out, _) = env.run(&["rotate"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("generation 2"), "{out}");
    let (code, out, _) = env.run(&["revoke"]).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("Revoked"), "{out}");
    assert!(env.minted_live().is_empty());
    assert!(!env.minted_live().contains(&first));
    // An orphan tagged as ours (minted by a previous install) goes with --all.
    let (code, _, _) = env.run(&["exec", "--", "true"]).await;
    assert_eq!(code, 0);
    let (code, out, _) = env.run(&["revoke", "--all"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(env.minted_live().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_passes_on_a_healthy_setup_and_names_the_problems_of_a_broken_one() {
    let env = Env::new().await;
    let (code, out, err) = env.run(&["doctor", "--json"]).await;
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
    let verdict = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].as_str().unwrap().to_string())
    };
    assert_eq!(verdict("canary").as_deref(), Some("pass"), "{report}");
    assert_eq!(verdict("clock").as_deref(), Some("pass"));
    assert_eq!(verdict("socket").as_deref(), Some("pass"));
    assert_eq!(
        verdict("storage").as_deref(),
        Some("warn"),
        "memory store is a warning"
    );
    assert_eq!(code, 0, "{report}");
    assert!(env.minted_live().is_empty(), "the canary was revoked");
    assert!(!out.contains(&env.emulator.primary_key().expose()[..20]));

    // Broken: the tenant's clock is 10 minutes off and the Primary key is an admin's (Path A).
    let broken = Env::with(
        EmulatorConfig {
            rate_limit_per_sec: 1000,
            path_a: true,
            faults: Faults {
                clock_offset_ms: 600_000,
                ..Default::default()
            },
            ..Default::default()
        },
        true,
    )
    .await;
    let (code, out, _) = broken.run(&["doctor"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("clock")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("WARN") && l.contains("Instance Administrator")),
        "{out}"
    );
    assert!(out.contains("fix:"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reports_a_locked_keychain() {
    // Secret Service asked for by name, on a D-Bus session that has no keyring daemon.
    let mut env = Env::new().await;
    env.store = "secret-service";
    let (code, out, err) = env.run(&["doctor"]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("storage") && l.contains("does not work")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_cortex_env_is_written_rotated_removed_and_never_clobbers() {
    let env = Env::new().await;
    let file = env.path("home-cortex.env");
    env.write_config(&format!(
        "ttl = \"1h\"\ncortex_env = \"{}\"\n",
        file.display()
    ));
    let s = env.lsp(serde_json::json!({})).await;
    let read_id = || {
        std::fs::read_to_string(&file).ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("CORTEX_API_KEY_ID=").map(String::from))
        })
    };
    assert!(
        eventually(5, || read_id().is_some()).await,
        "cortex.env written at start"
    );
    let id = read_id().unwrap();
    assert_eq!(mode(&file), 0o600);
    assert!(
        std::fs::read_to_string(&file)
            .unwrap()
            .starts_with("SCANMINT_MANAGED=1\n"),
        "the managed file is marked by a variable (issue 11)"
    );

    let rotated = s
        .request(
            "workspace/executeCommand",
            serde_json::json!({ "command": "scanmint.rotate" }),
        )
        .await;
    let new_id = rotated["keyId"].as_i64().unwrap().to_string();
    assert!(
        eventually(5, || read_id().as_deref() == Some(new_id.as_str())).await,
        "rewritten on rotation (was {id})"
    );

    let (code, _, _) = env.run(&["logout"]).await;
    assert_eq!(code, 0);
    assert!(eventually(5, || !file.exists()).await, "deleted on logout");
    drop(s);

    // A user's own file is left alone, and the status says so.
    let user = Env::new().await;
    let own = user.path("own-cortex.env");
    std::fs::write(&own, "CORTEX_API_KEY=mine-mine-mine-mine\n").unwrap();
    user.write_config(&format!(
        "ttl = \"1h\"\ncortex_env = \"{}\"\n",
        own.display()
    ));
    let mut s = user.lsp(serde_json::json!({})).await;
    let status = s
        .status_where(|v| v["lastError"]["code"] == "cortex_env")
        .await;
    assert!(
        status["lastError"]["message"]
            .as_str()
            .unwrap()
            .contains("not written by scanmint")
    );
    assert_eq!(
        std::fs::read_to_string(&own).unwrap(),
        "CORTEX_API_KEY=mine-mine-mine-mine\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrapper_script_runs_the_cli_with_the_minted_key_and_strips_stale_flags() {
    let env = Env::new().await;
    let script = recorder(&env, 0);
    let wrapper = env.path("bin/cortexcli-scanmint");
    let (code, out, err) = env
        .run(&[
            "wrapper",
            "--cli",
            &script,
            "--out",
            wrapper.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(mode(&wrapper), 0o700);
    let text = std::fs::read_to_string(&wrapper).unwrap();
    assert_eq!(text.lines().count(), 2, "a two-line script: {text}");
    let run = env
        .cmd(&[])
        .as_std()
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect::<Vec<_>>();
    let out = tokio::process::Command::new(&wrapper)
        .args([
            "code",
            "scan",
            "--api-key",
            "STALE",
            "--api-key-id=9",
            "--api-base-url",
            "https://old",
            "--upload-mode",
            "no-upload",
        ])
        .env_clear()
        .envs(run)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rec = std::fs::read_to_string(env.path("scanner.out")).unwrap();
    assert!(
        rec.contains("argv=code scan --upload-mode no-upload"),
        "{rec}"
    );
    assert!(!rec.contains("STALE"));
    assert!(
        rec.contains(&format!("key_id={}", env.minted_live()[0])),
        "{rec}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_and_bad_config_errors() {
    let env = Env::new().await;
    let (code, out, _) = env.run(&["completions", "bash"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("scanmint") && out.contains("exec"));
    std::fs::write(
        env.path("config/scanmint/config.toml"),
        "[profile.default]\nttl = \"1h\"\nrotate_after = 2\n",
    )
    .unwrap();
    let (code, _, err) = env.run(&["lsp", "--standalone"]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("config.toml") && err.contains("line 3") && err.contains("rotate_after"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_command_prints_its_bootstrap_line_and_answers_in_envelopes() {
    let mut child = tokio::process::Command::new(BIN)
        .args(["emulator", "--rate-limit", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line),
    )
    .await
    .unwrap()
    .unwrap();
    let boot: Value = serde_json::from_str(&line).unwrap();
    for field in [
        "base_url",
        "primary_key_id",
        "primary_key",
        "security_level",
    ] {
        assert!(boot.get(field).is_some(), "{field} missing: {line}");
    }
    // A raw request, as curl would send it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let reply: Value = http
        .post(format!(
            "{}/public_api/v1/api_keys/get_api_keys",
            boot["base_url"].as_str().unwrap()
        ))
        .header("x-xdr-auth-id", boot["primary_key_id"].to_string())
        .header("Authorization", boot["primary_key"].as_str().unwrap())
        .json(&serde_json::json!({ "request_data": {} }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["reply"]["TOTAL_COUNT"], 1, "{reply}");
    let denied = http
        .post(format!(
            "{}/public_api/v1/api_keys/get_api_keys",
            boot["base_url"].as_str().unwrap()
        ))
        .header("x-xdr-auth-id", "1")
        .header("Authorization", "nope")
        .json(&serde_json::json!({ "request_data": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let body: Value = denied.json().await.unwrap();
    assert!(body["reply"]["err_msg"].is_string(), "{body}");
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_steps_spin_on_a_terminal_and_print_plain_lines_otherwise() {
    let env = Env::new().await;
    let (code, plain, err) = env.run(&["rotate"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        !plain.contains('⠋') && !err.contains('⠋'),
        "no spinner without a terminal"
    );
    // `script` gives the command a pseudo-terminal, as a person's shell would.
    let cmd = env.cmd(&[]);
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = cmd
        .as_std()
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let out = tokio::process::Command::new("script")
        .args(["-qec", &format!("{BIN} rotate"), "/dev/null"])
        .env_clear()
        .envs(envs)
        .output()
        .await
        .expect("script (util-linux) runs");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(tty.contains("⠋ rotating…"), "{tty:?}");
    assert!(tty.contains("Rotated: key"), "{tty:?}");
}
