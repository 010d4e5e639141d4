//! Linux-specific code behind one module, and the crate's only `unsafe`: the effective uid, file
//! locks, the umask, detaching a child's session, signals, the peer of a Unix socket, the host
//! name, and (in `fs.rs`) private directories and files. A port to macOS or Windows is this
//! module's work; `docs/porting.md` says what each needs.

pub mod fs;
pub mod signals;

use std::io;

/// The current effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Take an exclusive, non-blocking `flock` on `file`; `false` when another process holds it.
/// The lock lasts as long as the file stays open.
#[cfg(unix)]
pub fn try_lock_exclusive(file: &std::fs::File) -> bool {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor we own; no memory is involved.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    rc == 0
}

/// From now on, everything this process creates is private (umask 077).
#[cfg(unix)]
pub fn private_umask() {
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o077) };
}

/// Start `cmd` in a session of its own, so closing the launching terminal does not kill it.
#[cfg(unix)]
pub fn detach_session(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; it detaches the child from the parent's session.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

/// Send signal `signo` to process `pid` (our own child).
#[cfg(unix)]
pub fn kill(pid: i32, signo: i32) {
    // SAFETY: sending a signal has no memory effects; the caller names its own child.
    unsafe { libc::kill(pid, signo) };
}

/// Whether process `pid` still runs: it exists and is not a zombie (a daemon started by a
/// process that is still alive stays a zombie after it exits, until that process ends).
pub fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The uid (and pid) of the process at the other end of a Unix socket (`SO_PEERCRED` on Linux),
/// for the daemon's tokio streams and the blocking stream of `exec`'s fast path alike.
#[cfg(target_os = "linux")]
pub fn peer_uid(stream: &impl std::os::unix::io::AsRawFd) -> io::Result<(u32, Option<i32>)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred we own.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.uid, (cred.pid > 0).then_some(cred.pid)))
}

/// This machine's name, from `/proc` (Linux), or `None`.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
}
