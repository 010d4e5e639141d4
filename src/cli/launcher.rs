//! The launcher (`scanmint`, `main.rs`): a scan's launch against a running daemon is served here
//! (`fast_exec`); every other command, and a launch the fast path declines, is handed to
//! `scanmint-core` next to this binary by `exec` (same process, arguments and exit code). Only
//! what the fast path uses is linked into it, so every scan pays a 0.6 MiB start-up rather than
//! the whole daemon's.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use crate::cli::fast_exec;

/// The binary that holds every command, installed next to `scanmint`.
pub const CORE: &str = "scanmint-core";
/// The launcher's own name.
pub const LAUNCHER: &str = "scanmint";

/// Serve the launch or hand over to `scanmint-core`; the exit code.
pub fn run() -> i32 {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if let Some(command) = fast_exec::exec_from_argv(&argv) {
        match fast_exec::try_exec(&command) {
            Ok(Some(code)) => return code,
            Ok(None) => {}
            Err(e) => {
                eprintln!("scanmint: {e:#}");
                return 1;
            }
        }
    }
    let core = match core_path() {
        Ok(core) => core,
        Err(e) => {
            eprintln!("scanmint: cannot find its own binary: {e}");
            return 127;
        }
    };
    let mut command = std::process::Command::new(&core);
    if let Some(name) = argv.first() {
        command.arg0(name);
    }
    let e = command.args(argv.iter().skip(1)).exec();
    eprintln!(
        "scanmint: cannot run {}: {e} ({CORE} belongs next to {LAUNCHER}: reinstall both)",
        core.display()
    );
    127
}

/// `scanmint-core` next to the running binary (symbolic links resolved).
pub fn core_path() -> std::io::Result<PathBuf> {
    Ok(std::env::current_exe()?.with_file_name(CORE))
}

/// What scripts and the demo should run: the launcher next to the running binary, or the
/// running binary itself when it stands alone.
pub fn launcher_path() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let launcher = exe.with_file_name(LAUNCHER);
    Ok(if launcher.is_file() { launcher } else { exe })
}
