//! When the scheduler reconciles: at start-up and when something needs settling, otherwise only
//! every 6 to 8 hours (the hourly pass was 28 % of a 10,000-developer tenant's request budget;
//! docs/benchmarks.md). A `ManualClock` moves time; the emulator counts the calls.

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
const MIN_MS: i64 = 60_000;

/// A broker with a day-long key (no rotation in the window) against its own emulator.
async fn rig() -> (Emulator, Arc<ManualClock>, Broker, tempfile::TempDir) {
    let emu = Emulator::start(EmulatorConfig {
        rate_limit_per_sec: 1000,
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts");
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(
        Path::new("/test/scanmint/config.toml"),
        "[profile.default]\nttl = \"24h\"\ngrace = \"1m\"\n",
    )
    .expect("the test config parses");
    let broker = Broker::new(BrokerOptions {
        config,
        store: Store::memory(),
        connector: Arc::new(HttpConnector),
        clock: clock.clone(),
        ledger: LedgerFile::new(&dir.path().join("state")),
        env_primary: Some(PrimaryKey {
            base_url: emu.base_url().to_string(),
            key_id: emu.primary_key_id(),
            key: emu.primary_key(),
            security_level: emu.security_level().into(),
        }),
    })
    .expect("the broker starts");
    (emu, clock, broker, dir)
}

/// Listings that were reconciles: every list call but the one verifying each generate.
fn reconciles(emu: &Emulator) -> u64 {
    let calls = emu.calls();
    calls.list - calls.generate
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_daemon_reconciles_at_start_then_every_six_to_eight_hours() {
    let (emu, clock, broker, _dir) = rig().await;
    broker.tick().await;
    assert_eq!(reconciles(&emu), 1, "the start-up reconcile");
    broker
        .credentials(PROFILE, Duration::ZERO)
        .await
        .expect("credentials");
    // Five quiet hours, ticked every ten minutes: the old hourly pass would list five times.
    for _ in 0..30 {
        clock.advance(10 * MIN_MS);
        broker.tick().await;
    }
    assert_eq!(reconciles(&emu), 1, "no reconcile in 5 idle hours");
    // By 8 hours and a bit, exactly one more.
    for _ in 0..19 {
        clock.advance(10 * MIN_MS);
        broker.tick().await;
    }
    assert_eq!(reconciles(&emu), 2, "one reconcile between 6 and 8 hours");
    assert_eq!(emu.calls().generate, 1, "no rotation in the window");
}
