//! `scanmint doctor`: asks the daemon to run the checks (`domain::broker::health`), renders
//! them, and turns them into the exit code.

use super::*;

pub(crate) async fn doctor(profile: Option<String>, as_json: bool) -> anyhow::Result<i32> {
    let client = LspClient::connect_daemon("cli", profile.as_deref()).await?;
    let report = with_spinner(
        "checking",
        client.command(
            protocol::Doctor::METHOD,
            Some(json!({ "profile": profile })),
        ),
    )
    .await
    .map_err(rpc)?;
    client.close().await;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for check in report["checks"].as_array().into_iter().flatten() {
            let status = check["status"].as_str().unwrap_or("?");
            println!(
                "{:<5} {:<12} {}",
                status.to_uppercase(),
                check["name"].as_str().unwrap_or(""),
                check["detail"].as_str().unwrap_or("")
            );
            if let Some(fix) = check["fix"].as_str() {
                println!("      {:<12} fix: {fix}", "");
            }
        }
    }
    Ok(if report["ok"].as_bool() == Some(true) {
        0
    } else {
        1
    })
}
