//! The custom LSP methods, notification and commands of docs/protocol.md, one type each with its
//! method name, so that the server registers and the client calls them through the same name
//! and a typo is a compile error, not a `MethodNotFound`.

use serde_json::Value;
use tower_lsp_server::ls_types::notification::Notification;

/// A custom request or command: its name on the wire.
pub trait Method {
    const METHOD: &'static str;
}

/// `scanmint/status`: the status snapshot of a profile.
pub enum Status {}
impl Method for Status {
    const METHOD: &'static str = "scanmint/status";
}

/// `scanmint/credentials`: a key for a scanner (exec sessions, or an editor that opted in).
pub enum Credentials {}
impl Method for Credentials {
    const METHOD: &'static str = "scanmint/credentials";
}

/// `scanmint/scanFailed`: a scanner reports that its key failed.
pub enum ScanFailed {}
impl Method for ScanFailed {
    const METHOD: &'static str = "scanmint/scanFailed";
}

/// `scanmint/stop`: the daemon ends gracefully (`scanmint stop`, or a newer client replacing it).
pub enum Stop {}
impl Method for Stop {
    const METHOD: &'static str = "scanmint/stop";
}

/// `scanmint/didStop`: the server's last notification to every session before the daemon exits.
pub enum DidStop {}
impl Notification for DidStop {
    type Params = Value;
    const METHOD: &'static str = "scanmint/didStop";
}

/// `scanmint/didChangeStatus`: the server's notification when a profile's status changes.
pub enum DidChangeStatus {}
impl Notification for DidChangeStatus {
    type Params = Value;
    const METHOD: &'static str = "scanmint/didChangeStatus";
}

/// `workspace/executeCommand` commands.
pub enum Login {}
impl Method for Login {
    const METHOD: &'static str = "scanmint.login";
}

pub enum Logout {}
impl Method for Logout {
    const METHOD: &'static str = "scanmint.logout";
}

pub enum Rotate {}
impl Method for Rotate {
    const METHOD: &'static str = "scanmint.rotate";
}

pub enum Revoke {}
impl Method for Revoke {
    const METHOD: &'static str = "scanmint.revoke";
}

pub enum Doctor {}
impl Method for Doctor {
    const METHOD: &'static str = "scanmint.doctor";
}

/// Every command, as the server advertises them.
pub const COMMANDS: [&str; 5] = [
    Login::METHOD,
    Logout::METHOD,
    Rotate::METHOD,
    Revoke::METHOD,
    Doctor::METHOD,
];
