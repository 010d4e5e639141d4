//! `scanmint login`: ask for the Primary key (never on the command line) and hand it to the
//! daemon, which checks it can mint before storing it.

use super::*;

pub(crate) fn prompt(label: &str) -> anyhow::Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("{label} is missing: pass it as a flag (stdin is reserved for the secret)");
    }
    eprint!("{label}: ");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// The secret from a hidden prompt, or from stdin when it is not a terminal.
pub(crate) fn read_secret() -> anyhow::Result<Secret> {
    let raw = if std::io::stdin().is_terminal() {
        zeroize::Zeroizing::new(rpassword::prompt_password("Primary key secret (hidden): ")?)
    } else {
        let mut buf = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut buf)
            .context("cannot read the secret from stdin")?;
        buf
    };
    let secret = Secret::new(raw.trim());
    if secret.is_empty() {
        bail!("no secret given");
    }
    Ok(secret)
}

pub(crate) async fn login(
    profile: Option<String>,
    base_url: Option<String>,
    key_id: Option<i64>,
    level: SecurityLevel,
) -> anyhow::Result<i32> {
    // Refused before the prompt: a Primary key is never typed on a remote machine.
    if let Some(socket) = crate::serve::remote::forwarded_socket() {
        bail!(
            "scanmint login is not available here: SCANMINT_SOCKET={} points at a forwarded workstation daemon, and the Primary key stays on the workstation. Log in there.",
            socket.display()
        );
    }
    let config = crate::domain::config::Config::load()?;
    let base_url = match base_url.or(config.profile(profile.as_deref()).base_url) {
        Some(url) => url,
        None => prompt("Tenant API URL (e.g. https://api-acme.xdr.us.paloaltonetworks.com)")?,
    };
    let key_id = match key_id {
        Some(id) => id,
        None => prompt("Primary key id")?
            .parse()
            .context("the key id is an integer")?,
    };
    let key = read_secret()?;
    let client = LspClient::connect_daemon("cli", profile.as_deref()).await?;
    let args = json!({
        "baseUrl": base_url,
        "keyId": key_id,
        "key": key.expose(),
        "securityLevel": level.as_str(),
        "profile": profile,
    });
    let result = with_spinner(
        "checking the key against the tenant",
        client.command(protocol::Login::METHOD, Some(args)),
    )
    .await;
    client.close().await;
    let result = result.map_err(rpc)?;
    println!(
        "Logged in: the Primary key is kept in the {} store.",
        result["storage"].as_str().unwrap_or("?")
    );
    for note in result["notes"].as_array().into_iter().flatten() {
        println!("note: {}", note.as_str().unwrap_or_default());
    }
    Ok(0)
}
