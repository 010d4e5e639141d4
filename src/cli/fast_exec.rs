//! `scanmint exec`'s fast path, taken before any runtime exists: every scan pays its start-up,
//! and with a daemon running and a key cached, a launch needs only one blocking socket
//! conversation (initialize, `scanmint/credentials`) and the child. No runtime, no thread, no
//! signal handler: while the child runs, the forwarded signals are blocked and taken by
//! `sigtimedwait` (`platform::signals`). Exit 2 is answered on the same connection, as in `exec.rs`. When no daemon
//! answers, the caller takes the full path (`exec.rs`), which starts one; CI's ephemeral mode
//! never comes here.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use zeroize::{Zeroize, Zeroizing};

use crate::cli::Command;
use crate::cli::client::RpcError;
use crate::cli::exec::{
    ChildEnd, EXIT_PLATFORM_FAILURE, Handed, ask_params, scan_failed_params, scanner_command,
    strip_credential_flags, take_credentials,
};
use crate::domain::wipe::zeroize_strings;
use crate::platform::signals::BlockedSignals;
use crate::serve::framing::{Frame, consume_frame, split_frame};
use crate::serve::protocol::{self, Method};

/// `scanmint exec [--profile P] [--strip-credential-flags] [--no-ephemeral] [--] COMMAND...`
/// read from `argv` by hand, as clap would read it; `None` for anything else (other commands,
/// other flags, `--help`, a repeated flag), which clap then parses. Building clap's parser for
/// the whole command line costs a launch more than the rest of this path's CPU work.
pub fn exec_from_argv(argv: &[OsString]) -> Option<Command> {
    if argv.get(1)?.to_str()? != "exec" {
        return None;
    }
    let (mut profile, mut strip, mut no_ephemeral) = (None, false, false);
    let mut rest = argv[2..].iter();
    let command: Vec<OsString> = loop {
        let arg = rest.next()?;
        let Some(flag) = arg.to_str().filter(|a| a.starts_with('-')) else {
            // The first positional starts the command; everything after it belongs to it.
            break std::iter::once(arg).chain(rest).cloned().collect();
        };
        match flag {
            "--" => break rest.cloned().collect(),
            "--strip-credential-flags" if !strip => strip = true,
            "--no-ephemeral" if !no_ephemeral => no_ephemeral = true,
            "--profile" if profile.is_none() => {
                let value = rest.next()?.to_str()?;
                if value.starts_with('-') {
                    return None;
                }
                profile = Some(value.to_string());
            }
            _ => match flag.strip_prefix("--profile=") {
                Some(value) if profile.is_none() => profile = Some(value.to_string()),
                _ => return None,
            },
        }
    };
    if command.is_empty() {
        return None;
    }
    Some(Command::Exec {
        profile,
        strip_credential_flags: strip,
        ephemeral: false,
        no_ephemeral,
        ttl: None,
        command,
    })
}

/// Run `command` on the fast path if it is a daemon-mode `exec` and a daemon is running:
/// `Ok(Some(exit code))`. `Ok(None)`: not for this path (another command, ephemeral mode, a
/// `--ttl` to refuse, or no daemon yet); nothing was done, so the caller runs it in full.
pub fn try_exec(command: &Command) -> anyhow::Result<Option<i32>> {
    let Command::Exec {
        profile,
        strip_credential_flags: strip,
        ephemeral,
        no_ephemeral,
        ttl: None,
        command,
    } = command
    else {
        return Ok(None);
    };
    if crate::cli::ephemeral::wanted(*ephemeral, *no_ephemeral) {
        return Ok(None);
    }
    let Some((program, args)) = command.split_first() else {
        return Ok(None);
    };
    // A forwarded workstation daemon (remote machines) is the full path's business.
    if crate::serve::remote::forwarded_socket().is_some() {
        return Ok(None);
    }
    let Some(stream) = crate::serve::socket::connect_running()? else {
        return Ok(None);
    };
    let args = if *strip {
        strip_credential_flags(args)
    } else {
        args.to_vec()
    };
    let profile = profile.as_deref();
    // The session stays open while the child runs: that is what marks the key as in use.
    let mut session = Session::new(stream);
    // One write, one wait: the daemon answers a session's messages in order (tower-lsp holds
    // every request until `initialize` is answered), so the ask need not wait for the reply.
    let init_id = session.queue_request(
        "initialize",
        json!({
            "processId": std::process::id(),
            "capabilities": {},
            "initializationOptions": { "clientKind": "exec", "scannerOnly": true, "profile": profile },
        }),
    );
    session.notify("initialized", json!({}));
    let ask_id = session.queue_request(protocol::Credentials::METHOD, ask_params(profile, None));
    session.flush().map_err(|_| closed())?;
    let init = session.reply(init_id).map_err(anyhow::Error::new)?;
    // An older daemon is replaced after an upgrade: the full path knows how.
    let daemon = crate::serve::upgrade::version_of(&init).unwrap_or_default();
    if crate::serve::version::is_newer(&crate::serve::version::own(), &daemon) {
        return Ok(None);
    }
    let reply = match session.reply(ask_id) {
        // A server that took the ask before it was initialized: ask again, now that it is.
        Err(e) if e.code == NOT_INITIALIZED => {
            session.request(protocol::Credentials::METHOD, ask_params(profile, None))
        }
        other => other,
    };
    let first =
        take_credentials(reply.map_err(|e| anyhow::anyhow!("no key for the scanner: {e}"))?)?;
    let end = run_child(program, &args, &first)?;
    let mut code = end.code;
    if code == EXIT_PLATFORM_FAILURE && end.cancelled.is_none() {
        session.notify(
            protocol::ScanFailed::METHOD,
            scan_failed_params(first.key_id, code, profile),
        );
        match session.request(
            protocol::Credentials::METHOD,
            ask_params(profile, Some(first.key_id)),
        ) {
            Ok(reply) => {
                let fresh = take_credentials(reply)?;
                if fresh.key_id != first.key_id {
                    eprintln!(
                        "scanmint: the tenant rejected key {}; running again with new key {}",
                        first.key_id, fresh.key_id
                    );
                    code = run_child(program, &args, &fresh)?.code;
                }
            }
            Err(e) => eprintln!("scanmint: could not check the key after the scan failed: {e}"),
        }
    }
    // Closing the connection ends the session (and its lease); no shutdown handshake needed.
    drop(session);
    Ok(Some(code))
}

/// Run the scanner and wait for it, forwarding every signal in `FORWARDED` as it comes.
fn run_child(program: &OsString, args: &[OsString], creds: &Handed) -> anyhow::Result<ChildEnd> {
    let mut child = scanner_command(program, args, (&creds.base_url, creds.key_id, &creds.key))
        .spawn()
        .with_context(|| format!("cannot run {}", program.to_string_lossy()))?;
    // Blocked after the spawn, so the scanner starts with our mask as it was. A child that has
    // already ended is found by the first `try_wait`; one that ends later leaves a SIGCHLD.
    let Ok(signals) = BlockedSignals::block() else {
        eprintln!("scanmint: cannot forward signals to the scanner; waiting for it");
        let status = child.wait()?;
        return Ok(ChildEnd {
            code: exit_code(status),
            cancelled: None,
        });
    };
    let pid = child.id() as i32;
    let mut cancelled = None;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        // SIGCHLD (or, as a safety net, a second without any signal) means: look again.
        match signals.next(Duration::from_secs(1)) {
            None | Some(libc::SIGCHLD) => {}
            Some(signo) => {
                if signo == libc::SIGINT || signo == libc::SIGTERM {
                    cancelled.get_or_insert(signo);
                }
                crate::platform::kill(pid, signo);
            }
        }
    };
    Ok(ChildEnd {
        code: exit_code(status),
        cancelled,
    })
}

/// The exit code, or 128 + the signal that killed it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// JSON-RPC's "server not initialized".
const NOT_INITIALIZED: i64 = -32002;

/// A blocking LSP client for one short session: requests are answered in order, server
/// requests (progress, prompts) get `null`, notifications are skipped. Notifications wait in
/// `out` and leave with the next request, in one write.
struct Session {
    stream: UnixStream,
    /// Bytes read and not yet taken as frames: they carry the key, so they are wiped as each
    /// frame is taken and when the session ends (a `BufReader` would keep its own copy).
    inbox: Zeroizing<Vec<u8>>,
    out: Vec<u8>,
    next_id: i64,
    early: Vec<(i64, Result<Value, RpcError>)>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Replies never asked for again (an older daemon's answer to the ask) hold a key too.
        for (_, reply) in &mut self.early {
            if let Ok(value) = reply {
                zeroize_strings(value);
            }
        }
    }
}

impl Session {
    fn new(stream: UnixStream) -> Session {
        Session {
            stream,
            inbox: Zeroizing::new(Vec::with_capacity(16 << 10)),
            out: Vec::new(),
            next_id: 1,
            early: Vec::new(),
        }
    }

    /// The next framed message; `None` at end of stream. A frame the daemon's own guard would
    /// refuse (over 16 MiB, no usable length) is an error, not an allocation.
    fn next_frame(&mut self) -> std::io::Result<Option<Value>> {
        let mut chunk = Zeroizing::new([0u8; 8 << 10]);
        loop {
            match split_frame(&self.inbox) {
                Frame::Complete { header_len, len } => {
                    let parsed = serde_json::from_slice(&self.inbox[header_len..len]);
                    consume_frame(&mut self.inbox, len);
                    return parsed.map(Some).map_err(std::io::Error::other);
                }
                Frame::Incomplete => {
                    let n = (&self.stream).read(&mut chunk[..])?;
                    if n == 0 {
                        return Ok(None);
                    }
                    self.inbox.extend_from_slice(&chunk[..n]);
                    chunk[..n].zeroize();
                }
                Frame::HeaderTooLong | Frame::BadLength { .. } => {
                    return Err(std::io::Error::other(
                        "frame without a usable Content-Length",
                    ));
                }
            }
        }
    }

    fn queue(&mut self, msg: &Value) {
        let body = serde_json::to_vec(msg).unwrap_or_default();
        self.out
            .extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        self.out.extend_from_slice(&body);
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = (&self.stream).write_all(&self.out);
        self.out.clear();
        result
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.queue(&json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    fn request(&mut self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.queue_request(method, params);
        self.flush().map_err(|_| closed())?;
        self.reply(id)
    }

    /// Queue a request (it leaves with the next flush); its id.
    fn queue_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.queue(&json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        id
    }

    /// Wait for the reply to request `id`, answering server requests on the way. Replies to
    /// other requests of ours (a server may answer out of order) are kept for their turn.
    fn reply(&mut self, id: i64) -> Result<Value, RpcError> {
        if let Some(i) = self.early.iter().position(|(early, _)| *early == id) {
            return self.early.swap_remove(i).1;
        }
        loop {
            let msg = self.next_frame().ok().flatten().ok_or_else(closed)?;
            match (msg.get("method").is_some(), msg.get("id")) {
                (true, Some(server_id)) => {
                    let reply = json!({ "jsonrpc": "2.0", "id": server_id, "result": null });
                    self.queue(&reply);
                    self.flush().map_err(|_| closed())?;
                }
                (false, Some(reply_id)) => {
                    let result = match msg.get("error") {
                        Some(e) => Err(RpcError {
                            code: e["code"].as_i64().unwrap_or(0),
                            message: e["message"].as_str().unwrap_or("error").to_string(),
                            data: e.get("data").cloned(),
                        }),
                        None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
                    };
                    match reply_id.as_i64() {
                        Some(got) if got == id => return result,
                        Some(got) if got < self.next_id => self.early.push((got, result)),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
    }
}

fn closed() -> RpcError {
    RpcError {
        code: -32099,
        message: "the scanmint daemon closed the connection".into(),
        data: None,
    }
}

#[cfg(test)]
mod tests {
    use super::{Session, exec_from_argv};
    use crate::cli::Cli;
    use clap::Parser;
    use serde_json::json;

    #[test]
    fn argv_read_by_hand_is_what_clap_reads_or_left_to_clap() {
        let cases: &[&[&str]] = &[
            &["exec", "--", "true"],
            &["exec", "true", "--profile", "x"],
            &[
                "exec",
                "--profile",
                "work",
                "--",
                "cortex",
                "scan",
                "--api-key",
                "k",
            ],
            &[
                "exec",
                "--profile=work",
                "--strip-credential-flags",
                "cortex",
                "-v",
            ],
            &["exec", "--no-ephemeral", "--", "--weird-program"],
            &["exec", "--strip-credential-flags", "--", "a", "--", "b"],
            &["exec", "--", "sh", "-c", "exit 2"],
        ];
        for case in cases {
            let argv: Vec<std::ffi::OsString> = std::iter::once("scanmint")
                .chain(case.iter().copied())
                .map(Into::into)
                .collect();
            let by_hand = exec_from_argv(&argv).unwrap_or_else(|| panic!("{case:?}"));
            let by_clap = Cli::try_parse_from(&argv).unwrap().command;
            assert_eq!(format!("{by_hand:?}"), format!("{by_clap:?}"), "{case:?}");
        }
        // Everything else goes to clap: its errors, its help, the flags this path does not take.
        let declined: &[&[&str]] = &[
            &["status"],
            &["exec"],
            &["exec", "--"],
            &["exec", "--help"],
            &["exec", "--ephemeral", "--", "true"],
            &["exec", "--ttl", "5m", "--", "true"],
            &["exec", "--profile", "a", "--profile", "b", "--", "true"],
            &["exec", "--profile", "--", "true"],
            &["exec", "--profile"],
            &["exec", "-h"],
            &["exec", "--no-ephemeral", "--no-ephemeral", "--", "true"],
        ];
        for case in declined {
            let argv: Vec<std::ffi::OsString> = std::iter::once("scanmint")
                .chain(case.iter().copied())
                .map(Into::into)
                .collect();
            assert!(exec_from_argv(&argv).is_none(), "{case:?}");
        }
    }

    #[test]
    fn frames_are_taken_in_order_and_oversized_ones_refused() {
        use std::io::Write;
        let (ours, mut daemon) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut session = Session::new(ours);
        daemon
            .write_all(b"Content-Length: 2\r\n\r\n{}Content-Length: 8\r\n\r\n{\"a\": 1}")
            .unwrap();
        assert_eq!(session.next_frame().unwrap(), Some(json!({})));
        // The second frame came in the same read; taking the first left only it, in order.
        assert_eq!(session.inbox.len(), 29);
        assert_eq!(session.next_frame().unwrap(), Some(json!({ "a": 1 })));
        // Taken frames leave the buffer through `consume_frame`, which wipes them in place
        // (its own tests in serve/framing.rs).
        assert!(session.inbox.is_empty());
        daemon
            .write_all(b"Content-Length: 99999999999999999\r\n\r\n{}")
            .unwrap();
        assert!(session.next_frame().is_err());
        drop(daemon);
        let (ours, daemon) = std::os::unix::net::UnixStream::pair().unwrap();
        drop(daemon);
        assert_eq!(Session::new(ours).next_frame().unwrap(), None);
    }
}
