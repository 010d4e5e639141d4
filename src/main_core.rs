//! `scanmint-core`, the whole of scanmint: parse the command line, set up logging, run. Users
//! run `scanmint` (`main.rs`), which hands every command but a scan's launch over to this binary.

use clap::Parser;
use scanmint::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    init_logging(&cli.command);
    // Servers get two worker threads; one-shot commands (the proxy, exec, the CLI) start fastest
    // on one, and every scan pays their start-up.
    let runtime = match cli.command {
        Command::Daemon
        | Command::Lsp { standalone: true }
        | Command::Emulator(_)
        | Command::Demo => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build(),
        _ => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
    };
    let runtime = runtime.unwrap_or_else(|e| {
        eprintln!("scanmint: cannot start: {e}");
        std::process::exit(70);
    });
    let code = match runtime.block_on(scanmint::cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("scanmint: {e:#}");
            1
        }
    };
    // Don't wait for background tasks (a scheduler sleeping until the next rotation).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}

/// Logs go to stderr (or the daemon's log file), never stdout: in `lsp` and `daemon`, stdout
/// belongs to the protocol. The level comes from `SCANMINT_LOG` (error, warn, info, debug, trace).
fn init_logging(command: &Command) {
    let default = match command {
        Command::Daemon | Command::Emulator(_) => "info",
        _ => "warn",
    };
    use tracing_subscriber::prelude::*;
    let level = std::env::var("SCANMINT_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or_else(|| default.parse().expect("a valid default level"));
    // tower-lsp-server traces every message it reads and writes, and some carry a key (a
    // login, an exec session's credentials): its trace level never reaches a log.
    let lsp_level = if level == tracing::Level::TRACE {
        tracing::Level::DEBUG
    } else {
        level
    };
    let filter = tracing_subscriber::filter::Targets::new()
        .with_default(level)
        .with_target("tower_lsp_server", lsp_level);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(filter)
        .try_init();
}
