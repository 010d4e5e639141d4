//! Benchmark 5, `footprint`: idle RSS and CPU, cold `scanmint lsp` start, binary size.

use super::*;

/// Spawn `scanmint lsp`, time until the `initialize` reply, then close politely.
pub(crate) async fn proxy_initialize(sb: &Sandbox) -> anyhow::Result<f64> {
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

pub(crate) async fn bench_footprint(c: &Counts, report: &mut Report) -> anyhow::Result<()> {
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

    // The launcher every scan starts, and the core next to it that does everything else.
    let launcher = std::fs::metadata(EXE)?.len();
    let core = std::fs::metadata(CORE)?.len();
    let size = launcher + core;
    let git_size = which("git")
        .and_then(|g| std::fs::metadata(g).ok())
        .map(|m| m.len());
    let mut row = Measurement::new("footprint.binary_size", "bytes");
    row.values = json!({ "bytes": size, "launcher_bytes": launcher, "core_bytes": core, "path": EXE, "release": EXE.contains("/release/") });
    if let Some(g) = git_size {
        row.baseline = json!({ "name": "git binary", "values": { "bytes": g } });
        row.ratio = Some(size as f64 / g as f64);
        row.shown_baseline = format!("git {:.1} MiB", g as f64 / 1048576.0);
    }
    row.target = "reported (no target)".into();
    row.shown = format!(
        "{:.1} MiB (launcher {:.2} MiB + core {:.1} MiB)",
        size as f64 / 1048576.0,
        launcher as f64 / 1048576.0,
        core as f64 / 1048576.0
    );
    report.push(row);
    emu.shutdown().await;
    Ok(())
}
