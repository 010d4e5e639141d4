//! A remote session's key (tagged `remote-`) under reconciliation, at the broker: it is ours,
//! so it is kept while leased (never taken for an orphan) and revoked once unused.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use scanmint::domain::broker::{Broker, BrokerOptions, PrimaryKey};
use scanmint::domain::clock::ManualClock;
use scanmint::domain::config::Config;
use scanmint::domain::ledger::LedgerFile;
use scanmint::domain::store::Store;
use scanmint::tenant::connector::HttpConnector;
use scanmint::tenant::emulator::{Emulator, EmulatorConfig};

const PROFILE: &str = "default";

fn live(emu: &Emulator, id: i64) -> bool {
    emu.live_keys().iter().any(|k| k.id == id)
}

#[tokio::test]
async fn reconcile_keeps_a_remote_key_in_use_and_revokes_it_once_unused() {
    let emu = Emulator::start(EmulatorConfig {
        rate_limit_per_sec: 1000,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(
        Path::new("/test/scanmint/config.toml"),
        "[profile.default]\nttl = \"1h\"\ngrace = \"1m\"\n",
    )
    .unwrap();
    let broker = Broker::new(BrokerOptions {
        config,
        store: Store::memory(),
        connector: Arc::new(HttpConnector),
        clock: Arc::new(ManualClock::default()),
        ledger: LedgerFile::new(&dir.path().join("state")),
        env_primary: Some(PrimaryKey {
            base_url: emu.base_url().to_string(),
            key_id: emu.primary_key_id(),
            key: emu.primary_key(),
            security_level: emu.security_level().into(),
        }),
    })
    .unwrap();
    let own = broker.credentials(PROFILE, Duration::ZERO).await.unwrap();
    let (remote, lease) = broker
        .remote_credentials(PROFILE, Duration::ZERO)
        .await
        .unwrap();
    assert_ne!(remote.key_id, own.key_id);

    let report = broker.reconcile(PROFILE).await.expect("reconcile");
    assert!(live(&emu, remote.key_id), "not an orphan: {report:?}");
    broker.tick().await;
    assert!(live(&emu, remote.key_id), "in use: the scheduler keeps it");
    assert!(live(&emu, own.key_id));

    drop(lease);
    broker.tick().await;
    assert!(!live(&emu, remote.key_id), "unused: revoked");
    assert!(live(&emu, own.key_id), "the workstation's key is untouched");
    let report = broker.reconcile(PROFILE).await.expect("reconcile");
    assert!(live(&emu, own.key_id), "{report:?}");
}
