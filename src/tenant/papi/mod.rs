//! The tenant's Public API: wire shapes and a typed client.

mod client;
mod dialect;
mod error;
mod http;
mod listing;
mod replies;
mod time_unit;
pub mod wire;

pub use client::{Client, ClientOptions, MAX_BODY, RetryPolicy};
pub use dialect::{DeleteReplyShape, ListCasing, ObservedDialect, Paging, ValidateForm};
pub use error::{ErrorKind, PapiError};
pub use listing::{LIST_MAX_PAGES, LIST_PAGE, Listing};
pub use replies::{
    DeleteOutcome, decode_delete_reply, decode_generate_reply, decode_list_reply,
    decode_validate_reply,
};
pub use time_unit::TimeUnit;
