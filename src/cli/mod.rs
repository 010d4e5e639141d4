//! The command line. Every command but `emulator` and `completions` talks to the daemon
//! (starting it if needed), so the CLI and the editors always see the same state.

pub mod client;
pub mod commands;
pub mod demo;
pub mod doctor;
pub mod ephemeral;
pub mod exec;
pub mod fast_exec;
pub mod launcher;
pub mod spinner;
pub mod wrapper;

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{CommandFactory, Parser, Subcommand};
use serde_json::{Value, json};

use self::exec as deliver;
use self::exec::ExecOptions;
use crate::cli::client::{LspClient, RpcError};
use crate::domain::secret::Secret;
use crate::serve::protocol::{self, Method};
use crate::tenant::emulator::EmulatorArgs;
use crate::tenant::papi::wire::SecurityLevel;
use commands::*;
pub use commands::{format_utc, render_status};
use doctor::doctor;
pub use spinner::with_spinner;

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
    /// End the daemon gracefully: keys stay cached, and the next command starts a fresh daemon
    /// that restores them without minting. Editors are told and reconnect when restarted.
    Stop,
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
    /// Remote development: forward the restricted socket (docs/remote.md).
    #[command(subcommand)]
    Remote(RemoteCommand),
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
        Command::Daemon => crate::serve::daemon::run().await.map(|_| 0),
        Command::Lsp { standalone: true } => crate::serve::proxy::run_standalone().await.map(|_| 0),
        Command::Lsp { standalone: false } => crate::serve::proxy::run_proxy().await.map(|_| 0),
        Command::Login {
            profile,
            base_url,
            key_id,
            security_level,
        } => login(profile, base_url, key_id, security_level).await,
        Command::Logout { profile } => {
            simple(
                protocol::Logout::METHOD,
                "logging out",
                json!({ "profile": profile }),
            )
            .await
        }
        Command::Rotate { profile } => {
            simple(
                protocol::Rotate::METHOD,
                "rotating",
                json!({ "profile": profile }),
            )
            .await
        }
        Command::Revoke {
            profile,
            all: true,
            older_than,
        } if older_than.is_some() || crate::cli::ephemeral::wanted(false, false) => {
            crate::cli::ephemeral::sweep(profile, older_than.unwrap_or_default()).await
        }
        Command::Revoke { profile, all, .. } => {
            simple(
                protocol::Revoke::METHOD,
                "revoking",
                json!({ "profile": profile, "all": all }),
            )
            .await
        }
        Command::Status { profile, json } => status(profile, json).await,
        Command::Stop => stop().await,
        Command::Doctor { profile, json } => doctor(profile, json).await,
        Command::Exec {
            profile,
            strip_credential_flags,
            ephemeral,
            no_ephemeral,
            ttl,
            command,
        } if crate::cli::ephemeral::wanted(ephemeral, no_ephemeral) => {
            crate::cli::ephemeral::exec(crate::cli::ephemeral::EphemeralOptions {
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
        Command::Remote(command) => remote(command),
        Command::Emulator(args) => crate::tenant::emulator::run_cli(args).await.map(|_| 0),
        Command::Demo => crate::cli::demo::run().await,
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
