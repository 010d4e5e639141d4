//! scanmint: least-privilege, short-lived API keys for IDE security scanners.
//!
//! See `ARCHITECTURE.md` for how the modules fit together.

pub mod emulator;
pub mod fsutil;
pub mod papi;
pub mod secret;
