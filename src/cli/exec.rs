//! `scanmint exec`: getting the minted key into the scanner the way it already takes
//! credentials, the environment of a child process (also behind the CLI Path wrapper), with
//! the signals a terminal or an IDE sends forwarded and exit 2 answered by one re-mint.

use std::ffi::OsString;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::cli::client::LspClient;
pub use crate::cli::wrapper::{strip_credential_flags, write_wrapper};
use crate::domain::broker::SCAN_MIN_VALID_SECS;
use crate::domain::secret::Secret;
use crate::serve::protocol::{self, Method};

/// The Cortex CLI's exit code for "failure talking to the platform" (auth failures land here).
pub const EXIT_PLATFORM_FAILURE: i32 = 2;

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
            .request(protocol::Credentials::METHOD, ask(None))
            .await
            .map_err(|e| anyhow::anyhow!("no key for the scanner: {e}"))?,
    )?;
    let mut code = run_child(program, &args, &first).await?;
    if code == EXIT_PLATFORM_FAILURE {
        let _ = client
            .notify(
                protocol::ScanFailed::METHOD,
                json!({ "keyId": first.key_id, "exitCode": code, "reason": "the scanner exited 2 (failure talking to the platform)", "profile": opts.profile }),
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

/// Run the child with the three `CORTEX_*` variables, forwarding the signals a terminal or an
/// IDE sends, and return its exit code (128 + signal when it was killed).
async fn run_child(program: &OsString, args: &[OsString], creds: &Handed) -> anyhow::Result<i32> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("CORTEX_API_BASE_URL", &creds.base_url)
        .env("CORTEX_API_KEY_ID", creds.key_id.to_string())
        .env("CORTEX_API_KEY", creds.key.expose())
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
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = int.recv() => forward_to_child(libc::SIGINT),
            _ = term.recv() => forward_to_child(libc::SIGTERM),
            _ = hup.recv() => forward_to_child(libc::SIGHUP),
            _ = quit.recv() => forward_to_child(libc::SIGQUIT),
            _ = usr1.recv() => forward_to_child(libc::SIGUSR1),
            _ = usr2.recv() => forward_to_child(libc::SIGUSR2),
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
