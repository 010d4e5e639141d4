//! `scanmint remote ssh-config HOST`: the ssh_config block that forwards the daemon's restricted
//! socket to a remote machine, so scans there get short-lived keys while the Primary key stays
//! here (docs/remote.md).

use super::*;

#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// Print the ssh_config block for HOST: RemoteForward of the restricted socket,
    /// StreamLocalBindUnlink, and SCANMINT_SOCKET for the remote side.
    SshConfig {
        host: String,
        /// Where the socket appears on the remote (absolute; ssh expands %r to the remote user).
        #[arg(long, default_value = crate::serve::remote::DEFAULT_REMOTE_PATH)]
        remote_path: String,
    },
}

pub(crate) fn remote(command: RemoteCommand) -> anyhow::Result<i32> {
    match command {
        RemoteCommand::SshConfig { host, remote_path } => {
            if !remote_path.starts_with('/') {
                bail!(
                    "--remote-path {remote_path:?} must be absolute: sshd does not resolve a relative socket path against the home directory"
                );
            }
            let config = crate::domain::config::Config::load()?;
            if !config.remote_socket {
                eprintln!(
                    "scanmint: note: {} says remote_socket = false, so the daemon does not listen on the restricted socket",
                    config.path.display()
                );
            }
            print!(
                "{}",
                crate::serve::remote::ssh_config(
                    &host,
                    &remote_path,
                    &crate::serve::remote::remote_socket_path()
                )
            );
            Ok(0)
        }
    }
}
