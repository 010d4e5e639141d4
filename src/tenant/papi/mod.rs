//! The tenant's Public API: wire shapes and a typed client.

mod client;
mod error;
pub mod wire;

pub use client::{
    Client, ClientOptions, MAX_BODY, RetryPolicy, decode_delete_reply, decode_generate_reply,
    decode_list_reply,
};
pub use error::{ErrorKind, PapiError};
