//! `scanmint emulator`: run the tenant emulator in the foreground.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

use super::{
    Emulator, EmulatorConfig, ErrorEnvelope, FAILURE_ENDPOINTS, Failure, FailureKind, Faults,
    SecurityLevel, UncertainGenerate,
};
use crate::domain::secret::{self, Secret};

/// Run a local stand-in for the tenant's Public API.
///
/// Prints one JSON line on stdout (base_url, primary_key_id, primary_key, security_level,
/// admin_url), then serves until SIGINT or SIGTERM. Logs go to stderr.
#[derive(clap::Args, Debug, Clone)]
pub struct EmulatorArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Give the Primary key "Instance Administrator" (Path A) instead of the three custom
    /// roles of Path B.
    #[arg(long)]
    pub path_a: bool,
    /// Security level of the Primary key: standard or advanced.
    #[arg(long, value_name = "LEVEL", default_value = "standard")]
    pub security_level: SecurityLevel,
    /// Serve HTTPS with a freshly generated CA.
    #[arg(long)]
    pub tls: bool,
    /// Write the CA certificate (PEM) here (with --tls).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca_out: Option<PathBuf>,
    /// Tenant-wide requests per rolling second (0 = unlimited).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub rate_limit: u32,
    /// Latency added to every API call.
    #[arg(long, value_name = "MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// The tenant's clock minus the real clock, in ms (may be negative).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub clock_offset_ms: i64,
    /// Silently attach "Instance Administrator" to every minted key.
    #[arg(long)]
    pub broaden_roles: bool,
    /// Inject failures: ENDPOINT=KIND:RATE, with ENDPOINT one of generate, list, delete,
    /// validate, download_link, all; KIND one of 500, 502, 503, 504, 429, drop; RATE in 0..=1
    /// (default 1). Repeatable.
    #[arg(long = "fail", value_name = "ENDPOINT=KIND:RATE", value_parser = parse_fail)]
    pub fail: Vec<(String, Failure)>,
    /// Answer get_api_keys with lowercase data/total_count/filter_count.
    #[arg(long)]
    pub lowercase_list: bool,
    /// Where error fields go: reply, root or data.
    #[arg(long, value_name = "WHERE", default_value = "reply")]
    pub error_envelope: ErrorEnvelope,
    /// Answer like a hostile tenant: huge-body, wrong-types, generate-without-key,
    /// negative-expiration, absurd-expiration or duplicate-ids.
    #[arg(long, value_name = "KIND", value_parser = parse_hostile)]
    pub hostile: Option<super::Hostile>,
    /// Speak a tenant dialect: comma-separated names, or `all` (seconds, delete-reply-true,
    /// validate-string, validate-reply, validate-post, lowercase-list, root-errors,
    /// camel-errors, metadata-errors, ignore-paging, uncertain-generate). Repeatable; applied
    /// after the other flags.
    #[arg(long, value_name = "NAME[,NAME]", value_parser = parse_dialect)]
    pub dialect: Vec<String>,
    /// The first N generates mint the key, then answer KIND (503 by default, or drop).
    #[arg(long, value_name = "N[:KIND]", value_parser = parse_uncertain)]
    pub uncertain_generate: Option<UncertainGenerate>,
}

fn parse_dialect(s: &str) -> Result<String, String> {
    Faults::with_dialects(s).map(|_| s.to_string())
}

/// `N` or `N:KIND`, KIND one of 500, 502, 503, 504 or drop.
fn parse_uncertain(s: &str) -> Result<UncertainGenerate, String> {
    let (count, kind) = s.split_once(':').unwrap_or((s, "503"));
    let remaining: u32 = count
        .parse()
        .map_err(|_| format!("{count:?} is not a count of generates"))?;
    let kind = match kind {
        "drop" => FailureKind::Drop,
        "500" | "502" | "503" | "504" => FailureKind::Status(kind.parse().unwrap_or(503)),
        other => {
            return Err(format!(
                "unknown kind {other:?}; expected 500, 502, 503, 504 or drop"
            ));
        }
    };
    Ok(UncertainGenerate { kind, remaining })
}

fn parse_hostile(s: &str) -> Result<super::Hostile, String> {
    serde_json::from_value(serde_json::Value::String(s.replace('-', "_")))
        .map_err(|_| format!("unknown hostile reply {s:?}"))
}

impl EmulatorArgs {
    pub fn to_config(&self) -> EmulatorConfig {
        let mut config = EmulatorConfig {
            listen: self.listen,
            path_a: self.path_a,
            security_level: self.security_level,
            tls: self.tls,
            ca_out: self.ca_out.clone(),
            rate_limit_per_sec: self.rate_limit,
            faults: Faults {
                latency_ms: self.latency_ms,
                clock_offset_ms: self.clock_offset_ms,
                broaden_roles: self.broaden_roles,
                failures: self.fail.iter().cloned().collect(),
                lowercase_list: self.lowercase_list,
                error_envelope: self.error_envelope,
                hostile: self.hostile,
                dialect: Default::default(),
                uncertain_generate: self.uncertain_generate.filter(|u| u.remaining > 0),
            },
        };
        for spec in &self.dialect {
            // Checked when the arguments were parsed.
            if let Err(e) = config.faults.apply_dialects(spec) {
                tracing::warn!(error = %e, "emulator: ignoring a dialect");
            }
        }
        config
    }
}

/// Parse `ENDPOINT=KIND[:RATE]`, e.g. `generate=503:1.0` or `all=drop:0.2`.
pub fn parse_fail(s: &str) -> Result<(String, Failure), String> {
    let (endpoint, spec) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected ENDPOINT=KIND:RATE, e.g. generate=503:1.0"))?;
    if !FAILURE_ENDPOINTS.contains(&endpoint) {
        return Err(format!(
            "unknown endpoint {endpoint:?}; expected one of {}",
            FAILURE_ENDPOINTS.join(", ")
        ));
    }
    let (kind, rate) = match spec.split_once(':') {
        Some((kind, rate)) => (
            kind,
            rate.parse::<f64>()
                .map_err(|_| format!("bad rate {rate:?}"))?,
        ),
        None => (spec, 1.0),
    };
    let kind = match kind {
        "drop" => FailureKind::Drop,
        "500" | "502" | "503" | "504" | "429" => FailureKind::Status(kind.parse().unwrap_or(500)),
        other => {
            return Err(format!(
                "unknown failure kind {other:?}; expected 500, 502, 503, 504, 429 or drop"
            ));
        }
    };
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("rate {rate} is outside 0..=1"));
    }
    Ok((endpoint.to_string(), Failure { kind, rate }))
}

/// The one line `scanmint emulator` prints on stdout.
#[derive(Serialize)]
struct Bootstrap<'a> {
    base_url: &'a str,
    primary_key_id: i64,
    #[serde(serialize_with = "secret::serialize")]
    primary_key: Secret,
    security_level: SecurityLevel,
    admin_url: String,
}

/// The bootstrap line `scanmint emulator` prints: `{"base_url", "primary_key_id", "primary_key",
/// "security_level", "admin_url"}`. It carries the Primary key's secret, the one place the
/// emulator ever prints one; the buffer is zeroized on drop.
pub fn bootstrap_line(emulator: &Emulator) -> anyhow::Result<zeroize::Zeroizing<String>> {
    Ok(zeroize::Zeroizing::new(serde_json::to_string(
        &Bootstrap {
            base_url: emulator.base_url(),
            primary_key_id: emulator.primary_key_id(),
            primary_key: emulator.primary_key(),
            security_level: emulator.security_level(),
            admin_url: emulator.admin_url(),
        },
    )?))
}

/// Run until SIGINT/SIGTERM.
pub async fn run_cli(args: EmulatorArgs) -> anyhow::Result<()> {
    // Logs go to stderr; if the binary already installed a subscriber, that one stays.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_max_level(tracing::Level::INFO)
        .try_init();
    let config = args.to_config();
    config.faults.validate().map_err(anyhow::Error::msg)?;
    // Listen for signals before announcing ourselves, so a prompt SIGTERM still shuts down cleanly.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let emulator = Emulator::start(config).await?;
    let line = bootstrap_line(&emulator)?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", line.as_str())?;
        out.flush()?;
    }
    drop(line);
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("emulator: shutting down");
    emulator.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: EmulatorArgs,
    }

    #[test]
    fn fail_specs_parse() {
        assert_eq!(
            parse_fail("generate=503:1.0").unwrap(),
            (
                "generate".into(),
                Failure {
                    kind: FailureKind::Status(503),
                    rate: 1.0
                }
            )
        );
        assert_eq!(
            parse_fail("all=drop").unwrap().1,
            Failure {
                kind: FailureKind::Drop,
                rate: 1.0
            }
        );
        assert!(parse_fail("generate=418:1").is_err());
        assert!(parse_fail("mint=503:1").is_err());
        assert!(parse_fail("list=503:1.5").is_err());
        assert!(parse_fail("list").is_err());
    }

    #[test]
    fn args_map_to_config() {
        let cli = Cli::try_parse_from([
            "x",
            "--path-a",
            "--security-level",
            "advanced",
            "--clock-offset-ms",
            "-90000",
            "--fail",
            "generate=503:0.5",
            "--fail",
            "list=drop:1",
            "--rate-limit",
            "3",
            "--error-envelope",
            "data",
        ])
        .unwrap();
        let config = cli.args.to_config();
        assert!(config.path_a);
        assert_eq!(config.security_level, SecurityLevel::Advanced);
        assert_eq!(config.faults.clock_offset_ms, -90_000);
        assert_eq!(config.rate_limit_per_sec, 3);
        assert_eq!(config.faults.error_envelope, ErrorEnvelope::Data);
        assert_eq!(config.faults.failures.len(), 2);
        assert_eq!(config.faults.failures["list"].kind, FailureKind::Drop);
        let defaults = Cli::try_parse_from(["x"]).unwrap().args.to_config();
        assert_eq!(defaults.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(defaults.rate_limit_per_sec, 10);
        assert_eq!(defaults.faults, Faults::default());
        assert!(
            Cli::try_parse_from(["x", "--ca-out", "/tmp/ca.pem"]).is_err(),
            "--ca-out needs --tls"
        );
        let dialects = Cli::try_parse_from([
            "x",
            "--dialect",
            "seconds,ignore-paging",
            "--dialect",
            "root-errors",
            "--uncertain-generate",
            "3:drop",
        ])
        .unwrap()
        .args
        .to_config();
        assert!(dialects.faults.dialect.seconds && dialects.faults.dialect.ignore_paging);
        assert_eq!(dialects.faults.error_envelope, ErrorEnvelope::Root);
        assert_eq!(
            dialects.faults.uncertain_generate,
            Some(UncertainGenerate {
                kind: FailureKind::Drop,
                remaining: 3
            })
        );
        let all = Cli::try_parse_from(["x", "--dialect", "all"]).unwrap();
        assert_eq!(
            all.args.to_config().faults,
            Faults::with_dialects("all").unwrap()
        );
        assert!(Cli::try_parse_from(["x", "--dialect", "seconds,nope"]).is_err());
        assert!(Cli::try_parse_from(["x", "--uncertain-generate", "2:418"]).is_err());
    }
}
