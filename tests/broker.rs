//! The key broker, the ledger, the config and the secret stores, against the tenant emulator over
//! loopback HTTP, with real stores: the Secret Service and keyutils tiers need the environment of
//! `scripts/with-keychain.sh` and FAIL (they do not skip) without it.
//!
//! Time is a `ManualClock` (the system clock plus an offset the tests move), never a real sleep.
//! The crash tests run the real `scanmint daemon` binary with `SCANMINT_CRASH_AT`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use scanmint::domain::broker::{
    Broker, BrokerError, BrokerOptions, Credentials, LoginRequest, PrimaryKey, ScanFailure, State,
};
use scanmint::domain::clock::{Clock, ManualClock};
use scanmint::domain::config::{Config, StoreChoice};
use scanmint::domain::ledger::{KeyState, Ledger, LedgerFile, LedgerKey};
use scanmint::domain::secret::{Secret, random_alphanumeric};
use scanmint::domain::store::{KeyringStore, Store, Tier};
use scanmint::tenant::connector::HttpConnector;
use scanmint::tenant::emulator::{
    AdminKeyView, Emulator, EmulatorConfig, Failure, FailureKind, Faults,
    KeyState as TenantKeyState,
};
use scanmint::tenant::papi::wire::SecurityLevel;
use serde_json::Value;

const PROFILE: &str = "default";
const MIN_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
/// Short lifetimes so `ManualClock` jumps stay small: rotation near 40 min, grace 1 min.
const SHORT: &str = "[profile.default]\nttl = \"1h\"\ngrace = \"1m\"\n";
const ZERO: Duration = Duration::ZERO;
const SCANMINT: &str = env!("CARGO_BIN_EXE_scanmint");

// ---------------------------------------------------------------------------------------------
// Helpers

fn config(toml: &str) -> Config {
    Config::parse(Path::new("/test/scanmint/config.toml"), toml).expect("the test config parses")
}

/// One emulator per test (own port), with a rate limit no test here is about.
async fn emulator_with(faults: Faults) -> Emulator {
    Emulator::start(EmulatorConfig {
        rate_limit_per_sec: 1000,
        faults,
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts")
}

async fn emulator() -> Emulator {
    emulator_with(Faults::default()).await
}

fn primary_of(emu: &Emulator) -> PrimaryKey {
    PrimaryKey {
        base_url: emu.base_url().to_string(),
        key_id: emu.primary_key_id(),
        key: emu.primary_key(),
        security_level: emu.security_level().into(),
    }
}

fn login_request(emu: &Emulator) -> LoginRequest {
    LoginRequest {
        base_url: Some(emu.base_url().to_string()),
        key_id: emu.primary_key_id(),
        key: emu.primary_key(),
        security_level: emu.security_level().into(),
    }
}

fn broker_at(
    clock: &Arc<ManualClock>,
    state: &Path,
    store: Store,
    primary: Option<PrimaryKey>,
) -> Broker {
    Broker::new(BrokerOptions {
        config: config(SHORT),
        store,
        connector: Arc::new(HttpConnector),
        clock: clock.clone(),
        ledger: LedgerFile::new(state),
        env_primary: primary,
    })
    .expect("the broker starts")
}

/// A broker with the emulator's Primary key from the "environment", a memory store and its own
/// state directory.
struct Rig {
    emu: Emulator,
    clock: Arc<ManualClock>,
    dir: tempfile::TempDir,
    broker: Broker,
}

impl Rig {
    async fn start() -> Rig {
        Rig::with_emulator(emulator().await)
    }

    fn with_emulator(emu: Emulator) -> Rig {
        let clock = Arc::new(ManualClock::default());
        let dir = tempfile::tempdir().unwrap();
        let broker = broker_at(
            &clock,
            &dir.path().join("state"),
            Store::memory(),
            Some(primary_of(&emu)),
        );
        Rig {
            emu,
            clock,
            dir,
            broker,
        }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    async fn creds(&self) -> Credentials {
        self.broker
            .credentials(PROFILE, ZERO)
            .await
            .expect("credentials")
    }
}

/// Keys on the tenant that are live and not the Primary key.
fn minted(emu: &Emulator) -> Vec<AdminKeyView> {
    emu.live_keys()
        .into_iter()
        .filter(|k| !k.is_primary)
        .collect()
}

fn minted_ids(emu: &Emulator) -> Vec<i64> {
    minted(emu).iter().map(|k| k.id).collect()
}

fn tenant_key(emu: &Emulator, id: i64) -> AdminKeyView {
    emu.keys()
        .into_iter()
        .find(|k| k.id == id)
        .unwrap_or_else(|| panic!("key {id} is not on the tenant"))
}

fn ledger_key(broker: &Broker, id: i64) -> LedgerKey {
    broker
        .ledger_snapshot()
        .keys
        .into_iter()
        .find(|k| k.id == Some(id))
        .unwrap_or_else(|| panic!("key {id} is not in the ledger"))
}

/// The error of a call that must fail (`Credentials` is not `Debug`: it holds a secret).
fn refused<T>(result: Result<T, BrokerError>, what: &str) -> BrokerError {
    match result {
        Ok(_) => panic!("{what}: expected an error"),
        Err(e) => e,
    }
}

fn advance(clock: &ManualClock, ms: i64) {
    clock.advance(ms);
}

/// A keyring service name no other test (or run) uses.
fn unique_service() -> String {
    format!("scanmint-test-{}", random_alphanumeric(12))
}

fn secret_tool_lookup(service: &str, account: &str) -> Option<String> {
    let out = std::process::Command::new("secret-tool")
        .args(["lookup", "service", service, "username", account])
        .output()
        .expect("secret-tool runs (libsecret-tools; run under scripts/with-keychain.sh)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn keyctl(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("keyctl")
        .args(args)
        .output()
        .expect("keyctl runs (keyutils)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------------------------
// Secret stores

/// login stores the Primary key record in the Secret Service (read back with `secret-tool`),
/// leaves no minted key alive; logout revokes every key this machine minted and forgets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_service_login_stores_the_primary_and_logout_revokes_everything() {
    let emu = emulator().await;
    let service = unique_service();
    let backend = KeyringStore::secret_service(&service).expect(
        "the Secret Service must be reachable: run the tests under scripts/with-keychain.sh",
    );
    let store = Store::from_backend(Arc::new(backend));
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let broker = broker_at(&clock, &dir.path().join("state"), store.clone(), None);

    let outcome = broker
        .login(PROFILE, login_request(&emu))
        .await
        .expect("login with the emulator's Primary key");
    assert_eq!(outcome.storage, Tier::SecretService);
    assert_eq!(emu.calls().generate, 1, "login mints exactly one canary");
    assert!(
        minted(&emu).is_empty(),
        "login leaves no minted key alive: {:?}",
        minted(&emu)
    );

    let stored = secret_tool_lookup(&service, "default/primary")
        .expect("secret-tool finds the Primary key record in the Secret Service");
    let record: Value = serde_json::from_str(&stored).expect("the stored value is a JSON record");
    assert_eq!(
        record["key_id"],
        serde_json::json!(emu.primary_key_id()),
        "{record}"
    );
    assert_eq!(
        record["base_url"],
        serde_json::json!(emu.base_url()),
        "{record}"
    );
    assert_eq!(
        record["key"].as_str(),
        Some(emu.primary_key().expose()),
        "the record holds the secret itself"
    );

    // Two keys from this broker (one retiring), and one more that only the tenant's tags say is
    // this machine's (another ledger, same owner and profile).
    let first = broker.credentials(PROFILE, ZERO).await.unwrap();
    let second = broker.rotate(PROFILE).await.unwrap();
    assert!(second.generation > first.generation);
    let cached = secret_tool_lookup(&service, "default/minted")
        .expect("the minted key is cached in the keychain");
    assert!(
        cached.contains(&second.key_id.to_string()),
        "the cache holds the newest key"
    );
    let other_dir = tempfile::tempdir().unwrap();
    let other = broker_at(
        &clock,
        &other_dir.path().join("state"),
        Store::memory(),
        Some(primary_of(&emu)),
    );
    let stray = other.credentials(PROFILE, ZERO).await.unwrap();
    let mut expected = vec![first.key_id, second.key_id, stray.key_id];
    expected.sort();
    assert_eq!(minted_ids(&emu), expected);

    let mut revoked = broker.logout(PROFILE).await.expect("logout");
    revoked.sort();
    assert_eq!(
        revoked,
        vec![first.key_id, second.key_id],
        "logout revokes every key this installation minted, and only those (issue 12, finding 7: \
         another state directory of the same user on the same host is another installation)"
    );
    assert_eq!(
        minted_ids(&emu),
        vec![stray.key_id],
        "the other installation's key is left alone"
    );
    other
        .logout(PROFILE)
        .await
        .expect("the other installation logs out");
    assert!(
        minted(&emu).is_empty(),
        "zero live non-primary keys: {:?}",
        minted(&emu)
    );
    assert_eq!(
        secret_tool_lookup(&service, "default/primary"),
        None,
        "the Primary key is forgotten"
    );
    assert_eq!(
        secret_tool_lookup(&service, "default/minted"),
        None,
        "the minted key cache is gone"
    );
    let status = broker.status(PROFILE).await;
    assert_eq!(status.state, State::NeedsLogin);
    assert_eq!(
        refused(broker.credentials(PROFILE, ZERO).await, "after logout").code,
        "needs_login"
    );
    assert!(
        broker
            .ledger_snapshot()
            .keys
            .iter()
            .all(|k| k.state == KeyState::Revoked)
    );
}

/// The keyutils tier: store, get and delete through `KeyringStore::keyutils`, seen by `keyctl`
/// in the session keyring; the ladder opens it when asked for by name.
#[tokio::test]
async fn keyutils_tier_round_trip_is_visible_to_keyctl() {
    let service = unique_service();
    let backend = KeyringStore::keyutils(&service)
        .expect("kernel keyutils must be available: run the tests under scripts/with-keychain.sh");
    let store = Store::from_backend(Arc::new(backend));
    assert_eq!(store.tier(), Tier::Keyutils);
    let account = "default/minted";
    let value = r#"{"id":4242,"key":"not-a-real-secret","expires_ms":1,"generation":1}"#;
    assert!(store.get(account).await.expect("get").is_none());
    store
        .set(account, &Secret::new(value))
        .await
        .expect("set in keyutils");
    assert_eq!(
        store
            .get(account)
            .await
            .expect("get")
            .expect("stored")
            .expose(),
        value
    );

    let description = format!("keyring:{account}@{service}");
    let serial = keyctl(&["search", "@s", "user", &description])
        .expect("keyctl finds the entry in the session keyring");
    assert_eq!(
        keyctl(&["pipe", serial.trim()]).expect("keyctl reads it"),
        value
    );

    store.delete(account).await.expect("delete");
    assert!(store.get(account).await.expect("get").is_none());
    assert_eq!(
        keyctl(&["search", "@s", "user", &description]),
        None,
        "gone from the keyring"
    );
    store
        .delete(account)
        .await
        .expect("deleting a missing entry is fine");

    // Asked for by name, the ladder opens keyutils (its probe passes) rather than a fallback.
    let dir = tempfile::tempdir().unwrap();
    let lazy = Store::lazy(StoreChoice::Keyutils, dir.path().join("run"));
    lazy.ready().await;
    assert_eq!(lazy.tier(), Tier::Keyutils, "skipped: {:?}", lazy.skipped());
    assert!(lazy.skipped().is_empty(), "{:?}", lazy.skipped());
    let probe_account = format!("test/{}", random_alphanumeric(8));
    assert!(
        lazy.get(&probe_account)
            .await
            .expect("keyutils answers")
            .is_none()
    );
}

/// The file tier (only when asked for): 0600 in a 0700 directory, used by a real login, and a
/// loosened file is refused with the fix.
#[tokio::test]
async fn file_tier_is_private_and_refuses_a_loose_file() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().unwrap();
    let runtime = dir.path().join("run");
    let store = Store::lazy(StoreChoice::File, runtime.clone());
    let clock = Arc::new(ManualClock::default());
    let broker = broker_at(&clock, &dir.path().join("state"), store.clone(), None);
    let outcome = broker
        .login(PROFILE, login_request(&emu))
        .await
        .expect("login");
    assert_eq!(outcome.storage, Tier::File);
    let file = runtime.join("secrets.json");
    assert_eq!(mode(&runtime), 0o700);
    assert_eq!(mode(&file), 0o600);
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let record: Value = serde_json::from_str(
        on_disk["default/primary"]
            .as_str()
            .expect("the primary entry"),
    )
    .unwrap();
    assert_eq!(record["key_id"], serde_json::json!(emu.primary_key_id()));
    let c = broker.credentials(PROFILE, ZERO).await.unwrap();
    assert_eq!(mode(&file), 0o600, "still 0600 after a rewrite");
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let cached: Value = serde_json::from_str(
        on_disk["default/minted"]
            .as_str()
            .expect("the minted key is cached"),
    )
    .unwrap();
    assert_eq!(cached["id"], serde_json::json!(c.key_id));

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = store
        .get("default/primary")
        .await
        .err()
        .expect("a loose file is refused")
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
    let fresh = Store::lazy(StoreChoice::File, runtime.clone());
    let err = fresh
        .get("default/primary")
        .await
        .err()
        .expect("refused at open")
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
    assert_eq!(
        fresh.tier(),
        Tier::File,
        "no silent fall back to another tier"
    );
    // A new broker on the loose file does not hand out the key it cannot trust the store for.
    let again = broker_at(&clock, &dir.path().join("state2"), fresh, None);
    let status = again.status(PROFILE).await;
    assert!(!status.usable(), "{status:?}");
    assert_eq!(
        status.last_error.as_ref().map(|e| e.code.as_str()),
        Some("store_unavailable"),
        "{status:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The lifecycle

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_askers_share_one_mint() {
    let rig = Rig::start().await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let broker = rig.broker.clone();
            tokio::spawn(async move { broker.credentials(PROFILE, ZERO).await })
        })
        .collect();
    let mut ids = Vec::new();
    let mut secrets = Vec::new();
    for t in tasks {
        let c = t.await.unwrap().expect("every asker gets a key");
        ids.push(c.key_id);
        secrets.push(c.key.expose().to_string());
    }
    assert_eq!(rig.emu.calls().generate, 1, "exactly one generate");
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(secrets.iter().all(|s| *s == secrets[0]));
    assert_eq!(minted_ids(&rig.emu), vec![ids[0]]);
    let ledger = rig.broker.ledger_snapshot();
    assert_eq!(ledger.keys.len(), 1, "{ledger:?}");
    assert_eq!(ledger.keys[0].state, KeyState::Active);
}

#[tokio::test]
async fn a_broadened_key_is_revoked_and_never_handed_out() {
    let rig = Rig::with_emulator(
        emulator_with(Faults {
            broaden_roles: true,
            ..Faults::default()
        })
        .await,
    );
    let err = rig
        .broker
        .credentials(PROFILE, ZERO)
        .await
        .err()
        .expect("a too-broad key is refused");
    assert_eq!(err.code, "too_broad", "{err:?}");
    assert!(
        err.message.contains("Instance Administrator"),
        "names the extra role: {}",
        err.message
    );
    let made: Vec<AdminKeyView> = rig
        .emu
        .keys()
        .into_iter()
        .filter(|k| !k.is_primary)
        .collect();
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(
        made[0].state,
        TenantKeyState::Deleted,
        "deleted on the tenant"
    );
    assert!(made[0].roles.iter().any(|r| r == "Instance Administrator"));
    assert_eq!(ledger_key(&rig.broker, made[0].id).state, KeyState::Revoked);
    let status = rig.broker.status(PROFILE).await;
    assert!(status.key.is_none(), "nothing handed out: {status:?}");
    assert_eq!(status.last_error.map(|e| e.code), Some("too_broad".into()));
}

/// Rotation at the rotation point, grace for a leased key, immediate revocation without one, and
/// generations that only grow (across a new broker on the same ledger too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_grace_leases_and_generations() {
    let rig = Rig::start().await;
    let (b, clock, emu) = (&rig.broker, &rig.clock, &rig.emu);
    let k1 = rig.creds().await;
    assert_eq!(k1.generation, 1);
    let lease = b.lease(PROFILE, k1.key_id);
    b.tick().await;
    assert_eq!(
        emu.calls().generate,
        1,
        "nothing is due before the rotation point"
    );

    advance(clock, 50 * MIN_MS); // past the rotation point (≈40 min ±10 %), before expiry
    b.tick().await;
    let k2 = rig.creds().await;
    assert_eq!(k2.generation, 2, "tick rotated");
    assert_ne!(k2.key_id, k1.key_id);
    assert_eq!(ledger_key(b, k1.key_id).state, KeyState::Retiring);
    assert_eq!(ledger_key(b, k2.key_id).state, KeyState::Active);

    b.tick().await;
    advance(clock, 30_000);
    b.tick().await;
    assert!(
        minted_ids(emu).contains(&k1.key_id),
        "a leased key lives through its grace"
    );
    assert_eq!(ledger_key(b, k1.key_id).state, KeyState::Retiring);

    advance(clock, 61_000); // grace (1 min) over
    b.tick().await;
    assert_eq!(
        tenant_key(emu, k1.key_id).state,
        TenantKeyState::Deleted,
        "revoked when grace ends"
    );
    assert_eq!(ledger_key(b, k1.key_id).state, KeyState::Revoked);
    drop(lease);

    // No client can push the broker back to an older key.
    assert_eq!(
        b.scan_failed(PROFILE, k1.key_id).await.unwrap(),
        ScanFailure::AlreadyReplaced
    );

    // Without a lease the old key goes at once, not after grace.
    advance(clock, 50 * MIN_MS);
    b.tick().await;
    let k3 = rig.creds().await;
    assert_eq!(k3.generation, 3);
    b.tick().await;
    assert_eq!(
        tenant_key(emu, k2.key_id).state,
        TenantKeyState::Deleted,
        "unleased: revoked right away"
    );
    assert_eq!(ledger_key(b, k2.key_id).state, KeyState::Revoked);
    assert_eq!(minted_ids(emu), vec![k3.key_id]);

    // A new broker on the same ledger (a restart with a memory store) continues upwards.
    let b2 = broker_at(
        clock,
        &rig.state_dir(),
        Store::memory(),
        Some(primary_of(emu)),
    );
    let k4 = b2.credentials(PROFILE, ZERO).await.unwrap();
    assert!(
        k4.generation > k3.generation,
        "{} after {}",
        k4.generation,
        k3.generation
    );
    let generations: Vec<u64> = b2
        .ledger_snapshot()
        .keys
        .iter()
        .map(|k| k.generation)
        .collect();
    assert!(
        generations.windows(2).all(|w| w[0] < w[1]),
        "{generations:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_revocations_wait_in_the_outbox_and_are_retried() {
    let rig = Rig::start().await;
    let (b, clock, emu) = (&rig.broker, &rig.clock, &rig.emu);
    let k1 = rig.creds().await;
    b.tick().await;
    let mut faults = Faults::default();
    faults.failures.insert(
        "delete".into(),
        Failure {
            kind: FailureKind::Status(503),
            rate: 1.0,
        },
    );
    emu.set_faults(faults);

    let err = refused(
        b.revoke(PROFILE, false).await,
        "the tenant refuses every delete",
    );
    assert_eq!(err.code, "revoke_failed");
    assert!(b.outbox_len() > 0, "queued");
    assert!(
        minted_ids(emu).contains(&k1.key_id),
        "still live on the tenant"
    );

    // The key the user revoked is not handed out again while its deletion waits.
    let k2 = rig.creds().await;
    assert_ne!(
        k2.key_id, k1.key_id,
        "a revoked key must not be served while its delete is queued"
    );

    // Before the backoff ends nothing is retried.
    let deletes = emu.calls().delete;
    b.tick().await;
    assert_eq!(emu.calls().delete, deletes, "no retry before the backoff");

    emu.set_faults(Faults::default());
    advance(clock, 11 * MIN_MS);
    b.tick().await;
    assert_eq!(
        b.outbox_len(),
        0,
        "outbox empty: {:?}",
        b.ledger_snapshot().outbox
    );
    assert_eq!(tenant_key(emu, k1.key_id).state, TenantKeyState::Deleted);
    assert_eq!(ledger_key(b, k1.key_id).state, KeyState::Revoked);
    assert_eq!(minted_ids(emu), vec![k2.key_id]);
}

#[tokio::test]
async fn a_deleted_primary_key_means_needs_login() {
    let rig = Rig::start().await;
    let (b, clock, emu) = (&rig.broker, &rig.clock, &rig.emu);
    rig.creds().await;
    assert!(emu.revoke(emu.primary_key_id()), "deleted in the console");
    let err = refused(
        b.rotate(PROFILE).await,
        "the tenant refuses the Primary key",
    );
    assert_eq!(err.code, "primary_refused", "{err:?}");
    assert!(err.is_needs_login());
    let status = b.status(PROFILE).await;
    assert_eq!(status.state, State::NeedsLogin, "{status:?}");
    assert_eq!(
        status.last_error.as_ref().map(|e| e.code.as_str()),
        Some("primary_refused")
    );
    assert!(!status.usable());

    // Permanent: no more calls with the refused key, whatever asks.
    let calls = emu.calls().total;
    advance(clock, 2 * HOUR_MS);
    b.tick().await;
    assert_eq!(
        refused(b.credentials(PROFILE, ZERO).await, "credentials").code,
        "primary_refused"
    );
    assert_eq!(
        refused(b.rotate(PROFILE).await, "rotate").code,
        "primary_refused"
    );
    assert_eq!(
        emu.calls().total,
        calls,
        "a refused Primary key is not retried"
    );
}

/// A 100 % 5xx outage: the cached key is served until its hard expiry without tenant calls,
/// rotation backs off, status is degraded; after expiry credentials fail; when the tenant is
/// back the same broker recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_through_an_outage_until_hard_expiry_then_recovers() {
    let rig = Rig::start().await;
    let (b, clock, emu) = (&rig.broker, &rig.clock, &rig.emu);
    let k1 = rig.creds().await;
    b.tick().await; // the start-up reconcile, so only the outage is measured below
    let mut faults = Faults::default();
    faults.failures.insert(
        "all".into(),
        Failure {
            kind: FailureKind::Status(503),
            rate: 1.0,
        },
    );
    emu.set_faults(faults);

    let before = emu.calls();
    for _ in 0..20 {
        assert_eq!(rig.creds().await.key_id, k1.key_id);
    }
    assert_eq!(
        emu.calls(),
        before,
        "a valid cached key needs no tenant call"
    );

    advance(clock, 45 * MIN_MS); // past the rotation point
    b.tick().await;
    let after_first = emu.calls();
    assert_eq!(
        after_first.generate,
        before.generate + 1,
        "one rotation attempt"
    );
    let status = b.status(PROFILE).await;
    assert_eq!(status.state, State::Degraded, "{status:?}");
    assert!(status.usable());
    assert_eq!(status.key.as_ref().map(|k| k.key_id), Some(k1.key_id));
    let last = status.last_error.expect("lastError while degraded");
    assert!(last.message.contains("503"), "{last:?}");
    assert_eq!(rig.creds().await.key_id, k1.key_id, "still served");

    // A burst of ticks (what a scheduler woken in a loop would do): backoff, not a tight loop.
    for _ in 0..30 {
        b.tick().await;
    }
    let burst = emu.calls();
    assert!(
        burst.generate - after_first.generate <= 2,
        "generate retried in a loop: {burst:?}"
    );
    assert!(
        burst.total - after_first.total <= 10,
        "tenant called in a loop: {burst:?}"
    );

    // Ticks spread over time: attempts get rarer (exponential backoff), never one per tick.
    let spread_start = emu.calls();
    for _ in 0..10 {
        advance(clock, 1_000);
        b.tick().await;
    }
    let spread = emu.calls();
    assert!(spread.generate - spread_start.generate <= 6, "{spread:?}");
    assert_eq!(
        rig.creds().await.key_id,
        k1.key_id,
        "served until hard expiry"
    );

    advance(clock, 20 * MIN_MS); // past the key's hard expiry
    assert!(
        b.credentials(PROFILE, ZERO).await.is_err(),
        "an expired key is never handed out"
    );
    let status = b.status(PROFILE).await;
    assert!(status.key.is_none());
    assert!(!status.usable(), "{status:?}");

    emu.set_faults(Faults::default());
    advance(clock, 11 * MIN_MS); // past any backoff (capped at 10 min)
    let k2 = b
        .credentials(PROFILE, ZERO)
        .await
        .expect("recovered without a new broker");
    assert!(k2.generation > k1.generation);
    let status = b.status(PROFILE).await;
    assert_eq!(status.state, State::Ready, "{status:?}");
    assert!(status.last_error.is_none());
    b.tick().await;
    assert!(
        b.ledger_snapshot()
            .keys
            .iter()
            .all(|k| k.state != KeyState::Pending),
        "failed attempts are resolved: {:?}",
        b.ledger_snapshot().keys
    );
}

/// With the tenant's clock 10 minutes off (either way), expiry is tenant-now + ttl on the tenant,
/// validity is judged by the tenant's clock, and an outage under skew still backs off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_validity_follow_the_tenants_clock() {
    for offset in [10 * MIN_MS, -10 * MIN_MS] {
        let rig = Rig::with_emulator(
            emulator_with(Faults {
                clock_offset_ms: offset,
                ..Faults::default()
            })
            .await,
        );
        let (b, emu) = (&rig.broker, &rig.emu);
        let tenant_before = emu.now_ms();
        let k1 = rig.creds().await;
        let tenant_after = emu.now_ms();
        let expiration = tenant_key(emu, k1.key_id)
            .expiration
            .expect("minted with an expiry");
        assert!(
            expiration >= tenant_before + HOUR_MS - 1_500
                && expiration <= tenant_after + HOUR_MS + 1_500,
            "offset {offset}: expiry {expiration} is not tenant-now + 1h (tenant now ≈ {tenant_before}; ours ≈ {})",
            rig.clock.now_ms()
        );
        assert_eq!(k1.expires_ms, expiration);

        // Validity by the tenant's clock: move 35 min (+10) or 25 min (−10) on, so the key has
        // 25 or 35 min left by the tenant's clock and the opposite by ours; ask for 30.
        let (step, renew) = if offset > 0 {
            (35 * MIN_MS, true)
        } else {
            (25 * MIN_MS, false)
        };
        advance(&rig.clock, step);
        let k2 = b
            .credentials(PROFILE, Duration::from_secs(30 * 60))
            .await
            .unwrap();
        let left = k1.expires_ms - (rig.clock.now_ms() + offset);
        assert_eq!(
            k2.key_id != k1.key_id,
            renew,
            "offset {offset}: the key has {} min left by the tenant's clock",
            left / MIN_MS
        );
        assert_eq!(emu.calls().generate, if renew { 2 } else { 1 });

        // An outage under skew: rotation attempts still back off.
        b.tick().await;
        let mut faults = emu.faults();
        faults.failures.insert(
            "all".into(),
            Failure {
                kind: FailureKind::Status(503),
                rate: 1.0,
            },
        );
        emu.set_faults(faults);
        // Past the rotation point of the active key, before its expiry.
        advance(&rig.clock, if renew { 45 * MIN_MS } else { 30 * MIN_MS });
        assert!(b.credentials(PROFILE, ZERO).await.is_ok());
        let start = emu.calls().generate;
        for _ in 0..20 {
            b.tick().await;
        }
        let attempts = emu.calls().generate - start;
        assert!(
            (1..=3).contains(&attempts),
            "offset {offset}: {attempts} rotation attempts in a burst of ticks"
        );

        // login's canary lives 2 minutes: on a fresh connection it must use the tenant's clock
        // too, or a tenant 10 minutes ahead refuses it as expiring in the past.
        emu.set_faults(Faults {
            clock_offset_ms: offset,
            ..Faults::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let fresh = broker_at(&rig.clock, &dir.path().join("state"), Store::memory(), None);
        fresh
            .login(PROFILE, login_request(emu))
            .await
            .unwrap_or_else(|e| panic!("offset {offset}: login: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_ledger_is_moved_aside_and_reconcile_revokes_what_it_forgot() {
    let rig = Rig::start().await;
    let lost = rig.creds().await;
    let (console_id, _) =
        rig.emu
            .create_key(&["CLI Read-Only Custom"], SecurityLevel::Standard, None);
    let state_dir = rig.state_dir();
    let Rig {
        emu,
        clock,
        dir: _dir,
        broker,
    } = rig;
    let emu = &emu;
    drop(broker);

    let ledger_path = state_dir.join("ledger.json");
    let garbage = b"{\"version\": 1, \"keys\": [ this is not json \x00\xff";
    std::fs::write(&ledger_path, garbage).unwrap();
    let b = broker_at(&clock, &state_dir, Store::memory(), Some(primary_of(emu)));
    let aside = b
        .ledger_recovered_from()
        .expect("the corrupt ledger was noticed");
    let name = aside.file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("ledger.json.corrupt-"), "{name}");
    assert_eq!(aside.parent(), Some(state_dir.as_path()));
    assert_eq!(
        std::fs::read(&aside).unwrap(),
        garbage,
        "the garbage is kept intact"
    );
    assert!(b.ledger_snapshot().keys.is_empty());

    let report = b.reconcile(PROFILE).await.expect("reconcile");
    assert_eq!(
        report.revoked,
        vec![lost.key_id],
        "the tagged key it no longer knows"
    );
    assert_eq!(tenant_key(emu, lost.key_id).state, TenantKeyState::Deleted);
    assert_eq!(
        minted_ids(emu),
        vec![console_id],
        "keys without our tag are not ours to revoke"
    );
    let on_disk: Ledger = serde_json::from_slice(&std::fs::read(&ledger_path).unwrap())
        .expect("a readable ledger again");
    assert_eq!(on_disk.version, 1);
    let k = b
        .credentials(PROFILE, ZERO)
        .await
        .expect("mints again after recovery");
    assert_eq!(minted_ids(emu), {
        let mut v = vec![console_id, k.key_id];
        v.sort();
        v
    });
}

#[tokio::test]
async fn login_refuses_a_view_only_key_with_path_guidance() {
    let emu = emulator().await;
    let (id, key) = emu.create_key(&["Public API (PAPI) View"], SecurityLevel::Standard, None);
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::memory();
    let b = broker_at(&clock, &dir.path().join("state"), store.clone(), None);
    let err = b
        .login(
            PROFILE,
            LoginRequest {
                base_url: Some(emu.base_url().to_string()),
                key_id: id,
                key,
                security_level: SecurityLevel::Standard.into(),
            },
        )
        .await
        .expect_err("a View-only key cannot mint");
    assert_eq!(err.code, "primary_refused", "{err:?}");
    assert!(
        err.message.contains("Path A") && err.message.contains("Path B"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains("Public API (PAPI) Edit"),
        "{}",
        err.message
    );
    assert!(
        store.get("default/primary").await.unwrap().is_none(),
        "a refused key is not stored"
    );
    assert_eq!(b.status(PROFILE).await.state, State::NeedsLogin);
    assert!(
        minted(&emu).iter().all(|k| k.id == id),
        "nothing minted: {:?}",
        minted(&emu)
    );
    assert!(
        b.ledger_snapshot()
            .keys
            .iter()
            .all(|k| k.state == KeyState::Revoked),
        "no pending canary left"
    );

    // A working Primary key: the canary is minted, verified and deleted; nothing stays alive.
    let out = b.login(PROFILE, login_request(&emu)).await.expect("login");
    assert_eq!(out.storage, Tier::Memory);
    assert!(
        minted(&emu).iter().all(|k| k.id == id),
        "login leaves no minted key: {:?}",
        minted(&emu)
    );
    assert_eq!(b.status(PROFILE).await.state, State::Ready);
}

// ---------------------------------------------------------------------------------------------
// Config

#[test]
fn bad_config_names_file_line_and_key() {
    let path = Path::new("/home/dev/.config/scanmint/config.toml");
    let parse = |text: &str| Config::parse(path, text).expect_err("refused").0;
    for (text, line, key) in [
        (
            "[profile.default]\nttl = \"1h\"\nrotate_after = 3\n",
            3,
            "rotate_after",
        ),
        ("[profile.default]\nttl = 5\n", 2, "ttl"),
        (
            "[profile.default]\nrole = \"r\"\nttl = \"soon\"\n",
            3,
            "ttl",
        ),
        ("[profile.default]\n\nrotate_at = 1.5\n", 3, "rotate_at"),
        (
            "idle_exit = \"1h\"\n[profile.default]\ngrace = \"a while\"\n",
            3,
            "grace",
        ),
        ("[profile.w]\nmax_live_keys = 0\n", 2, "max_live_keys"),
        ("[profile.w]\nstore = \"vault\"\n", 2, "store"),
    ] {
        let err = parse(text);
        assert!(
            err.contains(&path.display().to_string()),
            "names the file: {err}"
        );
        assert!(
            err.contains(&format!("line {line}")),
            "names line {line}: {err}"
        );
        assert!(err.contains(key), "names the key {key}: {err}");
    }
    // Unknown top-level keys are errors too.
    let err = parse("defaultprofile = \"x\"\n");
    assert!(
        err.contains("defaultprofile") && err.contains("line 1"),
        "{err}"
    );
}

/// `Config::load` through `SCANMINT_CONFIG`, in the real binary (environment changes stay in the
/// child): one error, with the file, the line and the key.
#[test]
fn config_load_reports_one_error_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, "[profile.default]\nttl = \"1h\"\nrotate_after = 3\n").unwrap();
    let out = std::process::Command::new(SCANMINT)
        .args(["lsp", "--standalone"])
        .env("SCANMINT_CONFIG", &file)
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_RUNTIME_DIR", dir.path().join("run"))
        .env_remove("SCANMINT_PRIMARY_KEY")
        .env_remove("SCANMINT_PRIMARY_KEY_ID")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(
        stderr.contains("line 3") && stderr.contains("rotate_after"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("scanmint:").count(),
        1,
        "one error: {stderr}"
    );
    assert!(
        !dir.path().join("state/scanmint/ledger.json").exists(),
        "nothing started"
    );
}

// ---------------------------------------------------------------------------------------------
// Crashes of the real daemon

struct DaemonEnv {
    root: tempfile::TempDir,
    base_url: String,
    primary_id: i64,
    primary_key: String,
}

struct Daemon {
    child: tokio::process::Child,
    log: PathBuf,
}

impl DaemonEnv {
    fn new(emu: &Emulator) -> DaemonEnv {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        DaemonEnv {
            root,
            base_url: emu.base_url().to_string(),
            primary_id: emu.primary_key_id(),
            primary_key: emu.primary_key().expose().to_string(),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(SCANMINT);
        cmd.args(args)
            .env("XDG_RUNTIME_DIR", self.root.path().join("run"))
            .env("XDG_STATE_HOME", self.root.path().join("state"))
            .env("XDG_CONFIG_HOME", self.root.path().join("config"))
            .env("SCANMINT_STORE", "memory")
            .env("SCANMINT_BASE_URL", &self.base_url)
            .env("SCANMINT_PRIMARY_KEY_ID", self.primary_id.to_string())
            .env("SCANMINT_PRIMARY_KEY", &self.primary_key)
            .env_remove("SCANMINT_CONFIG")
            .env_remove("SCANMINT_PROFILE")
            .env_remove("SCANMINT_CRASH_AT")
            .env_remove("SCANMINT_PRIMARY_SECURITY_LEVEL")
            // Not a CI job: CI=true with the Primary key in the environment means ephemeral exec.
            .env_remove("CI")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    fn ledger_path(&self) -> PathBuf {
        self.root.path().join("state/scanmint/ledger.json")
    }

    fn ledger(&self) -> Ledger {
        let bytes = std::fs::read(self.ledger_path()).expect("the ledger exists");
        serde_json::from_slice(&bytes).expect("the ledger is readable")
    }

    async fn spawn_daemon(&self, crash_at: Option<&str>, n: u32) -> Daemon {
        let log = self.root.path().join(format!("daemon-{n}.log"));
        let mut cmd = self.command(&["daemon"]);
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(point) = crash_at {
            cmd.env("SCANMINT_CRASH_AT", point);
        }
        let mut child = cmd.spawn().expect("the daemon starts");
        let socket = self.root.path().join("run/scanmint/scanmint-v1.sock");
        for _ in 0..500 {
            if socket.exists() {
                return Daemon { child, log };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the daemon exited early ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no daemon socket after 10 s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("the daemon did not exit: {}", self.log()),
        }
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // SAFETY: signalling the child this test started.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        let status = self.wait_exit().await;
        assert!(
            status.success(),
            "the daemon stops cleanly on SIGTERM ({status}): {}",
            self.log()
        );
    }
}

/// Poll `check` for up to 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool, log: impl Fn() -> String) {
    for _ in 0..500 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}: {}", log());
}

/// Crash the daemon at `point` during a mint that `scanmint exec` triggers, then restart it and
/// check that reconciliation at start-up resolves what the crash left.
async fn crash_and_recover(point: &str) {
    use std::os::unix::process::ExitStatusExt;
    let emu = emulator().await;
    let env = DaemonEnv::new(&emu);
    let mut daemon = env.spawn_daemon(Some(point), 1).await;

    let exec = tokio::time::timeout(
        Duration::from_secs(20),
        env.command(&["exec", "--", "true"]).output(),
    )
    .await
    .expect("exec returns")
    .unwrap();
    assert!(
        !exec.status.success(),
        "exec cannot get a key from a crashing daemon"
    );
    let status = daemon.wait_exit().await;
    assert_eq!(
        status.signal(),
        Some(libc::SIGABRT),
        "aborted at {point} ({status}): {}",
        daemon.log()
    );
    assert!(
        daemon.log().contains(&format!("SCANMINT_CRASH_AT={point}")),
        "{}",
        daemon.log()
    );

    let ledger = env.ledger();
    let entries: Vec<&LedgerKey> = ledger.keys.iter().filter(|k| k.generation > 0).collect();
    assert_eq!(entries.len(), 1, "{ledger:?}");
    let entry = entries[0].clone();
    assert_eq!(
        entry.state,
        KeyState::Pending,
        "written before generate, never activated"
    );
    let orphan = match point {
        "before-generate" => {
            assert_eq!(entry.id, None);
            assert_eq!(emu.calls().generate, 0, "nothing minted");
            assert!(minted(&emu).is_empty());
            None
        }
        _ => {
            let live = minted(&emu);
            assert_eq!(live.len(), 1, "the orphan is live on the tenant: {live:?}");
            assert_eq!(live[0].comment, entry.tag, "found by its tag");
            assert_eq!(
                entry.id,
                Some(live[0].id),
                "the id reached the ledger before the crash"
            );
            Some(live[0].id)
        }
    };

    if orphan.is_none() {
        // A pending entry without an id is given up on only once no `generate` sent for it could
        // still land (2 minutes): make the crash 3 minutes old rather than wait.
        let mut ledger = env.ledger();
        for k in ledger.keys.iter_mut().filter(|k| k.tag == entry.tag) {
            k.created_ms -= 3 * MIN_MS;
        }
        scanmint::platform::fs::write_private_atomic(
            &env.ledger_path(),
            &serde_json::to_vec(&ledger).unwrap(),
        )
        .unwrap();
    }
    let daemon = env.spawn_daemon(None, 2).await;
    let ledger_path = env.ledger_path();
    let tag = entry.tag.clone();
    eventually(
        "the pending entry is resolved",
        || {
            std::fs::read(&ledger_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Ledger>(&b).ok())
                .is_some_and(|l| {
                    l.keys
                        .iter()
                        .any(|k| k.tag == tag && k.state == KeyState::Revoked)
                })
        },
        || daemon.log(),
    )
    .await;
    if let Some(id) = orphan {
        assert_eq!(
            tenant_key(&emu, id).state,
            TenantKeyState::Deleted,
            "the orphan was revoked at start"
        );
    }
    assert!(minted(&emu).is_empty(), "{:?}", minted(&emu));
    let ledger = env.ledger();
    assert!(
        ledger.keys.iter().all(|k| k.state != KeyState::Pending),
        "{ledger:?}"
    );

    // The restarted daemon serves: status answers, and a scanner gets a key.
    let status = env.command(&["status", "--json"]).output().await.unwrap();
    let report: Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json: {e}: {}",
            String::from_utf8_lossy(&status.stderr)
        )
    });
    assert_eq!(report["state"], "ready", "{report}");
    let exec = env
        .command(&["exec", "--", "sh", "-c", "test -n \"$CORTEX_API_KEY\""])
        .output()
        .await
        .unwrap();
    assert!(
        exec.status.success(),
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    assert_eq!(minted(&emu).len(), 1);
    daemon.stop().await;
    assert!(
        env.ledger()
            .keys
            .iter()
            .any(|k| k.state == KeyState::Active)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_crash_after_generate_leaves_an_orphan_that_restart_revokes() {
    crash_and_recover("after-generate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_crash_before_generate_mints_nothing_and_restart_resolves_the_entry() {
    crash_and_recover("before-generate").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_crash_after_store_is_recovered_at_restart() {
    crash_and_recover("after-store").await;
}

// ---------------------------------------------------------------------------------------------
// Issue 12, finding 8: the cap and the backoff hold everywhere

/// `max_live_keys` was enforced only by the hourly reconcile: rotations while scans hold the
/// old keys piled up live keys. It now holds right after each rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_live_keys_holds_right_after_each_rotation() {
    let rig = Rig::start().await;
    let (b, emu) = (&rig.broker, &rig.emu);
    let k1 = rig.creds().await;
    let _l1 = b.lease(PROFILE, k1.key_id);
    let k2 = b.rotate(PROFILE).await.unwrap();
    let _l2 = b.lease(PROFILE, k2.key_id);
    assert_eq!(minted_ids(emu).len(), 2, "two live keys: the cap (2)");
    let k3 = b.rotate(PROFILE).await.unwrap();
    assert_eq!(
        minted_ids(emu),
        vec![k2.key_id, k3.key_id],
        "the oldest went at once, though still leased"
    );
}

/// `scan_failed` minted at once even while a failed mint's backoff ran: every scanner in a retry
/// loop hammered a failing tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_failed_respects_the_backoff_of_a_failed_mint() {
    let rig = Rig::start().await;
    let (b, emu) = (&rig.broker, &rig.emu);
    let mut faults = Faults::default();
    faults.failures.insert(
        "generate".into(),
        Failure {
            kind: FailureKind::Status(503),
            rate: 1.0,
        },
    );
    emu.set_faults(faults);
    refused(b.credentials(PROFILE, ZERO).await, "generate fails");
    let generates = emu.calls().generate;
    for _ in 0..5 {
        refused(b.scan_failed(PROFILE, 1).await, "in backoff");
    }
    assert_eq!(
        emu.calls().generate,
        generates,
        "no mint during the backoff"
    );
    emu.set_faults(Faults::default());
    advance(&rig.clock, 11 * MIN_MS);
    assert!(matches!(
        b.scan_failed(PROFILE, 1).await,
        Ok(ScanFailure::Replaced(_))
    ));
}
