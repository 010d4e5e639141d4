//! `scanmint demo`: the whole lifecycle on one machine, against an embedded tenant emulator,
//! in throwaway directories. Every step runs the real binary, as a person would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::process::Command;

use crate::tenant::emulator::{AdminKeyView, Emulator, EmulatorConfig};

struct Demo {
    exe: PathBuf,
    dir: tempfile::TempDir,
    started: Instant,
    emulator: Emulator,
}

impl Demo {
    fn say(&self, text: &str) {
        println!("[{:>6.2}s] {text}", self.started.elapsed().as_secs_f64());
    }

    fn detail(&self, text: &str) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            println!("           │ {line}");
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A `scanmint` command in the demo's isolated environment.
    fn scanmint(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_STATE_HOME", self.path("state"))
            .env("XDG_RUNTIME_DIR", self.path("run"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("SCANMINT_STORE", "memory")
            .env_remove("SCANMINT_CONFIG")
            .env_remove("SCANMINT_PROFILE")
            .env_remove("SCANMINT_BASE_URL")
            .env_remove("SCANMINT_PRIMARY_KEY_ID")
            .env_remove("SCANMINT_PRIMARY_KEY")
            .env_remove("SCANMINT_CRASH_AT")
            // Not a CI job, even when the demo runs in one.
            .env_remove("CI")
            .kill_on_drop(true);
        cmd
    }

    async fn run(&self, args: &[&str]) -> anyhow::Result<(i32, String)> {
        let out = self.scanmint(args).stdin(Stdio::null()).output().await?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.code().unwrap_or(-1), text))
    }

    fn minted(&self) -> Vec<AdminKeyView> {
        self.emulator
            .keys()
            .into_iter()
            .filter(|k| !k.is_primary)
            .collect()
    }

    fn live_minted(&self) -> Vec<AdminKeyView> {
        self.emulator
            .live_keys()
            .into_iter()
            .filter(|k| !k.is_primary)
            .collect()
    }

    /// Run a scan through `scanmint exec` and return the key id the scanner authenticated with.
    async fn scan(&self, label: &str) -> anyhow::Result<i64> {
        let exe = self.exe.to_string_lossy().to_string();
        let (code, out) = self.run(&["exec", "--", &exe, "stand-in-scanner"]).await?;
        self.detail(&out);
        ensure!(code == 0, "{label}: the scanner failed (exit {code})");
        scanned_key(&out)
            .with_context(|| format!("{label}: the scanner did not say which key it used"))
    }

    async fn wait_until(
        &self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut() -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while !done() {
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

/// The key id in the stand-in scanner's last "authenticated with key N" line.
fn scanned_key(out: &str) -> Option<i64> {
    out.lines()
        .rev()
        .find_map(|l| l.split("authenticated with key ").nth(1))
        .and_then(|rest| rest.split(';').next())
        .and_then(|id| id.trim().parse().ok())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    crate::platform::fs::ensure_private_dir(path.parent().context("no parent")?)?;
    crate::platform::fs::write_private_atomic(path, text.as_bytes())?;
    Ok(())
}

pub async fn run() -> anyhow::Result<i32> {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .context("cannot start the emulator")?;
    let dir = tempfile::Builder::new()
        .prefix("scanmint-demo-")
        .tempdir()?;
    let demo = Demo {
        exe: crate::cli::launcher::launcher_path()?,
        dir,
        started: Instant::now(),
        emulator,
    };
    let mut daemon = None;
    let result = story(&demo, &mut daemon).await;
    if let Some(mut child) = daemon {
        // SIGTERM lets the daemon write its ledger; then it is gone with the directory.
        if let Some(pid) = child.id() {
            crate::platform::kill(pid as i32, libc::SIGTERM);
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        let _ = child.kill().await;
    }
    let leftover = demo.dir.path().to_path_buf();
    drop(demo);
    match result {
        Ok(()) => {
            ensure!(
                !leftover.exists(),
                "the demo left {} behind",
                leftover.display()
            );
            println!(
                "\nThe demo left nothing behind. Try it for real: scanmint login, then scanmint wrapper --cli $(which cortexcli) --out ~/bin/cortexcli-scanmint"
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("\ndemo failed: {e:#}");
            Ok(1)
        }
    }
}

async fn story(demo: &Demo, daemon: &mut Option<tokio::process::Child>) -> anyhow::Result<()> {
    let em = &demo.emulator;
    println!("scanmint demo: a Primary key mints narrow, short-lived keys for every scan.\n");
    demo.say(&format!(
        "tenant emulator up at {}; Primary key {} holds the three custom roles of Path B",
        em.base_url(),
        em.primary_key_id()
    ));
    write_private(
        &demo.path("config/scanmint/config.toml"),
        &format!(
            "idle_exit = \"5m\"\n[profile.default]\nbase_url = \"{}\"\nrole = \"CLI Read-Only Custom\"\nttl = \"1h\"\ngrace = \"20s\"\n",
            em.base_url()
        ),
    )?;

    // The daemon, started as editors start it, but owned by the demo so it can stop it.
    let log = std::fs::File::create(demo.path("daemon.log"))?;
    *daemon = Some(
        demo.scanmint(&["daemon"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?,
    );
    demo.say("daemon started (isolated directories, memory store)");

    // 1. Login: the secret goes in on stdin, never argv.
    let mut login = demo
        .scanmint(&[
            "login",
            "--base-url",
            em.base_url(),
            "--key-id",
            &em.primary_key_id().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = login.stdin.take().context("no stdin")?;
        stdin
            .write_all(em.primary_key().expose().as_bytes())
            .await?;
    }
    let out = login.wait_with_output().await?;
    demo.detail(&String::from_utf8_lossy(&out.stdout));
    ensure!(
        out.status.success(),
        "login failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        demo.live_minted().is_empty(),
        "login left a minted key alive"
    );
    demo.say(&format!(
        "logged in: the key was checked with a canary (minted, verified, deleted); {} minted keys alive",
        demo.live_minted().len()
    ));

    // 2. First scan: a key is minted on demand and verified before the scanner sees it.
    let first = demo.scan("first scan").await?;
    let record = demo
        .minted()
        .into_iter()
        .find(|k| k.id == first)
        .context("the scanner's key is not on the tenant")?;
    ensure!(
        record.roles == ["CLI Read-Only Custom"],
        "the key is broader than asked: {:?}",
        record.roles
    );
    demo.say(&format!(
        "scan 1: key {first} minted on demand, verified: roles {:?}, level {:?}, expires in 1h",
        record.roles, record.security_level
    ));

    // 3. Second scan reuses it.
    let generates = em.calls().generate;
    let second = demo.scan("second scan").await?;
    ensure!(
        second == first && em.calls().generate == generates,
        "the second scan did not reuse the key"
    );
    demo.say(&format!(
        "scan 2: reused key {second}; no call to the tenant's generate"
    ));

    // 4. Rotation while a long scan still uses the old key.
    let exe = demo.exe.to_string_lossy().to_string();
    let script = format!("'{exe}' stand-in-scanner && sleep 3");
    let long_scan = demo
        .scanmint(&["exec", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (code, out) = demo.run(&["rotate"]).await?;
    demo.detail(&out);
    ensure!(code == 0, "rotate failed");
    let live: Vec<i64> = demo.live_minted().iter().map(|k| k.id).collect();
    ensure!(
        live.contains(&first),
        "the old key was revoked while a scan still used it"
    );
    demo.say(&format!(
        "rotated while a scan was running: old key {first} stays alive for it (live keys {live:?})"
    ));
    let out = long_scan.wait_with_output().await?;
    demo.detail(&String::from_utf8_lossy(&out.stdout));
    demo.wait_until("the old key to be revoked", Duration::from_secs(25), || {
        !demo.live_minted().iter().any(|k| k.id == first)
    })
    .await?;
    demo.say(&format!(
        "the long scan finished; old key {first} revoked right after (grace 20s not needed)"
    ));

    // 5. A key deleted behind our back: the scanner fails, the daemon re-mints, the scan reruns.
    let (_, status) = demo.run(&["status", "--json"]).await?;
    let current: serde_json::Value = serde_json::from_str(&status)?;
    let current = current["key"]["keyId"].as_i64().context("no active key")?;
    ensure!(em.revoke(current), "could not revoke in the emulator");
    demo.say(&format!("someone deletes key {current} in the console"));
    let rescued = demo.scan("scan after revocation").await?;
    ensure!(rescued != current, "the scanner did not get a new key");
    demo.say(&format!("scan 3: the scanner got 'unauthorized' (exit 2); the daemon validated, re-minted key {rescued}, the scan reran and passed"));

    // 6. Status, as a person sees it.
    let (code, out) = demo.run(&["status"]).await?;
    demo.detail(&out);
    ensure!(code == 0, "status says credentials are not usable");

    // 7. Logout revokes everything this machine minted.
    let (code, out) = demo.run(&["logout"]).await?;
    demo.detail(&out);
    ensure!(code == 0, "logout failed");
    let live = demo.live_minted();
    ensure!(
        live.is_empty(),
        "keys still alive after logout: {:?}",
        live.iter().map(|k| k.id).collect::<Vec<_>>()
    );
    demo.say(&format!(
        "logged out: {} keys minted in all, 0 alive on the tenant; the Primary key is forgotten",
        demo.minted().len()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_the_scanners_key() {
        assert_eq!(
            super::scanned_key(
                "x\nscanner: authenticated with key 1042; CLI download link for a\n"
            ),
            Some(1042)
        );
        assert_eq!(
            super::scanned_key("scanner: the platform refused key 5"),
            None
        );
    }
}
