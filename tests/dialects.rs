//! The key lifecycle under every tenant dialect the emulator speaks (`--dialect`), one at a time
//! and all at once: login, two scans, a rotation, a scan after the key was deleted in the
//! console, doctor, logout. Every minted key must live the ttl asked for (in the tenant's own
//! unit), and logout must leave no live key. Also: a key broadened in the console is never
//! handed out again (after a restart, at a reconcile), a cold mint rides through uncertain
//! `generate`s with exactly one live key, and a key sent in the wrong unit is revoked and
//! minted again. In-process brokers (tests/common/rig.rs) run concurrently; one test runs the
//! real binary for `doctor --json`.

mod common;

use std::time::Duration;

use common::rig::{PROFILE, Rig, TTL_MS};
use scanmint::domain::broker::{Event, ScanFailure, health};
use scanmint::domain::config::DEFAULT_ROLE;
use scanmint::tenant::emulator::{
    DIALECTS, EmulatorConfig, FailureKind, Faults, INSTANCE_ADMINISTRATOR, KeyEdit, KeyState,
    UncertainGenerate,
};
use scanmint::tenant::papi::TimeUnit;
use serde_json::Value;

/// What `doctor`'s dialect check must report for a `--dialect` spec.
fn expected_dialect(spec: &str) -> Value {
    let has = |name: &str| {
        spec == "all" && DIALECTS.iter().any(|(n, all, _)| *n == name && *all)
            || spec.split(',').any(|n| n == name)
    };
    serde_json::json!({
        "time_unit": if has("seconds") { "seconds" } else { "milliseconds" },
        "list_casing": if has("lowercase-list") { "lower" } else { "upper" },
        "delete_reply": if has("delete-reply-true") { "reply_true" } else { "update_count" },
        "validate": if has("validate-post") { "post" } else { "get" },
    })
}

async fn lifecycle(spec: &str) {
    let rig = Rig::start(spec, false).await;
    let b = &rig.broker;
    if let Err(e) = b.login(PROFILE, rig.login_request()).await {
        panic!("[{spec}] login: {e:?}");
    }

    // Two scans share one key, which lives the ttl in the tenant's own unit.
    let first = rig.creds().await;
    let again = rig.creds().await;
    assert_eq!(
        first.key_id, again.key_id,
        "[{spec}] the second scan reuses the key"
    );
    let (raw, unit) = rig.wire_expiry(first.key_id).await;
    let want = if expected_dialect(spec)["time_unit"] == "seconds" {
        TimeUnit::Seconds
    } else {
        TimeUnit::Millis
    };
    assert_eq!(unit, Some(want), "[{spec}] expiration {raw} on the wire");
    let lived = want.to_ms(raw) - rig.emu.now_ms();
    assert!(
        (TTL_MS - 15_000..=TTL_MS + 1_500).contains(&lived),
        "[{spec}] the key expires in {lived} ms"
    );

    // A rotation mints a new key.
    let rotated = match b.rotate(PROFILE).await {
        Ok(c) => c,
        Err(e) => panic!("[{spec}] rotate: {e:?}"),
    };
    assert_ne!(rotated.key_id, first.key_id, "[{spec}]");

    // The key is deleted in the console; the scanner fails, the next scan gets a new key.
    assert!(rig.emu.revoke(rotated.key_id));
    match b.scan_failed(PROFILE, rotated.key_id).await {
        Ok(ScanFailure::Replaced(_)) => {}
        other => panic!("[{spec}] scan_failed: {other:?}"),
    }
    let replaced = rig.creds().await;
    assert!(
        ![first.key_id, rotated.key_id].contains(&replaced.key_id),
        "[{spec}]"
    );

    // doctor names the dialect.
    let report = health::run(b, PROFILE, Ok("in process".into())).await;
    let dialect = report
        .checks
        .iter()
        .find(|c| c.name == "dialect")
        .unwrap_or_else(|| panic!("[{spec}] no dialect check: {report:?}"));
    let data = dialect.data.clone().unwrap();
    for (field, want) in expected_dialect(spec).as_object().unwrap() {
        assert_eq!(&data[field], want, "[{spec}] {field}: {}", dialect.detail);
    }
    let live_keys = report.checks.iter().find(|c| c.name == "live keys");
    assert_eq!(
        live_keys.map(|c| c.status),
        Some(health::Verdict::Pass),
        "[{spec}] {report:?}"
    );

    if let Err(e) = b.logout(PROFILE).await {
        panic!("[{spec}] logout: {e:?}");
    }
    assert_eq!(
        rig.minted_live(),
        Vec::<i64>::new(),
        "[{spec}] logout leaves no live key"
    );
    rig.assert_lifetimes(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dialect_alone_and_all_at_once_runs_the_whole_lifecycle() {
    let mut specs: Vec<&str> = vec!["", "all"];
    specs.extend(DIALECTS.iter().map(|(name, _, _)| *name));
    let runs = specs.into_iter().map(lifecycle);
    tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join_all(runs),
    )
    .await
    .expect("the matrix finishes within a minute");
}

/// Edited in the console to a broader role, then the daemon restarts: the restored key is
/// checked before it is handed out, revoked, replaced, and editors hear why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_broadened_in_the_console_is_never_handed_out_after_a_restart() {
    for spec in ["", "all"] {
        let mut rig = Rig::start(spec, true).await;
        let first = rig.creds().await;
        assert!(rig.emu.edit_key(
            first.key_id,
            KeyEdit {
                roles: Some(vec![DEFAULT_ROLE.into(), INSTANCE_ADMINISTRATOR.into()]),
                ..KeyEdit::default()
            }
        ));
        rig.restart();
        let mut events = rig.broker.subscribe();
        let next = rig.creds().await;
        assert_ne!(
            next.key_id, first.key_id,
            "[{spec}] the broadened key was handed out"
        );
        let old = rig
            .minted()
            .into_iter()
            .find(|k| k.id == first.key_id)
            .unwrap();
        assert_eq!(old.state, KeyState::Deleted, "[{spec}] and revoked");
        assert_eq!(rig.minted_live(), vec![next.key_id], "[{spec}]");
        let mut told = None;
        while let Ok(e) = events.try_recv() {
            if let Event::Notice { message, .. } = e {
                told = Some(message);
            }
        }
        let told = told.unwrap_or_else(|| panic!("[{spec}] no editor was told"));
        assert!(
            told.contains(&first.key_id.to_string()) && told.contains(INSTANCE_ADMINISTRATOR),
            "{told}"
        );
        rig.assert_lifetimes(&[]);
    }
}

/// Broadened (or made Advanced) while the broker runs: the next reconcile revokes and replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_revokes_and_replaces_a_key_changed_on_the_tenant() {
    let rig = Rig::start("seconds,lowercase-list", true).await;
    let first = rig.creds().await;
    assert!(rig.emu.edit_key(
        first.key_id,
        KeyEdit {
            security_level: Some(scanmint::tenant::emulator::SecurityLevel::Advanced),
            ..KeyEdit::default()
        }
    ));
    let report = rig.broker.reconcile(PROFILE).await.expect("reconcile");
    assert_eq!(report.changed.len(), 1, "{report:?}");
    assert!(report.changed[0].contains("advanced"), "{report:?}");
    let status = rig.broker.status(PROFILE).await;
    let now_id = status.key.expect("replaced at once").key_id;
    assert_ne!(now_id, first.key_id);
    assert_eq!(rig.minted_live(), vec![now_id]);
    assert_eq!(rig.creds().await.key_id, now_id);
}

/// The first `generate`s mint a key but answer 503 (or drop the connection): the key each one
/// minted is found by its tag and revoked, and the third try succeeds. One live key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_mint_rides_through_uncertain_generates_with_exactly_one_live_key() {
    for (spec, kind) in [
        ("", FailureKind::Status(503)),
        ("", FailureKind::Drop),
        (
            "seconds,lowercase-list,ignore-paging",
            FailureKind::Status(502),
        ),
    ] {
        let rig = Rig::start(spec, true).await;
        let mut faults = rig.emu.faults();
        faults.uncertain_generate = Some(UncertainGenerate { kind, remaining: 2 });
        rig.emu.set_faults(faults);
        let key = rig.creds().await;
        assert_eq!(rig.minted_live(), vec![key.key_id], "[{spec} {kind:?}]");
        let made = rig.minted();
        assert_eq!(
            made.len(),
            3,
            "[{spec} {kind:?}] two lost, one used: {made:?}"
        );
        assert!(
            made.iter()
                .filter(|k| k.id != key.key_id)
                .all(|k| k.state == KeyState::Deleted),
            "{made:?}"
        );
        assert_eq!(rig.emu.calls().generate, 3);
        rig.assert_lifetimes(&[]);
    }
}

/// The tenant switches to epoch seconds after scanmint learned milliseconds: the next key is
/// recorded with an absurd expiry, revoked before anyone gets it, and minted again in seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sent_in_the_wrong_unit_is_revoked_and_minted_again() {
    let rig = Rig::start("", true).await;
    let first = rig.creds().await;
    rig.emu
        .set_faults(Faults::with_dialects("seconds").unwrap());
    let next = rig.broker.rotate(PROFILE).await.expect("rotation");
    let made = rig.minted();
    assert_eq!(made.len(), 3, "{made:?}");
    let absurd = made
        .iter()
        .find(|k| ![first.key_id, next.key_id].contains(&k.id))
        .unwrap();
    assert_eq!(absurd.state, KeyState::Deleted, "never handed out, revoked");
    assert!(absurd.expiration.unwrap() - rig.emu.now_ms() > 1000 * TTL_MS);
    assert_eq!(
        rig.wire_expiry(next.key_id).await.1,
        Some(TimeUnit::Seconds)
    );
    rig.assert_lifetimes(&[absurd.id]);

    // And back: a tenant in ms refuses a seconds expiration ("in the past"); scanmint reads
    // its timestamps again and mints in ms, without blaming the role.
    rig.emu.set_faults(Faults::default());
    let last = rig
        .broker
        .rotate(PROFILE)
        .await
        .expect("rotation after the switch back");
    assert_eq!(rig.wire_expiry(last.key_id).await.1, Some(TimeUnit::Millis));
    rig.assert_lifetimes(&[absurd.id]);
}

/// `scanmint doctor --json` (the real binary and daemon) names the dialect of a tenant that
/// speaks all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_json_names_the_dialect() {
    let env = common::Env::with(
        EmulatorConfig {
            rate_limit_per_sec: 1000,
            faults: Faults::with_dialects("all").unwrap(),
            ..Default::default()
        },
        true,
    )
    .await;
    let (_, out, err) = env.run(&["doctor", "--json"]).await;
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}{err}"));
    let check = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "dialect")
        .unwrap_or_else(|| panic!("{report}"))
        .clone();
    for (field, want) in expected_dialect("all").as_object().unwrap() {
        assert_eq!(&check["data"][field], want, "{field}: {check}");
    }
    assert!(
        check["detail"].as_str().unwrap().contains("seconds"),
        "{check}"
    );
    assert!(env.minted_live().is_empty(), "the canary was revoked");
}

/// A restarted daemon mints on what the last run learned of the tenant (its time unit and clock,
/// kept in the ledger): its first mint reads nothing before `generate`, and the key still lives
/// the ttl in the tenant's own unit. A first start has nothing to go on and reads first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_broker_mints_at_once_on_what_the_last_run_learned() {
    let mut rig = Rig::start("seconds", true).await;
    let lists = |rig: &Rig| rig.emu.calls().list;
    let first = rig.creds().await;
    assert_eq!(
        lists(&rig),
        2,
        "a first start reads the Primary key's record (the unit, the clock), then verifies"
    );
    rig.broker.shutdown().await;
    let ledger: Value =
        serde_json::from_slice(&std::fs::read(rig.state_dir().join("ledger.json")).unwrap())
            .unwrap();
    let facts = &ledger["tenants"][rig.emu.base_url()];
    assert_eq!(facts["unit"], "seconds", "{ledger}");
    assert!(facts["clock_offset_ms"].is_i64(), "{ledger}");

    rig.restart();
    let before = rig.emu.calls();
    let next = rig
        .broker
        .rotate(PROFILE)
        .await
        .expect("a key after the restart");
    assert_ne!(next.key_id, first.key_id);
    let after = rig.emu.calls();
    assert_eq!(after.generate - before.generate, 1, "one generate");
    assert_eq!(
        after.list - before.list,
        1,
        "only the verification: no listing to learn the tenant again"
    );
    assert_eq!(
        rig.wire_expiry(next.key_id).await.1,
        Some(TimeUnit::Seconds)
    );
    rig.assert_lifetimes(&[]);
}

/// The restarted daemon's start-up reconcile runs while its first mint is in flight (the mint
/// no longer waits for it): it spends no listing on the mint's own pending entry, which the
/// mint settles and the listing could not judge. One listing by id, one verification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_meeting_a_mint_in_flight_spends_no_call_on_its_pending_entry() {
    let mut rig = Rig::start("", true).await;
    rig.creds().await;
    rig.broker.shutdown().await;
    rig.restart();
    rig.emu.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let before = rig.emu.calls();
    let minting = {
        let broker = rig.broker.clone();
        tokio::spawn(async move { broker.rotate(PROFILE).await })
    };
    // The mint is waiting on `generate` (its pending entry is in the ledger) when this starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    rig.broker.reconcile(PROFILE).await.expect("reconcile");
    minting.await.unwrap().expect("the mint");
    let after = rig.emu.calls();
    assert_eq!(after.generate - before.generate, 1);
    assert_eq!(
        after.list - before.list,
        2,
        "the ledger's ids, and the mint's verification: nothing for the pending entry"
    );
}
