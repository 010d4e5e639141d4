//! Benchmark 2, `launch`: `scanmint exec -- true` against plain `true` and other credential
//! helpers.

use super::*;

pub(crate) struct Timed {
    pub(crate) label: &'static str,
    pub(crate) cmd: std::process::Command,
    pub(crate) input: Option<&'static [u8]>,
    pub(crate) expect: Option<&'static str>,
    pub(crate) samples: Vec<f64>,
}

pub(crate) fn std_command(
    env: &[(String, String)],
    program: impl AsRef<OsStr>,
) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Wall time from spawn to exit, stdout captured, input (if any) on stdin.
pub(crate) fn run_timed(t: &mut Timed) -> anyhow::Result<()> {
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

pub(crate) async fn bench_launch(c: &Counts, report: &mut Report) -> anyhow::Result<()> {
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
            let client = sb.connect_scanner().await?;
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
