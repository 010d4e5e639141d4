//! scanmint: least-privilege, short-lived API keys for IDE security scanners.
//!
//! See `ARCHITECTURE.md` for how the modules fit together.

pub mod broker;
pub mod ci_job;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod demo;
pub mod doctor;
pub mod emulator;
pub mod ephemeral;
pub mod framing;
pub mod fsutil;
pub mod ledger;
pub mod lsp;
pub mod papi;
pub mod scan;
pub mod secret;
pub mod store;
pub mod watch;
