//! Issue 7: scanmint's benchmarks, each measured against a baseline taken in the same run.
//!
//! `cargo bench --bench scanmint [-- --quick] [-- --out FILE] [-- --strict] [-- --only a,b]`
//!
//! 1. `lsp`: cached `scanmint/credentials` and `scanmint/status` through `scanmint lsp` → socket
//!    → daemon, against an echo LSP responder reached through the very same `scanmint lsp`.
//! 2. `launch`: `scanmint exec -- true` against plain `true`, `git credential-cache get`, `gh auth
//!    token` (when installed) and an AWS `credential_process`-style stand-in.
//! 3. `mint`: a cold mint against the emulator with 20 ms per call, against the same two Public
//!    API round trips made directly; exactly one `generate` and one `list` per mint.
//! 4. `fanin`: 50 sessions × 20 concurrent `scanmint/credentials` on a daemon with no key.
//! 5. `footprint`: idle RSS and CPU, cold `scanmint lsp` start to the `initialize` reply, binary
//!    size.
//!
//! Every benchmark works in its own temporary directories (XDG_RUNTIME_DIR 0700, state, config,
//! an in-memory store, the Primary key from the environment), talks only to loopback, and stops
//! every daemon it started. `--quick` is the CI smoke mode: tiny counts, no judgement on times,
//! but every path runs and a measurement that fails to run makes the exit code non-zero.
//! `--strict` also fails the run on a missed target.
//!
//! Layout: this file holds the options and the driver; each family of measurements has its own
//! file beside it (`lsp.rs`, `launch.rs`, `mint.rs`, `fanin.rs`, `scale.rs`, `footprint.rs`),
//! with the shared parts in `stats.rs`, `sandbox.rs` and `echo.rs`.
//!
//! The bench binary doubles as the echo server (`--echo-server SOCKET REPLIES`), so the baseline
//! responder is a separate process, like the daemon.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use scanmint::cli::client::{LspClient, read_frame, write_frame};
use scanmint::tenant::emulator::{
    CLI_READ_ONLY_CUSTOM, CallCounts, Emulator, EmulatorConfig, Faults,
};
use scanmint::tenant::papi::wire::{Filter, GenerateRequest, ListRequest, SecurityLevel};
use scanmint::tenant::papi::{Client, ClientOptions, RetryPolicy};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

const EXE: &str = env!("CARGO_BIN_EXE_scanmint");
/// The core the launcher hands every command but a scan's launch to.
const CORE: &str = env!("CARGO_BIN_EXE_scanmint-core");
/// Injected per-call latency of the tenant for the mint benchmarks.
const TENANT_LATENCY_MS: u64 = 20;
/// No single step of a benchmark may hang longer than this.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// What a scanner asks for (`scanmint exec` asks for 900 s too).
const MIN_VALID_SECS: u64 = 900;
/// The environment a sandboxed command must not inherit.
const SCRUBBED_ENV: &[&str] = &[
    "SCANMINT_CONFIG",
    "SCANMINT_PROFILE",
    "SCANMINT_BASE_URL",
    "SCANMINT_PRIMARY_KEY_ID",
    "SCANMINT_PRIMARY_KEY",
    "SCANMINT_PRIMARY_SECURITY_LEVEL",
    "SCANMINT_STORE",
    "SCANMINT_CRASH_AT",
    "SCANMINT_LOG",
    // CI=true with the Primary key in the environment switches exec to ephemeral mode.
    "CI",
    "DBUS_SESSION_BUS_ADDRESS",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_SYSTEM",
];

mod echo;
mod fanin;
mod footprint;
mod launch;
mod lsp;
mod mint;
mod sandbox;
mod scale;
mod stats;

use echo::*;
use fanin::*;
use footprint::*;
use launch::*;
use lsp::*;
use mint::*;
use sandbox::*;
use scale::*;
use stats::*;

// ---------------------------------------------------------------------------------------------
// Options and counts

struct Opts {
    quick: bool,
    strict: bool,
    out: PathBuf,
    only: Option<Vec<String>>,
}

enum Mode {
    Bench(Opts),
    Echo { socket: PathBuf, replies: PathBuf },
}

fn parse_args() -> anyhow::Result<Mode> {
    let mut args = std::env::args().skip(1);
    let mut opts = Opts {
        quick: false,
        strict: false,
        out: PathBuf::from("target/bench.json"),
        only: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--echo-server" => {
                let socket = args.next().context("--echo-server SOCKET REPLIES")?;
                let replies = args.next().context("--echo-server SOCKET REPLIES")?;
                return Ok(Mode::Echo {
                    socket: socket.into(),
                    replies: replies.into(),
                });
            }
            "--quick" => opts.quick = true,
            "--strict" => opts.strict = true,
            "--out" => opts.out = args.next().context("--out FILE")?.into(),
            "--only" => {
                let list = args
                    .next()
                    .context("--only lsp,launch,mint,fanin,footprint")?;
                opts.only = Some(list.split(',').map(|s| s.trim().to_string()).collect());
            }
            // Passed by `cargo bench` to every bench target.
            "--bench" => {}
            other if other.starts_with("--") => {
                bail!("unknown flag {other} (flags: --quick, --out FILE, --strict, --only LIST)")
            }
            // A name filter from `cargo bench NAME`: same as --only.
            other => opts
                .only
                .get_or_insert_with(Vec::new)
                .push(other.to_string()),
        }
    }
    Ok(Mode::Bench(opts))
}

struct Counts {
    lsp_requests: usize,
    launches: usize,
    cold_mints: usize,
    sessions: usize,
    per_session: usize,
    fanin_runs: usize,
    idle: Duration,
    cold_starts: usize,
    start_runs: usize,
}

impl Counts {
    fn new(quick: bool) -> Counts {
        if quick {
            Counts {
                lsp_requests: 200,
                launches: 10,
                cold_mints: 3,
                sessions: 50,
                per_session: 20,
                fanin_runs: 1,
                idle: Duration::from_secs(3),
                cold_starts: 3,
                start_runs: 1,
            }
        } else {
            Counts {
                lsp_requests: 10_000,
                launches: 200,
                cold_mints: 10,
                sessions: 50,
                per_session: 20,
                fanin_runs: 3,
                idle: Duration::from_secs(60),
                cold_starts: 10,
                start_runs: 3,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Driver

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": model,
        "kernel": kernel.trim(),
    })
}

fn print_table(report: &Report) {
    let rows: Vec<[String; 6]> = report
        .measurements
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.shown.clone(),
                m.shown_baseline.clone(),
                m.ratio
                    .map(|r| format!("{r:.2}"))
                    .unwrap_or_else(|| "-".into()),
                m.target.clone(),
                match m.met {
                    Some(true) => "met".into(),
                    Some(false) => "MISSED".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let head = [
        "measurement",
        "value",
        "baseline (same run)",
        "ratio",
        "target",
        "met",
    ]
    .map(String::from);
    let mut width = head.clone().map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 6]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        println!("| {} |", padded.join(" | "));
    };
    line(&head);
    println!("|{}|", width.map(|w| "-".repeat(w + 2)).join("|"));
    for r in &rows {
        line(r);
    }
}

async fn run(opts: &Opts) -> Report {
    let c = Counts::new(opts.quick);
    let mut report = Report {
        measurements: vec![],
        failures: vec![],
    };
    let wanted = |name: &str| {
        opts.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|w| w == name))
    };
    let mut cold_mint_p50 = None;
    let started = Instant::now();
    macro_rules! bench {
        ($name:literal, $fut:expr) => {
            if wanted($name) {
                eprintln!("[{:>6.1}s] {}", started.elapsed().as_secs_f64(), $name);
                match $fut.await {
                    Ok(v) => Some(v),
                    Err(e) => {
                        eprintln!("  {} FAILED: {e:#}", $name);
                        report.failures.push(format!("{}: {e:#}", $name));
                        None
                    }
                }
            } else {
                None
            }
        };
    }
    bench!("lsp", bench_lsp(&c, &mut report));
    bench!("launch", bench_launch(&c, &mut report));
    if let Some(p50) = bench!("mint", bench_mint(&c, &mut report)) {
        cold_mint_p50 = Some(p50);
    }
    bench!("fanin", bench_fanin(&c, cold_mint_p50, &mut report));
    bench!("footprint", bench_footprint(&c, &mut report));
    bench!("scale", bench_scale(&c, &mut report));
    eprintln!("[{:>6.1}s] done", started.elapsed().as_secs_f64());
    report
}

fn main() {
    let opts = match parse_args() {
        Ok(Mode::Echo { socket, replies }) => {
            if let Err(e) = echo_server(&socket, &replies) {
                eprintln!("echo server: {e:#}");
                std::process::exit(1);
            }
            return;
        }
        Ok(Mode::Bench(opts)) => opts,
        Err(e) => {
            eprintln!("scanmint bench: {e:#}");
            std::process::exit(2);
        }
    };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let wall = Instant::now();
    let report = runtime.block_on(run(&opts));
    println!();
    print_table(&report);
    let missed: Vec<&str> = report
        .measurements
        .iter()
        .filter(|m| m.met == Some(false))
        .map(|m| m.name.as_str())
        .collect();
    let doc = json!({
        "mode": if opts.quick { "quick" } else { "full" },
        "started_unix": started,
        "wall_s": r3(wall.elapsed().as_secs_f64()),
        "binary": EXE,
        "machine": machine(),
        "measurements": report.measurements.iter().map(Measurement::json).collect::<Vec<_>>(),
        "failures": report.failures,
        "missed": missed,
    });
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = std::fs::create_dir_all(dir);
    }
    match serde_json::to_vec_pretty(&doc).map(|b| std::fs::write(&opts.out, b)) {
        Ok(Ok(())) => eprintln!("results: {}", opts.out.display()),
        _ => {
            eprintln!("cannot write {}", opts.out.display());
            std::process::exit(1);
        }
    }
    // Stop the in-process emulators' stragglers quickly.
    runtime.shutdown_timeout(Duration::from_millis(200));
    if !report.failures.is_empty() {
        eprintln!("{} measurement(s) failed to run:", report.failures.len());
        for f in &report.failures {
            eprintln!("  {f}");
        }
        std::process::exit(1);
    }
    if !missed.is_empty() {
        eprintln!("targets missed: {}", missed.join(", "));
        if opts.strict && !opts.quick {
            std::process::exit(3);
        }
    }
}
