//! Getting the minted key into the scanner the way it already takes credentials: the
//! environment of a child process (`scanmint exec`, the CLI Path wrapper), or a managed
//! `cortex.env` file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::broker::{Broker, Event};
use crate::client::LspClient;
use crate::fsutil;
use crate::scan::MANAGED_MARKER;
use crate::secret::Secret;

/// The Cortex CLI's exit code for "failure talking to the platform" (auth failures land here).
pub const EXIT_PLATFORM_FAILURE: i32 = 2;
/// A key handed to a scanner must outlive a long scan.
const SCAN_MIN_VALID_SECS: u64 = 900;

/// Flags through which a plugin might pass its own (stale) credentials.
const CREDENTIAL_FLAGS: [&str; 3] = ["--api-key", "--api-key-id", "--api-base-url"];

/// Remove `--api-key X`, `--api-key=X` and the like, so the minted key in the environment is
/// what the scanner uses.
pub fn strip_credential_flags(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_next = false;
    for arg in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        let text = arg.to_string_lossy();
        if CREDENTIAL_FLAGS.contains(&text.as_ref()) {
            skip_next = true;
            continue;
        }
        if CREDENTIAL_FLAGS
            .iter()
            .any(|f| text.starts_with(&format!("{f}=")))
        {
            continue;
        }
        out.push(arg.clone());
    }
    out
}

/// The credentials of one `scanmint/credentials` reply, with the secret taken out of the JSON.
struct Handed {
    base_url: String,
    key_id: i64,
    key: Secret,
}

fn take_credentials(mut reply: Value) -> anyhow::Result<Handed> {
    let key = match reply["key"].take() {
        Value::String(s) => Secret::new(s),
        _ => bail!("the daemon did not hand out a key"),
    };
    // The env map repeats the secret: take it out so it is not left lying in a JSON value.
    if let Some(env) = reply.get_mut("env").and_then(|e| e.as_object_mut())
        && let Some(Value::String(s)) = env.remove("CORTEX_API_KEY")
    {
        drop(Secret::new(s));
    }
    Ok(Handed {
        base_url: reply["baseUrl"].as_str().unwrap_or_default().to_string(),
        key_id: reply["keyId"]
            .as_i64()
            .context("the daemon's reply has no keyId")?,
        key,
    })
}

pub struct ExecOptions {
    pub profile: Option<String>,
    pub strip_credential_flags: bool,
    pub command: Vec<OsString>,
}

/// `scanmint exec`: run the scanner with a fresh key in its environment only, and return its
/// exit code. An exit code of 2 makes the daemon check the key; if it was bad, the scanner runs
/// once more with a new key.
pub async fn exec(opts: ExecOptions) -> anyhow::Result<i32> {
    let (program, args) = opts
        .command
        .split_first()
        .context("nothing to run: scanmint exec -- COMMAND [ARGS...]")?;
    let args = if opts.strip_credential_flags {
        strip_credential_flags(args)
    } else {
        args.to_vec()
    };
    // The session stays open while the child runs: that is what marks the key as in use.
    let client = LspClient::connect_daemon("exec", opts.profile.as_deref()).await?;
    let ask = |rejected: Option<i64>| {
        let mut params = json!({ "profile": opts.profile, "minValidSecs": SCAN_MIN_VALID_SECS });
        if let Some(id) = rejected {
            params["rejectedKeyId"] = json!(id);
        }
        params
    };
    let first = take_credentials(
        client
            .request("scanmint/credentials", ask(None))
            .await
            .map_err(|e| anyhow::anyhow!("no key for the scanner: {e}"))?,
    )?;
    let mut code = run_child(program, &args, &first).await?;
    if code == EXIT_PLATFORM_FAILURE {
        let _ = client
            .notify(
                "scanmint/scanFailed",
                json!({ "keyId": first.key_id, "exitCode": code, "reason": "the scanner exited 2 (failure talking to the platform)", "profile": opts.profile }),
            )
            .await;
        match client
            .request("scanmint/credentials", ask(Some(first.key_id)))
            .await
        {
            Ok(reply) => {
                let fresh = take_credentials(reply)?;
                if fresh.key_id != first.key_id {
                    eprintln!(
                        "scanmint: the tenant rejected key {}; running again with new key {}",
                        first.key_id, fresh.key_id
                    );
                    code = run_child(program, &args, &fresh).await?;
                }
            }
            Err(e) => eprintln!("scanmint: could not check the key after the scan failed: {e}"),
        }
    }
    // Closing the connection ends the session (and its lease); no shutdown handshake needed.
    drop(client);
    Ok(code)
}

/// `SCANMINT_*` variables a scanner may see: they name files, URLs and log levels, never a
/// secret. Every other `SCANMINT_*` variable (the Primary key and any secret added later) is
/// dropped from the scanner's environment: an allowlist, so a new secret cannot slip through.
const SCANNER_VISIBLE: [&str; 8] = [
    "SCANMINT_LOG",
    "SCANMINT_CONFIG",
    "SCANMINT_PROFILE",
    "SCANMINT_BASE_URL",
    "SCANMINT_STORE",
    "SCANMINT_ROLE",
    "SCANMINT_TTL",
    "SCANMINT_SCANNER_CA",
];

/// Whether the scanner must not inherit the variable `name`: a `SCANMINT_*` variable not on
/// the allowlist, or someone else's `CORTEX_API_KEY*` (ours replaces it).
pub fn hidden_from_scanner(name: &str) -> bool {
    (name.starts_with("SCANMINT_") && !SCANNER_VISIBLE.contains(&name))
        || name.starts_with("CORTEX_API_KEY")
}

/// How the scanner ended.
pub struct ChildEnd {
    /// Its exit code (128 + signal when a signal killed it).
    pub code: i32,
    /// SIGINT or SIGTERM reached scanmint while the scanner ran: the job was cancelled.
    pub cancelled: Option<i32>,
}

/// Run the child with the three `CORTEX_*` variables, forwarding the signals a terminal or an
/// IDE sends, and return its exit code (128 + signal when it was killed).
async fn run_child(program: &OsString, args: &[OsString], creds: &Handed) -> anyhow::Result<i32> {
    let end = run_scanner(
        program,
        args,
        (&creds.base_url, creds.key_id, &creds.key),
        None,
    )
    .await?;
    Ok(end.code)
}

/// Run the scanner with `(base URL, key id, key)` as its `CORTEX_*` variables and no inherited
/// secret, forwarding signals. After a SIGINT/SIGTERM, a scanner still running when
/// `kill_after_cancel` has passed is killed, so the caller can clean up before the CI system
/// gives up on the job.
pub async fn run_scanner(
    program: &OsString,
    args: &[OsString],
    (base_url, key_id, key): (&str, i64, &Secret),
    kill_after_cancel: Option<Duration>,
) -> anyhow::Result<ChildEnd> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut command = tokio::process::Command::new(program);
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if hidden_from_scanner(&name.to_string_lossy()) {
            command.env_remove(&name);
        }
    }
    let mut child = command
        .env("CORTEX_API_BASE_URL", base_url)
        .env("CORTEX_API_KEY_ID", key_id.to_string())
        .env("CORTEX_API_KEY", key.expose())
        .spawn()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    let pid = child.id().map(|p| p as i32);
    let forward_to_child = |signo: i32| {
        if let Some(pid) = pid {
            // SAFETY: sending a signal to our own child process.
            unsafe { libc::kill(pid, signo) };
        }
    };
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut cancelled = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut cancel = |signo: i32, kill_at: &mut Option<tokio::time::Instant>| {
        cancelled.get_or_insert(signo);
        if kill_at.is_none() {
            *kill_at = kill_after_cancel.map(|d| tokio::time::Instant::now() + d);
        }
        forward_to_child(signo);
    };
    let status = loop {
        let deadline = async {
            match kill_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => break status?,
            _ = int.recv() => cancel(libc::SIGINT, &mut kill_at),
            _ = term.recv() => cancel(libc::SIGTERM, &mut kill_at),
            _ = hup.recv() => forward_to_child(libc::SIGHUP),
            _ = quit.recv() => forward_to_child(libc::SIGQUIT),
            _ = usr1.recv() => forward_to_child(libc::SIGUSR1),
            _ = usr2.recv() => forward_to_child(libc::SIGUSR2),
            _ = deadline => {
                forward_to_child(libc::SIGKILL);
                kill_at = None;
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Ok(ChildEnd { code, cancelled })
}

/// `scanmint wrapper`: a script to set as the IDE plugin's CLI Path.
pub fn write_wrapper(cli: &Path, out: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().context("cannot find the scanmint binary")?;
    let quote = |p: &Path| format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"));
    let script = format!(
        "#!/bin/sh\nexec {} exec --strip-credential-flags -- {} \"$@\"\n",
        quote(&exe),
        quote(cli)
    );
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fsutil::write_private_atomic(out, script.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Keeps each profile's opt-in `cortex.env` holding the current key.
pub struct CortexEnvWriter;

impl CortexEnvWriter {
    pub fn start(broker: Broker) {
        let profiles: Vec<(String, PathBuf)> = broker
            .config()
            .profiles
            .values()
            .filter_map(|p| Some((p.name.clone(), p.cortex_env.clone()?)))
            .collect();
        if profiles.is_empty() {
            return;
        }
        let mut events = broker.subscribe();
        tokio::spawn(async move {
            // The scanner reads the file without asking us: have a key there from the start.
            for (profile, path) in &profiles {
                refresh(&broker, profile, path).await;
            }
            loop {
                match events.recv().await {
                    Ok(Event::KeyChanged {
                        profile,
                        generation,
                    }) => {
                        let Some((_, path)) = profiles.iter().find(|(p, _)| *p == profile) else {
                            continue;
                        };
                        match generation {
                            Some(_) => refresh(&broker, &profile, path).await,
                            None => remove_managed(path),
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        for (profile, path) in &profiles {
                            refresh(&broker, profile, path).await;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
    }
}

async fn refresh(broker: &Broker, profile: &str, path: &Path) {
    if broker.status(profile).await.state == crate::broker::State::NeedsLogin {
        return;
    }
    match broker
        .credentials(profile, Duration::from_secs(SCAN_MIN_VALID_SECS))
        .await
    {
        Ok(c) => match write_cortex_env(path, &c.base_url, c.key_id, &c.key) {
            Ok(()) => {
                tracing::info!(path = %path.display(), key_id = c.key_id, "cortex.env updated")
            }
            Err(e) => broker.report_problem(profile, "cortex_env", &e.to_string()),
        },
        Err(e) => tracing::warn!(error = %e, "no key for cortex.env"),
    }
}

/// Write the managed file atomically (0600), refusing to overwrite a file we did not create.
pub fn write_cortex_env(
    path: &Path,
    base_url: &str,
    key_id: i64,
    key: &Secret,
) -> anyhow::Result<()> {
    if let Ok(existing) = std::fs::read_to_string(path)
        && existing.lines().next() != Some(MANAGED_MARKER)
    {
        bail!(
            "{} exists and was not written by scanmint, so it is left alone; remove its literal key (the editor offers a quick fix) or delete the file to let scanmint manage it",
            path.display()
        );
    }
    let text = zeroize::Zeroizing::new(format!(
        "{MANAGED_MARKER}\nCORTEX_API_BASE_URL={base_url}\nCORTEX_API_KEY_ID={key_id}\nCORTEX_API_KEY={}\n",
        key.expose()
    ));
    fsutil::write_private_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Delete the managed file (only if it is ours).
pub fn remove_managed(path: &Path) {
    if let Ok(existing) = std::fs::read_to_string(path)
        && existing.lines().next() == Some(MANAGED_MARKER)
    {
        let _ = std::fs::remove_file(path);
        tracing::info!(path = %path.display(), "managed cortex.env removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn credential_flags_are_stripped_in_both_forms() {
        let got = strip_credential_flags(&args(&[
            "code",
            "scan",
            "--api-key",
            "stale",
            "--api-key-id=7",
            "--api-base-url",
            "https://x",
            "--upload-mode",
            "no-upload",
        ]));
        assert_eq!(got, args(&["code", "scan", "--upload-mode", "no-upload"]));
    }

    #[test]
    fn scanner_sees_no_scanmint_secret_and_no_foreign_cortex_key() {
        for hidden in [
            "SCANMINT_PRIMARY_KEY",
            "SCANMINT_PRIMARY_KEY_ID",
            "SCANMINT_PRIMARY_SECURITY_LEVEL",
            "SCANMINT_ANY_FUTURE_SECRET",
            "CORTEX_API_KEY",
            "CORTEX_API_KEY_ID",
            "CORTEX_API_KEY_OLD",
        ] {
            assert!(hidden_from_scanner(hidden), "{hidden}");
        }
        for visible in [
            "SCANMINT_LOG",
            "SCANMINT_SCANNER_CA",
            "CORTEX_API_BASE_URL",
            "PATH",
        ] {
            assert!(!hidden_from_scanner(visible), "{visible}");
        }
    }

    #[test]
    fn managed_cortex_env_never_clobbers_a_users_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cortex.env");
        write_cortex_env(&path, "https://t", 5, &Secret::new("k1")).unwrap();
        write_cortex_env(&path, "https://t", 6, &Secret::new("k2")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(MANAGED_MARKER)
                && text.contains("CORTEX_API_KEY_ID=6")
                && text.contains("CORTEX_API_KEY=k2")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        remove_managed(&path);
        assert!(!path.exists());

        std::fs::write(&path, "CORTEX_API_KEY=mine\n").unwrap();
        let err = write_cortex_env(&path, "https://t", 7, &Secret::new("k3"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not written by scanmint"), "{err}");
        remove_managed(&path);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "CORTEX_API_KEY=mine\n"
        );
    }
}
