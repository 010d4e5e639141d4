//! Sandboxes: one set of private directories per benchmark (runtime 0700, state, config, an
//! in-memory store, the Primary key from the environment), its daemons, and stopping them.

use super::*;

pub(crate) struct Sandbox {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) env: Vec<(String, String)>,
    /// A state directory elsewhere (tmpfs), removed with the sandbox.
    pub(crate) state: Option<tempfile::TempDir>,
}

pub(crate) fn make_private_dir(path: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

impl Sandbox {
    /// Private directories; with a tenant, a config.toml and the Primary key in the environment.
    pub(crate) fn new(label: &str, tenant: Option<&Emulator>) -> anyhow::Result<Sandbox> {
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

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Put XDG_STATE_HOME (the ledger) on tmpfs, where fsync costs next to nothing.
    pub(crate) fn with_state_on_tmpfs(mut self) -> anyhow::Result<Sandbox> {
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

    pub(crate) fn socket(&self) -> PathBuf {
        self.path("run/scanmint/scanmint-v1.sock")
    }

    pub(crate) fn lock(&self) -> PathBuf {
        self.path("run/scanmint/scanmint-v1.lock")
    }

    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
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
    pub(crate) async fn start_daemon(&self) -> anyhow::Result<Child> {
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

    pub(crate) fn daemon_log(&self) -> String {
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
    pub(crate) fn spawn_proxy(&self) -> anyhow::Result<(Child, LspClient)> {
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
    pub(crate) async fn connect(&self, kind: &str) -> anyhow::Result<LspClient> {
        self.connect_with(json!({ "clientKind": kind })).await
    }

    /// A scanner's session, initialized as `scanmint exec` initializes its own.
    pub(crate) async fn connect_scanner(&self) -> anyhow::Result<LspClient> {
        self.connect_with(SCANNER_OPTIONS.clone()).await
    }

    async fn connect_with(&self, options: Value) -> anyhow::Result<LspClient> {
        let stream = UnixStream::connect(self.socket())
            .await
            .with_context(|| format!("cannot connect to {}", self.socket().display()))?;
        let (read, write) = stream.into_split();
        let client = LspClient::over(read, write);
        step("initialize", client.initialize(options)).await?;
        Ok(client)
    }

    /// The daemon serving this sandbox (the holder of its lock), whoever started it.
    pub(crate) fn daemon_pid(&self) -> Option<i32> {
        lock_holder(&self.lock())
    }

    /// SIGTERM the daemon serving this sandbox, if any, and wait until it is gone.
    pub(crate) async fn stop_daemon(&self) -> anyhow::Result<()> {
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
pub(crate) fn lock_holder(lock: &Path) -> Option<i32> {
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
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").map(|(_, rest)| rest.as_bytes()[0]),
            Some(b'Z' | b'X')
        ),
        Err(_) => false,
    }
}

pub(crate) async fn wait_for_socket(socket: &Path, limit: Duration) -> anyhow::Result<()> {
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
pub(crate) async fn stop_child(child: &mut Child) {
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

pub(crate) async fn step<T, E: std::fmt::Display>(
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => bail!("{what}: {e}"),
        Err(_) => bail!("{what}: no answer within {STEP_TIMEOUT:?}"),
    }
}

pub(crate) async fn start_emulator(latency_ms: u64) -> anyhow::Result<Emulator> {
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
pub(crate) async fn quiesce(
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

pub(crate) fn calls_diff(a: &CallCounts, b: &CallCounts) -> Value {
    json!({
        "generate": b.generate - a.generate,
        "list": b.list - a.list,
        "delete": b.delete - a.delete,
        "validate": b.validate - a.validate,
        "total": b.total - a.total,
    })
}

pub(crate) fn proc_status_kib(pid: i32, field: &str) -> anyhow::Result<u64> {
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
pub(crate) fn cpu_ms(pid: i32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(") ").context("odd /proc/PID/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5); `rest` starts at field 3.
    let ticks: u64 = f[11].parse::<u64>()? + f[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 * 1000.0 / hz)
}

pub(crate) fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
}

/// The `initializationOptions` of `scanmint exec`'s sessions (`cli/fast_exec.rs`).
pub(crate) static SCANNER_OPTIONS: std::sync::LazyLock<Value> =
    std::sync::LazyLock::new(|| json!({ "clientKind": "exec", "scannerOnly": true }));
