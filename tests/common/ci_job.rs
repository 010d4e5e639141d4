//! What the CI tests share (`tests/ci.rs`, `tests/ci_files.rs`): a CI job's `scanmint`, with
//! only what a runner's environment holds, and the checks every job ends with.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::{BIN, CORE, Env, eventually};
use scanmint::tenant::emulator::AdminKeyView;
use tokio::process::Command;

/// A CI job's `scanmint`: only what a runner's environment holds.
pub fn job_cmd(env: &Env, args: &[&str]) -> Command {
    for d in ["job/config", "job/state", "job/run", "job/home"] {
        std::fs::create_dir_all(env.path(d)).unwrap();
    }
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", env.path("job/home"))
        .env("XDG_CONFIG_HOME", env.path("job/config"))
        .env("XDG_STATE_HOME", env.path("job/state"))
        .env("XDG_RUNTIME_DIR", env.path("job/run"))
        .env("CI", "true")
        .env("SCANMINT_LOG", "trace")
        .env("SCANMINT_BASE_URL", env.emulator.base_url())
        .env("SCANMINT_ROLE", "CLI Read-Only Custom")
        .env(
            "SCANMINT_PRIMARY_KEY_ID",
            env.emulator.primary_key_id().to_string(),
        )
        .env("SCANMINT_PRIMARY_KEY", env.emulator.primary_key().expose())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_JOB", "scan")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub async fn finish(cmd: &mut Command) -> Out {
    let out = tokio::time::timeout(Duration::from_secs(40), cmd.output())
        .await
        .expect("scanmint finishes")
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Keys minted by scanmint (not the Primary key, not console keys).
pub fn minted(env: &Env) -> Vec<AdminKeyView> {
    env.emulator
        .keys()
        .into_iter()
        .filter(|k| !k.is_primary && k.comment.starts_with("scanmint "))
        .collect()
}

/// A key's lifetime in whole minutes, rounded: expiry follows the tenant's clock as measured
/// from its `Date` header (one-second resolution), so it may be off by a second either way.
pub fn minutes_to_live(k: &AdminKeyView) -> i64 {
    (k.expiration.unwrap() - k.creation_time + 30_000) / 60_000
}

/// Zero minted keys left live on the tenant, within a few seconds.
pub async fn assert_no_live_minted(env: &Env, what: &str) {
    let gone = eventually(5, || env.minted_live().is_empty()).await;
    assert!(
        gone,
        "{what}: keys still live on the tenant: {:?}",
        env.minted_live()
    );
}

/// scanmint processes started for this test's directories (a daemon would be one).
pub fn scanmint_processes(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let exe = std::fs::read_link(entry.path().join("exe")).unwrap_or_default();
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        if (exe == Path::new(BIN) || exe == Path::new(CORE))
            && String::from_utf8_lossy(&environ).contains(&needle)
        {
            pids.push(pid);
        }
    }
    pids
}

/// Neither `secret` nor any 20-character piece of it occurs in `text`.
pub fn assert_no_secret(text: &str, secret: &str, what: &str) {
    assert!(secret.len() >= 20, "{what}: secret too short to test");
    for start in 0..=secret.len() - 20 {
        let piece = &secret[start..start + 20];
        assert!(
            !text.contains(piece),
            "{what}: a piece of a secret was printed: …{piece}…"
        );
    }
}
