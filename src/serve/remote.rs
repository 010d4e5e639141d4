//! Remote development: the restricted socket a workstation forwards to a remote machine (ssh
//! `RemoteForward`, a dev container's mount), and its far side.
//!
//! The daemon side is one gate: every message of a session on the restricted socket passes
//! [`RemoteGate`], which lets through only the methods on [`ALLOWED`] (credentials, status,
//! scan failures, the LSP lifecycle, pure text diagnostics). Anything else, including every
//! `workspace/executeCommand` and any method added later, is refused here, so the Primary key
//! cannot be used, replaced or forgotten from a remote machine.
//!
//! The far side is [`forwarded_socket`]: when `SCANMINT_SOCKET` names a socket, clients use it
//! instead of the local daemon (none is started, no keychain is touched), after checking that
//! the socket is the user's own.

use std::future::Future;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio::net::UnixStream;
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Request, Response};
use tower_service::Service;

use crate::domain::broker::Broker;
use crate::domain::config;
use crate::platform;
use crate::serve::protocol::{self, Method};
use crate::serve::socket::PROTOCOL_VERSION;

/// The environment variable that points clients at a forwarded daemon.
pub const SOCKET_ENV: &str = "SCANMINT_SOCKET";

/// The error code of a refusal, in `data.code` (and the JSON-RPC code below).
pub const REFUSED_CODE: &str = "remote_refused";
const REFUSED_RPC: i64 = -32003;

/// What a session on the restricted socket may call. Everything else is refused.
pub const ALLOWED: &[&str] = &[
    "initialize",
    "initialized",
    "shutdown",
    "exit",
    "$/cancelRequest",
    protocol::Credentials::METHOD,
    protocol::Status::METHOD,
    protocol::ScanFailed::METHOD,
    // Diagnostics computed from the text the client sends, never from the workstation's disk
    // (`didClose` and workspace folders would read workstation files: refused).
    "textDocument/didOpen",
    "textDocument/didChange",
    "textDocument/codeAction",
];

/// Methods that name a profile: the profile must allow remote sessions.
const PROFILE_SCOPED: &[&str] = &[
    protocol::Credentials::METHOD,
    protocol::Status::METHOD,
    protocol::ScanFailed::METHOD,
];

/// The restricted socket, next to the daemon's own in the private runtime directory.
pub fn remote_socket_path() -> PathBuf {
    config::runtime_dir().join(format!("remote-v{PROTOCOL_VERSION}.sock"))
}

/// The refusal a remote session gets for `what`.
pub fn refusal(what: &str) -> Error {
    Error {
        code: ErrorCode::ServerError(REFUSED_RPC),
        message: format!(
            "{what} is not allowed over scanmint's remote socket: a forwarded workstation daemon only hands out short-lived keys and status. Run it on the workstation."
        )
        .into(),
        data: Some(json!({ "code": REFUSED_CODE })),
    }
}

type Reply = Result<Option<Response>, tower_lsp_server::ExitedError>;

/// Wraps a session's LSP service on the restricted socket: the allow-list, in one place.
pub struct RemoteGate<S> {
    inner: S,
    broker: Broker,
    /// The profile the session named in `initialize`, for requests that name none.
    profile: Arc<Mutex<Option<String>>>,
}

impl<S> RemoteGate<S> {
    pub fn new(inner: S, broker: Broker) -> Self {
        RemoteGate {
            inner,
            broker,
            profile: Arc::default(),
        }
    }

    /// Why `req` is refused, or `None` when it may pass.
    fn refused(&self, req: &Request) -> Option<Error> {
        let method = req.method();
        if method == "workspace/executeCommand" {
            let command = req
                .params()
                .and_then(|p| p.get("command"))
                .and_then(Value::as_str)
                .unwrap_or("a command");
            return Some(refusal(&format!("the command {command:?}")));
        }
        if !ALLOWED.contains(&method) {
            return Some(refusal(&format!("the method {method:?}")));
        }
        if PROFILE_SCOPED.contains(&method) {
            let asked = req
                .params()
                .and_then(|p| p.get("profile"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let own = self.profile.lock().unwrap().clone();
            let profile = self
                .broker
                .resolve_profile(asked.as_deref().or(own.as_deref()));
            if !self.broker.config().profile(Some(&profile)).remote_socket {
                return Some(refusal(&format!(
                    "the profile {profile:?} (its config says remote_socket = false)"
                )));
            }
        }
        None
    }
}

/// The remote's paths mean nothing on the workstation: no folder of it is scanned here.
fn without_folders(req: Request) -> Request {
    let (method, id, params) = req.into_parts();
    let mut builder = Request::build(method);
    if let Some(mut params) = params {
        if let Some(obj) = params.as_object_mut() {
            for field in ["workspaceFolders", "rootUri", "rootPath"] {
                obj.remove(field);
            }
        }
        builder = builder.params(params);
    }
    if let Some(id) = id {
        builder = builder.id(id);
    }
    builder.finish()
}

impl<S> Service<Request> for RemoteGate<S>
where
    S: Service<Request, Response = Option<Response>, Error = tower_lsp_server::ExitedError>,
    S::Future: Send + 'static,
{
    type Response = Option<Response>;
    type Error = tower_lsp_server::ExitedError;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if let Some(error) = self.refused(&req) {
            tracing::warn!(method = req.method(), "refused on the remote socket");
            let reply = req.id().cloned().map(|id| Response::from_error(id, error));
            // A notification has no reply: it is dropped.
            return Box::pin(async move { Ok(reply) });
        }
        let req = if req.method() == "initialize" {
            let profile = req
                .params()
                .and_then(|p| p.pointer("/initializationOptions/profile"))
                .and_then(Value::as_str)
                .map(str::to_string);
            *self.profile.lock().unwrap() = profile;
            without_folders(req)
        } else {
            req
        };
        Box::pin(self.inner.call(req))
    }
}

/// The socket `SCANMINT_SOCKET` names (a leading `~/` is the home directory), if set.
pub fn forwarded_socket() -> Option<PathBuf> {
    let value = std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty())?;
    Some(config::expand_home(Path::new(&value)))
}

/// The forwarded socket is ours: a socket owned by us, with no access for others, in a
/// directory that no one else can replace it in. Peer credentials across ssh are sshd's (our
/// uid), checked once connected.
pub fn check_forwarded(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let me = platform::euid();
    let meta = std::fs::symlink_metadata(path).with_context(|| {
        format!(
            "{SOCKET_ENV}={}: no socket there. Is the ssh connection with the RemoteForward open (see `scanmint remote ssh-config`)?",
            path.display()
        )
    })?;
    if !meta.file_type().is_socket() {
        bail!("{SOCKET_ENV}={}: not a socket", path.display());
    }
    if meta.uid() != me {
        bail!(
            "{SOCKET_ENV}={}: owned by uid {}, not you (uid {me}); refusing it. Remove it and reconnect.",
            path.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{SOCKET_ENV}={}: mode {mode:03o} lets others use it; want 600 (sshd's default StreamLocalBindMask 0177 gives that): chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    let dir = path.parent().unwrap_or(Path::new("/"));
    let dmeta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let dmode = dmeta.permissions().mode();
    let others_write = dmode & 0o022 != 0 && dmode & 0o1000 == 0;
    if (dmeta.uid() != me && dmeta.uid() != 0) || others_write {
        bail!(
            "{SOCKET_ENV}={}: its directory {} (owner uid {}, mode {:03o}) lets others replace the socket; put it in a directory of yours that only you can write",
            path.display(),
            dir.display(),
            dmeta.uid(),
            dmode & 0o7777
        );
    }
    Ok(())
}

/// Connect to the forwarded socket after checking it and its peer.
pub async fn connect_forwarded(path: &Path) -> anyhow::Result<UnixStream> {
    check_forwarded(path)?;
    let stream = UnixStream::connect(path).await.with_context(|| {
        format!(
            "cannot connect to the forwarded scanmint socket {SOCKET_ENV}={}",
            path.display()
        )
    })?;
    match platform::peer_uid(&stream) {
        Ok((uid, _)) if uid == platform::euid() => Ok(stream),
        Ok((uid, _)) => bail!(
            "{SOCKET_ENV}={}: served by uid {uid}, not you; refusing it",
            path.display()
        ),
        Err(e) => bail!(
            "{SOCKET_ENV}={}: cannot identify who serves it: {e}",
            path.display()
        ),
    }
}

/// The `ssh_config` block that forwards the restricted socket to `host`.
pub fn ssh_config(host: &str, remote_path: &str, local_socket: &Path) -> String {
    format!(
        "# Add to ~/.ssh/config on this workstation (scanmint remote ssh-config {host}).
# The Primary key stays here; the remote gets short-lived keys through the restricted socket.
Host {host}
    RemoteForward {remote_path} {local}
    # Replace a socket a dropped connection left behind on the remote.
    StreamLocalBindUnlink yes
    ExitOnForwardFailure yes
    # Needs `AcceptEnv SCANMINT_SOCKET` in the remote's sshd_config. Without it, add this line
    # to the remote's shell profile (~/.profile or ~/.bashrc) instead:
    #   export SCANMINT_SOCKET=\"{shell_path}\"
    SetEnv SCANMINT_SOCKET={env_path}
",
        local = local_socket.display(),
        shell_path = remote_path.replace("/home/%r", "$HOME"),
        env_path = remote_path.replace("/home/%r", "~"),
    )
}

/// Where the remote side's socket goes by default: in the remote user's home (only they can
/// create or replace files there). ssh expands `%r` to the remote user name; an absolute path
/// is needed because sshd does not resolve a relative one against the home directory.
pub const DEFAULT_REMOTE_PATH: &str = "/home/%r/.scanmint-remote.sock";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_config_names_the_forward_and_the_variable() {
        let text = ssh_config(
            "devbox",
            DEFAULT_REMOTE_PATH,
            Path::new("/run/user/1000/scanmint/remote-v1.sock"),
        );
        assert!(text.contains("Host devbox\n"));
        assert!(text.contains(
            "RemoteForward /home/%r/.scanmint-remote.sock /run/user/1000/scanmint/remote-v1.sock"
        ));
        assert!(text.contains("StreamLocalBindUnlink yes"));
        assert!(text.contains("SetEnv SCANMINT_SOCKET=~/.scanmint-remote.sock"));
        assert!(text.contains("export SCANMINT_SOCKET=\"$HOME/.scanmint-remote.sock\""));
    }
}
