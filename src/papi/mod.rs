//! The tenant's Public API: wire shapes and a typed client.

mod client;
mod error;
pub mod wire;

pub use client::{Client, ClientOptions, MAX_BODY, RetryPolicy};
pub use error::{ErrorKind, PapiError};
