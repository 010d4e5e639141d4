//! The tenant's Public API: wire shapes and a typed client.

pub mod wire;
