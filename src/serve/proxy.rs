//! `scanmint lsp`, the command editors launch: join the daemon (starting it if needed) and pipe
//! bytes until the editor closes stdin; and `scanmint lsp --standalone`, the same server
//! in-process on stdio.

use std::time::Duration;

use crate::serve::config_watch::ConfigWatch;
use crate::serve::cortex_env::CortexEnvWriter;
use crate::serve::daemon::build_broker;
use crate::serve::lsp::Hub;
use crate::serve::state_lock::take_state_lock;
use crate::serve::upgrade::connect_current;

/// `scanmint lsp --standalone`: the same server on stdio, in this process.
pub async fn run_standalone() -> anyhow::Result<()> {
    // A second broker on the daemon's ledger would overwrite its writes: refuse instead.
    let _state_lock = take_state_lock(
        "use `scanmint lsp` without --standalone to join the daemon, or stop it first",
    )?;
    let broker = build_broker()?;
    let hub = Hub::start(broker.clone());
    let _config_watch = ConfigWatch::start(hub.clone());
    tokio::spawn(broker.run());
    CortexEnvWriter::start(broker.clone());
    hub.serve(tokio::io::stdin(), tokio::io::stdout()).await;
    broker.shutdown().await;
    Ok(())
}

/// `scanmint lsp`: pipe stdio to the daemon until the editor closes stdin.
pub async fn run_proxy() -> anyhow::Result<()> {
    // A daemon older than this binary is replaced first (an upgrade must not leave old code
    // serving).
    let stream = connect_current().await?;
    let (mut from_daemon, mut to_daemon) = stream.into_split();
    let mut stdin = tokio::io::stdin();
    let mut stdout = tokio::io::stdout();
    let upstream = async {
        let _ = tokio::io::copy(&mut stdin, &mut to_daemon).await;
        // The editor is gone: tell the daemon this session is over.
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut to_daemon).await;
    };
    let downstream = async {
        let _ = tokio::io::copy(&mut from_daemon, &mut stdout).await;
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        _ = &mut upstream => {
            // Let the last replies through, briefly.
            let _ = tokio::time::timeout(Duration::from_millis(500), &mut downstream).await;
        }
        _ = &mut downstream => {}
    }
    Ok(())
}
