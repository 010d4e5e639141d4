//! Benchmark 4, `fanin`: many sessions asking for credentials at once on a daemon with no key.

use super::*;

pub(crate) struct Burst {
    pub(crate) latencies_ms: Vec<f64>,
    pub(crate) key_ids: Vec<i64>,
}

/// What the echo responder answers to `scanmint/credentials`: a reply of the daemon's shape and
/// size (a 128-character key), so both bursts carry frames of the same length.
static ECHO_CREDENTIALS: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    let key = "k".repeat(128);
    json!({ "profile": "default", "baseUrl": "http://127.0.0.1:40000", "keyId": 1001,
        "expiresAt": 1_800_000_000_000_i64, "generation": 1, "role": "Cortex CLI Read Only",
        "fingerprint": "sha256:0123456789abcdef", "key": key,
        "env": { "CORTEX_API_BASE_URL": "http://127.0.0.1:40000", "CORTEX_API_KEY_ID": "1001", "CORTEX_API_KEY": key } })
});

/// `sessions` sessions straight on `socket`, then `per_session` concurrent credentials each.
pub(crate) async fn burst(
    socket: &Path,
    sessions: usize,
    per_session: usize,
) -> anyhow::Result<Burst> {
    let mut connecting = tokio::task::JoinSet::new();
    for _ in 0..sessions {
        let socket = socket.to_path_buf();
        connecting.spawn(async move {
            let stream = UnixStream::connect(&socket).await?;
            let (read, write) = stream.into_split();
            let client = LspClient::over(read, write);
            step("initialize", client.initialize(SCANNER_OPTIONS.clone())).await?;
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
    };
    while let Some(r) = asking.join_next().await {
        let (dt, reply) = r??;
        out.latencies_ms.push(dt);
        out.key_ids.push(reply["keyId"].as_i64().unwrap_or(-1));
    }
    for client in clients {
        if let Ok(client) = Arc::try_unwrap(client) {
            client.close().await;
        }
    }
    Ok(out)
}

pub(crate) async fn bench_fanin(
    c: &Counts,
    cold_mint_p50: Option<f64>,
    report: &mut Report,
) -> anyhow::Result<()> {
    // The same burst against the echo responder first: what 1000 replies cost this client and
    // transport. It is the burst's floor, and the targets below are stated against it.
    let sb = Sandbox::new("fanin-echo", None)?;
    let socket = sb.path("run/echo.sock");
    let replies = json!({ "initialize": {"capabilities": {}}, "scanmint/credentials": ECHO_CREDENTIALS.clone(), "shutdown": null });
    let mut echo = start_echo(&sb, &socket, &replies).await?;
    let result = burst(&socket, c.sessions, c.per_session).await;
    let _ = echo.kill().await;
    let echo_burst = stats(&result?.latencies_ms);
    let mut row = Measurement::new("fanin.echo_burst", "ms");
    row.values = json!({ "latency": echo_burst.json() });
    row.note = "the same burst answered at once by the echo responder: the floor of client + transport for a burst".into();
    row.shown = format!("p50 {:.1} ms, p99 {:.1} ms", echo_burst.p50, echo_burst.p99);
    report.push(row);

    let emu = start_emulator(TENANT_LATENCY_MS).await?;
    let total = c.sessions * c.per_session;
    // (name, installation ran before, start-up reconcile answered, key cached)
    let variants = [
        ("first_start", false, false, false),
        ("cold", true, false, false),
        ("warm_no_key", false, true, false),
        ("cached", false, true, true),
    ];
    for (variant, ran_before, wait_reconcile, cached) in variants {
        let (mut lat, mut generates, mut distinct_ok, mut hwm) = (vec![], vec![], true, 0u64);
        for _ in 0..c.fanin_runs {
            let sb = Sandbox::new("fanin", Some(&emu))?;
            if ran_before {
                yesterday(&sb, &emu).await?;
            }
            let start = emu.calls();
            let mut daemon = sb.start_daemon().await?;
            let pid = daemon.id().map(|p| p as i32);
            let result = async {
                if wait_reconcile {
                    let quiet = Duration::from_millis(TENANT_LATENCY_MS + 30);
                    quiesce(&emu, &start, 1, quiet).await?;
                }
                if cached {
                    one_key(&sb).await?;
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
        if cached || variant == "first_start" {
            (row.target, row.note) = if cached {
                (
                    "diagnostic: the same burst, key already cached (0 generate)".into(),
                    "what 1000 replies cost the daemon with no mint and no lock wait".into(),
                )
            } else {
                ("diagnostic: a brand-new installation's first start (nothing known of the tenant)".into(),
                 "the first mint waits for the start-up listing to learn the tenant's unit and clock: one round trip more".into())
            };
            report.push(row);
            continue;
        }
        if let Some(cm) = cold_mint_p50 {
            let floor = cm + echo_burst.p99;
            row.baseline = json!({ "name": "cold mint p50 (mint.cold) + echo burst p99 (fanin.echo_burst)",
                "values": { "cold_mint_p50": r3(cm), "echo_burst_p99": r3(echo_burst.p99), "floor": r3(floor) } });
            row.ratio = Some(s.p99 / floor);
            row.met = Some(one_mint && s.p99 <= floor + 5.0);
            row.shown_baseline = format!("mint {cm:.1} + burst {:.1} ms", echo_burst.p99);
        }
        row.target = "1 generate; p99 ≤ cold mint + echo burst p99 + 5 ms".into();
        row.note = if wait_reconcile {
            "daemon up and its start-up reconcile answered before the burst".into()
        } else {
            "a morning: the installation ran before (yesterday's key gone), the burst starts as soon as the restarted daemon's socket answers (its start-up reconcile in flight)".into()
        };
        report.push(row);
    }

    emu.shutdown().await;
    Ok(())
}

/// The day before a cold start: a daemon of this installation learned the tenant and minted a
/// key, stopped, and the key is gone by morning (revoked here: an expired key reads the same).
async fn yesterday(sb: &Sandbox, emu: &Emulator) -> anyhow::Result<()> {
    let mut daemon = sb.start_daemon().await?;
    let result = one_key(sb).await;
    stop_child(&mut daemon).await;
    result?;
    for key in emu.live_keys().iter().filter(|k| !k.is_primary) {
        emu.revoke(key.id);
    }
    Ok(())
}

/// One scanner's ask for a key, as `scanmint exec` makes it.
async fn one_key(sb: &Sandbox) -> anyhow::Result<()> {
    let client = sb.connect_scanner().await?;
    let params = json!({ "minValidSecs": MIN_VALID_SECS });
    step(
        "credentials",
        client.request("scanmint/credentials", params),
    )
    .await?;
    client.close().await;
    Ok(())
}
