//! The core: the key lifecycle and its vocabulary. It knows nothing of LSP, sockets or HTTP.

pub mod broker;
pub mod ci_job;
pub mod clock;
pub mod config;
pub mod ledger;
pub mod secret;
pub mod store;
pub mod wipe;
