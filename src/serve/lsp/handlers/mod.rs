//! One file per LSP method or small group (ruff's layout): each adds the methods it handles to
//! `Session`, and `session.rs` routes to them.

use super::*;

pub mod code_action;
pub mod commands;
pub mod credentials;
pub mod documents;
pub mod initialize;
pub mod scan_failed;
pub mod status;
pub mod workspace;

pub(crate) use documents::*;
