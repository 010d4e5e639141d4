//! The serving side: the daemon, its socket, the LSP sessions and what they watch and scan.

pub mod daemon;
pub mod framing;
pub mod lsp;
pub mod scan;
pub mod watch;
