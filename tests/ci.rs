//! CI jobs (issue 13) and the scanner's environment (issue 12, finding 1), end to end with the
//! real binary against the emulator: a job has only environment variables (no config file, no
//! keychain, no daemon); its key is verified, short-lived, tagged with the job, and revoked
//! whatever way the scan ends; nothing it prints holds a secret. The integration files (GitHub
//! action, GitLab template) are run in `tests/ci_files.rs`.

#[path = "common/ci_job.rs"]
mod ci_job;
mod common;

use std::path::Path;
use std::time::Duration;

use ci_job::*;
use common::{BIN, Env, eventually};
/// Run the attack: the scanner dumps its environment. Returns the dump.
fn env_dump_args(file: &Path) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        "env > \"$1\"; exec \"$2\" stand-in-scanner".into(),
        "sh".into(),
        file.to_string_lossy().into_owned(),
        BIN.into(),
    ]
}

/// Issue 12, finding 1: through the daemon, the scanner gets the three `CORTEX_*` variables and
/// neither the Primary key nor a stale `CORTEX_API_KEY*` of the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_exec_child_never_inherits_the_primary_key() {
    let mut env = Env::new().await;
    env.extra_env
        .push(("CORTEX_API_KEY_OLD".into(), "stale-secret-value".into()));
    env.extra_env
        .push(("SCANMINT_SOME_TOKEN".into(), "another-secret-value".into()));
    let dump = env.path("child.env");
    let mut args = vec!["exec", "--no-ephemeral", "--"];
    let child = env_dump_args(&dump);
    args.extend(child.iter().map(String::as_str));
    let (code, out, err) = env.run(&args).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let seen = std::fs::read_to_string(&dump).unwrap();
    assert!(seen.contains("CORTEX_API_KEY_ID="), "{seen}");
    assert!(seen.contains("CORTEX_API_BASE_URL="), "{seen}");
    for forbidden in [
        "SCANMINT_PRIMARY_KEY",
        "SCANMINT_SOME_TOKEN",
        "CORTEX_API_KEY_OLD",
    ] {
        assert!(
            !seen.contains(forbidden),
            "the scanner inherited {forbidden}"
        );
    }
    assert_no_secret(
        &seen,
        env.emulator.primary_key().expose(),
        "the scanner's environment",
    );
    // Harmless settings still pass (the stand-in scanner reads one of them).
    assert!(seen.contains("SCANMINT_LOG=debug"), "{seen}");
    // The daemon this exec used is running: the process check the CI tests rely on sees it.
    assert!(!scanmint_processes(env.dir.path()).is_empty());
}

/// The done-when of issue 13: a CI job with only environment variables gets a verified key
/// tagged with the job, short-lived, revoked when the scan ends; no daemon, no secret printed
/// even at trace level (except GitHub's mask command).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_job_gets_one_verified_key_revoked_at_the_end_and_prints_no_secret() {
    let env = Env::new().await;
    let dump = env.path("child.env");
    let child = env_dump_args(&dump);
    let mut args = vec!["exec", "--"];
    args.extend(child.iter().map(String::as_str));
    let out = finish(&mut job_cmd(&env, &args)).await;
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // The stand-in scanner authenticated with the key: it was good when handed over.
    assert!(
        out.stdout.contains("scanner: authenticated with key"),
        "{}",
        out.stdout
    );

    let keys = minted(&env);
    assert_eq!(keys.len(), 1, "one key for one job: {keys:?}");
    let key = &keys[0];
    assert!(
        // `scanmint <job>#<installation> <profile> <random>`: a job's throwaway state directory
        // makes each job its own installation.
        key.comment.starts_with("scanmint ci/github/4242/scan#")
            && key.comment.split(' ').nth(2) == Some("default"),
        "the tag names the job: {:?}",
        key.comment
    );
    let lifetime = key.expiration.unwrap() - key.creation_time;
    assert!(
        lifetime <= 3600 * 1000 + 5000,
        "a job key lives at most an hour: {lifetime} ms"
    );
    assert_no_live_minted(&env, "after exit 0").await;

    let seen = std::fs::read_to_string(&dump).unwrap();
    assert!(
        seen.contains(&format!("CORTEX_API_KEY_ID={}", key.id)),
        "{seen}"
    );
    assert!(!seen.contains("SCANMINT_PRIMARY"), "{seen}");
    assert_no_secret(
        &seen,
        env.emulator.primary_key().expose(),
        "the scanner's environment",
    );

    // No daemon: nothing listens in the runtime dir, and no scanmint process is left.
    assert!(!env.path("job/run/scanmint/scanmint-v1.sock").exists());
    assert!(scanmint_processes(&env.path("job")).is_empty());

    // Logs are safe to publish: every secret the tenant issued is absent from everything printed,
    // but for the one mask command GitHub reads (and hides) on stdout.
    let mask_lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("::add-mask::"))
        .collect();
    assert_eq!(mask_lines.len(), 1, "{}", out.stdout);
    let printed: String = out
        .stdout
        .lines()
        .filter(|l| !l.starts_with("::add-mask::"))
        .chain(out.stderr.lines())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        out.stderr.contains("TRACE") || out.stderr.contains("DEBUG"),
        "the most verbose log level was on"
    );
    for secret in env.emulator.issued_secrets() {
        assert_no_secret(&printed, secret.expose(), "scanmint's output");
    }
    let minted_secret = env
        .emulator
        .issued_secrets()
        .into_iter()
        .find(|s| mask_lines[0].ends_with(s.expose()))
        .expect("the mask command names the minted key");
    assert!(minted_secret.expose() != env.emulator.primary_key().expose());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_job_keys_are_revoked_when_the_scanner_reports_findings() {
    let env = Env::new().await;
    let out = finish(&mut job_cmd(&env, &["exec", "--", "sh", "-c", "exit 1"])).await;
    assert_eq!(
        out.code, 1,
        "the scanner's exit code is the job's: {}",
        out.stderr
    );
    assert_eq!(
        minted(&env).len(),
        1,
        "{:?}\n{}",
        env.emulator.keys(),
        out.stderr
    );
    assert_no_live_minted(&env, "after exit 1").await;
    // No GitHub Actions: no mask command on stdout.
    let out = finish(
        job_cmd(&env, &["exec", "--", "true"])
            .env_remove("GITHUB_ACTIONS")
            .env("CI_JOB_ID", "77"),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stdout.contains("::add-mask::"), "{}", out.stdout);
    assert_no_live_minted(&env, "after a second job").await;
}

/// Exit code 2 (the tenant refused the key): scanmint checks the key, mints a new one once,
/// runs the scanner again, and revokes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_job_exit_2_path_remints_once_and_revokes_everything() {
    let env = Env::new().await;
    let d = env.path("x2");
    std::fs::create_dir_all(&d).unwrap();
    let script = r#"D="$1"
if [ -e "$D/run1" ]; then echo "$CORTEX_API_KEY_ID" > "$D/run2"; exit 0; fi
echo "$CORTEX_API_KEY_ID" > "$D/run1.tmp"; mv "$D/run1.tmp" "$D/run1"
while [ ! -e "$D/go" ]; do sleep 0.05; done
exit 2"#;
    let d_str = d.to_string_lossy().into_owned();
    let mut cmd = job_cmd(&env, &["exec", "--", "sh", "-c", script, "sh", &d_str]);
    let job = tokio::spawn(async move { finish(&mut cmd).await });
    assert!(eventually(15, || d.join("run1").exists()).await);
    let first: i64 = std::fs::read_to_string(d.join("run1"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The key dies on the tenant mid-scan (deleted in the console): the scanner exits 2.
    assert!(env.emulator.revoke(first));
    std::fs::write(d.join("go"), "").unwrap();
    let out = job.await.unwrap();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let second: i64 = std::fs::read_to_string(d.join("run2"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(first, second, "{}", out.stderr);
    assert_eq!(minted(&env).len(), 2);
    assert_no_live_minted(&env, "after the exit-2 path").await;
}

/// A cancelled job: SIGINT/SIGTERM reach the scanner, the key is revoked before scanmint exits,
/// and the exit code says cancelled (130/143). A scanner that ignores SIGTERM is killed after a
/// short grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_job_cancelled_mid_scan_revokes_its_key_and_exits_130_or_143() {
    let env = Env::new().await;
    for (name, signo, scanner) in [
        (
            "polite",
            libc::SIGINT,
            r#"echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 30"#,
        ),
        (
            "stubborn",
            libc::SIGTERM,
            r#"trap '' TERM; echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; while :; do sleep 0.1; done"#,
        ),
    ] {
        let ready = env.path(&format!("{name}.pid"));
        let ready_str = ready.to_string_lossy().into_owned();
        let mut child = job_cmd(&env, &["exec", "--", "sh", "-c", scanner, "sh", &ready_str])
            .spawn()
            .unwrap();
        assert!(
            eventually(15, || ready.exists()).await,
            "{name}: scanner started"
        );
        let scanner_pid: i32 = std::fs::read_to_string(&ready)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(env.minted_live().len(), 1, "{name}");
        let started = std::time::Instant::now();
        unsafe { libc::kill(child.id().unwrap() as i32, signo) };
        let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .expect("scanmint exits after the signal")
            .unwrap();
        assert_eq!(
            status.code(),
            Some(128 + signo),
            "{name}: exit code says cancelled"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "{name}");
        // Revoked before scanmint exited: no waiting here.
        assert!(
            env.minted_live().is_empty(),
            "{name}: key live after exit: {:?}",
            env.minted_live()
        );
        assert!(
            unsafe { libc::kill(scanner_pid, 0) } != 0,
            "{name}: the scanner is gone"
        );
    }
    assert!(scanmint_processes(&env.path("job")).is_empty());
}

/// Cancelled while the key is still being minted: the mint finishes, the scanner never runs,
/// the key is revoked, the exit code says cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_job_cancelled_while_minting_revokes_the_key_and_never_scans() {
    let env = Env::new().await;
    let mut faults = env.emulator.faults();
    faults.latency_ms = 1000;
    env.emulator.set_faults(faults);
    let ran = env.path("scanner-ran");
    let ran_str = ran.to_string_lossy().into_owned();
    let mut child = job_cmd(&env, &["exec", "--", "touch", &ran_str])
        .spawn()
        .unwrap();
    // Give scanmint time to start and register its handlers; minting takes several calls.
    tokio::time::sleep(Duration::from_millis(700)).await;
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("scanmint exits")
        .unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(!ran.exists(), "the scanner never ran");
    assert_eq!(minted(&env).len(), 1, "the mint was let finish");
    assert!(env.minted_live().is_empty(), "{:?}", env.minted_live());
}

/// Config-less: the role must be said; `--ttl` and `SCANMINT_TTL` set the key's lifetime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ci_job_needs_a_role_and_takes_its_ttl_from_flag_or_environment() {
    let env = Env::new().await;
    let out = finish(job_cmd(&env, &["exec", "--", "true"]).env_remove("SCANMINT_ROLE")).await;
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("SCANMINT_ROLE"), "{}", out.stderr);
    assert!(minted(&env).is_empty());

    let out = finish(job_cmd(&env, &["exec", "--", "true"]).env("SCANMINT_TTL", "soon")).await;
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("SCANMINT_TTL") && out.stderr.contains("not a duration"),
        "{}",
        out.stderr
    );

    let out = finish(&mut job_cmd(&env, &["exec", "--ttl", "20m", "--", "true"])).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = finish(job_cmd(&env, &["exec", "--", "true"]).env("SCANMINT_TTL", "2h")).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut lifetimes: Vec<i64> = minted(&env).iter().map(minutes_to_live).collect();
    lifetimes.sort();
    assert_eq!(lifetimes, [20, 120], "minutes");
    assert_no_live_minted(&env, "after the ttl jobs").await;
}

/// A job killed with SIGKILL leaves its key; `revoke --all --older-than` from a scheduled job
/// (Primary key in the environment, no daemon) sweeps it, and leaves everything else alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_jobs_keys_are_swept_without_touching_other_keys() {
    let env = Env::new().await;
    let ready = env.path("dead.pid");
    let ready_str = ready.to_string_lossy().into_owned();
    let mut job = job_cmd(
        &env,
        &[
            "exec",
            "--",
            "sh",
            "-c",
            r#"echo $$ > "$1.tmp"; mv "$1.tmp" "$1"; exec sleep 30"#,
            "sh",
            &ready_str,
        ],
    )
    .spawn()
    .unwrap();
    assert!(eventually(15, || ready.exists()).await);
    unsafe { libc::kill(job.id().unwrap() as i32, libc::SIGKILL) };
    let _ = job.wait().await;
    let scanner: i32 = std::fs::read_to_string(&ready)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(scanner, libc::SIGKILL) };
    let dead = env.minted_live();
    assert_eq!(dead.len(), 1, "the killed job left its key");
    let (console_key, _) = env.emulator.create_key(
        &["CLI Read-Only Custom"],
        scanmint::tenant::papi::wire::SecurityLevel::Standard,
        None,
    );

    // Too young for the sweep.
    let out = finish(&mut job_cmd(
        &env,
        &["revoke", "--all", "--older-than", "1h"],
    ))
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(env.minted_live().contains(&dead[0]), "{}", out.stdout);

    // A scheduled job with a different job id sweeps it.
    let out = finish(
        job_cmd(&env, &["revoke", "--all", "--older-than", "0s"]).env("GITHUB_RUN_ID", "9999"),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains(&dead[0].to_string()), "{}", out.stdout);
    assert!(!env.minted_live().contains(&dead[0]));
    let live: Vec<i64> = env.emulator.live_keys().iter().map(|k| k.id).collect();
    assert!(live.contains(&console_key), "a person's key is left alone");
    assert!(live.contains(&env.emulator.primary_key_id()));
    assert!(scanmint_processes(&env.path("job")).is_empty());
}
