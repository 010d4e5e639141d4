//! Whose key is it? Attacks on key ownership (issue 12, findings 3 and 7): a profile moved
//! between two tenants whose key ids collide, and two installations of the same user on the same
//! host sharing one tenant. In each, scanmint must delete only keys it minted, on the tenant
//! that minted them; someone else's key with the same id, or the same comment prefix, survives.
//!
//! The broker runs in-process with a `ManualClock` against two real emulators on loopback.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use scanmint::domain::broker::{Broker, BrokerOptions, LoginRequest, PrimaryKey};
use scanmint::domain::clock::ManualClock;
use scanmint::domain::config::Config;
use scanmint::domain::ledger::LedgerFile;
use scanmint::domain::store::Store;
use scanmint::tenant::connector::HttpConnector;
use scanmint::tenant::emulator::{
    Emulator, EmulatorConfig, Failure, FailureKind, Faults, KeyEdit, KeyState as TenantKeyState,
};
use scanmint::tenant::papi::wire::SecurityLevel;

const PROFILE: &str = "default";
const MIN_MS: i64 = 60_000;
const SHORT: &str = "[profile.default]\nttl = \"1h\"\ngrace = \"1m\"\n";

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig {
        rate_limit_per_sec: 1000,
        ..EmulatorConfig::default()
    })
    .await
    .expect("the emulator starts")
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

fn broker(
    clock: &Arc<ManualClock>,
    state: &Path,
    store: &Store,
    env: Option<PrimaryKey>,
) -> Broker {
    Broker::new(BrokerOptions {
        config: Config::parse(Path::new("/test/scanmint/config.toml"), SHORT).unwrap(),
        store: store.clone(),
        connector: Arc::new(HttpConnector),
        clock: clock.clone(),
        ledger: LedgerFile::new(state),
        env_primary: env,
    })
    .expect("the broker starts")
}

/// Live keys on a tenant other than its Primary key.
fn live_minted(emu: &Emulator) -> Vec<i64> {
    emu.live_keys()
        .into_iter()
        .filter(|k| !k.is_primary)
        .map(|k| k.id)
        .collect()
}

fn is_live(emu: &Emulator, id: i64) -> bool {
    emu.keys()
        .iter()
        .any(|k| k.id == id && k.state == TenantKeyState::Active)
}

/// Someone else's keys on `emu`, made in the console until every id in `ids` exists there.
fn someone_elses_keys(emu: &Emulator, ids: &[i64]) -> Vec<i64> {
    let max = *ids.iter().max().unwrap();
    let mut made = Vec::new();
    loop {
        let (id, _) = emu.create_key(&["Viewer"], SecurityLevel::Standard, None);
        made.push(id);
        if id >= max {
            break;
        }
    }
    for id in ids {
        assert!(made.contains(id), "the victim tenant has key {id} too");
    }
    made
}

fn delete_fails(emu: &Emulator, fail: bool) {
    let mut faults = Faults::default();
    if fail {
        faults.failures.insert(
            "delete".into(),
            Failure {
                kind: FailureKind::Status(503),
                rate: 1.0,
            },
        );
    }
    emu.set_faults(faults);
}

/// Finding 3: keys minted on tenant A (one active, one waiting in the outbox), then the
/// profile moves to tenant B, where the same ids are someone else's keys. Rotation, the
/// scheduler (outbox, retiring keys, reconciliation), `scan_failed`, revocation and logout on B
/// must leave B's keys alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_a_profile_to_another_tenant_never_deletes_the_colliding_ids_there() {
    let (a, b) = (emulator().await, emulator().await);
    assert_eq!(
        a.primary_key_id(),
        b.primary_key_id(),
        "ids collide by design"
    );
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = Store::memory();

    // On A: a first key, rotated (the first retires), and its delete refused: the outbox.
    let on_a = broker(&clock, &state, &store, Some(primary_of(&a)));
    let first = on_a.credentials(PROFILE, Duration::ZERO).await.unwrap();
    let second = on_a.rotate(PROFILE).await.unwrap();
    delete_fails(&a, true);
    clock.advance(2 * MIN_MS);
    on_a.tick().await;
    assert_eq!(on_a.outbox_len(), 1, "the first key's delete waits");
    on_a.shutdown().await;
    drop(on_a);
    let ours_on_a = vec![first.key_id, second.key_id];
    let victims = someone_elses_keys(&b, &ours_on_a);

    // The profile now points at B (the environment, or an edited config, says so).
    let on_b = broker(&clock, &state, &store, Some(primary_of(&b)));
    let failed = on_b.scan_failed(PROFILE, second.key_id).await.unwrap();
    assert!(
        !matches!(failed, scanmint::domain::broker::ScanFailure::KeyWorks),
        "A's key is not B's"
    );
    clock.advance(15 * MIN_MS);
    on_b.tick().await;
    on_b.rotate(PROFILE).await.unwrap();
    clock.advance(2 * MIN_MS);
    on_b.tick().await;
    on_b.reconcile(PROFILE).await.unwrap();
    on_b.revoke(PROFILE, false).await.unwrap();
    on_b.credentials(PROFILE, Duration::ZERO).await.unwrap();
    on_b.logout(PROFILE).await.unwrap();

    for id in &victims {
        assert!(is_live(&b, *id), "B's key {id} (someone else's) survives");
    }
    assert_eq!(
        live_minted(&b),
        victims,
        "scanmint's own keys on B are revoked, the others kept"
    );
    // A's keys were never sent to B; they stay on A (its Primary key is no longer at hand).
    delete_fails(&a, false);
    assert!(is_live(&a, first.key_id) && is_live(&a, second.key_id));
    let ledger = on_b.ledger_snapshot();
    assert!(
        ledger
            .outbox
            .iter()
            .all(|o| o.base_url.as_deref() == Some(a.base_url().trim_end_matches('/'))),
        "the queued delete still names tenant A: {:?}",
        ledger.outbox
    );
}

/// Finding 3: a re-login to another tenant revokes the old tenant's keys there, with the old
/// Primary key, and says what it did; B's colliding keys survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_login_to_another_tenant_revokes_the_old_keys_on_the_old_tenant() {
    let (a, b) = (emulator().await, emulator().await);
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(&clock, &dir.path().join("state"), &Store::memory(), None);
    broker.login(PROFILE, login_request(&a)).await.unwrap();
    let on_a = broker.credentials(PROFILE, Duration::ZERO).await.unwrap();
    let victims = someone_elses_keys(&b, &[on_a.key_id]);

    let outcome = broker.login(PROFILE, login_request(&b)).await.unwrap();
    assert!(
        outcome.notes.iter().any(|n| n.contains("previous tenant")),
        "the login says what happened to the old keys: {:?}",
        outcome.notes
    );
    assert!(live_minted(&a).is_empty(), "A's keys revoked on A");
    let on_b = broker.credentials(PROFILE, Duration::ZERO).await.unwrap();
    assert_eq!(
        on_b.base_url.trim_end_matches('/'),
        b.base_url().trim_end_matches('/')
    );
    broker.logout(PROFILE).await.unwrap();
    for id in &victims {
        assert!(is_live(&b, *id), "B's key {id} survives");
    }

    // When the old tenant cannot revoke, the keys are left to expire, and the login says so.
    broker.login(PROFILE, login_request(&a)).await.unwrap();
    broker.credentials(PROFILE, Duration::ZERO).await.unwrap();
    delete_fails(&a, true);
    let outcome = broker.login(PROFILE, login_request(&b)).await.unwrap();
    assert!(
        outcome.notes.iter().any(|n| n.contains("left to expire")),
        "{:?}",
        outcome.notes
    );
    assert_eq!(
        broker.outbox_len(),
        0,
        "nothing of A's waits to be sent to B"
    );
    broker.logout(PROFILE).await.unwrap();
    for id in &victims {
        assert!(is_live(&b, *id), "B's key {id} survives");
    }
}

/// Finding 7: two installations (state directories, as two containers would have) of the same
/// user on the same host, one tenant. Logout in one leaves the other's key live; so does a key
/// someone else made with our comment prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_in_one_installation_leaves_another_installations_key_live() {
    let emu = emulator().await;
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let one = broker(
        &clock,
        &dir.path().join("one"),
        &Store::memory(),
        Some(primary_of(&emu)),
    );
    let two = broker(
        &clock,
        &dir.path().join("two"),
        &Store::memory(),
        Some(primary_of(&emu)),
    );
    assert_ne!(one.tag_prefix(PROFILE), two.tag_prefix(PROFILE));
    let mine = one.credentials(PROFILE, Duration::ZERO).await.unwrap();
    let theirs = two.credentials(PROFILE, Duration::ZERO).await.unwrap();
    // A console user copies our prefix into the comment of their own key.
    let (copied, _) = emu.create_key(&["Viewer"], SecurityLevel::Standard, None);
    assert!(emu.edit_key(
        copied,
        KeyEdit {
            comment: Some(format!("{}imitation", one.tag_prefix(PROFILE))),
            ..KeyEdit::default()
        }
    ));

    let revoked = one.logout(PROFILE).await.unwrap();
    assert_eq!(revoked, vec![mine.key_id], "only this installation's key");
    assert!(
        is_live(&emu, theirs.key_id),
        "the other installation's key is live"
    );
    assert!(
        is_live(&emu, copied),
        "a key created by someone else is live"
    );
    assert!(!is_live(&emu, mine.key_id));
    two.revoke(PROFILE, true).await.unwrap();
    assert!(!is_live(&emu, theirs.key_id));
    assert!(is_live(&emu, copied));
}

/// Finding 8 (issue 12): with the ledger deleted (not corrupt: missing), the keys it knew stay
/// live on the tenant unless the next start searches the tenant for our tags, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ledger_makes_the_next_start_search_for_our_tags_once() {
    let emu = emulator().await;
    let clock = Arc::new(ManualClock::default());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let first = broker(&clock, &state, &Store::memory(), Some(primary_of(&emu)));
    let lost = first.credentials(PROFILE, Duration::ZERO).await.unwrap();
    drop(first);
    std::fs::remove_file(state.join("ledger.json")).unwrap();

    let second = broker(&clock, &state, &Store::memory(), Some(primary_of(&emu)));
    let report = second.reconcile(PROFILE).await.unwrap();
    assert_eq!(
        report.revoked,
        vec![lost.key_id],
        "the forgotten key is found by its tag"
    );
    assert!(live_minted(&emu).is_empty());
    let lists = emu.calls().list;
    second.reconcile(PROFILE).await.unwrap();
    assert!(
        emu.calls().list - lists <= 1,
        "the full search happens once"
    );
}
