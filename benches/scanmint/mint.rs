//! Benchmark 3, `mint`: a cold mint against the emulator with injected latency, against the
//! same Public API round trips made directly.

use super::*;

/// generate + list by id, straight from this process: the round trips a mint cannot avoid.
pub(crate) async fn papi_round_trips(emu: &Emulator) -> anyhow::Result<f64> {
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

pub(crate) struct ColdMint {
    pub(crate) ms: f64,
    pub(crate) calls: Value,
    pub(crate) key_id: i64,
}

/// A fresh daemon, its start-up reconcile done, no key: time one `scanmint/credentials`.
pub(crate) async fn one_cold_mint(emu: &Emulator, tmpfs_state: bool) -> anyhow::Result<ColdMint> {
    let start = emu.calls();
    let mut sb = Sandbox::new("mint", Some(emu))?;
    if tmpfs_state {
        sb = sb.with_state_on_tmpfs()?;
    }
    let mut daemon = sb.start_daemon().await?;
    let result = async {
        let client = sb.connect_scanner().await?;
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
pub(crate) async fn bench_mint(c: &Counts, report: &mut Report) -> anyhow::Result<f64> {
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
