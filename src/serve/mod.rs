//! The serving side: the daemon, its socket, the LSP sessions and what they watch and scan.

pub mod config_watch;
pub mod cortex_env;
pub mod daemon;
pub mod framing;
pub mod lsp;
pub mod protocol;
pub mod proxy;
pub mod remote;
pub mod scan;
pub mod socket;
pub mod state_lock;
pub mod upgrade;
pub mod version;
pub mod watch;
