//! Signal forwarding without a runtime, for `exec`'s fast path: the signals a terminal or an IDE
//! sends (and SIGCHLD) are blocked and taken synchronously with `sigtimedwait`, so waiting for
//! the scanner and forwarding to it costs no thread, no handler and no event loop. They are
//! blocked only once the child runs, and unblocked before another starts: a child inherits its
//! parent's mask (`Command` does not reset it), and a scanner must stay interruptible.

use std::io;
use std::time::Duration;

/// Forwarded to the scanner: what a terminal (^C, ^\, hang-up), `kill` or an IDE sends.
pub const FORWARDED: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The forwarded signals and SIGCHLD, blocked in this (single-threaded) process for as long as
/// the value lives; dropping it restores the mask from before.
pub struct BlockedSignals {
    set: libc::sigset_t,
    before: libc::sigset_t,
}

impl BlockedSignals {
    /// Block the forwarded signals and SIGCHLD. SIGCHLD gets its default disposition first: an
    /// inherited SIG_IGN would have the kernel reap the child before we can read its status.
    pub fn block() -> io::Result<BlockedSignals> {
        // SAFETY: sigset_t is plain data, initialised by sigemptyset before any other use; the
        // calls only change this thread's mask and SIGCHLD's disposition.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for signo in FORWARDED.iter().chain(&[libc::SIGCHLD]) {
                libc::sigaddset(&mut set, *signo);
            }
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut before);
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            Ok(BlockedSignals { set, before })
        }
    }

    /// The next blocked signal to arrive within `timeout` (`Duration::ZERO`: only one already
    /// pending), or `None`.
    pub fn next(&self, timeout: Duration) -> Option<i32> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `set` was initialised in `block`; a null siginfo pointer is allowed.
        let signo = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        (signo > 0).then_some(signo)
    }
}

impl Drop for BlockedSignals {
    /// A signal that came after the child ended and is still pending is delivered now, with its
    /// default action (a ^C while the key is re-checked ends scanmint, as it would have before).
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `block`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.before, std::ptr::null_mut()) };
    }
}
