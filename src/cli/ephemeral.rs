//! CI jobs: one short-lived key per job, minted in-process and revoked when the job's scan ends.
//!
//! A CI job has only its environment, and its machine is gone minutes later: no daemon (it
//! would outlive the job), no keychain, no ledger worth keeping. `scanmint exec` in ephemeral
//! mode builds a broker in this process (memory store, throwaway state directory), mints and
//! verifies one key as always, runs the scanner with the three `CORTEX_*` variables only, and
//! revokes the key whatever the scanner's exit code, cancellation included. The key's lifetime
//! is short, so even a job killed with SIGKILL leaves a key that dies soon.
//! `scanmint revoke --all [--older-than D]` sweeps keys that jobs killed that way left behind.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cli::exec::{self as deliver, EXIT_PLATFORM_FAILURE};
use crate::domain::broker::{Broker, BrokerOptions, Credentials, ScanFailure};
use crate::domain::ci_job;
use crate::domain::clock::{Clock, SystemClock};
use crate::domain::config::{Config, DEFAULT_ROLE, Profile};
use crate::domain::ledger::LedgerFile;
use crate::domain::store::Store;
use crate::tenant::connector::HttpConnector;

/// A job's key lives this long unless `--ttl`/`SCANMINT_TTL` says otherwise.
pub const DEFAULT_JOB_TTL: Duration = Duration::from_secs(3600);
/// A cancelled scanner gets this long to exit before it is killed and the key revoked: CI
/// systems escalate to SIGKILL a few seconds after their first signal.
const CANCEL_GRACE: Duration = Duration::from_secs(4);
/// A key handed to a scanner should outlive a long scan (capped at half the key's lifetime).
const SCAN_MIN_VALID: Duration = Duration::from_secs(900);
/// The resolution of the tenant's `Date` header, hence of our reading of its clock.
const DATE_RESOLUTION_MS: i64 = 1000;
/// Revocation is retried this many times: there is no daemon to retry it later.
const REVOKE_ATTEMPTS: u32 = 3;

/// Whether `exec` runs ephemeral: `--ephemeral`/`--no-ephemeral` decide, else `CI` is true and
/// the Primary key comes from the environment.
pub fn wanted(on: bool, off: bool) -> bool {
    if on || off {
        return on;
    }
    ci_job::in_ci() && primary_in_env()
}

/// Both `SCANMINT_PRIMARY_KEY_ID` and `SCANMINT_PRIMARY_KEY` are set.
pub fn primary_in_env() -> bool {
    ["SCANMINT_PRIMARY_KEY_ID", "SCANMINT_PRIMARY_KEY"]
        .iter()
        .all(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}

/// A broker that lives as long as this process: its ledger sits in a directory removed on drop.
struct JobBroker {
    broker: Broker,
    profile: String,
    _state: tempfile::TempDir,
}

/// The profile a job mints for: the environment's, with `--ttl` applied.
fn job_profile(
    config: &mut Config,
    profile: Option<&str>,
    ttl: Option<Duration>,
) -> anyhow::Result<String> {
    let name = config.default_profile.clone();
    if let Some(asked) = profile
        && asked != name
    {
        // The environment's overrides (base URL, role, ttl, Primary key) apply to the default
        // profile; naming another one here would quietly drop them.
        bail!(
            "ephemeral mode mints for the default profile {name:?}; name the profile with SCANMINT_PROFILE={asked} instead of --profile"
        );
    }
    let p = config
        .profiles
        .entry(name.clone())
        .or_insert_with(|| Profile::defaults(&name));
    p.store = crate::domain::config::StoreChoice::Memory;
    p.cortex_env = None;
    match ttl {
        Some(ttl) => {
            if ttl < Duration::from_secs(60) || ttl > Duration::from_secs(365 * 86400) {
                bail!("--ttl must be between 1m and 365d");
            }
            p.ttl = ttl;
        }
        // The configured default (8 h) is for a workstation; a job's key dies with the job.
        None if std::env::var_os("SCANMINT_TTL").is_none() => p.ttl = p.ttl.min(DEFAULT_JOB_TTL),
        None => {}
    }
    Ok(name)
}

fn job_broker(profile: Option<&str>, ttl: Option<Duration>) -> anyhow::Result<JobBroker> {
    let mut config = Config::load()?;
    let name = job_profile(&mut config, profile, ttl)?;
    let env_primary = crate::serve::daemon::env_primary(&config)?.context(
        "ephemeral mode needs the Primary key in SCANMINT_PRIMARY_KEY_ID and SCANMINT_PRIMARY_KEY",
    )?;
    use std::os::unix::fs::PermissionsExt;
    let state = tempfile::Builder::new()
        .prefix("scanmint-job-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .context("cannot create a private state directory for the job")?;
    let broker = Broker::new(BrokerOptions {
        config,
        store: Store::memory(),
        connector: Arc::new(HttpConnector),
        clock: Arc::new(SystemClock),
        ledger: LedgerFile::new(state.path()),
        env_primary: Some(env_primary),
    })
    .context("cannot open the job's ledger")?;
    Ok(JobBroker {
        broker,
        profile: name,
        _state: state,
    })
}

pub struct EphemeralOptions {
    pub profile: Option<String>,
    pub strip_credential_flags: bool,
    pub ttl: Option<Duration>,
    pub command: Vec<OsString>,
}

/// `scanmint exec` in ephemeral mode; returns the scanner's exit code, or 128 + signal when
/// the job was cancelled.
pub async fn exec(opts: EphemeralOptions) -> anyhow::Result<i32> {
    let (program, args) = opts
        .command
        .split_first()
        .context("nothing to run: scanmint exec -- COMMAND [ARGS...]")?;
    let args = if opts.strip_credential_flags {
        deliver::strip_credential_flags(args)
    } else {
        args.to_vec()
    };
    let job = job_broker(opts.profile.as_deref(), opts.ttl)?;
    {
        let p = job.broker.config().profile(None);
        if !p.role_given {
            bail!(
                "no role for the job's key: set SCANMINT_ROLE to the CLI role the key should have (e.g. SCANMINT_ROLE=\"{DEFAULT_ROLE}\"), or `role` in the profile"
            );
        }
    }
    let outcome = scan(&job, program, &args).await;
    revoke_job_keys(&job).await;
    let end = outcome?;
    Ok(match end.cancelled {
        Some(signo) => {
            eprintln!("scanmint: the job was cancelled; its key is revoked");
            128 + signo
        }
        None => end.code,
    })
}

/// Mint, run, and on exit code 2 check the key and run once more with a new one if it was bad.
async fn scan(
    job: &JobBroker,
    program: &OsString,
    args: &[OsString],
) -> anyhow::Result<deliver::ChildEnd> {
    let (broker, profile) = (&job.broker, job.profile.as_str());
    // A job cancelled while its key is being minted: let the mint finish (it may already have
    // created the key), skip the scan, and leave the revocation to the caller.
    use tokio::signal::unix::{SignalKind, signal};
    let (mut int, mut term) = (
        signal(SignalKind::interrupt())?,
        signal(SignalKind::terminate())?,
    );
    let mint = broker.credentials(profile, SCAN_MIN_VALID);
    tokio::pin!(mint);
    let mut cancelled = None;
    let first = loop {
        tokio::select! {
            c = &mut mint => break c,
            _ = int.recv() => { cancelled.get_or_insert(libc::SIGINT); }
            _ = term.recv() => { cancelled.get_or_insert(libc::SIGTERM); }
        }
    };
    if let Some(signo) = cancelled {
        return Ok(deliver::ChildEnd {
            code: 128 + signo,
            cancelled: Some(signo),
        });
    }
    let first = first.map_err(|e| anyhow::anyhow!("no key for the scanner: {}", e.message))?;
    announce(&first);
    let end = run(program, args, &first).await?;
    if end.code != EXIT_PLATFORM_FAILURE || end.cancelled.is_some() {
        return Ok(end);
    }
    match broker.scan_failed(profile, first.key_id).await {
        Ok(ScanFailure::Replaced(_)) => {
            let fresh = broker
                .credentials(profile, SCAN_MIN_VALID)
                .await
                .map_err(|e| anyhow::anyhow!("no new key for the scanner: {}", e.message))?;
            eprintln!(
                "scanmint: the tenant rejected key {}; running again with new key {}",
                first.key_id, fresh.key_id
            );
            announce(&fresh);
            run(program, args, &fresh).await
        }
        Ok(_) => Ok(end),
        Err(e) => {
            eprintln!(
                "scanmint: could not check the key after the scan failed: {}",
                e.message
            );
            Ok(end)
        }
    }
}

async fn run(
    program: &OsString,
    args: &[OsString],
    c: &Credentials,
) -> anyhow::Result<deliver::ChildEnd> {
    deliver::run_scanner(
        program,
        args,
        (&c.base_url, c.key_id, &c.key),
        Some(CANCEL_GRACE),
    )
    .await
}

/// Say which key the job got (never the secret), and have GitHub Actions mask the secret in
/// every later log line. Workflow commands are read from stdout; this is printed before the
/// scanner starts, so it never interleaves with the scanner's output.
fn announce(c: &Credentials) {
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "::add-mask::{}", c.key.expose());
        let _ = out.flush();
    }
    eprintln!(
        "scanmint: key {} (role {:?}) for this job, expires {}; revoked when the scan ends",
        c.key_id,
        c.role,
        crate::cli::format_utc(c.expires_ms)
    );
}

/// Revoke every key the job minted, retrying briefly: nothing will retry it after we exit.
async fn revoke_job_keys(job: &JobBroker) {
    let mut last = None;
    for attempt in 0..REVOKE_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
        }
        match job.broker.revoke(&job.profile, false).await {
            Ok(ids) => {
                tracing::info!(?ids, "job keys revoked");
                return;
            }
            Err(e) => last = Some(e.message),
        }
    }
    let base_url = job
        .broker
        .config()
        .profiles
        .get(&job.profile)
        .and_then(|p| p.base_url.clone())
        .unwrap_or_default();
    let live: Vec<i64> = job
        .broker
        .ledger_snapshot()
        .live_ids(&job.profile, &base_url);
    eprintln!(
        "scanmint: could not revoke the job's key(s) {live:?}: {}; they expire on their own within the key's ttl, and `scanmint revoke --all --older-than 1h` from a scheduled job sweeps them",
        last.unwrap_or_default()
    );
}

/// `scanmint revoke --all [--older-than D]` with the Primary key from the environment: delete
/// keys that CI jobs minted for the profile (tagged `scanmint ci/...`), created at least `D`
/// ago. Needs no daemon and no role.
pub async fn sweep(profile: Option<String>, older_than: Duration) -> anyhow::Result<i32> {
    if !primary_in_env() {
        bail!(
            "sweeping CI keys needs the Primary key in SCANMINT_PRIMARY_KEY_ID and SCANMINT_PRIMARY_KEY"
        );
    }
    let job = job_broker(profile.as_deref(), None)?;
    let tenant = job
        .broker
        .tenant(&job.profile)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    let records = tenant
        .list(Vec::new())
        .await
        .map_err(|e| anyhow::anyhow!("cannot list the tenant's keys: {e}"))?;
    let now = SystemClock.now_ms() + tenant.clock_offset_ms();
    // The tenant's clock is known from its one-second `Date` header: allow that much.
    let cutoff = now - older_than.as_millis() as i64 + DATE_RESOLUTION_MS;
    let ids: Vec<i64> = records
        .iter()
        .filter(|r| {
            r.comment
                .as_deref()
                .is_some_and(|c| is_job_tag(c, &job.profile))
                && r.creation_time.is_some_and(|t| t <= cutoff)
                && r.expiration.is_none_or(|e| e > now)
        })
        .map(|r| r.id)
        .collect();
    if ids.is_empty() {
        println!("no CI job keys to revoke");
        return Ok(0);
    }
    tenant
        .delete(&ids)
        .await
        .map_err(|e| anyhow::anyhow!("the tenant did not accept the revocation of {ids:?}: {e}"))?;
    println!("revoked {} CI job key(s): {ids:?}", ids.len());
    Ok(0)
}

/// `scanmint ci/<system>/<job...> <profile> <random>`: a key a CI job minted for `profile`.
fn is_job_tag(comment: &str, profile: &str) -> bool {
    let mut words = comment.split(' ');
    words.next() == Some("scanmint")
        && words
            .next()
            .is_some_and(|owner| owner.starts_with(ci_job::OWNER_PREFIX))
        && words.next() == Some(profile)
        && words.next().is_some_and(|r| !r.is_empty())
        && words.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ci_job_tags_of_the_profile_are_swept() {
        assert!(is_job_tag(
            "scanmint ci/github/1/scan default Ab12",
            "default"
        ));
        assert!(!is_job_tag(
            "scanmint ci/github/1/scan other Ab12",
            "default"
        ));
        assert!(!is_job_tag("scanmint alice@laptop default Ab12", "default"));
        assert!(!is_job_tag("ci/github/1/scan default Ab12", "default"));
        assert!(!is_job_tag("scanmint ci/gitlab/9 default", "default"));
        assert!(!is_job_tag("a person's key", "default"));
    }
}
