//! What the end-to-end tests share: an emulator, isolated XDG directories, and the real binary.
#![allow(dead_code)]

pub mod other_user;
pub mod rig;
pub mod squatter;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use scanmint::cli::client::LspClient;
use scanmint::tenant::emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// The launcher users run; it hands everything but a scan's launch to `CORE` next to it.
pub const BIN: &str = env!("CARGO_BIN_EXE_scanmint");
/// The binary that serves: daemons and editor proxies run it.
pub const CORE: &str = env!("CARGO_BIN_EXE_scanmint-core");

pub struct Env {
    pub dir: tempfile::TempDir,
    pub emulator: Emulator,
    /// Give the daemon the Primary key through the environment (no login needed).
    pub env_primary: bool,
    pub store: &'static str,
    pub extra_env: Vec<(String, String)>,
}

impl Env {
    pub async fn new() -> Env {
        Env::with(
            EmulatorConfig {
                rate_limit_per_sec: 1000,
                ..Default::default()
            },
            true,
        )
        .await
    }

    /// A daemon that must be logged in (no Primary key in its environment).
    pub async fn without_primary() -> Env {
        Env::with(
            EmulatorConfig {
                rate_limit_per_sec: 1000,
                ..Default::default()
            },
            false,
        )
        .await
    }

    pub async fn with(config: EmulatorConfig, env_primary: bool) -> Env {
        let emulator = Emulator::start(config).await.expect("emulator starts");
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            dir,
            emulator,
            env_primary,
            store: "memory",
            extra_env: Vec::new(),
        };
        for d in ["config/scanmint", "state", "run"] {
            std::fs::create_dir_all(env.path(d)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(env.path("run"), std::fs::Permissions::from_mode(0o700)).unwrap();
        env.write_config("ttl = \"1h\"\ngrace = \"1m\"\n");
        env
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Write the default profile's config (base URL filled in) plus `extra` lines.
    pub fn write_config(&self, extra: &str) {
        let text = format!(
            "idle_exit = \"10m\"\n[profile.default]\nbase_url = \"{}\"\n{extra}",
            self.emulator.base_url()
        );
        std::fs::write(self.path("config/scanmint/config.toml"), text).unwrap();
    }

    pub fn socket(&self) -> PathBuf {
        self.path("run/scanmint/scanmint-v1.sock")
    }

    pub fn ledger(&self) -> PathBuf {
        self.path("state/scanmint/ledger.json")
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.path("state/scanmint/daemon.log")).unwrap_or_default()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_of(Path::new(BIN), args)
    }

    /// `cmd` with another scanmint binary (a copy standing for an older release, say).
    pub fn cmd_of(&self, bin: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("SCANMINT_STORE", self.store)
            .env("SCANMINT_LOG", "debug")
            .kill_on_drop(true);
        if self.env_primary {
            cmd.env(
                "SCANMINT_PRIMARY_KEY_ID",
                self.emulator.primary_key_id().to_string(),
            )
            .env("SCANMINT_PRIMARY_KEY", self.emulator.primary_key().expose());
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// `scanmint ARGS` to completion: (exit code, stdout, stderr).
    pub async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = tokio::time::timeout(
            Duration::from_secs(30),
            self.cmd(args).stdin(Stdio::null()).output(),
        )
        .await
        .expect("command finishes")
        .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Start `scanmint lsp` as an editor would and initialize a session over its stdio.
    pub async fn lsp(&self, options: Value) -> Session {
        self.lsp_with(options, json!({})).await
    }

    pub async fn lsp_with(&self, options: Value, extra_params: Value) -> Session {
        let mut child = self
            .cmd(&["lsp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let client = LspClient::over(child.stdout.take().unwrap(), child.stdin.take().unwrap());
        let mut params =
            json!({ "processId": null, "capabilities": {}, "initializationOptions": options });
        if let (Some(p), Some(extra)) = (params.as_object_mut(), extra_params.as_object()) {
            for (k, v) in extra {
                p.insert(k.clone(), v.clone());
            }
        }
        let init = match tokio::time::timeout(
            Duration::from_secs(10),
            client.request("initialize", params),
        )
        .await
        {
            Ok(Ok(init)) => init,
            other => {
                let log = self.daemon_log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let _ = child.start_kill();
                let stderr = match child.wait_with_output().await {
                    Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
                    Err(_) => String::new(),
                };
                let pid = self.daemon_pid().await;
                panic!(
                    "initialize failed: {other:?}\nscanmint lsp stderr: {stderr}\ndaemon now: {pid:?}\ndaemon log (last lines first):\n{}",
                    tail.join("\n")
                );
            }
        };
        client.notify("initialized", json!({})).await.unwrap();
        Session {
            child,
            client,
            init,
        }
    }

    /// The daemon's pid, from the socket's peer credentials.
    pub async fn daemon_pid(&self) -> Option<i32> {
        let stream = tokio::net::UnixStream::connect(self.socket()).await.ok()?;
        stream.peer_cred().ok()?.pid()
    }

    pub fn minted_live(&self) -> Vec<i64> {
        self.emulator
            .live_keys()
            .into_iter()
            .filter(|k| !k.is_primary)
            .map(|k| k.id)
            .collect()
    }

    /// Create `rel` with mode 0755: a directory other users could read, which scanmint refuses.
    pub fn loose_dir(&self, rel: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(self.path(rel)).unwrap();
        std::fs::set_permissions(self.path(rel), std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// The first minted key live on the tenant, waiting up to five seconds for one.
    pub async fn first_minted(&self) -> Option<i64> {
        eventually(5, || !self.minted_live().is_empty()).await;
        self.minted_live().first().copied()
    }

    pub async fn kill_daemon(&self, signal: i32) {
        if let Some(pid) = self.daemon_pid().await {
            unsafe { libc::kill(pid, signal) };
            for _ in 0..100 {
                if unsafe { libc::kill(pid, 0) } != 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // The daemon is detached from us: stop it by its socket's peer pid.
        let socket = self.socket();
        if let Ok(stream) = std::os::unix::net::UnixStream::connect(&socket) {
            let pid = peer_pid(&stream);
            if let Some(pid) = pid {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn peer_pid(stream: &std::os::unix::net::UnixStream) -> Option<i32> {
    // The crate's own SO_PEERCRED reader (the only `unsafe` stays in `platform`).
    scanmint::platform::peer_uid(stream)
        .ok()
        .and_then(|(_, pid)| pid)
}

/// One editor-like session through `scanmint lsp`.
pub struct Session {
    pub child: Child,
    pub client: LspClient,
    pub init: Value,
}

impl Session {
    pub async fn request(&self, method: &str, params: Value) -> Value {
        tokio::time::timeout(Duration::from_secs(20), self.client.request(method, params))
            .await
            .unwrap_or_else(|_| panic!("{method} answers"))
            .unwrap_or_else(|e| panic!("{method} failed: {e}"))
    }

    /// Wait for a `scanmint/didChangeStatus` matching `pred`.
    pub async fn status_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(s) = self.client.wait_for("scanmint/didChangeStatus", left).await else {
                panic!("no matching scanmint/didChangeStatus");
            };
            if pred(&s) {
                return s;
            }
        }
    }
}

/// Poll `cond` every 50 ms for up to `secs` seconds; its last answer.
pub async fn eventually(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 20 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

pub fn generation(v: &Value) -> i64 {
    v["key"]["generation"].as_i64().unwrap_or(0)
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}
