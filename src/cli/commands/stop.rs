//! `scanmint stop`: end the daemon gracefully. Keys stay cached in the store and the ledger is
//! saved; the next command or editor starts a fresh daemon, which restores them without minting.

pub(crate) async fn stop() -> anyhow::Result<i32> {
    match crate::serve::upgrade::stop_running("stop").await? {
        None => println!("no scanmint daemon is running"),
        Some((pid, version)) => {
            let what: Vec<String> = pid
                .map(|p| format!("pid {p}"))
                .into_iter()
                .chain(version.map(|v| format!("version {v}")))
                .collect();
            let what = if what.is_empty() {
                String::new()
            } else {
                format!(" ({})", what.join(", "))
            };
            println!(
                "stopped the scanmint daemon{what}; keys stay cached, and the next command starts a fresh one"
            )
        }
    }
    Ok(0)
}
