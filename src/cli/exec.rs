//! `scanmint exec`: getting the minted key into the scanner the way it already takes
//! credentials, the environment of a child process (also behind the CLI Path wrapper), with
//! the signals a terminal or an IDE sends forwarded and exit 2 answered by one re-mint.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cli::client::LspClient;
pub use crate::cli::wrapper::{strip_credential_flags, write_wrapper};
use crate::domain::broker::SCAN_MIN_VALID_SECS;
use crate::domain::secret::Secret;
use crate::domain::wipe::zeroize_strings;
use crate::serve::protocol::{self, Method};

/// The Cortex CLI's exit code for "failure talking to the platform" (auth failures land here).
pub const EXIT_PLATFORM_FAILURE: i32 = 2;

/// The credentials of one `scanmint/credentials` reply, with the secret taken out of the JSON.
pub(super) struct Handed {
    pub(super) base_url: String,
    pub(super) key_id: i64,
    pub(super) key: Secret,
}

/// The params of the `scanmint/credentials` request a scan makes (`rejected`: the key the
/// scanner just failed with, to be checked and replaced if bad).
pub(super) fn ask_params(profile: Option<&str>, rejected: Option<i64>) -> Value {
    let mut params = json!({ "profile": profile, "minValidSecs": SCAN_MIN_VALID_SECS });
    if let Some(id) = rejected {
        params["rejectedKeyId"] = json!(id);
    }
    params
}

/// The params of the `scanmint/scanFailed` notification after the scanner exited 2.
pub(super) fn scan_failed_params(key_id: i64, code: i32, profile: Option<&str>) -> Value {
    json!({ "keyId": key_id, "exitCode": code, "reason": "the scanner exited 2 (failure talking to the platform)", "profile": profile })
}

pub(super) fn take_credentials(mut reply: Value) -> anyhow::Result<Handed> {
    take_credentials_from(&mut reply)
}

/// The key moved out of `reply` into a `Secret`, and every string left in `reply` wiped.
fn take_credentials_from(reply: &mut Value) -> anyhow::Result<Handed> {
    let key = match reply["key"].take() {
        // Moved into the Secret, not copied.
        Value::String(s) => Secret::new(s),
        _ => {
            zeroize_strings(reply);
            bail!("the daemon did not hand out a key")
        }
    };
    let handed = reply["keyId"]
        .as_i64()
        .context("the daemon's reply has no keyId")
        .map(|key_id| Handed {
            base_url: reply["baseUrl"].as_str().unwrap_or_default().to_string(),
            key_id,
            key,
        });
    // The env map repeats the secret: overwrite every string left in the reply before it drops.
    zeroize_strings(reply);
    handed
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
    let ask = |rejected: Option<i64>| ask_params(opts.profile.as_deref(), rejected);
    let first = take_credentials(
        client
            .request(protocol::Credentials::METHOD, ask(None))
            .await
            .map_err(|e| anyhow::anyhow!("no key for the scanner: {e}"))?,
    )?;
    let mut code = run_child(program, &args, &first).await?;
    if code == EXIT_PLATFORM_FAILURE {
        let _ = client
            .notify(
                protocol::ScanFailed::METHOD,
                scan_failed_params(first.key_id, code, opts.profile.as_deref()),
            )
            .await;
        match client
            .request(protocol::Credentials::METHOD, ask(Some(first.key_id)))
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

/// The scanner's command: its arguments, the inherited environment minus what it must not see
/// (`hidden_from_scanner`), and `(base URL, key id, key)` as its `CORTEX_*` variables. Both
/// ways of running it (this module's and the fast path's) start from here.
pub(super) fn scanner_command(
    program: &OsString,
    args: &[OsString],
    (base_url, key_id, key): (&str, i64, &Secret),
) -> std::process::Command {
    let mut command = std::process::Command::new(program);
    command.args(args);
    for (name, _) in std::env::vars_os() {
        if hidden_from_scanner(&name.to_string_lossy()) {
            command.env_remove(&name);
        }
    }
    command
        .env("CORTEX_API_BASE_URL", base_url)
        .env("CORTEX_API_KEY_ID", key_id.to_string())
        .env("CORTEX_API_KEY", key.expose());
    command
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
    let mut child =
        tokio::process::Command::from(scanner_command(program, args, (base_url, key_id, key)))
            .spawn()
            .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    let pid = child.id().map(|p| p as i32);
    let forward_to_child = |signo: i32| {
        if let Some(pid) = pid {
            crate::platform::kill(pid, signo);
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

#[cfg(test)]
mod tests {
    use super::hidden_from_scanner;

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
}

#[cfg(test)]
mod wipe_tests {
    use super::*;

    #[test]
    fn taking_the_credentials_leaves_no_copy_of_the_key_in_the_reply() {
        let secret = "MintedKeySecret-0123456789abcdefXYZ";
        let mut reply = json!({ "keyId": 7, "baseUrl": "https://t.example", "key": secret,
            "env": { "CORTEX_API_KEY": secret, "CORTEX_API_KEY_ID": "7" } });
        let handed = take_credentials_from(&mut reply).unwrap();
        assert_eq!(handed.key.expose(), secret);
        assert_eq!(
            (handed.key_id, handed.base_url.as_str()),
            (7, "https://t.example")
        );
        let text = reply.to_string();
        assert!(!text.contains("MintedKeySecret"), "{text}");
        assert!(
            reply["env"]["CORTEX_API_KEY"]
                .as_str()
                .unwrap()
                .bytes()
                .all(|b| b == 0),
            "{text}"
        );
    }
}
