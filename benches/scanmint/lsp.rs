//! Benchmark 1, `lsp`: cached `scanmint/credentials` and `scanmint/status` through
//! `scanmint lsp`, against the echo responder reached the same way.

use super::*;

pub(crate) async fn bench_lsp(c: &Counts, report: &mut Report) -> anyhow::Result<()> {
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
