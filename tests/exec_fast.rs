//! `scanmint exec`'s fast path (a daemon already running): the scanner gets exactly its
//! variables and an unblocked signal mask, signals still reach it, and without a daemon the
//! full path still starts one. The exit-2 re-mint on the fast path is in tests/cli.rs
//! (`exit_2_with_a_revoked_key_remints_and_runs_once_more`: its later runs find the daemon up).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Env, eventually};

/// A signal mask of `/proc/PID/status` (`SigBlk`: blocked, `SigCgt`: caught) as a number.
fn sig_mask(name: &str, status: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {name} in {status}"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

fn bit(signo: i32) -> u64 {
    1 << (signo - 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_hands_the_scanner_exactly_its_variables_and_an_empty_signal_mask() {
    let env = Env::new().await;
    // The first run starts the daemon (the full path); the second finds it running.
    let (code, _, err) = env.run(&["exec", "--", "true"]).await;
    assert_eq!(code, 0, "{err}");
    let out = env.path("scanner.env");
    let script = format!(
        "env > '{o}.env'; cat /proc/$PPID/status > '{o}.parent'",
        o = out.display()
    );
    let result = env
        .cmd(&["exec", "--", "sh", "-c", &script])
        .env("CORTEX_API_KEY_OLD", "someone-elses-key")
        .env("CORTEX_API_KEY", "a-stale-key")
        .env("SCANMINT_SOME_FUTURE_SECRET", "hidden")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(
        result.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let read = |ext: &str| std::fs::read_to_string(format!("{}.{ext}", out.display())).unwrap();
    let scanner_env = read("env");
    let key_id = env.minted_live()[0];
    let mut cortex: Vec<&str> = scanner_env
        .lines()
        .filter(|l| l.starts_with("CORTEX_"))
        .map(|l| l.split('=').next().unwrap())
        .collect();
    cortex.sort();
    assert_eq!(
        cortex,
        ["CORTEX_API_BASE_URL", "CORTEX_API_KEY", "CORTEX_API_KEY_ID"],
        "{scanner_env}"
    );
    assert!(scanner_env.contains(&format!("CORTEX_API_KEY_ID={key_id}\n")));
    assert!(!scanner_env.contains("a-stale-key") && !scanner_env.contains("someone-elses"));
    for hidden in [
        "SCANMINT_PRIMARY_KEY=",
        "SCANMINT_PRIMARY_KEY_ID=",
        "SCANMINT_SOME_FUTURE_SECRET",
    ] {
        assert!(
            !scanner_env.contains(hidden),
            "{hidden} reached the scanner"
        );
    }
    assert!(
        scanner_env.contains("SCANMINT_LOG=debug"),
        "allowed ones pass"
    );
    // The parent is the fast path: one thread and no signal handler (a runtime installs one
    // for each forwarded signal and SIGCHLD); it takes them blocked, with `sigtimedwait`...
    let parent = read("parent");
    assert!(parent.contains("Threads:\t1\n"), "{parent}");
    let forwarded = bit(libc::SIGINT) | bit(libc::SIGTERM) | bit(libc::SIGHUP) | bit(libc::SIGCHLD);
    assert_eq!(sig_mask("SigCgt", &parent) & forwarded, 0, "{parent}");
    // ...and the scanner inherits none of that mask (or it could not be interrupted): `cat` is
    // the scanner itself here (a shell would reset its mask before we could look).
    let (code, status, err) = env.run(&["exec", "--", "cat", "/proc/self/status"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(sig_mask("SigBlk", &status), 0, "{status}");
    let (code, _, _) = env.run(&["exec", "--", "sh", "-c", "kill -TERM $$"]).await;
    assert_eq!(code, 128 + 15, "a scanner can be killed by SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_path_forwards_signals_and_passes_the_exit_code() {
    let env = Env::new().await;
    let (code, _, err) = env.run(&["exec", "--", "true"]).await;
    assert_eq!(code, 0, "{err}");
    let marks = env.path("marks");
    let script = format!(
        "trap 'echo hup >> {m}' HUP; trap 'echo usr1 >> {m}' USR1; trap 'echo int >> {m}; exit 7' INT; \
         echo ready >> {m}; while :; do sleep 0.05; done",
        m = marks.display()
    );
    let child = env
        .cmd(&["exec", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap() as i32;
    let read = || std::fs::read_to_string(&marks).unwrap_or_default();
    assert!(eventually(10, || read().contains("ready")).await);
    for (signo, mark) in [(libc::SIGHUP, "hup"), (libc::SIGUSR1, "usr1")] {
        unsafe { libc::kill(pid, signo) };
        assert!(
            eventually(5, || read().contains(mark)).await,
            "{mark}: {}",
            read()
        );
    }
    unsafe { libc::kill(pid, libc::SIGINT) };
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(read().contains("int"), "{}", read());
    assert_eq!(
        out.status.code(),
        Some(7),
        "the scanner's exit code came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_daemon_exec_starts_one_and_later_runs_reuse_it() {
    let env = Env::new().await;
    assert!(env.daemon_pid().await.is_none());
    let (code, out, err) = env
        .run(&["exec", "--", "sh", "-c", "echo id=$CORTEX_API_KEY_ID"])
        .await;
    assert_eq!(code, 0, "{err}");
    let daemon = env.daemon_pid().await.expect("exec started the daemon");
    let key = env.minted_live()[0];
    assert_eq!(out.trim(), format!("id={key}"));
    let (code, out, _) = env
        .run(&["exec", "--", "sh", "-c", "echo id=$CORTEX_API_KEY_ID"])
        .await;
    assert_eq!((code, out.trim()), (0, format!("id={key}").as_str()));
    assert_eq!(env.daemon_pid().await, Some(daemon), "the same daemon");
    assert_eq!(env.emulator.calls().generate, 1, "one key for both runs");
}

/// Frames read from a blocking socket until the replies to every id in `ids` are in.
fn replies(stream: &mut std::os::unix::net::UnixStream, ids: &[i64]) -> Vec<serde_json::Value> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut out: Vec<serde_json::Value> = Vec::new();
    let mut chunk = [0u8; 4096];
    while !ids.iter().all(|id| out.iter().any(|m| m["id"] == *id)) {
        let n = stream.read(&mut chunk).expect("a reply before the timeout");
        assert!(n > 0, "the daemon closed the session; got {out:?}");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let header = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = header
                .trim_start_matches("Content-Length: ")
                .parse()
                .unwrap();
            if buf.len() < end + 4 + len {
                break;
            }
            out.push(serde_json::from_slice(&buf[end + 4..end + 4 + len]).unwrap());
            buf.drain(..end + 4 + len);
        }
    }
    out
}

fn frame(msg: serde_json::Value) -> Vec<u8> {
    let body = msg.to_string();
    format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanner_session_takes_its_ask_right_behind_initialize_in_one_write() {
    use serde_json::json;
    use std::io::Write;
    let env = Env::new().await;
    let (code, _, err) = env.run(&["exec", "--", "true"]).await;
    assert_eq!(code, 0, "{err}");
    let key = env.minted_live()[0];
    let socket = env.socket();
    let got = tokio::task::spawn_blocking(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut bytes = frame(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": { "capabilities": {}, "initializationOptions": { "clientKind": "exec", "scannerOnly": true } } }));
        bytes.extend(frame(
            json!({ "jsonrpc": "2.0", "method": "initialized", "params": {} }),
        ));
        bytes.extend(frame(json!({ "jsonrpc": "2.0", "id": 2, "method": "scanmint/credentials",
            "params": { "minValidSecs": 60 } })));
        bytes.extend(frame(json!({ "jsonrpc": "2.0", "id": 3, "method": "textDocument/hover",
            "params": {} })));
        bytes.extend(frame(json!({ "jsonrpc": "2.0", "id": 4, "method": "scanmint/credentials",
            "params": { "minValidSecs": "soon" } })));
        stream.write_all(&bytes).unwrap();
        let got = replies(&mut stream, &[1, 2, 3, 4]);
        // A frame over the 16 MiB limit ends this session, and only it.
        stream
            .write_all(b"Content-Length: 99999999\r\n\r\n{")
            .unwrap();
        let mut rest = Vec::new();
        use std::io::Read;
        let closed = stream.read_to_end(&mut rest).is_ok();
        (got, closed, rest)
    })
    .await
    .unwrap();
    let (got, closed, rest) = got;
    assert!(closed && rest.is_empty(), "closed without a word: {rest:?}");
    let (code, _, err) = env.run(&["exec", "--", "true"]).await;
    assert_eq!(code, 0, "the daemon serves the next scanner: {err}");
    let reply = |id: i64| got.iter().find(|m| m["id"] == id).unwrap();
    assert_eq!(
        reply(1)["result"]["serverInfo"]["version"],
        env!("CARGO_PKG_VERSION"),
        "{got:?}"
    );
    assert_eq!(reply(2)["result"]["keyId"], key, "{got:?}");
    assert_eq!(
        reply(2)["result"]["env"]["CORTEX_API_KEY_ID"],
        key.to_string()
    );
    assert_eq!(
        reply(3)["error"]["code"],
        -32601,
        "method not found: {got:?}"
    );
    assert_eq!(reply(4)["error"]["code"], -32602, "invalid params: {got:?}");
    assert_eq!(env.emulator.calls().generate, 1, "the cached key");
}

#[tokio::test]
async fn the_launcher_alone_says_where_its_core_belongs() {
    let env = Env::new().await;
    let lone = env.path("lone/scanmint");
    std::fs::create_dir_all(lone.parent().unwrap()).unwrap();
    std::fs::copy(common::BIN, &lone).unwrap();
    let out = tokio::process::Command::new(&lone)
        .arg("--version")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(
        err.contains(&format!("cannot run {}-core", lone.display()))
            && err.contains("reinstall both"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

/// A brand-new installation's first scan: the daemon's start-up listing learns the tenant's
/// clock and unit, and the scan's mint waits for it instead of reading the same record itself,
/// however early the ask arrives. 1 generate + 2 listings (start-up, verification), every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_scan_right_at_daemon_start_costs_one_listing_of_its_own() {
    let mut starts = Vec::new();
    for _ in 0..4 {
        starts.push(tokio::spawn(async {
            let env = Env::new().await;
            let (code, _, err) = env.run(&["exec", "--", "true"]).await;
            assert_eq!(code, 0, "{err}");
            let calls = env.emulator.calls();
            (calls.generate, calls.list)
        }));
    }
    for start in starts {
        assert_eq!(
            start.await.unwrap(),
            (1, 2),
            "(generate, list) before the key"
        );
    }
}
