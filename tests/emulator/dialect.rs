//! The emulator's dialect switches, the console's edit call and the uncertain generate, each
//! seen on the wire (issue 11). Part of `tests/emulator.rs`.

use reqwest::Method;
use scanmint::tenant::emulator::{
    CLI_READ_ONLY_CUSTOM, CLI_WRITE_CUSTOM, DIALECTS, Emulator, EmulatorConfig, Faults,
    INSTANCE_ADMINISTRATOR, KeyEdit, UNCERTAIN_GENERATES,
};
use scanmint::tenant::papi::wire::{self, SecurityLevel};
use serde_json::{Value, json};

use super::{Caller, auth_headers, client_with, get, mint, post, send_raw, start, unlimited};

async fn speaking(dialects: &str) -> Emulator {
    start(EmulatorConfig {
        faults: Faults::with_dialects(dialects).unwrap(),
        ..unlimited()
    })
    .await
}

fn list_data(body: &Value) -> Vec<Value> {
    let reply = &body["reply"];
    reply
        .get("DATA")
        .or_else(|| reply.get("data"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn seconds_dialect_speaks_epoch_seconds_both_ways() {
    let emu = speaking("seconds").await;
    let primary = Caller::primary(&emu);
    let a = post(&emu, &primary, wire::PATH_LIST, json!({})).await;
    let created = list_data(&a.body)[0]["creation_time"].as_i64().unwrap();
    assert_eq!(created.to_string().len(), 10, "{created}");
    assert!((created * 1000 - emu.now_ms()).abs() < 5_000);

    let in_an_hour_s = emu.now_ms() / 1000 + 3600;
    let right = mint(&emu, &primary, &[CLI_READ_ONLY_CUSTOM], Some(in_an_hour_s)).await;
    // A ms value is taken as seconds: recorded, absurdly far away, as a real tenant would.
    let wrong = mint(
        &emu,
        &primary,
        &[CLI_READ_ONLY_CUSTOM],
        Some(in_an_hour_s * 1000),
    )
    .await;
    let view = |id| emu.keys().into_iter().find(|k| k.id == id).unwrap();
    assert_eq!(
        view(right.id).expiration,
        Some(in_an_hour_s * 1000),
        "ms inside"
    );
    assert_eq!(view(wrong.id).expiration, Some(in_an_hour_s * 1_000_000));
    let a = post(
        &emu,
        &primary,
        wire::PATH_LIST,
        json!({"filters": [{"field": "id", "operator": "in", "value": [right.id, wrong.id]}]}),
    )
    .await;
    let expirations: Vec<Value> = list_data(&a.body)
        .iter()
        .map(|r| r["expiration"].clone())
        .collect();
    assert_eq!(
        expirations,
        [json!(in_an_hour_s), json!(in_an_hour_s * 1000)]
    );
    // Filters are in seconds too.
    let a = post(
        &emu,
        &primary,
        wire::PATH_LIST,
        json!({"filters": [{"field": "expiration", "operator": "lte", "value": in_an_hour_s}]}),
    )
    .await;
    let ids: Vec<i64> = list_data(&a.body)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [right.id]);
    // A past expiration is still refused, in the dialect's words.
    let a = post(
        &emu,
        &primary,
        wire::PATH_GENERATE,
        json!({"roles": [CLI_READ_ONLY_CUSTOM], "security_level": "standard", "expiration": 5}),
    )
    .await;
    assert_eq!(a.status, 500, "{}", a.body);
    let a = post(
        &emu,
        &primary,
        wire::PATH_GENERATE,
        json!({"roles": [CLI_READ_ONLY_CUSTOM], "security_level": "standard", "expiration": "x"}),
    )
    .await;
    assert!(a.body.to_string().contains("seconds"), "{}", a.body);
}

#[tokio::test]
async fn delete_and_validate_reply_variants() {
    let emu = speaking("delete-reply-true").await;
    let primary = Caller::primary(&emu);
    let key = mint(&emu, &primary, &[CLI_READ_ONLY_CUSTOM], None).await;
    let a = post(
        &emu,
        &primary,
        wire::PATH_DELETE,
        json!({"filters": [{"field": "id", "operator": "in", "value": [key.id]}]}),
    )
    .await;
    assert_eq!((a.status, a.body), (200, json!({"reply": true})));
    assert_eq!(emu.live_keys().len(), 1);

    for (dialect, want) in [
        ("", json!(true)),
        ("validate-string", json!("true")),
        ("validate-reply", json!({"reply": true})),
    ] {
        let emu = speaking(dialect).await;
        let a = get(&emu, &Caller::primary(&emu), wire::PATH_VALIDATE).await;
        assert_eq!((a.status, a.body), (200, want), "{dialect}");
    }

    // POST-only validate: the GET route does not exist; both POST spellings answer.
    let emu = speaking("validate-post").await;
    let primary = Caller::primary(&emu);
    let a = get(&emu, &primary, wire::PATH_VALIDATE).await;
    assert_eq!(a.status, 404, "{}", a.body);
    for path in [wire::PATH_VALIDATE_POST, wire::PATH_VALIDATE] {
        let a = post(&emu, &primary, path, json!({})).await;
        assert_eq!((a.status, &a.body), (200, &json!(true)), "{path}");
    }
    let nobody = Caller::standard(primary.id, scanmint::domain::secret::Secret::new("nope"));
    assert_eq!(
        post(&emu, &nobody, wire::PATH_VALIDATE_POST, json!({}))
            .await
            .status,
        401
    );
    // The documented dialect has no POST form.
    let plain = start(unlimited()).await;
    let a = post(
        &plain,
        &Caller::primary(&plain),
        wire::PATH_VALIDATE_POST,
        json!({}),
    )
    .await;
    assert_eq!(a.status, 405);
}

#[tokio::test]
async fn error_envelopes_at_the_root_camel_and_under_metadata() {
    for (dialect, code, msg) in [
        ("root-errors", "/err_code", "/err_msg"),
        ("camel-errors", "/errorCode", "/message"),
        (
            "metadata-errors",
            "/data/metadata/err_code",
            "/data/err_msg",
        ),
    ] {
        let emu = speaking(dialect).await;
        let nobody = Caller::standard(
            emu.primary_key_id(),
            scanmint::domain::secret::Secret::new("x"),
        );
        let a = get(&emu, &nobody, wire::PATH_VALIDATE).await;
        assert_eq!(a.status, 401);
        let want_code = if dialect == "camel-errors" {
            json!(401)
        } else {
            json!("401")
        };
        assert_eq!(
            a.body.pointer(code),
            Some(&want_code),
            "{dialect}: {}",
            a.body
        );
        assert!(
            a.body.pointer(msg).unwrap().is_string(),
            "{dialect}: {}",
            a.body
        );
        assert!(a.body.get("reply").is_none(), "{dialect}");
        // err_extra as an array of objects, where this envelope puts it.
        let a = post(
            &emu,
            &Caller::primary(&emu),
            wire::PATH_GENERATE,
            json!({"roles": ["Nope"], "security_level": "standard"}),
        )
        .await;
        let extra = match dialect {
            "root-errors" => "/err_extra",
            "camel-errors" => "/details",
            _ => "/data/metadata/err_extra",
        };
        assert!(
            a.body.pointer(extra).unwrap().is_array(),
            "{dialect}: {}",
            a.body
        );
        let parsed = wire::parse_error_body(a.body.to_string().as_bytes()).unwrap();
        assert!(parsed.err_msg.unwrap().contains("Nope"), "{dialect}");
    }
}

#[tokio::test]
async fn ignore_paging_returns_every_match_every_time() {
    let emu = speaking("ignore-paging,lowercase-list").await;
    for _ in 0..150 {
        emu.create_key(&[CLI_READ_ONLY_CUSTOM], SecurityLevel::Standard, None);
    }
    let primary = Caller::primary(&emu);
    for (from, to) in [(0, 100), (100, 110), (500, 600)] {
        let a = post(
            &emu,
            &primary,
            wire::PATH_LIST,
            json!({"search_from": from, "search_to": to}),
        )
        .await;
        assert_eq!(a.body["reply"]["data"].as_array().unwrap().len(), 151);
        assert_eq!(a.body["reply"]["filter_count"], json!(151));
    }
    // The documented dialect pages.
    let paged = start(unlimited()).await;
    for _ in 0..150 {
        paged.create_key(&[CLI_READ_ONLY_CUSTOM], SecurityLevel::Standard, None);
    }
    let a = post(
        &paged,
        &Caller::primary(&paged),
        wire::PATH_LIST,
        json!({"search_from": 100, "search_to": 110}),
    )
    .await;
    assert_eq!(list_data(&a.body).len(), 10);
}

#[tokio::test]
async fn a_key_edited_after_minting() {
    let emu = start(unlimited()).await;
    let primary = Caller::primary(&emu);
    let key = mint(&emu, &primary, &[CLI_READ_ONLY_CUSTOM], None).await;
    let path = format!("{}{}", wire::PATH_EDIT_PREFIX, key.id);
    let put = |caller: Caller, data: Value| {
        let headers = auth_headers(&caller, emu.now_ms());
        let url = format!("{}{path}", emu.base_url());
        async move {
            send_raw(
                &client_with(None),
                Method::PUT,
                url,
                &headers,
                Some(json!({ "request_data": data }).to_string()),
            )
            .await
            .unwrap()
        }
    };
    // Broadened through the API, as the console would.
    let a = put(
        primary.clone(),
        json!({"roles": [CLI_READ_ONLY_CUSTOM, CLI_WRITE_CUSTOM]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["reply"]["roles"],
        json!([CLI_READ_ONLY_CUSTOM, CLI_WRITE_CUSTOM])
    );
    let a = get(&emu, &primary, &path).await;
    assert_eq!(a.body["reply"]["roles"][1], json!(CLI_WRITE_CUSTOM));
    let a = post(
        &emu,
        &primary,
        wire::PATH_LIST,
        json!({"filters": [{"field": "id", "operator": "in", "value": [key.id]}]}),
    )
    .await;
    assert_eq!(list_data(&a.body)[0]["roles"][1], json!(CLI_WRITE_CUSTOM));
    // The same rules as generate: only held roles, known roles, authenticated, permitted.
    assert_eq!(
        put(primary.clone(), json!({"roles": [INSTANCE_ADMINISTRATOR]}))
            .await
            .status,
        403
    );
    assert_eq!(
        put(primary.clone(), json!({"roles": ["Nope"]}))
            .await
            .status,
        500
    );
    assert_eq!(put(primary.clone(), json!({"roles": 7})).await.status, 400);
    assert_eq!(
        put(key.clone(), json!({"comment": "mine"})).await.status,
        403
    );
    let nobody = Caller::standard(primary.id, scanmint::domain::secret::Secret::new("no"));
    assert_eq!(put(nobody, json!({"comment": "x"})).await.status, 401);
    // Level changed: the key now needs Advanced auth.
    assert_eq!(get(&emu, &key, wire::PATH_VALIDATE).await.status, 200);
    let a = put(primary.clone(), json!({"security_level": "advanced"})).await;
    assert_eq!(a.body["reply"]["security_level"], json!("advanced"));
    assert_eq!(get(&emu, &key, wire::PATH_VALIDATE).await.status, 401);
    assert_eq!(emu.calls().edit, 8);

    // The console (admin endpoint and in-process) edits without grant checks.
    let client = client_with(None);
    let a = send_raw(
        &client,
        Method::PUT,
        format!("{}/keys/{}", emu.admin_url(), key.id),
        &[],
        Some(json!({"roles": [INSTANCE_ADMINISTRATOR]}).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(a.body, json!({"edited": true}));
    assert_eq!(emu.keys()[1].roles, [INSTANCE_ADMINISTRATOR]);
    assert!(emu.edit_key(
        key.id,
        KeyEdit {
            roles: Some(vec![CLI_READ_ONLY_CUSTOM.into()]),
            ..KeyEdit::default()
        }
    ));
    assert_eq!(emu.keys()[1].roles, [CLI_READ_ONLY_CUSTOM]);
    assert!(emu.revoke(key.id));
    assert!(
        !emu.edit_key(key.id, KeyEdit::default()),
        "deleted keys stay deleted"
    );
    assert_eq!(
        put(primary.clone(), json!({"comment": "x"})).await.status,
        404
    );
    let a = send_raw(
        &client,
        Method::PUT,
        format!("{}/keys/{}", emu.admin_url(), key.id),
        &[],
        Some(json!({"roles": ["x"], "nope": 1}).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 400);
}

#[tokio::test]
async fn uncertain_generate_mints_then_fails() {
    let emu = speaking("uncertain-generate").await;
    let primary = Caller::primary(&emu);
    let data =
        json!({"roles": [CLI_READ_ONLY_CUSTOM], "security_level": "standard", "comment": "tag"});
    for n in 1..=UNCERTAIN_GENERATES as usize {
        let a = post(&emu, &primary, wire::PATH_GENERATE, data.clone()).await;
        assert_eq!(a.status, 503, "{}", a.body);
        assert!(
            !a.body.to_string().contains("\"key\""),
            "no secret in the failure"
        );
        assert_eq!(emu.live_keys().len(), 1 + n, "minted anyway");
    }
    let a = post(&emu, &primary, wire::PATH_GENERATE, data.clone()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(emu.faults().uncertain_generate.is_none(), "used up");

    // The dropped-connection form: no HTTP reply at all, the key minted.
    let faults = Faults {
        uncertain_generate: Some(scanmint::tenant::emulator::UncertainGenerate {
            kind: scanmint::tenant::emulator::FailureKind::Drop,
            remaining: 1,
        }),
        ..Faults::default()
    };
    emu.set_faults(faults);
    let headers = auth_headers(&primary, emu.now_ms());
    let sent = send_raw(
        &client_with(None),
        Method::POST,
        format!("{}{}", emu.base_url(), wire::PATH_GENERATE),
        &headers,
        Some(json!({ "request_data": data }).to_string()),
    )
    .await;
    assert!(sent.is_err(), "dropped");
    assert_eq!(emu.live_keys().len(), 5);
    // Refused mints stay refused: nothing minted, no countdown spent.
    emu.set_faults(Faults::with_dialects("uncertain-generate").unwrap());
    let a = post(
        &emu,
        &primary,
        wire::PATH_GENERATE,
        json!({"roles": ["Nope"], "security_level": "standard"}),
    )
    .await;
    assert_eq!(a.status, 500);
    assert_eq!(
        emu.faults().uncertain_generate.unwrap().remaining,
        UNCERTAIN_GENERATES
    );
}

/// `scanmint emulator --dialect all` boots and speaks every starred dialect.
#[tokio::test]
async fn the_command_takes_dialects() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_scanmint"))
        .args(["emulator", "--dialect", "all", "--rate-limit", "0"])
        .env_remove("CI")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let boot: Value = serde_json::from_str(&line).unwrap();
    let admin = boot["admin_url"].as_str().unwrap().to_string();
    let answer = send_raw(
        &client_with(None),
        Method::GET,
        format!("{admin}/faults"),
        &[],
        None,
    )
    .await
    .unwrap();
    let faults: Faults = serde_json::from_value(answer.body).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(faults, Faults::with_dialects("all").unwrap());
    assert!(
        DIALECTS.iter().any(|(_, in_all, _)| !in_all),
        "some are opt-in only"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_scanmint"))
        .args(["emulator", "--dialect", "klingon"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("klingon"));
}
