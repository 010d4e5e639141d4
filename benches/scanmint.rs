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
use scanmint::client::{LspClient, read_frame, write_frame};
use scanmint::emulator::{CLI_READ_ONLY_CUSTOM, CallCounts, Emulator, EmulatorConfig, Faults};
use scanmint::papi::wire::{Filter, GenerateRequest, ListRequest, SecurityLevel};
use scanmint::papi::{Client, ClientOptions, RetryPolicy};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

const EXE: &str = env!("CARGO_BIN_EXE_scanmint");
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
// Statistics and results

#[derive(Clone, Copy, Debug)]
struct Stats {
    n: usize,
    p50: f64,
    p99: f64,
    mean: f64,
    min: f64,
    max: f64,
}

/// Nearest-rank percentiles.
fn stats(samples: &[f64]) -> Stats {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len().max(1);
    let rank = |p: f64| {
        s.get(((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Stats {
        n: s.len(),
        p50: rank(50.0),
        p99: rank(99.0),
        mean: s.iter().sum::<f64>() / n as f64,
        min: s.first().copied().unwrap_or(f64::NAN),
        max: s.last().copied().unwrap_or(f64::NAN),
    }
}

impl Stats {
    fn json(&self) -> Value {
        json!({ "n": self.n, "p50": r3(self.p50), "p99": r3(self.p99), "mean": r3(self.mean), "min": r3(self.min), "max": r3(self.max) })
    }
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One row of the table and one object of the JSON.
struct Measurement {
    name: String,
    unit: &'static str,
    values: Value,
    baseline: Value,
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
    note: String,
    /// How the table shows the value and the baseline.
    shown: String,
    shown_baseline: String,
}

impl Measurement {
    fn new(name: &str, unit: &'static str) -> Measurement {
        Measurement {
            name: name.into(),
            unit,
            values: Value::Null,
            baseline: Value::Null,
            ratio: None,
            target: String::new(),
            met: None,
            note: String::new(),
            shown: String::new(),
            shown_baseline: String::new(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "unit": self.unit,
            "values": self.values,
            "baseline": self.baseline,
            "ratio": self.ratio.map(r3),
            "target": self.target,
            "met": self.met,
            "note": self.note,
        })
    }
}

struct Report {
    measurements: Vec<Measurement>,
    failures: Vec<String>,
}

impl Report {
    fn push(&mut self, m: Measurement) {
        let met = match m.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        eprintln!("  {:<34} {} [{}]", m.name, m.shown, met);
        self.measurements.push(m);
    }
}

// ---------------------------------------------------------------------------------------------
// Sandboxes: one set of private directories per benchmark

struct Sandbox {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// A state directory elsewhere (tmpfs), removed with the sandbox.
    state: Option<tempfile::TempDir>,
}

fn make_private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

impl Sandbox {
    /// Private directories; with a tenant, a config.toml and the Primary key in the environment.
    fn new(label: &str, tenant: Option<&Emulator>) -> anyhow::Result<Sandbox> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("scanmint-bench-{label}-"))
            .tempdir()?;
        let p = dir.path();
        make_private_dir(p)?;
        for sub in ["run", "state", "config/scanmint", "cache", "home"] {
            make_private_dir(&p.join(sub))?;
        }
        let path = |rel: &str| p.join(rel).to_string_lossy().into_owned();
        let mut env = vec![
            ("XDG_RUNTIME_DIR".to_string(), path("run")),
            ("XDG_STATE_HOME".to_string(), path("state")),
            ("XDG_CONFIG_HOME".to_string(), path("config")),
            ("XDG_CACHE_HOME".to_string(), path("cache")),
            ("HOME".to_string(), path("home")),
            ("SCANMINT_STORE".to_string(), "memory".to_string()),
            ("GIT_CONFIG_NOSYSTEM".to_string(), "1".to_string()),
        ];
        if let Some(emu) = tenant {
            std::fs::write(
                p.join("config/scanmint/config.toml"),
                format!(
                    "[profile.default]\nbase_url = \"{}\"\nttl = \"1h\"\n",
                    emu.base_url()
                ),
            )?;
            env.push(("SCANMINT_BASE_URL".into(), emu.base_url().to_string()));
            env.push((
                "SCANMINT_PRIMARY_KEY_ID".into(),
                emu.primary_key_id().to_string(),
            ));
            env.push((
                "SCANMINT_PRIMARY_KEY".into(),
                emu.primary_key().expose().to_string(),
            ));
        }
        Ok(Sandbox {
            dir,
            env,
            state: None,
        })
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Put XDG_STATE_HOME (the ledger) on tmpfs, where fsync costs next to nothing.
    fn with_state_on_tmpfs(mut self) -> anyhow::Result<Sandbox> {
        let state = tempfile::Builder::new()
            .prefix("scanmint-bench-state-")
            .tempdir_in("/dev/shm")?;
        make_private_dir(state.path())?;
        for (k, v) in self.env.iter_mut() {
            if k == "XDG_STATE_HOME" {
                *v = state.path().to_string_lossy().into_owned();
            }
        }
        self.state = Some(state);
        Ok(self)
    }

    fn socket(&self) -> PathBuf {
        self.path("run/scanmint/scanmint-v1.sock")
    }

    fn lock(&self) -> PathBuf {
        self.path("run/scanmint/scanmint-v1.lock")
    }

    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        if std::env::var_os("SCANMINT_BENCH_DEBUG").is_some() {
            cmd.env("SCANMINT_LOG", "debug");
        }
        cmd
    }

    /// `scanmint daemon` as our own child, once its socket answers.
    async fn start_daemon(&self) -> anyhow::Result<Child> {
        let log = std::fs::File::create(self.path("daemon.log"))?;
        let child = self
            .command(EXE)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start scanmint daemon")?;
        wait_for_socket(&self.socket(), Duration::from_secs(10))
            .await
            .with_context(|| format!("daemon log: {}", self.daemon_log()))?;
        Ok(child)
    }

    fn daemon_log(&self) -> String {
        let a = std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default();
        let state = match &self.state {
            Some(t) => t.path().to_path_buf(),
            None => self.path("state"),
        };
        let b = std::fs::read_to_string(state.join("scanmint/daemon.log")).unwrap_or_default();
        let all = format!("{a}{b}");
        all.lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// `scanmint lsp` with its stdio as an LSP client (not yet initialized).
    fn spawn_proxy(&self) -> anyhow::Result<(Child, LspClient)> {
        let mut child = self
            .command(EXE)
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start scanmint lsp")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = child.stdout.take().context("no stdout")?;
        Ok((child, LspClient::over(stdout, stdin)))
    }

    /// An LSP session straight on the daemon's socket, initialized as `kind`.
    async fn connect(&self, kind: &str) -> anyhow::Result<LspClient> {
        let stream = UnixStream::connect(self.socket())
            .await
            .with_context(|| format!("cannot connect to {}", self.socket().display()))?;
        let (read, write) = stream.into_split();
        let client = LspClient::over(read, write);
        step(
            "initialize",
            client.initialize(json!({ "clientKind": kind })),
        )
        .await?;
        Ok(client)
    }

    /// The daemon serving this sandbox (the holder of its lock), whoever started it.
    fn daemon_pid(&self) -> Option<i32> {
        lock_holder(&self.lock())
    }

    /// SIGTERM the daemon serving this sandbox, if any, and wait until it is gone.
    async fn stop_daemon(&self) -> anyhow::Result<()> {
        let Some(pid) = self.daemon_pid() else {
            return Ok(());
        };
        // SAFETY: signalling a process we started (the holder of our sandbox's lock).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            if Instant::now() > deadline {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                bail!("daemon {pid} ignored SIGTERM for 10 s; killed");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // SCANMINT_BENCH_DEBUG=1: daemons log at debug level, and their logs are kept.
        if std::env::var_os("SCANMINT_BENCH_DEBUG").is_some() {
            let name = self
                .dir
                .path()
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            for rel in ["daemon.log", "state/scanmint/daemon.log"] {
                let _ = std::fs::copy(
                    self.path(rel),
                    std::env::temp_dir().join(format!("{name}.log")),
                );
            }
        }
        // Whatever else happened: no daemon outlives its sandbox.
        if let Some(pid) = self.daemon_pid() {
            // SAFETY: signalling the daemon of our own sandbox.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if alive(pid) {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The pid holding a `flock` on `lock` (from /proc/locks), if any.
fn lock_holder(lock: &Path) -> Option<i32> {
    let ino = std::fs::metadata(lock).ok()?.ino();
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || f[1] != "FLOCK" {
            return None;
        }
        let pid: i32 = f[4].parse().ok()?;
        let inode: u64 = f[5].rsplit(':').next()?.parse().ok()?;
        (inode == ino && pid > 0).then_some(pid)
    })
}

/// Running (not gone, not a zombie waiting for an indifferent parent).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").map(|(_, rest)| rest.as_bytes()[0]),
            Some(b'Z' | b'X')
        ),
        Err(_) => false,
    }
}

async fn wait_for_socket(socket: &Path, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing answered on {} within {limit:?}", socket.display());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// SIGTERM our own child and reap it.
async fn stop_child(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: signalling our own child, not yet reaped (id() is Some).
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

async fn step<T, E: std::fmt::Display>(
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => bail!("{what}: {e}"),
        Err(_) => bail!("{what}: no answer within {STEP_TIMEOUT:?}"),
    }
}

async fn start_emulator(latency_ms: u64) -> anyhow::Result<Emulator> {
    Emulator::start(EmulatorConfig {
        // 0 = no limit: the tenant's 10/s would measure the limiter, not scanmint.
        rate_limit_per_sec: 0,
        faults: Faults {
            latency_ms,
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    })
    .await
}

/// Wait until the tenant has seen `more_lists` more list calls than `since` and then no call at
/// all for `quiet` (every call it saw has been answered).
async fn quiesce(
    emu: &Emulator,
    since: &CallCounts,
    more_lists: u64,
    quiet: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while emu.calls().list < since.list + more_lists {
        ensure!(
            Instant::now() < deadline,
            "the daemon never listed keys at start-up (reconcile)"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    loop {
        let before = emu.calls().total;
        tokio::time::sleep(quiet).await;
        if emu.calls().total == before {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "the tenant never went quiet");
    }
}

fn calls_diff(a: &CallCounts, b: &CallCounts) -> Value {
    json!({
        "generate": b.generate - a.generate,
        "list": b.list - a.list,
        "delete": b.delete - a.delete,
        "validate": b.validate - a.validate,
        "total": b.total - a.total,
    })
}

fn proc_status_kib(pid: i32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// utime + stime of the whole process (all threads), in ms.
fn cpu_ms(pid: i32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(") ").context("odd /proc/PID/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 * 1000.0 / hz)
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

// ---------------------------------------------------------------------------------------------
// The echo responder (a separate process: this binary with --echo-server)

fn echo_server(socket: &Path, replies: &Path) -> anyhow::Result<()> {
    let replies: serde_json::Map<String, Value> = serde_json::from_slice(&std::fs::read(replies)?)?;
    let replies = Arc::new(replies);
    // Like the daemon: a two-worker runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::UnixListener::bind(socket)?;
        std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
        println!("ready");
        std::io::stdout().flush()?;
        loop {
            let (stream, _) = listener.accept().await?;
            let replies = replies.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut read = BufReader::new(read);
                while let Ok(Some(msg)) = read_frame(&mut read).await {
                    let method = msg
                        .get("method")
                        .and_then(|m| m.as_str())
                        .unwrap_or_default();
                    if method == "exit" {
                        break;
                    }
                    let Some(id) = msg.get("id") else { continue };
                    let result = replies.get(method).cloned().unwrap_or(Value::Null);
                    let reply = json!({ "jsonrpc": "2.0", "id": id, "result": result });
                    if write_frame(&mut write, &reply).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// Start the echo responder on `socket` with these canned results per method.
async fn start_echo(sb: &Sandbox, socket: &Path, replies: &Value) -> anyhow::Result<Child> {
    let file = sb.path("echo-replies.json");
    std::fs::write(&file, serde_json::to_vec(replies)?)?;
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--echo-server")
        .arg(socket)
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the echo server")?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let line = step("echo server start", lines.next_line()).await?;
    ensure!(
        line.as_deref() == Some("ready"),
        "echo server said {line:?}"
    );
    Ok(child)
}

// ---------------------------------------------------------------------------------------------
// 1. Cached credentials over LSP

async fn bench_lsp(c: &Counts, report: &mut Report) -> anyhow::Result<()> {
    let emu = start_emulator(0).await?;
    let sb = Sandbox::new("lsp", Some(&emu))?;
    let mut daemon = sb.start_daemon().await?;
    let echo_sb = Sandbox::new("echo", None)?;
    let mut echo = None;
    let result = async {
        let (mut proxy, client) = sb.spawn_proxy()?;
        let init = step("initialize via scanmint lsp", client.initialize(json!({ "clientKind": "exec" }))).await?;
        let creds_params = json!({ "minValidSecs": MIN_VALID_SECS });
        let cred = step("first credentials (mint)", client.request("scanmint/credentials", creds_params.clone())).await?;
        ensure!(cred["key"].is_string(), "an exec session got no key: {cred}");
        let status = step("status", client.request("scanmint/status", Value::Null)).await?;
        ensure!(status["state"] == "ready" && status["key"].is_object(), "status after the mint: {status}");

        // The echo responder answers with these very results, so both paths carry the same bytes.
        let echo_socket = echo_sb.path("run/scanmint/scanmint-v1.sock");
        make_private_dir(echo_socket.parent().unwrap())?;
        let replies = json!({
            "initialize": init,
            "scanmint/credentials": cred,
            "scanmint/status": status,
            "shutdown": null,
        });
        echo = Some(start_echo(&echo_sb, &echo_socket, &replies).await?);
        let (mut echo_proxy, echo_client) = echo_sb.spawn_proxy()?;
        step("initialize via scanmint lsp (echo)", echo_client.initialize(json!({ "clientKind": "exec" }))).await?;
        ensure!(echo_sb.daemon_pid().is_none(), "scanmint lsp started a daemon instead of using the echo server");

        let n = c.lsp_requests;
        let mut lat: [Vec<f64>; 4] = Default::default();
        let methods = [
            ("scanmint/credentials", creds_params.clone()),
            ("scanmint/status", Value::Null),
        ];
        // Warm both paths, then interleave request by request so both see the same machine.
        for (method, params) in &methods {
            for _ in 0..(n / 20).max(20) {
                step(method, client.request(method, params.clone())).await?;
                step(method, echo_client.request(method, params.clone())).await?;
            }
        }
        for (m, (method, params)) in methods.iter().enumerate() {
            for i in 0..n {
                for k in 0..2 {
                    // Alternate which path goes first.
                    let echo_side = (i + k) % 2 == 1;
                    let target = if echo_side { &echo_client } else { &client };
                    let t0 = Instant::now();
                    let reply = step(method, target.request(method, params.clone())).await?;
                    let dt = us(t0.elapsed());
                    if i == 0 && m == 0 {
                        ensure!(reply["keyId"] == cred["keyId"], "the cached key changed: {reply}");
                    }
                    lat[m * 2 + usize::from(echo_side)].push(dt);
                }
            }
        }
        for (m, (method, _)) in methods.iter().enumerate() {
            let d = stats(&lat[m * 2]);
            let e = stats(&lat[m * 2 + 1]);
            let short = method.trim_start_matches("scanmint/");
            let mut row = Measurement::new(&format!("lsp.{short}"), "µs");
            row.values = d.json();
            row.baseline = json!({ "name": "echo LSP responder behind the same scanmint lsp", "values": e.json() });
            row.ratio = Some(d.p50 / e.p50);
            let ratio_p99 = d.p99 / e.p99;
            row.values["ratio_p99"] = json!(r3(ratio_p99));
            row.target = "p50 ≤ 1.3× echo; p99 < 1000 µs".into();
            row.met = Some(d.p50 / e.p50 <= 1.3 && d.p99 < 1000.0);
            row.shown = format!("p50 {:.0} µs, p99 {:.0} µs (n={})", d.p50, d.p99, d.n);
            row.shown_baseline = format!("p50 {:.0} µs, p99 {:.0} µs", e.p50, e.p99);
            row.note = format!("p99 ratio {ratio_p99:.2}; reply {} bytes", serde_json::to_vec(&replies[*method])?.len());
            report.push(row);
        }
        client.close().await;
        echo_client.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), proxy.wait()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), echo_proxy.wait()).await;
        Ok(())
    }
    .await;
    if let Some(mut e) = echo {
        let _ = e.kill().await;
    }
    stop_child(&mut daemon).await;
    result
}

// ---------------------------------------------------------------------------------------------
// 2. Scanner launch overhead

struct Timed {
    label: &'static str,
    cmd: std::process::Command,
    input: Option<&'static [u8]>,
    expect: Option<&'static str>,
    samples: Vec<f64>,
}

fn std_command(env: &[(String, String)], program: impl AsRef<OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Wall time from spawn to exit, stdout captured, input (if any) on stdin.
fn run_timed(t: &mut Timed) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut child = t
        .cmd
        .stdin(if t.input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{}: cannot start", t.label))?;
    if let Some(input) = t.input {
        let mut stdin = child.stdin.take().context("no stdin")?;
        stdin.write_all(input)?;
    }
    let out = child.wait_with_output()?;
    let dt = ms(t0.elapsed());
    ensure!(
        out.status.success(),
        "{} failed ({}): {}",
        t.label,
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    if let Some(expect) = t.expect {
        ensure!(
            String::from_utf8_lossy(&out.stdout).contains(expect),
            "{}: output lacks {expect:?}",
            t.label
        );
    }
    t.samples.push(dt);
    Ok(())
}

async fn bench_launch(c: &Counts, report: &mut Report) -> anyhow::Result<()> {
    let emu = start_emulator(0).await?;
    let sb = Sandbox::new("launch", Some(&emu))?;
    let mut daemon = sb.start_daemon().await?;
    let git_dir = sb.path("git");
    make_private_dir(&git_dir)?;
    let git_socket = git_dir.join("socket");
    let mut git_daemon = None;
    let result = async {
        // The git cache daemon, in the foreground as our child; it prints "ok" once listening.
        let mut gd = sb
            .command("git")
            .arg("credential-cache--daemon")
            .arg(&git_socket)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start git credential-cache--daemon")?;
        let mut lines = BufReader::new(gd.stdout.take().context("no stdout")?).lines();
        let ok = step("git credential-cache--daemon start", lines.next_line()).await?;
        ensure!(ok.as_deref() == Some("ok"), "git credential-cache--daemon said {ok:?}");
        git_daemon = Some(gd);
        let env = sb.env.clone();
        let store = std_command(&env, "git")
            .args(["credential-cache", "--socket"])
            .arg(&git_socket)
            .arg("store")
            .stdin(Stdio::piped())
            .spawn();
        let mut store = store.context("git credential-cache store")?;
        store
            .stdin
            .take()
            .context("no stdin")?
            .write_all(b"protocol=https\nhost=tenant.example\nusername=bench\npassword=s3cret\n\n")?;
        ensure!(store.wait()?.success(), "git credential-cache store failed");

        // An AWS credential_process stand-in: a script printing the JSON the SDKs expect.
        let aws = sb.path("aws-credential-process");
        std::fs::write(
            &aws,
            "#!/bin/sh\nprintf '%s\\n' '{\"Version\": 1, \"AccessKeyId\": \"ASIABENCHBENCHBENCH\", \"SecretAccessKey\": \"bench/bench/bench/bench/bench/bench/bench\", \"SessionToken\": \"benchtoken\", \"Expiration\": \"2099-01-01T00:00:00Z\"}'\n",
        )?;
        std::fs::set_permissions(&aws, std::fs::Permissions::from_mode(0o700))?;
        let gh = which("gh");

        let mut exec = std_command(&env, EXE);
        exec.args(["exec", "--", "true"]);
        let mut git_get = std_command(&env, "git");
        git_get.args(["credential-cache", "--socket"]).arg(&git_socket).arg("get");
        let mut version = std_command(&env, EXE);
        version.arg("--version");
        let mut timed = vec![
            Timed { label: "true", cmd: std_command(&env, "true"), input: None, expect: None, samples: vec![] },
            Timed { label: "scanmint --version", cmd: version, input: None, expect: Some("scanmint"), samples: vec![] },
            Timed { label: "scanmint exec -- true", cmd: exec, input: None, expect: None, samples: vec![] },
            Timed {
                label: "git credential-cache get",
                cmd: git_get,
                input: Some(b"protocol=https\nhost=tenant.example\n\n"),
                expect: Some("password=s3cret"),
                samples: vec![],
            },
            Timed {
                label: "aws credential_process (stand-in: sh printf)",
                cmd: std_command(&env, &aws),
                input: None,
                expect: Some("AccessKeyId"),
                samples: vec![],
            },
        ];
        if let Some(gh) = &gh {
            let mut cmd = std_command(&env, gh);
            cmd.args(["auth", "token"]);
            timed.push(Timed { label: "gh auth token", cmd, input: None, expect: None, samples: vec![] });
        }
        let n = c.launches;
        let timed = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<Timed>> {
            // Warm-up (the first exec mints the key), then interleave the commands.
            for t in timed.iter_mut() {
                for _ in 0..3 {
                    run_timed(t)?;
                }
                t.samples.clear();
            }
            for _ in 0..n {
                for t in timed.iter_mut() {
                    run_timed(t)?;
                }
            }
            Ok(timed)
        })
        .await??;
        let s: Vec<Stats> = timed.iter().map(|t| stats(&t.samples)).collect();
        for (t, st) in timed.iter().zip(&s) {
            let mut row = Measurement::new(&format!("launch.{}", t.label), "ms");
            row.values = st.json();
            row.shown = format!("p50 {:.2} ms, p99 {:.2} ms (n={})", st.p50, st.p99, st.n);
            if t.label.starts_with("aws") {
                row.note = "a stand-in: /bin/sh running printf, the shape of a credential_process helper".into();
            }
            report.push(row);
        }
        if gh.is_none() {
            let mut row = Measurement::new("launch.gh auth token", "ms");
            row.values = json!({ "skipped": true });
            row.note = "gh is not installed on this machine: skipped".into();
            row.shown = "skipped (gh not installed)".into();
            report.push(row);
        }
        // The protocol part of exec, from this process: connect, initialize, credentials, close.
        let mut protocol = vec![];
        for _ in 0..n {
            let t0 = Instant::now();
            let client = sb.connect("exec").await?;
            let params = json!({ "minValidSecs": MIN_VALID_SECS });
            let cred = step("credentials", client.request("scanmint/credentials", params)).await?;
            ensure!(cred["key"].is_string(), "no key: {cred}");
            client.close().await;
            protocol.push(ms(t0.elapsed()));
        }
        let p = stats(&protocol);
        let mut row = Measurement::new("launch.exec_protocol_in_process", "ms");
        row.values = p.json();
        row.note = "connect + initialize + credentials + shutdown/exit on the socket, from this process: exec's protocol share".into();
        row.shown = format!("p50 {:.2} ms, p99 {:.2} ms (n={})", p.p50, p.p99, p.n);
        report.push(row);

        let overhead: Vec<f64> = timed[2].samples.iter().zip(&timed[0].samples).map(|(e, t)| e - t).collect();
        let o = stats(&overhead);
        let mut row = Measurement::new("launch.exec_overhead", "ms");
        let over_p50 = s[2].p50 - s[0].p50;
        let start_p50 = s[1].p50 - s[0].p50;
        row.values = json!({
            "p50": r3(over_p50),
            "paired": o.json(),
            "exec_p50": r3(s[2].p50),
            "true_p50": r3(s[0].p50),
            "binary_start_p50": r3(start_p50),
            "protocol_in_process_p50": r3(p.p50),
        });
        row.baseline = json!({ "name": "git credential-cache get (p50)", "values": s[3].json() });
        row.ratio = Some(over_p50 / s[3].p50);
        row.target = "(exec -- true) − true ≤ one git credential-cache get".into();
        row.met = Some(over_p50 <= s[3].p50);
        row.shown = format!("{over_p50:.2} ms over `true` (p50)");
        row.shown_baseline = format!("git get p50 {:.2} ms", s[3].p50);
        row.note = format!(
            "starting the binary (--version − true) {start_p50:.2} ms; protocol in-process {:.2} ms",
            p.p50
        );
        report.push(row);
        Ok(())
    }
    .await;
    if let Some(mut gd) = git_daemon {
        let _ = std_command(&sb.env, "git")
            .args(["credential-cache", "--socket"])
            .arg(&git_socket)
            .arg("exit")
            .stdin(Stdio::null())
            .status();
        stop_child(&mut gd).await;
    }
    stop_child(&mut daemon).await;
    result
}

// ---------------------------------------------------------------------------------------------
// 3. Cold mint

/// generate + list by id, straight from this process: the round trips a mint cannot avoid.
async fn papi_round_trips(emu: &Emulator) -> anyhow::Result<f64> {
    let mut opts = ClientOptions::new(
        emu.base_url(),
        emu.primary_key_id(),
        emu.primary_key(),
        emu.security_level(),
    );
    opts.retry = RetryPolicy::none();
    let client = Client::new(opts)?;
    let request = GenerateRequest {
        roles: vec![CLI_READ_ONLY_CUSTOM.to_string()],
        security_level: SecurityLevel::Standard,
        expiration: Some(emu.now_ms() + 3_600_000),
        comment: "bench baseline".into(),
    };
    let t0 = Instant::now();
    let minted = step("baseline generate", client.generate(&request)).await?;
    let listed = step(
        "baseline list",
        client.get_api_keys(&ListRequest {
            filters: vec![Filter::ids(&[minted.id])],
            sort: None,
            search_from: Some(0),
            search_to: Some(100),
        }),
    )
    .await?;
    let dt = ms(t0.elapsed());
    ensure!(
        listed.data.iter().any(|r| r.id == minted.id),
        "the baseline key is not listed"
    );
    emu.revoke(minted.id);
    Ok(dt)
}

struct ColdMint {
    ms: f64,
    calls: Value,
    key_id: i64,
}

/// A fresh daemon, its start-up reconcile done, no key: time one `scanmint/credentials`.
async fn one_cold_mint(emu: &Emulator, tmpfs_state: bool) -> anyhow::Result<ColdMint> {
    let start = emu.calls();
    let mut sb = Sandbox::new("mint", Some(emu))?;
    if tmpfs_state {
        sb = sb.with_state_on_tmpfs()?;
    }
    let mut daemon = sb.start_daemon().await?;
    let result = async {
        let client = sb.connect("exec").await?;
        quiesce(
            emu,
            &start,
            1,
            Duration::from_millis(TENANT_LATENCY_MS + 30),
        )
        .await?;
        let c0 = emu.calls();
        let t0 = Instant::now();
        let cred = step(
            "cold credentials",
            client.request(
                "scanmint/credentials",
                json!({ "minValidSecs": MIN_VALID_SECS }),
            ),
        )
        .await?;
        let dt = ms(t0.elapsed());
        let c1 = emu.calls();
        if std::env::var_os("SCANMINT_BENCH_DEBUG").is_some() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            eprintln!(
                "    cold mint in {}: {dt:.2} ms, reply at unix {:.6}",
                sb.dir.path().display(),
                now.as_secs_f64()
            );
        }
        ensure!(cred["key"].is_string(), "no key: {cred}");
        client.close().await;
        Ok(ColdMint {
            ms: dt,
            calls: calls_diff(&c0, &c1),
            key_id: cred["keyId"].as_i64().unwrap_or_default(),
        })
    }
    .await;
    stop_child(&mut daemon).await;
    if let Ok(m) = &result {
        // Gone from the tenant, so the next sandbox's reconcile has no orphan to delete.
        emu.revoke(m.key_id);
    }
    result
}

/// Returns the p50 of the cold mint (ms), the fan-in's yardstick.
async fn bench_mint(c: &Counts, report: &mut Report) -> anyhow::Result<f64> {
    let emu = start_emulator(TENANT_LATENCY_MS).await?;
    let (mut mint, mut base, mut over, mut tmpfs) = (vec![], vec![], vec![], vec![]);
    let mut exact = true;
    let mut seen = vec![];
    let shm = Path::new("/dev/shm").is_dir();
    for i in 0..c.cold_mints {
        let (m, b) = if i % 2 == 0 {
            let b = papi_round_trips(&emu).await?;
            (one_cold_mint(&emu, false).await?, b)
        } else {
            let m = one_cold_mint(&emu, false).await?;
            (m, papi_round_trips(&emu).await?)
        };
        if shm {
            let t = one_cold_mint(&emu, true).await?;
            exact &= t.calls["generate"] == 1 && t.calls["list"] == 1 && t.calls["total"] == 2;
            tmpfs.push(t.ms);
        }
        exact &= m.calls["generate"] == 1 && m.calls["list"] == 1 && m.calls["total"] == 2;
        seen.push(m.calls);
        mint.push(m.ms);
        base.push(b);
        over.push(m.ms - b);
    }
    let (m, b, o) = (stats(&mint), stats(&base), stats(&over));
    let mut row = Measurement::new("mint.cold", "ms");
    row.values =
        json!({ "mint": m.json(), "overhead": o.json(), "latency_per_call_ms": TENANT_LATENCY_MS });
    row.baseline = json!({ "name": "generate + list by id, made directly (same latency)", "values": b.json() });
    row.ratio = Some(m.p50 / b.p50);
    row.target = "overhead (mint − round trips) ≤ 2 ms".into();
    row.met = Some(m.p50 - b.p50 <= 2.0);
    row.shown = format!(
        "p50 {:.2} ms, overhead p50 {:.2} ms (n={})",
        m.p50,
        m.p50 - b.p50,
        m.n
    );
    row.shown_baseline = format!("round trips p50 {:.2} ms", b.p50);
    row.note = format!("paired overhead p50 {:.2} ms, max {:.2} ms", o.p50, o.max);
    report.push(row);

    if shm {
        let t = stats(&tmpfs);
        let mut row = Measurement::new("mint.cold_state_on_tmpfs", "ms");
        row.values = json!({ "mint": t.json(), "overhead_p50": r3(t.p50 - b.p50) });
        row.baseline = json!({ "name": "generate + list by id, made directly (same latency)", "values": b.json() });
        row.ratio = Some(t.p50 / b.p50);
        row.target = "diagnostic: the same mint, ledger on tmpfs (fsync ≈ free)".into();
        row.shown = format!(
            "p50 {:.2} ms, overhead p50 {:.2} ms (n={})",
            t.p50,
            t.p50 - b.p50,
            t.n
        );
        row.shown_baseline = format!("round trips p50 {:.2} ms", b.p50);
        row.note = format!(
            "disk − tmpfs p50 = {:.2} ms: the ledger's fsyncs on this disk",
            m.p50 - t.p50
        );
        report.push(row);
    }

    let mut row = Measurement::new("mint.calls", "calls");
    row.values = json!({ "per_mint": seen });
    row.target = "exactly 1 generate + 1 list (verification) per mint".into();
    row.met = Some(exact);
    row.shown = if exact {
        "1 generate + 1 list, every mint".into()
    } else {
        format!("{:?}", row.values["per_mint"])
    };
    report.push(row);
    emu.shutdown().await;
    Ok(m.p50)
}

// ---------------------------------------------------------------------------------------------
// 4. Fan-in at a cold start

struct Burst {
    latencies_ms: Vec<f64>,
    key_ids: Vec<i64>,
    sample: Value,
}

/// `sessions` sessions straight on `socket`, then `per_session` concurrent credentials each.
async fn burst(socket: &Path, sessions: usize, per_session: usize) -> anyhow::Result<Burst> {
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..sessions {
        let socket = socket.to_path_buf();
        connecting.spawn(async move {
            let stream = UnixStream::connect(&socket).await?;
            let (read, write) = stream.into_split();
            let client = LspClient::over(read, write);
            step(
                "initialize",
                client.initialize(json!({ "clientKind": "exec" })),
            )
            .await?;
            anyhow::Ok(Arc::new(client))
        });
    }
    let mut clients = Vec::new();
    while let Some(c) = connecting.join_next().await {
        clients.push(c??);
    }
    let mut asking = tokio::task::JoinSet::new();
    for client in &clients {
        for _ in 0..per_session {
            let client = client.clone();
            asking.spawn(async move {
                let t0 = Instant::now();
                let reply = step(
                    "credentials",
                    client.request(
                        "scanmint/credentials",
                        json!({ "minValidSecs": MIN_VALID_SECS }),
                    ),
                )
                .await?;
                anyhow::Ok((ms(t0.elapsed()), reply))
            });
        }
    }
    let mut out = Burst {
        latencies_ms: vec![],
        key_ids: vec![],
        sample: Value::Null,
    };
    while let Some(r) = asking.join_next().await {
        let (dt, reply) = r??;
        out.latencies_ms.push(dt);
        out.key_ids.push(reply["keyId"].as_i64().unwrap_or(-1));
        out.sample = reply;
    }
    for client in clients {
        if let Ok(client) = Arc::try_unwrap(client) {
            client.close().await;
        }
    }
    Ok(out)
}

async fn bench_fanin(
    c: &Counts,
    cold_mint_p50: Option<f64>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let emu = start_emulator(TENANT_LATENCY_MS).await?;
    let total = c.sessions * c.per_session;
    let mut sample = Value::Null;
    let variants = [
        ("cold", false, false),
        ("warm_no_key", true, false),
        ("cached", true, true),
    ];
    for (variant, wait_reconcile, cached) in variants {
        let (mut lat, mut generates, mut distinct_ok, mut hwm) = (vec![], vec![], true, 0u64);
        for _ in 0..c.fanin_runs {
            let start = emu.calls();
            let sb = Sandbox::new("fanin", Some(&emu))?;
            let mut daemon = sb.start_daemon().await?;
            let pid = daemon.id().map(|p| p as i32);
            let result = async {
                if wait_reconcile {
                    let quiet = Duration::from_millis(TENANT_LATENCY_MS + 30);
                    quiesce(&emu, &start, 1, quiet).await?;
                }
                if cached {
                    let client = sb.connect("exec").await?;
                    let params = json!({ "minValidSecs": MIN_VALID_SECS });
                    step(
                        "priming credentials",
                        client.request("scanmint/credentials", params),
                    )
                    .await?;
                    client.close().await;
                }
                let before = emu.calls();
                let b = burst(&sb.socket(), c.sessions, c.per_session).await?;
                let after = emu.calls();
                if let Some(pid) = pid {
                    hwm = hwm.max(proc_status_kib(pid, "VmHWM:").unwrap_or(0));
                }
                anyhow::Ok((b, after.generate - before.generate))
            }
            .await;
            stop_child(&mut daemon).await;
            let (b, generated) = result?;
            ensure!(
                b.latencies_ms.len() == total,
                "{} of {total} requests answered",
                b.latencies_ms.len()
            );
            let first = b.key_ids[0];
            distinct_ok &= b.key_ids.iter().all(|k| *k == first);
            for id in emu.live_keys().iter().filter(|k| !k.is_primary) {
                emu.revoke(id.id);
            }
            lat.extend(b.latencies_ms);
            generates.push(generated);
            sample = b.sample;
        }
        let s = stats(&lat);
        let want = if cached { 0 } else { 1 };
        let one_mint = generates.iter().all(|g| *g == want) && distinct_ok;
        let mut row = Measurement::new(&format!("fanin.{variant}"), "ms");
        row.values = json!({ "latency": s.json(), "generate_calls_per_run": generates, "one_key_for_all": distinct_ok,
            "daemon_peak_rss_kib": hwm, "sessions": c.sessions, "per_session": c.per_session, "runs": c.fanin_runs });
        row.shown = format!(
            "p50 {:.1} ms, p99 {:.1} ms, generate={:?} ({}×{}, {} run(s))",
            s.p50, s.p99, generates, c.sessions, c.per_session, c.fanin_runs
        );
        if cached {
            row.target = "diagnostic: the same burst, key already cached (0 generate)".into();
            row.note = "what 1000 replies cost the daemon with no mint and no lock wait".into();
            report.push(row);
            continue;
        }
        if let Some(cm) = cold_mint_p50 {
            row.baseline =
                json!({ "name": "cold mint p50 (mint.cold)", "values": { "p50": r3(cm) } });
            row.ratio = Some(s.p99 / cm);
            row.met = Some(one_mint && s.p99 <= cm + 5.0);
            row.shown_baseline = format!("cold mint p50 {cm:.2} ms");
        }
        row.target = "1 generate; p99 ≤ cold mint + 5 ms".into();
        row.note = if wait_reconcile {
            "daemon up and its start-up reconcile answered before the burst".into()
        } else {
            "burst starts as soon as the fresh daemon's socket answers (its start-up reconcile is in flight)".into()
        };
        report.push(row);
    }

    // The same burst against the echo responder: what 1000 replies cost this client and transport.
    let sb = Sandbox::new("fanin-echo", None)?;
    let socket = sb.path("run/echo.sock");
    let mut echo = start_echo(&sb, &socket, &json!({ "initialize": {"capabilities": {}}, "scanmint/credentials": sample, "shutdown": null })).await?;
    let result = burst(&socket, c.sessions, c.per_session).await;
    let _ = echo.kill().await;
    let b = result?;
    let s = stats(&b.latencies_ms);
    let mut row = Measurement::new("fanin.echo_burst", "ms");
    row.values = json!({ "latency": s.json() });
    row.note = "the same burst answered at once by the echo responder: the floor of client + transport for a burst".into();
    row.shown = format!("p50 {:.1} ms, p99 {:.1} ms", s.p50, s.p99);
    report.push(row);
    emu.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 6. Scale probe: what a daemon start costs the tenant as the tenant's inventory grows

struct StartCost {
    first_key_ms: f64,
    /// Calls the tenant had seen when the key arrived.
    before_key: Value,
    /// Every call until the tenant went quiet.
    calls: Value,
}

/// Start a fresh daemon and ask for a key at once; count every call until the tenant is quiet.
async fn start_cost(emu: &Emulator) -> anyhow::Result<StartCost> {
    let start = emu.calls();
    let sb = Sandbox::new("scale", Some(emu))?;
    let t0 = Instant::now();
    let mut daemon = sb.start_daemon().await?;
    let result = async {
        let client = sb.connect("exec").await?;
        let params = json!({ "minValidSecs": MIN_VALID_SECS });
        let cred = step(
            "credentials",
            client.request("scanmint/credentials", params),
        )
        .await?;
        let first_key_ms = ms(t0.elapsed());
        let before_key = calls_diff(&start, &emu.calls());
        ensure!(cred["key"].is_string(), "no key: {cred}");
        client.close().await;
        let quiet = Duration::from_millis(TENANT_LATENCY_MS + 30);
        quiesce(emu, &start, 1, quiet).await?;
        let calls = calls_diff(&start, &emu.calls());
        anyhow::Ok(StartCost {
            first_key_ms,
            before_key,
            calls,
        })
    }
    .await;
    stop_child(&mut daemon).await;
    for k in emu
        .live_keys()
        .iter()
        .filter(|k| k.comment.starts_with("scanmint "))
    {
        emu.revoke(k.id);
    }
    result
}

async fn bench_scale(c: &Counts, report: &mut Report) -> anyhow::Result<()> {
    const FOREIGN: usize = 2000;
    let emu = start_emulator(TENANT_LATENCY_MS).await?;
    let (mut empty, mut trips) = (vec![], vec![]);
    for _ in 0..c.start_runs {
        empty.push(start_cost(&emu).await?);
        trips.push(papi_round_trips(&emu).await?);
    }
    // Other developers' keys: the same role, live, minted elsewhere.
    let expires = emu.now_ms() + 3_600_000;
    for _ in 0..FOREIGN {
        emu.create_key(
            &[CLI_READ_ONLY_CUSTOM],
            SecurityLevel::Standard,
            Some(expires),
        );
    }
    let mut full = vec![];
    for _ in 0..c.start_runs {
        full.push(start_cost(&emu).await?);
    }
    let e = stats(&empty.iter().map(|s| s.first_key_ms).collect::<Vec<_>>());
    let f = stats(&full.iter().map(|s| s.first_key_ms).collect::<Vec<_>>());
    let t = stats(&trips);

    // The first key of a daemon that has just started (the morning case).
    let first = &empty[0];
    let mut row = Measurement::new("mint.at_daemon_start", "ms");
    row.values = json!({ "first_key": e.json(), "calls_before_key": first.before_key, "calls_until_quiet": first.calls });
    row.baseline = json!({ "name": "generate + list by id, made directly (same latency)", "values": t.json() });
    row.ratio = Some(e.p50 / t.p50);
    row.target = "diagnostic: from spawning the daemon to the key in hand".into();
    row.shown = format!(
        "p50 {:.1} ms from daemon spawn; before the key: {} generate, {} list",
        e.p50, first.before_key["generate"], first.before_key["list"]
    );
    row.shown_baseline = format!("round trips p50 {:.2} ms", t.p50);
    report.push(row);
    let exact = empty
        .iter()
        // One list is the start-up reconcile's (not the mint's): 1 generate + 2 lists is exact.
        .all(|s| s.before_key["generate"] == 1 && s.before_key["list"] == 2);
    let mut row = Measurement::new("mint.calls_at_daemon_start", "calls");
    row.values =
        json!({ "before_key": empty.iter().map(|s| s.before_key.clone()).collect::<Vec<_>>() });
    row.target = "exactly 1 generate + 1 list (verification) per mint".into();
    row.met = Some(exact);
    row.shown = format!(
        "{} generate + {} list before the key",
        first.before_key["generate"], first.before_key["list"]
    );
    row.note = "counts every call before the key; one list is the start-up reconcile's, the rest are the mint's (a clock probe when no reply has set the tenant's clock offset yet, then verification)".into();
    report.push(row);

    let big = &full[0];
    let mut row = Measurement::new("scale.daemon_start_2000_foreign_keys", "ms");
    row.values =
        json!({ "foreign_keys": FOREIGN, "first_key": f.json(), "calls_until_quiet": big.calls });
    row.baseline = json!({ "name": "the same start on a tenant with no other keys",
        "values": { "first_key": e.json(), "calls_until_quiet": first.calls } });
    row.ratio = Some(f.p50 / e.p50);
    row.target = "diagnostic: start-up calls independent of tenant size".into();
    row.shown = format!(
        "first key p50 {:.0} ms; {} list calls at start",
        f.p50, big.calls["list"]
    );
    row.shown_baseline = format!("{:.0} ms; {} list calls", e.p50, first.calls["list"]);
    row.note = "start-up reconcile pages through the whole tenant inventory (100 keys a page, at most 50 pages)".into();
    report.push(row);
    emu.shutdown().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 5. Footprint

/// Spawn `scanmint lsp`, time until the `initialize` reply, then close politely.
async fn proxy_initialize(sb: &Sandbox) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let (mut proxy, client) = sb.spawn_proxy()?;
    let params = json!({ "processId": std::process::id(), "capabilities": {}, "initializationOptions": { "clientKind": "exec" } });
    let init = step("initialize", client.request("initialize", params)).await?;
    let dt = ms(t0.elapsed());
    ensure!(
        init["serverInfo"]["name"] == "scanmint",
        "odd initialize reply: {init}"
    );
    client.notify("initialized", json!({})).await.ok();
    client.close().await;
    step("scanmint lsp exit", proxy.wait()).await?;
    Ok(dt)
}

async fn bench_footprint(c: &Counts, report: &mut Report) -> anyhow::Result<()> {
    let emu = start_emulator(0).await?;

    // Cold start: `scanmint lsp` with no daemon running, to the initialize reply; warm start as
    // the baseline (the daemon the cold start left running).
    let sb = Sandbox::new("start", Some(&emu))?;
    let (mut cold, mut warm) = (vec![], vec![]);
    for _ in 0..c.cold_starts {
        ensure!(sb.daemon_pid().is_none(), "a daemon is still running");
        cold.push(
            proxy_initialize(&sb)
                .await
                .with_context(|| format!("cold start; daemon log: {}", sb.daemon_log()))?,
        );
        ensure!(
            sb.daemon_pid().is_some(),
            "scanmint lsp did not start a daemon"
        );
        warm.push(proxy_initialize(&sb).await?);
        if std::env::var_os("SCANMINT_BENCH_DEBUG").is_some() {
            let again = proxy_initialize(&sb).await?;
            eprintln!(
                "    cold {:.2} ms, warm {:.2} ms, warm again {again:.2} ms",
                cold[cold.len() - 1],
                warm[warm.len() - 1]
            );
        }
        sb.stop_daemon().await?;
    }
    let (cs, ws) = (stats(&cold), stats(&warm));
    let mut row = Measurement::new("footprint.cold_start", "ms");
    row.values = cs.json();
    row.baseline =
        json!({ "name": "scanmint lsp with the daemon already running", "values": ws.json() });
    row.ratio = Some(cs.p50 / ws.p50);
    row.target = "p50 ≤ 50 ms".into();
    row.met = Some(cs.p50 <= 50.0);
    row.shown = format!("p50 {:.1} ms, max {:.1} ms (n={})", cs.p50, cs.max, cs.n);
    row.shown_baseline = format!("warm p50 {:.1} ms", ws.p50);
    report.push(row);
    drop(sb);

    // Idle: a daemon that minted and served a session, now with none; git's cache daemon beside it.
    let sb = Sandbox::new("idle", Some(&emu))?;
    let mut daemon = sb.start_daemon().await?;
    let git_dir = sb.path("git");
    make_private_dir(&git_dir)?;
    let mut gd = sb
        .command("git")
        .arg("credential-cache--daemon")
        .arg(git_dir.join("socket"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start git credential-cache--daemon")?;
    let result = async {
        let mut lines = BufReader::new(gd.stdout.take().context("no stdout")?).lines();
        step("git credential-cache--daemon start", lines.next_line()).await?;
        let pid = daemon.id().context("daemon gone")? as i32;
        let gpid = gd.id().context("git daemon gone")? as i32;
        let client = sb.connect("exec").await?;
        let cred = step("credentials", client.request("scanmint/credentials", json!({ "minValidSecs": MIN_VALID_SECS }))).await?;
        ensure!(cred["key"].is_string(), "no key: {cred}");
        step("status", client.request("scanmint/status", Value::Null)).await?;
        client.close().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss0, cpu0, gcpu0) = (proc_status_kib(pid, "VmRSS:")?, cpu_ms(pid)?, cpu_ms(gpid)?);
        let grss = proc_status_kib(gpid, "VmRSS:")?;
        tokio::time::sleep(c.idle).await;
        ensure!(alive(pid), "the daemon exited while idle; log: {}", sb.daemon_log());
        let (rss1, cpu1, gcpu1) = (proc_status_kib(pid, "VmRSS:")?, cpu_ms(pid)?, cpu_ms(gpid)?);
        let limit_kib = 15_000_000.0 / 1024.0;
        let mut row = Measurement::new("footprint.idle_rss", "KiB");
        row.values = json!({ "after_settle": rss0, "after_idle": rss1, "peak_hwm": proc_status_kib(pid, "VmHWM:")? });
        row.baseline = json!({ "name": "git credential-cache--daemon VmRSS", "values": { "rss": grss } });
        row.ratio = Some(rss1 as f64 / grss as f64);
        row.target = "≤ 15 MB (15·10⁶ bytes = 14648 KiB)".into();
        row.met = Some((rss1.max(rss0) as f64) <= limit_kib);
        row.shown = format!("{:.1} MiB", rss1 as f64 / 1024.0);
        row.shown_baseline = format!("git cache daemon {:.1} MiB", grss as f64 / 1024.0);
        report.push(row);

        let secs = c.idle.as_secs_f64();
        let mut row = Measurement::new("footprint.idle_cpu", "ms");
        row.values = json!({ "cpu_ms": r3(cpu1 - cpu0), "window_s": secs });
        row.baseline = json!({ "name": "git credential-cache--daemon, same window", "values": { "cpu_ms": r3(gcpu1 - gcpu0) } });
        row.ratio = None;
        row.target = format!("~0 (≤ 10 ms CPU in {secs:.0} s; clock tick 10 ms)");
        row.met = Some(cpu1 - cpu0 <= 10.0);
        row.shown = format!("{:.0} ms CPU in {secs:.0} s", cpu1 - cpu0);
        row.shown_baseline = format!("git {:.0} ms", gcpu1 - gcpu0);
        report.push(row);
        anyhow::Ok(())
    }
    .await;
    stop_child(&mut gd).await;
    stop_child(&mut daemon).await;
    result?;

    let size = std::fs::metadata(EXE)?.len();
    let git_size = which("git")
        .and_then(|g| std::fs::metadata(g).ok())
        .map(|m| m.len());
    let mut row = Measurement::new("footprint.binary_size", "bytes");
    row.values = json!({ "bytes": size, "path": EXE, "release": EXE.contains("/release/") });
    if let Some(g) = git_size {
        row.baseline = json!({ "name": "git binary", "values": { "bytes": g } });
        row.ratio = Some(size as f64 / g as f64);
        row.shown_baseline = format!("git {:.1} MiB", g as f64 / 1048576.0);
    }
    row.target = "reported (no target)".into();
    row.shown = format!("{:.1} MiB", size as f64 / 1048576.0);
    report.push(row);
    emu.shutdown().await;
    Ok(())
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
