//! The LSP adapter: one `Session` per connection, all sharing one broker through the `Hub`.
//! `hub.rs` is the factory and fan-out, `session.rs` the connection and its method table,
//! `handlers/` one file per method or small group. Here: the imports they all share.
//!
//! Thin by design: it turns LSP requests into broker calls and broker events into
//! notifications. Status notifications go out from one task (the hub's fan-out) so every
//! session sees changes in the order they happened.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService, Server};

use crate::domain::broker::SecurityLevel;
use crate::domain::broker::health;
use crate::domain::broker::{
    Broker, BrokerError, Event, Lease, LoginRequest, ScanFailure, StatusError,
};
use crate::domain::secret::Secret;
use crate::serve::scan;

mod exec_session;
mod handlers;
mod hub;
mod init_options;
mod session;
mod stop;

pub use crate::serve::protocol::COMMANDS;
use crate::serve::protocol::{self, DidChangeStatus, Method};
pub use handlers::documents::{diagnostics_for, publish};
pub use hub::Hub;
use hub::*;
pub use session::Session;
use session::*;
pub use stop::StopReason;
