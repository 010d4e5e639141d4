//! Running something as another local user (uid 65534), and proving it really ran as them.
//! A test that expects "another user is refused" passes for the wrong reason if `setpriv`
//! itself was refused or the program could not even start: so the child first writes `id -u`
//! to a file, and the test fails unless that file says 65534.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const NOBODY: u32 = 65534;

/// A directory uid 65534 can write to (its marker and whatever else it records).
pub fn nobody_dir(parent: &Path, name: &str) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// Let other users pass through `dir` (execute only: they can reach named entries, not list).
pub fn traversable(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
}

/// `argv` as uid/gid 65534 with no groups, plus the ambient capabilities in `caps` (e.g.
/// "dac_override"). The child writes its uid to `marker` before it execs `argv`.
pub fn as_nobody(caps: &[&str], marker: &Path, argv: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([
        &format!("--reuid={NOBODY}"),
        &format!("--regid={NOBODY}"),
        "--clear-groups",
    ]);
    for cap in caps {
        cmd.arg(format!("--inh-caps=+{cap}"))
            .arg(format!("--ambient-caps=+{cap}"));
    }
    cmd.args(["/bin/sh", "-c", "id -u > \"$0\" && exec \"$@\""])
        .arg(marker)
        .args(argv);
    cmd
}

/// Fail the test unless the child of [`as_nobody`] wrote 65534 to `marker`.
pub fn assert_ran_as_nobody(marker: &Path, what: &str) {
    let uid = std::fs::read_to_string(marker).unwrap_or_default();
    assert_eq!(
        uid.trim(),
        NOBODY.to_string(),
        "{what}: the child did not run as uid {NOBODY} (setpriv refused?), so the test would prove nothing"
    );
}

/// Run `argv` as uid 65534 to completion and check it really ran as that user.
pub fn run_as_nobody(caps: &[&str], scratch: &Path, argv: &[&str]) -> std::process::Output {
    let marker = scratch.join(format!("uid-{}", rand_suffix()));
    let _ = std::fs::remove_file(&marker);
    let out = as_nobody(caps, &marker, argv)
        .output()
        .expect("setpriv runs (util-linux)");
    assert_ran_as_nobody(
        &marker,
        &format!("{argv:?}: {}", String::from_utf8_lossy(&out.stderr)),
    );
    out
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
