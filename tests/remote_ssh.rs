//! Remote development end to end over real ssh on this machine: Debian's sshd on a loopback
//! port with its own config and host key, a second local user as the "remote", and `ssh -R`
//! forwarding the daemon's restricted socket. On the remote, `scanmint exec` gets a working key,
//! `scanmint logout` is refused, nothing of the Primary key lands in the remote user's files or
//! environment, and the workstation stays logged in.
//!
//! Needs root (to add the user) and openssh-server (`.ci/run` installs it): without them the
//! test fails, it does not skip.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::time::Duration;

use common::*;

const SSHD: &str = "/usr/sbin/sshd";

/// The remote user and the sshd serving it; both go away on drop, also when the test fails.
struct Remote {
    user: String,
    home: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("sshd.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        // Its processes first (an ssh session may linger), then the user and its home.
        let _ = StdCommand::new("pkill")
            .args(["-KILL", "-u", &self.user])
            .status();
        let _ = StdCommand::new("userdel")
            .args(["-r", "-f", &self.user])
            .output();
    }
}

fn run(cmd: &mut StdCommand) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Remote {
    fn start() -> Remote {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server (.ci/run does)"
        );
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "this test adds a local user: run it as root (CI does)"
        );
        let user = format!("smr{}{}", std::process::id(), rand_suffix());
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        run(StdCommand::new("useradd").args(["-m", "-s", "/bin/bash", &user]));
        // Not locked ('!' is refused by sshd), but no password either.
        let mut remote = Remote {
            home: PathBuf::new(),
            user: user.clone(),
            dir,
            port,
        };
        run(StdCommand::new("usermod").args(["-p", "*", &user]));
        let home = run(StdCommand::new("getent").args(["passwd", &user]));
        remote.home = PathBuf::from(home.trim().split(':').nth(5).unwrap());
        let d = remote.dir.path();
        for key in ["hostkey", "userkey"] {
            run(StdCommand::new("ssh-keygen").args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                d.join(key).to_str().unwrap(),
            ]));
        }
        let ssh_dir = remote.home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        std::fs::copy(d.join("userkey.pub"), ssh_dir.join("authorized_keys")).unwrap();
        std::fs::set_permissions(&ssh_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(
            ssh_dir.join("authorized_keys"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        run(StdCommand::new("chown").args(["-R", &format!("{user}:"), ssh_dir.to_str().unwrap()]));
        std::fs::create_dir_all("/run/sshd").unwrap();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\nUsePAM no\nPasswordAuthentication no\nStreamLocalBindUnlink yes\nAllowStreamLocalForwarding yes\n",
            d.join("hostkey").display(),
            d.join("sshd.pid").display()
        );
        std::fs::write(d.join("sshd_config"), config).unwrap();
        run(StdCommand::new(SSHD).args([
            "-f",
            d.join("sshd_config").to_str().unwrap(),
            "-E",
            d.join("sshd.log").to_str().unwrap(),
        ]));
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return remote;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sshd did not listen: {}", remote.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// `ssh -R remote_sock:local_sock user@127.0.0.1 script`: (exit code, stdout, stderr).
    async fn ssh(&self, forward: &str, script: &str) -> (i32, String, String) {
        let mut cmd = tokio::process::Command::new("ssh");
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .args(["-F", "/dev/null", "-i"])
            .arg(self.dir.path().join("userkey"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "LogLevel=ERROR",
                "-p",
                &self.port.to_string(),
                "-R",
                forward,
                &format!("{}@127.0.0.1", self.user),
                script,
            ])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
            .await
            .expect("ssh finishes")
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{:x}", nanos & 0xffff)
}

/// Every regular file under `root` (not following links).
fn files_under(root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        if t.is_dir() {
            files_under(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

#[tokio::test]
async fn a_scan_over_ssh_gets_a_key_while_the_primary_key_stays_home() {
    let remote = Remote::start();
    let env = Env::new().await;
    let (code, _, err) = env.run(&["status"]).await;
    assert_eq!(code, 0, "the workstation daemon starts: {err}");
    let local = env.path("run/scanmint/remote-v1.sock");
    assert!(local.exists(), "the restricted socket is there");

    // The remote user cannot read target/ under a private tree: give it a copy in a 0755 dir.
    let bin_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(bin_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = bin_dir.path().join("scanmint");
    for (from, to) in [
        (BIN, bin.clone()),
        (CORE, bin.with_file_name("scanmint-core")),
    ] {
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let bin = bin.display().to_string();

    let remote_sock = remote.home.join(".scanmint-remote.sock");
    let forward = format!("{}:{}", remote_sock.display(), local.display());
    let script = format!(
        r#"export SCANMINT_SOCKET="$HOME/.scanmint-remote.sock"
echo "sock=$(stat -c '%U %a' "$SCANMINT_SOCKET")"
{bin} exec -- sh -c 'env > "$HOME/scan.env"; {bin} stand-in-scanner'; echo "exec=$?"
{bin} logout; echo "logout=$?"
{bin} status; echo "status=$?"
env > "$HOME/session.env"
"#
    );
    let (code, out, err) = remote.ssh(&forward, &script).await;
    assert_eq!(code, 0, "ssh: {out}\n{err}\nsshd log:\n{}", remote.log());
    assert!(
        out.contains(&format!("sock={} 600", remote.user)),
        "the forwarded socket is the remote user's, 0600: {out}"
    );
    assert!(
        out.contains("exec=0"),
        "the scan works on the remote: {out}\n{err}"
    );
    assert!(out.contains("logout=1"), "logout is refused: {out}\n{err}");
    assert!(
        err.contains("not allowed over scanmint's remote socket"),
        "{err}"
    );
    assert!(out.contains("forwarded workstation daemon"), "{out}");
    assert!(out.contains("status=0"), "{out}");

    let scan_env = std::fs::read_to_string(remote.home.join("scan.env")).unwrap();
    assert!(scan_env.contains("CORTEX_API_KEY="), "{scan_env}");
    let minted_id = scan_env
        .lines()
        .find_map(|l| l.strip_prefix("CORTEX_API_KEY_ID="))
        .and_then(|v| v.parse::<i64>().ok())
        .expect("the scanner got a key id");
    assert_ne!(minted_id, env.emulator.primary_key_id());
    // A remote key of its own, tagged so the console shows it went to a remote; the scan is
    // over and no remote session uses it any more, so it is revoked.
    let record = env
        .emulator
        .keys()
        .into_iter()
        .find(|k| k.id == minted_id)
        .expect("the key was minted on the workstation's tenant");
    assert!(record.comment.contains(" remote-"), "{}", record.comment);
    assert!(
        eventually(5, || !env.minted_live().contains(&minted_id)).await,
        "the remote key is revoked once no remote session uses it"
    );

    // Nothing of the Primary key on the remote: its files, and /tmp files it owns.
    let secret = env.emulator.primary_key().expose().to_string();
    let mut files = Vec::new();
    files_under(&remote.home, &mut files);
    use std::os::unix::fs::MetadataExt;
    let uid: u32 = run(StdCommand::new("id").args(["-u", &remote.user]))
        .trim()
        .parse()
        .unwrap();
    let mut tmp = Vec::new();
    files_under(Path::new("/tmp"), &mut tmp);
    files.extend(
        tmp.into_iter()
            .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.uid() == uid)),
    );
    assert!(files.len() >= 2, "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(&secret),
            "the Primary key landed in {}",
            f.display()
        );
    }
    assert!(
        !std::fs::read_to_string(remote.home.join("session.env"))
            .unwrap()
            .contains("SCANMINT_PRIMARY"),
    );

    // The workstation is still logged in and its Primary key still works.
    let (code, out, _) = env.run(&["status"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(env.emulator.live_keys().iter().any(|k| k.is_primary));
}
