//! scanmint: least-privilege, short-lived API keys for IDE security scanners.
//!
//! See `ARCHITECTURE.md` for how the modules fit together. The modules are layers, listed
//! bottom up; each imports only from the layers listed before it:
//!
//! platform -> domain -> tenant -> serve -> cli -> (main.rs)

// Linux-specific code: euid, flock, peer credentials, private files.
pub mod platform;

// The key lifecycle: broker, ledger, store, config, secret, clock. No LSP, sockets or HTTP.
pub mod domain;

// The tenant's Public API client, its adapter to the domain, and the emulator.
pub mod tenant;

// The daemon, its socket, LSP sessions and handlers, watching and scanning.
pub mod serve;

// The command line: commands, exec delivery, doctor, demo.
pub mod cli;
