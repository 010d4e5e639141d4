//! scanmint: least-privilege, short-lived API keys for IDE security scanners.
//!
//! See `ARCHITECTURE.md` for how the modules fit together.

pub mod broker;
pub mod clock;
pub mod config;
pub mod emulator;
pub mod fsutil;
pub mod ledger;
pub mod papi;
pub mod scan;
pub mod secret;
pub mod store;
