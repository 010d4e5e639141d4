//! `scanmint status`: the status report, as text or JSON.

use super::*;

pub(crate) async fn status(profile: Option<String>, as_json: bool) -> anyhow::Result<i32> {
    let client = LspClient::connect_daemon("cli", profile.as_deref()).await?;
    let report = client
        .request(protocol::Status::METHOD, json!({ "profile": profile }))
        .await
        .map_err(rpc)?;
    client.close().await;
    let usable = match report["state"].as_str() {
        Some("ready" | "minting" | "rotating") => !report["baseUrl"].is_null(),
        Some("degraded") => report.get("key").is_some(),
        _ => false,
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if let Some(socket) = crate::serve::remote::forwarded_socket() {
            println!(
                "source   a forwarded workstation daemon (SCANMINT_SOCKET={}): credentials come from the workstation; the Primary key is not on this machine",
                socket.display()
            );
        }
        print!(
            "{}",
            render_status(
                &report,
                crate::domain::clock::Clock::now_ms(&crate::domain::clock::SystemClock)
            )
        );
    }
    Ok(if usable { 0 } else { 1 })
}

/// The human form of a StatusReport.
pub fn render_status(r: &Value, now_ms: i64) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    out.push_str(&format!("profile  {}\n", s(&r["profile"])));
    out.push_str(&format!(
        "tenant   {}\n",
        r["baseUrl"].as_str().unwrap_or("(not logged in)")
    ));
    out.push_str(&format!("state    {}\n", s(&r["state"])));
    out.push_str(&format!("storage  {}\n", s(&r["storage"])));
    match r.get("key") {
        Some(k) => {
            let expires = k["expiresAt"].as_i64().unwrap_or(0);
            let left = Duration::from_secs(((expires - now_ms).max(0) / 1000) as u64);
            out.push_str(&format!(
                "key      {} ({}), role {:?}, generation {}\n         expires {} (in {})\n",
                k["keyId"],
                s(&k["fingerprint"]),
                s(&k["role"]),
                k["generation"],
                format_utc(expires),
                humantime::format_duration(left)
            ));
        }
        None => out.push_str("key      none (minted on the next request)\n"),
    }
    if let Some(e) = r.get("lastError") {
        out.push_str(&format!(
            "error    {}: {}\n",
            s(&e["code"]),
            s(&e["message"])
        ));
    }
    if let Some(problem) = r.get("configProblem").and_then(|p| p.as_str()) {
        out.push_str(&format!("config   {problem}\n"));
    }
    out
}

pub fn format_utc(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}
