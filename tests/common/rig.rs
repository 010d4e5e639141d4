//! An in-process broker against an emulator speaking some dialects: no process, no socket, a
//! `ManualClock`. For lifecycle tests that need no real binary, so a matrix of dialects stays
//! fast (each rig has its own emulator, state directory and store, and can run concurrently).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use scanmint::domain::broker::{Broker, BrokerOptions, Credentials, LoginRequest, PrimaryKey};
use scanmint::domain::clock::ManualClock;
use scanmint::domain::config::Config;
use scanmint::domain::ledger::LedgerFile;
use scanmint::domain::store::Store;
use scanmint::tenant::connector::HttpConnector;
use scanmint::tenant::emulator::{AdminKeyView, Emulator, EmulatorConfig, Faults, KeyState};
use scanmint::tenant::papi::wire::{Filter, ListRequest};
use scanmint::tenant::papi::{Client, ClientOptions, TimeUnit};

pub const PROFILE: &str = "default";
pub const TTL_MS: i64 = 3_600_000;
/// Canaries (login, doctor) live two minutes.
pub const CANARY_TTL_MS: i64 = 120_000;
const CONFIG: &str = "[profile.default]\nttl = \"1h\"\ngrace = \"1m\"\n";

pub struct Rig {
    pub emu: Emulator,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
    /// Shared by every broker of this rig: a restart finds the cached key again.
    pub store: Store,
    pub broker: Broker,
    env_primary: bool,
    pub dialects: String,
}

impl Rig {
    /// An emulator speaking `dialects` (`--dialect` names, comma-separated; "" for none) and a
    /// broker with a memory store; `env_primary` gives it the Primary key without a login.
    pub async fn start(dialects: &str, env_primary: bool) -> Rig {
        let emu = Emulator::start(EmulatorConfig {
            rate_limit_per_sec: 1000,
            faults: Faults::with_dialects(dialects).expect("known dialects"),
            ..EmulatorConfig::default()
        })
        .await
        .expect("the emulator starts");
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::default());
        let store = Store::memory();
        let broker = new_broker(&emu, &clock, &dir.path().join("state"), &store, env_primary);
        Rig {
            emu,
            clock,
            dir,
            store,
            broker,
            env_primary,
            dialects: dialects.to_string(),
        }
    }

    /// A new broker on the same ledger and store, as after a daemon restart.
    pub fn restart(&mut self) {
        self.broker = new_broker(
            &self.emu,
            &self.clock,
            &self.state_dir(),
            &self.store,
            self.env_primary,
        );
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn login_request(&self) -> LoginRequest {
        LoginRequest {
            base_url: Some(self.emu.base_url().to_string()),
            key_id: self.emu.primary_key_id(),
            key: self.emu.primary_key(),
            security_level: self.emu.security_level().into(),
        }
    }

    pub async fn creds(&self) -> Credentials {
        match self.broker.credentials(PROFILE, Duration::ZERO).await {
            Ok(c) => c,
            Err(e) => panic!("[{}] credentials: {e:?}", self.dialects),
        }
    }

    /// Minted keys (not the Primary key), deleted and expired ones included.
    pub fn minted(&self) -> Vec<AdminKeyView> {
        self.emu
            .keys()
            .into_iter()
            .filter(|k| !k.is_primary)
            .collect()
    }

    pub fn minted_live(&self) -> Vec<i64> {
        self.minted()
            .into_iter()
            .filter(|k| k.state == KeyState::Active)
            .map(|k| k.id)
            .collect()
    }

    /// Every key minted here lived exactly what was asked (the tenant's own record, read in
    /// its own terms): the ttl for scan keys, two minutes for canaries. A key sent the wrong
    /// unit would show an expiry in 1970 or millennia away; `except` lists keys a test made go
    /// wrong on purpose.
    pub fn assert_lifetimes(&self, except: &[i64]) {
        for k in self.minted().iter().filter(|k| !except.contains(&k.id)) {
            let asked = if k.comment.contains("canary") {
                CANARY_TTL_MS
            } else {
                TTL_MS
            };
            // The expiry is fixed when the mint starts and the key is stamped when it lands:
            // a loaded machine, retries and seconds rounding shorten the life a little; a key
            // must never outlive what was asked (beyond the clock estimate's second).
            let lived = k.expiration.expect("minted keys expire") - k.creation_time;
            assert!(
                (asked - 15_000..=asked + 1_500).contains(&lived),
                "[{}] key {} ({}) lives {lived} ms, asked {asked} ms",
                self.dialects,
                k.id,
                k.comment
            );
        }
    }

    /// A live key's `expiration` as the tenant sends it over the wire (its own unit), and
    /// that unit by the digits.
    pub async fn wire_expiry(&self, id: i64) -> (i64, Option<TimeUnit>) {
        let client = Client::new(ClientOptions::new(
            self.emu.base_url(),
            self.emu.primary_key_id(),
            self.emu.primary_key(),
            self.emu.security_level(),
        ))
        .unwrap();
        let reply = client
            .get_api_keys(&ListRequest {
                filters: vec![Filter::ids(&[id])],
                sort: None,
                search_from: None,
                search_to: None,
            })
            .await
            .unwrap();
        let raw = reply.data[0].expiration.expect("an expiry");
        (raw, TimeUnit::detect(raw))
    }
}

fn new_broker(
    emu: &Emulator,
    clock: &Arc<ManualClock>,
    state: &Path,
    store: &Store,
    env_primary: bool,
) -> Broker {
    let primary = env_primary.then(|| PrimaryKey {
        base_url: emu.base_url().to_string(),
        key_id: emu.primary_key_id(),
        key: emu.primary_key(),
        security_level: emu.security_level().into(),
    });
    Broker::new(BrokerOptions {
        config: Config::parse(Path::new("/test/scanmint/config.toml"), CONFIG).unwrap(),
        store: store.clone(),
        connector: Arc::new(HttpConnector),
        clock: clock.clone(),
        ledger: LedgerFile::new(state),
        env_primary: primary,
    })
    .expect("the broker starts")
}
