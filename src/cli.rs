//! The command line. Every command but `emulator` and `completions` talks to the daemon
//! (starting it if needed), so the CLI and the editors always see the same state.

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{CommandFactory, Parser, Subcommand};
use serde_json::{Value, json};

use crate::client::{LspClient, RpcError};
use crate::deliver::{self, ExecOptions};
use crate::emulator::EmulatorArgs;
use crate::papi::wire::SecurityLevel;
use crate::secret::Secret;

#[derive(Parser, Debug)]
#[command(
    name = "scanmint",
    version,
    about = "Least-privilege, short-lived API keys for IDE security scanners"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the per-user daemon (editors and the CLI start it on demand).
    Daemon,
    /// Speak LSP on stdio: what editors launch. Joins the daemon, starting it if needed.
    Lsp {
        /// Serve in this process instead of joining the daemon (no runtime directory needed).
        #[arg(long)]
        standalone: bool,
    },
    /// Check a Primary key against the tenant and store it. The secret is read from a hidden
    /// prompt, or from stdin when stdin is not a terminal; never from the command line.
    Login {
        #[arg(long)]
        profile: Option<String>,
        /// The tenant's API URL, e.g. https://api-acme.xdr.us.paloaltonetworks.com
        #[arg(long)]
        base_url: Option<String>,
        #[arg(long)]
        key_id: Option<i64>,
        #[arg(long, default_value = "standard")]
        security_level: SecurityLevel,
    },
    /// Revoke every key this machine minted for the profile, then forget the Primary key.
    Logout {
        #[arg(long)]
        profile: Option<String>,
    },
    /// Show the credential state; exits 0 only when credentials are usable now.
    Status {
        #[arg(long)]
        profile: Option<String>,
        /// Print the StatusReport as JSON (see docs/protocol.md).
        #[arg(long)]
        json: bool,
    },
    /// Run a scanner with a fresh key in its environment (CORTEX_API_BASE_URL, CORTEX_API_KEY_ID,
    /// CORTEX_API_KEY) and exit with its exit code.
    Exec {
        #[arg(long)]
        profile: Option<String>,
        /// Drop --api-key, --api-key-id and --api-base-url from the scanner's arguments.
        #[arg(long)]
        strip_credential_flags: bool,
        /// No daemon: mint one key for this run and revoke it when the scanner ends (the
        /// default when CI=true and the Primary key is in SCANMINT_PRIMARY_KEY*; see docs/ci.md).
        #[arg(long, conflicts_with = "no_ephemeral")]
        ephemeral: bool,
        /// Use the daemon even in a CI job.
        #[arg(long)]
        no_ephemeral: bool,
        /// Lifetime of the ephemeral key (default 1h, or SCANMINT_TTL), e.g. 20m.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<OsString>,
    },
    /// Write a script to use as the IDE plugin's CLI Path: it runs the real CLI through `exec`.
    Wrapper {
        /// The real Cortex CLI.
        #[arg(long)]
        cli: PathBuf,
        /// Where to write the wrapper script.
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace the active key now.
    Rotate {
        #[arg(long)]
        profile: Option<String>,
    },
    /// Revoke the active key (and retiring ones); the next scan mints a fresh one.
    Revoke {
        #[arg(long)]
        profile: Option<String>,
        /// Also every key on the tenant tagged as this machine's for the profile. In a CI job
        /// (CI=true, Primary key in the environment): every key CI jobs minted for the profile.
        #[arg(long)]
        all: bool,
        /// With --all: only keys created at least this long ago (sweeps keys of dead CI jobs,
        /// with the Primary key from the environment and no daemon), e.g. 2h.
        #[arg(long, requires = "all", value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
    },
    /// Check everything end to end and say how to fix what fails.
    Doctor {
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run a local tenant emulator (for tests, benchmarks and trying scanmint out).
    Emulator(EmulatorArgs),
    /// Watch the whole lifecycle against an embedded emulator, in throwaway directories.
    Demo,
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
    /// A stand-in scanner: reads CORTEX_* from its environment and calls the tenant with them,
    /// as the Cortex CLI does. Exits 2 when the tenant refuses the key.
    #[command(hide = true)]
    StandInScanner,
}

/// Run a command; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Daemon => crate::daemon::run().await.map(|_| 0),
        Command::Lsp { standalone: true } => crate::daemon::run_standalone().await.map(|_| 0),
        Command::Lsp { standalone: false } => crate::daemon::run_proxy().await.map(|_| 0),
        Command::Login {
            profile,
            base_url,
            key_id,
            security_level,
        } => login(profile, base_url, key_id, security_level).await,
        Command::Logout { profile } => {
            simple(
                "scanmint.logout",
                "logging out",
                json!({ "profile": profile }),
            )
            .await
        }
        Command::Rotate { profile } => {
            simple("scanmint.rotate", "rotating", json!({ "profile": profile })).await
        }
        Command::Revoke {
            profile,
            all: true,
            older_than,
        } if older_than.is_some() || crate::ephemeral::wanted(false, false) => {
            crate::ephemeral::sweep(profile, older_than.unwrap_or_default()).await
        }
        Command::Revoke { profile, all, .. } => {
            simple(
                "scanmint.revoke",
                "revoking",
                json!({ "profile": profile, "all": all }),
            )
            .await
        }
        Command::Status { profile, json } => status(profile, json).await,
        Command::Doctor { profile, json } => doctor(profile, json).await,
        Command::Exec {
            profile,
            strip_credential_flags,
            ephemeral,
            no_ephemeral,
            ttl,
            command,
        } if crate::ephemeral::wanted(ephemeral, no_ephemeral) => {
            crate::ephemeral::exec(crate::ephemeral::EphemeralOptions {
                profile,
                strip_credential_flags,
                ttl,
                command,
            })
            .await
        }
        Command::Exec {
            profile,
            strip_credential_flags,
            command,
            ttl,
            ..
        } => {
            if ttl.is_some() {
                bail!(
                    "--ttl is for ephemeral mode (--ephemeral); the daemon's keys follow the profile's ttl"
                );
            }
            deliver::exec(ExecOptions {
                profile,
                strip_credential_flags,
                command,
            })
            .await
        }
        Command::Wrapper { cli, out } => {
            deliver::write_wrapper(&cli, &out)?;
            println!(
                "wrote {} (0700): set it as the plugin's CLI Path",
                out.display()
            );
            Ok(0)
        }
        Command::Emulator(args) => crate::emulator::run_cli(args).await.map(|_| 0),
        Command::Demo => crate::demo::run().await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "scanmint",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::StandInScanner => stand_in_scanner().await,
    }
}

/// A spinner on a terminal, a plain line otherwise, while `fut` runs.
pub async fn with_spinner<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    let mut stderr = std::io::stderr();
    if !stderr.is_terminal() {
        return fut.await;
    }
    tokio::pin!(fut);
    let frames = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let mut tick = tokio::time::interval(Duration::from_millis(80));
    let mut i = 0;
    let out = loop {
        tokio::select! {
            out = &mut fut => break out,
            _ = tick.tick() => {
                let _ = write!(stderr, "\r{} {what}…", frames[i % frames.len()]);
                let _ = stderr.flush();
                i += 1;
            }
        }
    };
    let _ = write!(stderr, "\r\x1b[2K");
    out
}

fn rpc(e: RpcError) -> anyhow::Error {
    anyhow::anyhow!(e.message)
}

async fn simple(command: &str, what: &str, args: Value) -> anyhow::Result<i32> {
    let profile = args["profile"].as_str().map(String::from);
    let client = LspClient::connect_daemon("cli", profile.as_deref()).await?;
    let result = with_spinner(what, client.command(command, Some(args)))
        .await
        .map_err(rpc)?;
    println!("{}", result["message"].as_str().unwrap_or_default());
    client.close().await;
    Ok(0)
}

fn prompt(label: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("{label} is missing: pass it as a flag (stdin is reserved for the secret)");
    }
    eprint!("{label}: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// The secret from a hidden prompt, or from stdin when it is not a terminal.
fn read_secret() -> anyhow::Result<Secret> {
    let raw = if std::io::stdin().is_terminal() {
        zeroize::Zeroizing::new(rpassword::prompt_password("Primary key secret (hidden): ")?)
    } else {
        let mut buf = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("cannot read the secret from stdin")?;
        buf
    };
    let secret = Secret::new(raw.trim());
    if secret.is_empty() {
        bail!("no secret given");
    }
    Ok(secret)
}

async fn login(
    profile: Option<String>,
    base_url: Option<String>,
    key_id: Option<i64>,
    level: SecurityLevel,
) -> anyhow::Result<i32> {
    let config = crate::config::Config::load()?;
    let base_url = match base_url.or(config.profile(profile.as_deref()).base_url) {
        Some(url) => url,
        None => prompt("Tenant API URL (e.g. https://api-acme.xdr.us.paloaltonetworks.com)")?,
    };
    let key_id = match key_id {
        Some(id) => id,
        None => prompt("Primary key id")?
            .parse()
            .context("the key id is an integer")?,
    };
    let key = read_secret()?;
    let client = LspClient::connect_daemon("cli", profile.as_deref()).await?;
    let args = json!({
        "baseUrl": base_url,
        "keyId": key_id,
        "key": key.expose(),
        "securityLevel": level.as_str(),
        "profile": profile,
    });
    let result = with_spinner(
        "checking the key against the tenant",
        client.command("scanmint.login", Some(args)),
    )
    .await;
    client.close().await;
    let result = result.map_err(rpc)?;
    println!(
        "Logged in: the Primary key is kept in the {} store.",
        result["storage"].as_str().unwrap_or("?")
    );
    for note in result["notes"].as_array().into_iter().flatten() {
        println!("note: {}", note.as_str().unwrap_or_default());
    }
    Ok(0)
}

async fn status(profile: Option<String>, as_json: bool) -> anyhow::Result<i32> {
    let client = LspClient::connect_daemon("cli", profile.as_deref()).await?;
    let report = client
        .request("scanmint/status", json!({ "profile": profile }))
        .await
        .map_err(rpc)?;
    client.close().await;
    let usable = match report["state"].as_str() {
        Some("ready" | "minting" | "rotating") => !report["baseUrl"].is_null(),
        Some("degraded") => report.get("key").is_some(),
        _ => false,
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!(
            "{}",
            render_status(
                &report,
                crate::clock::Clock::now_ms(&crate::clock::SystemClock)
            )
        );
    }
    Ok(if usable { 0 } else { 1 })
}

/// The human form of a StatusReport.
pub fn render_status(r: &Value, now_ms: i64) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    out.push_str(&format!("profile  {}\n", s(&r["profile"])));
    out.push_str(&format!(
        "tenant   {}\n",
        r["baseUrl"].as_str().unwrap_or("(not logged in)")
    ));
    out.push_str(&format!("state    {}\n", s(&r["state"])));
    out.push_str(&format!("storage  {}\n", s(&r["storage"])));
    match r.get("key") {
        Some(k) => {
            let expires = k["expiresAt"].as_i64().unwrap_or(0);
            let left = Duration::from_secs(((expires - now_ms).max(0) / 1000) as u64);
            out.push_str(&format!(
                "key      {} ({}), role {:?}, generation {}\n         expires {} (in {})\n",
                k["keyId"],
                s(&k["fingerprint"]),
                s(&k["role"]),
                k["generation"],
                format_utc(expires),
                humantime::format_duration(left)
            ));
        }
        None => out.push_str("key      none (minted on the next request)\n"),
    }
    if let Some(e) = r.get("lastError") {
        out.push_str(&format!(
            "error    {}: {}\n",
            s(&e["code"]),
            s(&e["message"])
        ));
    }
    out
}

pub fn format_utc(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

async fn doctor(profile: Option<String>, as_json: bool) -> anyhow::Result<i32> {
    let client = LspClient::connect_daemon("cli", profile.as_deref()).await?;
    let report = with_spinner(
        "checking",
        client.command("scanmint.doctor", Some(json!({ "profile": profile }))),
    )
    .await
    .map_err(rpc)?;
    client.close().await;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for check in report["checks"].as_array().into_iter().flatten() {
            let status = check["status"].as_str().unwrap_or("?");
            println!(
                "{:<5} {:<12} {}",
                status.to_uppercase(),
                check["name"].as_str().unwrap_or(""),
                check["detail"].as_str().unwrap_or("")
            );
            if let Some(fix) = check["fix"].as_str() {
                println!("      {:<12} fix: {fix}", "");
            }
        }
    }
    Ok(if report["ok"].as_bool() == Some(true) {
        0
    } else {
        1
    })
}

/// The demo's scanner: authenticate with the environment's key the way the Cortex CLI does.
async fn stand_in_scanner() -> anyhow::Result<i32> {
    let (Ok(base_url), Ok(id), Ok(key)) = (
        std::env::var("CORTEX_API_BASE_URL"),
        std::env::var("CORTEX_API_KEY_ID"),
        std::env::var("CORTEX_API_KEY"),
    ) else {
        eprintln!("scanner: CORTEX_API_BASE_URL, CORTEX_API_KEY_ID and CORTEX_API_KEY must be set");
        return Ok(deliver::EXIT_PLATFORM_FAILURE);
    };
    let key = Secret::new(key);
    let id: i64 = id.parse().context("CORTEX_API_KEY_ID is not an integer")?;
    let mut opts = crate::papi::ClientOptions::new(&base_url, id, key, SecurityLevel::Standard);
    opts.retry = crate::papi::RetryPolicy::none();
    opts.ca_file = std::env::var_os("SCANMINT_SCANNER_CA").map(PathBuf::from);
    let client = crate::papi::Client::new(opts)?;
    match client.download_link().await {
        Ok(link) => {
            println!(
                "scanner: authenticated with key {id}; CLI download link for {}",
                link.file_name
            );
            Ok(0)
        }
        Err(e) => {
            eprintln!("scanner: the platform refused key {id}: {e}");
            Ok(deliver::EXIT_PLATFORM_FAILURE)
        }
    }
}
