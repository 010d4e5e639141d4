//! Benchmark 6, `scale`: what a daemon start costs the tenant as its inventory grows.

use super::*;

pub(crate) struct StartCost {
    pub(crate) first_key_ms: f64,
    /// Calls the tenant had seen when the key arrived.
    pub(crate) before_key: Value,
    /// Every call until the tenant went quiet.
    pub(crate) calls: Value,
}

/// Start a fresh daemon and ask for a key at once; count every call until the tenant is quiet.
pub(crate) async fn start_cost(emu: &Emulator) -> anyhow::Result<StartCost> {
    let start = emu.calls();
    let sb = Sandbox::new("scale", Some(emu))?;
    let t0 = Instant::now();
    let mut daemon = sb.start_daemon().await?;
    let result = async {
        let client = sb.connect_scanner().await?;
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

pub(crate) async fn bench_scale(c: &Counts, report: &mut Report) -> anyhow::Result<()> {
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
