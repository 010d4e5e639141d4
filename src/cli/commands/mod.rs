//! The commands, one file each or a small group (login; status; remote; the scanner stand-in); here
//! the pieces they share and the one-line commands (logout, rotate, revoke).

use super::*;

mod login;
mod remote;
mod scanner;
mod status;
mod stop;

pub(crate) use login::*;
pub(crate) use remote::*;
pub(crate) use scanner::*;
pub use status::*;
pub(crate) use stop::*;

pub(crate) fn rpc(e: RpcError) -> anyhow::Error {
    anyhow::anyhow!(e.message)
}

pub(crate) async fn simple(command: &str, what: &str, args: Value) -> anyhow::Result<i32> {
    let profile = args["profile"].as_str().map(String::from);
    let client = LspClient::connect_daemon("cli", profile.as_deref()).await?;
    let result = with_spinner(what, client.command(command, Some(args)))
        .await
        .map_err(rpc)?;
    println!("{}", result["message"].as_str().unwrap_or_default());
    client.close().await;
    Ok(0)
}
