//! The tenant side: the Public API client and the emulator that stands in for a tenant.

pub mod connector;
pub mod emulator;
pub mod papi;
