//! The tenant emulator, driven over real loopback HTTP(S) as a client would see it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use scanmint::domain::secret::{Secret, random_alphanumeric};
use scanmint::tenant::emulator::{
    AdminKeyView, CallCounts, Emulator, EmulatorConfig, ErrorEnvelope, Failure, FailureKind,
    Faults, KeyState,
};
use scanmint::tenant::papi::wire::{self, SecurityLevel};
use serde_json::{Value, json};

/// Each dialect switch, the edit call and the uncertain generate (issue 11).
#[path = "emulator/dialect.rs"]
mod dialect;

const PATH_B: [&str; 3] = [
    "CLI Read-Only Custom",
    "CLI Write Custom",
    "Public API (PAPI) Edit",
];

fn client_config(ca_pem: Option<&str>) -> rustls::ClientConfig {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn client_with(ca_pem: Option<&str>) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(ca_pem))
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.unwrap()
}

/// No rate limit, so tests that make many calls are not disturbed by it.
fn unlimited() -> EmulatorConfig {
    EmulatorConfig {
        rate_limit_per_sec: 0,
        ..EmulatorConfig::default()
    }
}

#[derive(Clone)]
struct Caller {
    id: i64,
    key: Secret,
    level: SecurityLevel,
}

impl Caller {
    fn primary(emu: &Emulator) -> Caller {
        Caller {
            id: emu.primary_key_id(),
            key: emu.primary_key(),
            level: emu.security_level(),
        }
    }
    fn standard(id: i64, key: Secret) -> Caller {
        Caller {
            id,
            key,
            level: SecurityLevel::Standard,
        }
    }
}

struct Answer {
    status: u16,
    body: Value,
    date: Option<String>,
}

/// Auth headers for `caller`, Advanced ones stamped with `timestamp_ms`.
fn auth_headers(caller: &Caller, timestamp_ms: i64) -> Vec<(&'static str, String)> {
    match caller.level {
        SecurityLevel::Standard => vec![
            (wire::HEADER_AUTH_ID, caller.id.to_string()),
            ("authorization", caller.key.expose().to_string()),
        ],
        SecurityLevel::Advanced => {
            let nonce = random_alphanumeric(64);
            let ts = timestamp_ms.to_string();
            vec![
                (wire::HEADER_AUTH_ID, caller.id.to_string()),
                (wire::HEADER_NONCE, nonce.clone()),
                (wire::HEADER_TIMESTAMP, ts.clone()),
                (
                    "authorization",
                    wire::advanced_auth_hash(&caller.key, &nonce, &ts),
                ),
            ]
        }
    }
}

async fn send_raw(
    client: &reqwest::Client,
    method: Method,
    url: String,
    headers: &[(&'static str, String)],
    body: Option<String>,
) -> Result<Answer, reqwest::Error> {
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let date = resp
        .headers()
        .get("date")
        .map(|d| d.to_str().unwrap().to_string());
    let bytes = resp.bytes().await?;
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()));
    Ok(Answer { status, body, date })
}

/// POST `{"request_data": data}` to an API path as `caller`.
async fn post(emu: &Emulator, caller: &Caller, path: &str, data: Value) -> Answer {
    let headers = auth_headers(caller, emu.now_ms());
    let body = json!({ "request_data": data }).to_string();
    send_raw(
        &client_with(None),
        Method::POST,
        format!("{}{path}", emu.base_url()),
        &headers,
        Some(body),
    )
    .await
    .unwrap()
}

async fn get(emu: &Emulator, caller: &Caller, path_and_query: &str) -> Answer {
    let headers = auth_headers(caller, emu.now_ms());
    send_raw(
        &client_with(None),
        Method::GET,
        format!("{}{path_and_query}", emu.base_url()),
        &headers,
        None,
    )
    .await
    .unwrap()
}

async fn mint(emu: &Emulator, caller: &Caller, roles: &[&str], expiration: Option<i64>) -> Caller {
    let mut data = json!({"roles": roles, "security_level": "standard", "comment": "test"});
    if let Some(e) = expiration {
        data["expiration"] = json!(e);
    }
    let a = post(emu, caller, wire::PATH_GENERATE, data).await;
    assert_eq!(a.status, 200, "{}", a.body);
    Caller::standard(
        a.body["reply"]["id"].as_i64().unwrap(),
        Secret::new(a.body["reply"]["key"].as_str().unwrap()),
    )
}

fn err_msg(a: &Answer) -> String {
    a.body["reply"]["err_msg"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn assert_error(a: &Answer, status: u16) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["reply"]["err_code"], json!(status), "{}", a.body);
    assert!(a.body["reply"]["err_msg"].is_string(), "{}", a.body);
    assert!(a.body["reply"].get("err_extra").is_some(), "{}", a.body);
}

#[tokio::test]
async fn bootstrap_line_carries_a_working_primary_key() {
    let emu = start(EmulatorConfig {
        security_level: SecurityLevel::Advanced,
        path_a: true,
        ..unlimited()
    })
    .await;
    let line = scanmint::tenant::emulator::bootstrap_line(&emu).unwrap();
    assert!(!line.contains('\n'), "one line");
    let v: Value = serde_json::from_str(&line).unwrap();
    let mut names: Vec<&String> = v.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "admin_url",
            "base_url",
            "primary_key",
            "primary_key_id",
            "security_level"
        ]
    );
    assert_eq!(v["base_url"], json!(emu.base_url()));
    assert_eq!(v["admin_url"], json!(emu.admin_url()));
    let token = emu
        .admin_url()
        .strip_prefix(&format!("{}/_emulator/", emu.base_url()))
        .unwrap()
        .to_string();
    assert!(
        token.len() >= 32 && token.bytes().all(|b| b.is_ascii_alphanumeric()),
        "a random token in the admin URL: {token}"
    );
    assert_eq!(v["security_level"], json!("advanced"));
    let primary = Caller {
        id: v["primary_key_id"].as_i64().unwrap(),
        key: Secret::new(v["primary_key"].as_str().unwrap()),
        level: SecurityLevel::Advanced,
    };
    assert_eq!(get(&emu, &primary, wire::PATH_VALIDATE).await.status, 200);
    emu.shutdown().await;

    // A CA path without TLS is a configuration mistake, refused up front.
    let err = Emulator::start(EmulatorConfig {
        ca_out: Some("/tmp/never-written.pem".into()),
        ..unlimited()
    })
    .await
    .err()
    .expect("ca_out without tls");
    assert!(err.to_string().contains("tls"), "{err}");
}

#[tokio::test]
async fn mint_list_validate_delete_with_exact_envelopes() {
    let emu = start(unlimited()).await;
    let primary = Caller::primary(&emu);
    let expiration = emu.now_ms() + 3_600_000;
    let before = emu.now_ms();
    let a = post(
        &emu,
        &primary,
        wire::PATH_GENERATE,
        json!({"roles": ["CLI Read-Only Custom"], "security_level": "standard", "expiration": expiration, "comment": "scanmint t"}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let reply = a.body.as_object().unwrap();
    assert_eq!(reply.keys().collect::<Vec<_>>(), ["reply"]);
    let minted = reply["reply"].as_object().unwrap();
    assert_eq!(minted.len(), 2, "only id and key: {}", a.body);
    let id = minted["id"].as_i64().unwrap();
    let key = minted["key"].as_str().unwrap();
    assert!(id > emu.primary_key_id());
    assert_eq!(key.len(), 128);
    assert!(key.chars().all(|c| c.is_ascii_alphanumeric()));
    let scanner = Caller::standard(id, Secret::new(key));

    // The inventory shows the record, never the secret.
    let a = post(
        &emu,
        &primary,
        wire::PATH_LIST,
        json!({"filters": [wire::Filter::ids(&[id])]}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!a.body.to_string().contains(key));
    let creation_time = a.body["reply"]["DATA"][0]["creation_time"]
        .as_i64()
        .unwrap();
    assert!(creation_time >= before && creation_time <= emu.now_ms());
    assert_eq!(
        a.body,
        json!({"reply": {
            "DATA": [{
                "id": id,
                "roles": ["CLI Read-Only Custom"],
                "created_by": "primary@emulator",
                "creation_time": creation_time,
                "expiration": expiration,
                "comment": "scanmint t",
                "user_name": "primary@emulator",
                "security_level": "standard",
            }],
            "TOTAL_COUNT": 2,
            "FILTER_COUNT": 1,
        }})
    );
    let parsed: wire::ReplyEnvelope<wire::ListReply> =
        serde_json::from_value(a.body.clone()).unwrap();
    assert_eq!(parsed.reply.data[0].id, id);

    // The minted key works as the scanner: validate and the download link.
    let a = get(&emu, &scanner, wire::PATH_VALIDATE).await;
    assert_eq!((a.status, &a.body), (200, &json!(true)));
    let date = httpdate::parse_http_date(a.date.as_deref().expect("Date header")).unwrap();
    let date_ms = date
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((date_ms - emu.now_ms()).abs() < 5_000);
    let a = get(
        &emu,
        &scanner,
        &format!("{}?os=linux&architecture=amd64", wire::PATH_DOWNLOAD_LINK),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let link: wire::DownloadLinkReply = serde_json::from_value(a.body["reply"].clone()).unwrap();
    assert!(link.signed_url.starts_with("https://") && link.file_name.contains("linux"));
    // ... but it cannot manage keys.
    assert_error(&post(&emu, &scanner, wire::PATH_LIST, json!({})).await, 403);

    // Delete: counts what was actually deleted, and the key stops working and leaves the list.
    let a = post(
        &emu,
        &primary,
        wire::PATH_DELETE,
        json!({"filters": [wire::Filter::ids(&[id, 999_999])]}),
    )
    .await;
    assert_eq!(a.body, json!({"reply": {"update_count": 1}}));
    let a = post(
        &emu,
        &primary,
        wire::PATH_DELETE,
        json!({"filters": [wire::Filter::ids(&[id])]}),
    )
    .await;
    assert_eq!(a.body, json!({"reply": {"update_count": 0}}));
    assert_error(&get(&emu, &scanner, wire::PATH_VALIDATE).await, 401);
    let a = post(&emu, &primary, wire::PATH_LIST, json!({})).await;
    assert_eq!(a.body["reply"]["TOTAL_COUNT"], json!(1));
    assert_eq!(
        a.body["reply"]["DATA"][0]["id"],
        json!(emu.primary_key_id())
    );

    let view = emu.keys().into_iter().find(|k| k.id == id).unwrap();
    assert_eq!(view.state, KeyState::Deleted);
    assert_eq!(emu.live_keys().len(), 1);
    assert_eq!(
        emu.calls(),
        CallCounts {
            generate: 1,
            list: 3,
            delete: 2,
            validate: 2,
            download_link: 1,
            edit: 0,
            rate_limited: 0,
            total: 9,
        }
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn each_error_status() {
    let emu = start(unlimited()).await;
    let primary = Caller::primary(&emu);
    let client = client_with(None);
    let url = format!("{}{}", emu.base_url(), wire::PATH_GENERATE);
    let auth = auth_headers(&primary, 0);

    // 400: invalid JSON, no request_data, empty or ill-typed roles, bad security level.
    let a = send_raw(
        &client,
        Method::POST,
        url.clone(),
        &auth,
        Some("{not json".into()),
    )
    .await
    .unwrap();
    assert_error(&a, 400);
    let a = send_raw(
        &client,
        Method::POST,
        url.clone(),
        &auth,
        Some(r#"{"roles": []}"#.into()),
    )
    .await
    .unwrap();
    assert_error(&a, 400);
    for data in [
        json!({"roles": [], "security_level": "standard"}),
        json!({"roles": "CLI Read-Only Custom", "security_level": "standard"}),
        json!({"roles": [7], "security_level": "standard"}),
        json!({"roles": ["CLI Read-Only Custom"]}),
        json!({"roles": ["CLI Read-Only Custom"], "security_level": "basic"}),
    ] {
        assert_error(&post(&emu, &primary, wire::PATH_GENERATE, data).await, 400);
    }

    // 401: no headers, unknown id, wrong secret, non-numeric id.
    let a = send_raw(
        &client,
        Method::GET,
        format!("{}{}", emu.base_url(), wire::PATH_VALIDATE),
        &[],
        None,
    )
    .await
    .unwrap();
    assert_error(&a, 401);
    assert_error(
        &get(
            &emu,
            &Caller::standard(424_242, primary.key.clone()),
            wire::PATH_VALIDATE,
        )
        .await,
        401,
    );
    assert_error(
        &get(
            &emu,
            &Caller::standard(primary.id, Secret::new("wrong")),
            wire::PATH_VALIDATE,
        )
        .await,
        401,
    );
    let bad_id = [
        (wire::HEADER_AUTH_ID, "abc".to_string()),
        ("authorization", primary.key.expose().to_string()),
    ];
    let a = send_raw(
        &client,
        Method::GET,
        format!("{}{}", emu.base_url(), wire::PATH_VALIDATE),
        &bad_id,
        None,
    )
    .await
    .unwrap();
    assert_error(&a, 401);

    // 403: missing permissions.
    let (cli_id, cli_key) = emu.create_key(&["CLI Read Only Role"], SecurityLevel::Standard, None);
    let cli_only = Caller::standard(cli_id, cli_key);
    assert_error(
        &post(&emu, &cli_only, wire::PATH_LIST, json!({})).await,
        403,
    );
    assert_error(
        &post(
            &emu,
            &cli_only,
            wire::PATH_GENERATE,
            json!({"roles": ["CLI Read Only Role"], "security_level": "standard"}),
        )
        .await,
        403,
    );
    assert_error(
        &post(
            &emu,
            &cli_only,
            wire::PATH_DELETE,
            json!({"filters": [wire::Filter::ids(&[1])]}),
        )
        .await,
        403,
    );
    let (view_id, view_key) =
        emu.create_key(&["Public API (PAPI) View"], SecurityLevel::Standard, None);
    let papi_view = Caller::standard(view_id, view_key);
    assert_eq!(
        post(&emu, &papi_view, wire::PATH_LIST, json!({}))
            .await
            .status,
        200,
        "View may list"
    );
    assert_error(
        &post(
            &emu,
            &papi_view,
            wire::PATH_GENERATE,
            json!({"roles": ["Public API (PAPI) View"], "security_level": "standard"}),
        )
        .await,
        403,
    );
    assert_error(
        &get(
            &emu,
            &papi_view,
            &format!("{}?os=linux&architecture=amd64", wire::PATH_DOWNLOAD_LINK),
        )
        .await,
        403,
    );

    // 500: unknown role (named in the reply), bad expirations.
    let a = post(
        &emu,
        &primary,
        wire::PATH_GENERATE,
        json!({"roles": ["CLI Read-Only Custom", "No Such Role"], "security_level": "standard"}),
    )
    .await;
    assert_error(&a, 500);
    assert!(err_msg(&a).contains("No Such Role"), "{}", a.body);
    assert_eq!(
        a.body["reply"]["err_extra"][0]["value"],
        json!("No Such Role")
    );
    let now = emu.now_ms();
    for expiration in [
        json!(now - 1000),
        json!((now + 3_600_000) / 1000),
        json!(now + 11 * 365 * 24 * 3_600_000),
        json!("tomorrow"),
        json!((now + 3_600_000) as f64 + 0.5),
    ] {
        let a = post(
            &emu,
            &primary,
            wire::PATH_GENERATE,
            json!({"roles": ["CLI Read-Only Custom"], "security_level": "standard", "expiration": expiration}),
        )
        .await;
        assert_error(&a, 500);
        assert!(err_msg(&a).contains("expiration"), "{}", a.body);
    }
    // 500: unsupported filter, self-deletion.
    let a = post(
        &emu,
        &primary,
        wire::PATH_LIST,
        json!({"filters": [{"field": "name", "operator": "eq", "value": "x"}]}),
    )
    .await;
    assert_error(&a, 500);
    let a = post(
        &emu,
        &primary,
        wire::PATH_DELETE,
        json!({"filters": [wire::Filter::ids(&[primary.id])]}),
    )
    .await;
    assert_error(&a, 500);
    assert!(err_msg(&a).contains("itself"), "{}", a.body);
    assert_eq!(
        emu.live_keys().iter().filter(|k| k.is_primary).count(),
        1,
        "the primary survived"
    );

    // Wrong method and unknown path.
    assert_error(&get(&emu, &primary, wire::PATH_GENERATE).await, 405);
    assert_error(
        &post(&emu, &primary, "/public_api/v1/nope", json!({})).await,
        404,
    );
    assert!(
        emu.keys()
            .iter()
            .all(|k| k.is_primary || k.id == cli_id || k.id == view_id),
        "nothing minted"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn primary_roles_and_grant_only_held_roles() {
    // Path B: exactly the three custom roles; can grant its own CLI roles, nothing else.
    let emu = start(unlimited()).await;
    let primary = Caller::primary(&emu);
    let me = emu.keys().into_iter().find(|k| k.is_primary).unwrap();
    assert_eq!(me.roles, PATH_B);
    assert_eq!(me.created_by, "primary@emulator");
    for role in [
        "CLI Role",
        "Instance Administrator",
        "Public API (PAPI) View",
    ] {
        let a = post(
            &emu,
            &primary,
            wire::PATH_GENERATE,
            json!({"roles": [role], "security_level": "standard"}),
        )
        .await;
        assert_error(&a, 403);
        assert!(err_msg(&a).contains(role), "{}", a.body);
    }
    let a = post(
        &emu,
        &primary,
        wire::PATH_GENERATE,
        json!({"roles": ["CLI Read-Only Custom", "CLI Role"], "security_level": "standard"}),
    )
    .await;
    assert_error(&a, 403);
    mint(&emu, &primary, &["CLI Write Custom"], None).await;
    emu.shutdown().await;

    // Path A: an administrator may grant the built-in CLI role.
    let emu = start(EmulatorConfig {
        path_a: true,
        ..unlimited()
    })
    .await;
    let primary = Caller::primary(&emu);
    let a = post(&emu, &primary, wire::PATH_LIST, json!({})).await;
    assert_eq!(
        a.body["reply"]["DATA"][0]["roles"],
        json!(["Instance Administrator"])
    );
    let scanner = mint(&emu, &primary, &["CLI Read Only Role"], None).await;
    let view = emu.keys().into_iter().find(|k| k.id == scanner.id).unwrap();
    assert_eq!(view.roles, ["CLI Read Only Role"]);
    assert_eq!(view.security_level, SecurityLevel::Standard);
    emu.shutdown().await;
}

#[tokio::test]
async fn advanced_auth_replay_skew_and_level() {
    let emu = start(EmulatorConfig {
        security_level: SecurityLevel::Advanced,
        faults: Faults {
            clock_offset_ms: 20 * 60_000,
            ..Faults::default()
        },
        ..unlimited()
    })
    .await;
    let primary = Caller::primary(&emu);
    assert_eq!(primary.level, SecurityLevel::Advanced);
    let client = client_with(None);
    let url = format!("{}{}", emu.base_url(), wire::PATH_VALIDATE);
    let now = emu.now_ms();
    assert!(
        now - scanmint_real_now() > 19 * 60_000,
        "the tenant clock runs 20 min ahead"
    );

    let headers = auth_headers(&primary, now);
    let a = send_raw(&client, Method::GET, url.clone(), &headers, None)
        .await
        .unwrap();
    assert_eq!((a.status, &a.body), (200, &json!(true)));
    let date = httpdate::parse_http_date(a.date.as_deref().unwrap()).unwrap();
    let date_ms = date
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (date_ms - now).abs() < 5_000,
        "Date follows the tenant clock"
    );

    // Replaying the very same request is refused.
    assert_error(
        &send_raw(&client, Method::GET, url.clone(), &headers, None)
            .await
            .unwrap(),
        401,
    );
    // Timestamps: by the real clock (20 min behind the tenant) → 401; 4 min off → fine; 6 min → 401.
    for (ts, ok) in [
        (scanmint_real_now(), false),
        (now - 4 * 60_000, true),
        (now + 6 * 60_000, false),
    ] {
        let a = send_raw(
            &client,
            Method::GET,
            url.clone(),
            &auth_headers(&primary, ts),
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            a.status,
            if ok { 200 } else { 401 },
            "timestamp offset {}",
            ts - now
        );
    }
    // The Standard way does not work for an Advanced key.
    let standard = Caller {
        level: SecurityLevel::Standard,
        ..primary.clone()
    };
    assert_error(&get(&emu, &standard, wire::PATH_VALIDATE).await, 401);
    // A malformed nonce is refused even with a matching hash.
    let ts = emu.now_ms().to_string();
    let nonce = "short";
    let bad = [
        (wire::HEADER_AUTH_ID, primary.id.to_string()),
        (wire::HEADER_NONCE, nonce.to_string()),
        (wire::HEADER_TIMESTAMP, ts.clone()),
        (
            "authorization",
            wire::advanced_auth_hash(&primary.key, nonce, &ts),
        ),
    ];
    assert_error(
        &send_raw(&client, Method::GET, url.clone(), &bad, None)
            .await
            .unwrap(),
        401,
    );

    // An Advanced Primary mints Standard keys, which must not authenticate the Advanced way.
    let scanner = mint(
        &emu,
        &primary,
        &["CLI Read-Only Custom"],
        Some(emu.now_ms() + 60_000),
    )
    .await;
    assert_eq!(get(&emu, &scanner, wire::PATH_VALIDATE).await.status, 200);
    let advanced_scanner = Caller {
        level: SecurityLevel::Advanced,
        ..scanner
    };
    assert_error(
        &get(&emu, &advanced_scanner, wire::PATH_VALIDATE).await,
        401,
    );
    emu.shutdown().await;
}

fn scanmint_real_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn expired_and_deleted_keys_are_refused() {
    let emu = start(unlimited()).await;
    let primary = Caller::primary(&emu);
    let scanner = mint(
        &emu,
        &primary,
        &["CLI Read-Only Custom"],
        Some(emu.now_ms() + 60_000),
    )
    .await;
    let (console_id, console_key) =
        emu.create_key(&["CLI Read-Only Custom"], SecurityLevel::Standard, None);
    let console = Caller::standard(console_id, console_key);
    assert_eq!(get(&emu, &scanner, wire::PATH_VALIDATE).await.status, 200);

    // Move the tenant clock two minutes on: the minted key has expired.
    let mut faults = emu.faults();
    faults.clock_offset_ms = 120_000;
    emu.set_faults(faults);
    assert_error(&get(&emu, &scanner, wire::PATH_VALIDATE).await, 401);
    assert_eq!(
        get(&emu, &console, wire::PATH_VALIDATE).await.status,
        200,
        "no expiry, still valid"
    );
    let state = |id| emu.keys().into_iter().find(|k| k.id == id).unwrap().state;
    assert_eq!(state(scanner.id), KeyState::Expired);
    assert!(emu.live_keys().iter().all(|k| k.id != scanner.id));
    // Expired keys are still in the inventory.
    let a = post(
        &emu,
        &primary,
        wire::PATH_LIST,
        json!({"filters": [wire::Filter::ids(&[scanner.id])]}),
    )
    .await;
    assert_eq!(a.body["reply"]["FILTER_COUNT"], json!(1));

    // Deleted in the console: refused, and revoking twice reports false.
    assert!(emu.revoke(console_id));
    assert!(!emu.revoke(console_id));
    assert_error(&get(&emu, &console, wire::PATH_VALIDATE).await, 401);
    assert_eq!(state(console_id), KeyState::Deleted);
    // The Primary deleted in the console: its next call is a 401.
    assert!(emu.revoke(primary.id));
    assert_error(&post(&emu, &primary, wire::PATH_LIST, json!({})).await, 401);
    emu.shutdown().await;
}

#[tokio::test]
async fn rate_limit_is_tenant_wide() {
    let emu = start(EmulatorConfig::default()).await;
    let primary = Caller::primary(&emu);
    let client = client_with(None);
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..30 {
        let client = client.clone();
        let base = emu.base_url().to_string();
        let headers = auth_headers(&primary, 0);
        set.spawn(async move {
            // Mix endpoints: the limit is across all of them.
            if i % 2 == 0 {
                send_raw(
                    &client,
                    Method::GET,
                    format!("{base}{}", wire::PATH_VALIDATE),
                    &headers,
                    None,
                )
                .await
            } else {
                let body = json!({"request_data": {}}).to_string();
                send_raw(
                    &client,
                    Method::POST,
                    format!("{base}{}", wire::PATH_LIST),
                    &headers,
                    Some(body),
                )
                .await
            }
        });
    }
    let answers: Vec<Answer> = set
        .join_all()
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let elapsed = started.elapsed();
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let limited: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(ok + limited.len(), 30);
    if elapsed < Duration::from_millis(900) {
        assert_eq!(ok, 10, "exactly the limit within one second");
    }
    assert!(limited.len() >= 10, "{} rate-limited", limited.len());
    assert_eq!(
        limited[0].body,
        json!({"reply": {"err_code": 429, "err_msg": "Too many requests", "err_extra": "Rate limit exceeded for this tenant"}})
    );
    let calls = emu.calls();
    assert_eq!(
        (calls.total, calls.rate_limited),
        (30, limited.len() as u64)
    );
    assert_eq!(calls.validate + calls.list, 30);

    // The admin endpoint is not rate limited.
    let a = send_raw(
        &client,
        Method::GET,
        format!("{}/calls", emu.admin_url()),
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    // A rolling second later, calls go through again.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(get(&emu, &primary, wire::PATH_VALIDATE).await.status, 200);
    emu.shutdown().await;
}

#[tokio::test]
async fn broaden_roles_and_lowercase_list() {
    let emu = start(EmulatorConfig {
        faults: Faults {
            broaden_roles: true,
            lowercase_list: true,
            ..Faults::default()
        },
        ..unlimited()
    })
    .await;
    let primary = Caller::primary(&emu);
    let scanner = mint(&emu, &primary, &["CLI Read-Only Custom"], None).await;
    let a = post(
        &emu,
        &primary,
        wire::PATH_LIST,
        json!({"filters": [wire::Filter::ids(&[scanner.id])]}),
    )
    .await;
    let reply = a.body["reply"].as_object().unwrap();
    let mut names: Vec<&String> = reply.keys().collect();
    names.sort();
    assert_eq!(names, ["data", "filter_count", "total_count"]);
    assert_eq!(
        reply["data"][0]["roles"],
        json!(["CLI Read-Only Custom", "Instance Administrator"])
    );
    assert_eq!(
        (reply["total_count"].clone(), reply["filter_count"].clone()),
        (json!(2), json!(1))
    );
    let view = emu.keys().into_iter().find(|k| k.id == scanner.id).unwrap();
    assert!(view.roles.iter().any(|r| r == "Instance Administrator"));
    // The broadened key really is an administrator.
    assert_eq!(
        post(&emu, &scanner, wire::PATH_LIST, json!({}))
            .await
            .status,
        200
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn list_filters_sort_and_pages() {
    let emu = start(EmulatorConfig {
        path_a: true,
        ..unlimited()
    })
    .await;
    let primary = Caller::primary(&emu);
    let now = emu.now_ms();
    let k1 = mint(&emu, &primary, &["CLI Role"], Some(now + 100_000))
        .await
        .id;
    let k2 = mint(&emu, &primary, &["CLI Read Only Role"], Some(now + 200_000))
        .await
        .id;
    let k3 = mint(
        &emu,
        &primary,
        &["CLI Role", "Public API (PAPI) View"],
        Some(now + 300_000),
    )
    .await
    .id;
    let p = primary.id;
    let ids = |a: &Answer| -> Vec<i64> {
        a.body["reply"]["DATA"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect()
    };
    let list = |data: Value| post(&emu, &primary, wire::PATH_LIST, data);

    let a = list(json!({})).await;
    assert_eq!(ids(&a), [p, k1, k2, k3]);
    let a = list(
        json!({"filters": [{"field": "expiration", "operator": "gte", "value": now + 150_000}]}),
    )
    .await;
    assert_eq!(
        ids(&a),
        [p, k2, k3],
        "null expiration = never, so it is >= anything"
    );
    let a = list(json!({"filters": [
        {"field": "expiration", "operator": "gte", "value": now + 150_000},
        {"field": "expiration", "operator": "lte", "value": now + 250_000},
    ]}))
    .await;
    assert_eq!(ids(&a), [k2]);
    assert_eq!(
        (
            a.body["reply"]["TOTAL_COUNT"].clone(),
            a.body["reply"]["FILTER_COUNT"].clone()
        ),
        (json!(4), json!(1))
    );
    let a =
        list(json!({"filters": [{"field": "roles", "operator": "contains", "value": "CLI Role"}]}))
            .await;
    assert_eq!(ids(&a), [k1, k3]);
    let a = list(json!({"filters": [{"field": "roles", "operator": "contains", "value": ["CLI Role", "Public API (PAPI) View"]}]})).await;
    assert_eq!(ids(&a), [k3]);
    let a = list(json!({"sort": {"field": "expiration", "keyword": "desc"}})).await;
    assert_eq!(ids(&a), [p, k3, k2, k1]);
    let a = list(json!({"sort": {"field": "creation_time", "keyword": "asc"}, "search_from": 1, "search_to": 3})).await;
    assert_eq!(ids(&a), [k1, k2]);
    assert_eq!(
        a.body["reply"]["FILTER_COUNT"],
        json!(4),
        "FILTER_COUNT counts before paging"
    );
    assert_error(
        &list(json!({"sort": {"field": "secret", "keyword": "asc"}})).await,
        500,
    );
    assert_error(&list(json!({"search_from": -1})).await, 400);
    emu.shutdown().await;
}

#[tokio::test]
async fn error_envelope_shapes() {
    let emu = start(unlimited()).await;
    let stranger = Caller::standard(1, Secret::new("nope"));
    let mut faults = emu.faults();
    faults.error_envelope = ErrorEnvelope::Root;
    emu.set_faults(faults.clone());
    let a = get(&emu, &stranger, wire::PATH_VALIDATE).await;
    assert_eq!(a.status, 401);
    let root = a.body.as_object().unwrap();
    assert_eq!(root["err_code"], json!(401));
    assert!(
        root["err_msg"].is_string()
            && root.contains_key("err_extra")
            && !root.contains_key("reply")
    );

    faults.error_envelope = ErrorEnvelope::Data;
    emu.set_faults(faults);
    let a = get(&emu, &stranger, wire::PATH_VALIDATE).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body.as_object().unwrap().len(), 1, "{}", a.body);
    assert_eq!(a.body["data"]["metadata"]["err_code"], json!(401));
    assert!(a.body["data"]["err_msg"].is_string());
    let parsed = wire::parse_error_body(a.body.to_string().as_bytes()).unwrap();
    assert_eq!(parsed.err_code.as_deref(), Some("401"));
    emu.shutdown().await;
}

#[tokio::test]
async fn injected_failures_latency_and_dropped_connections() {
    let emu = start(unlimited()).await;
    let primary = Caller::primary(&emu);
    let client = client_with(None);
    let mut faults = Faults::default();
    faults.failures.insert(
        "generate".into(),
        Failure {
            kind: FailureKind::Drop,
            rate: 1.0,
        },
    );
    faults.failures.insert(
        "list".into(),
        Failure {
            kind: FailureKind::Status(503),
            rate: 1.0,
        },
    );
    faults.failures.insert(
        "all".into(),
        Failure {
            kind: FailureKind::Status(429),
            rate: 1.0,
        },
    );
    faults.failures.insert(
        "validate".into(),
        Failure {
            kind: FailureKind::Status(500),
            rate: 0.0,
        },
    );
    emu.set_faults(faults);

    // Drop: a transport error, no HTTP status at all.
    let body =
        json!({"request_data": {"roles": ["CLI Read-Only Custom"], "security_level": "standard"}})
            .to_string();
    let err = send_raw(
        &client,
        Method::POST,
        format!("{}{}", emu.base_url(), wire::PATH_GENERATE),
        &auth_headers(&primary, 0),
        Some(body),
    )
    .await
    .err()
    .expect("a dropped connection is an error");
    assert!(err.status().is_none(), "{err}");
    assert_eq!(emu.keys().len(), 1, "nothing was minted");

    let a = post(&emu, &primary, wire::PATH_LIST, json!({})).await;
    assert_error(&a, 503);
    // "all" applies to endpoints without their own entry; an injected 429 looks like the limiter's.
    let a = get(
        &emu,
        &primary,
        &format!("{}?os=linux&architecture=amd64", wire::PATH_DOWNLOAD_LINK),
    )
    .await;
    assert_error(&a, 429);
    assert_eq!(err_msg(&a), "Too many requests");
    // Rate 0 never fires.
    assert_eq!(get(&emu, &primary, wire::PATH_VALIDATE).await.status, 200);
    let calls = emu.calls();
    assert_eq!(
        (
            calls.generate,
            calls.list,
            calls.download_link,
            calls.validate
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(calls.rate_limited, 0, "injected 429s are not the limiter's");

    // Latency is added to every API call.
    emu.set_faults(Faults {
        latency_ms: 200,
        ..Faults::default()
    });
    let started = Instant::now();
    assert_eq!(get(&emu, &primary, wire::PATH_VALIDATE).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    emu.shutdown().await;
}

#[tokio::test]
async fn admin_endpoint_lists_and_changes_state() {
    let emu = start(unlimited()).await;
    let client = client_with(None);
    let admin = emu.admin_url();
    let send = |method: Method, path: &str, body: Option<Value>| {
        send_raw(
            &client,
            method,
            format!("{admin}{path}"),
            &[],
            body.map(|b| b.to_string()),
        )
    };

    let a = send(Method::GET, "", None).await.unwrap();
    assert_eq!(a.body["primary_key_id"], json!(emu.primary_key_id()));
    assert_eq!(a.body["base_url"], json!(emu.base_url()));
    assert!(!a.body.to_string().contains(emu.primary_key().expose()));

    let a = send(
        Method::POST,
        "/keys",
        Some(json!({"roles": ["CLI Read-Only Custom"], "expiration": emu.now_ms() + 60_000})),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.body["id"].as_i64().unwrap();
    let key = Caller::standard(id, Secret::new(a.body["key"].as_str().unwrap()));
    assert_eq!(get(&emu, &key, wire::PATH_VALIDATE).await.status, 200);

    let a = send(Method::GET, "/keys", None).await.unwrap();
    let views: Vec<AdminKeyView> = serde_json::from_value(a.body.clone()).unwrap();
    assert_eq!(views, emu.keys());
    assert_eq!(views.len(), 2);
    assert_eq!(a.body[1]["state"], json!("active"));
    assert_eq!(a.body[1]["created_by"], json!("console@emulator"));
    assert!(
        !a.body.to_string().contains(key.key.expose()),
        "no secrets in the key list"
    );

    let a = send(Method::POST, &format!("/keys/{id}/revoke"), None)
        .await
        .unwrap();
    assert_eq!(a.body, json!({"revoked": true}));
    let a = send(Method::POST, &format!("/keys/{id}/revoke"), None)
        .await
        .unwrap();
    assert_eq!(a.body, json!({"revoked": false}));
    assert_eq!(emu.keys()[1].state, KeyState::Deleted);

    let a = send(Method::GET, "/calls", None).await.unwrap();
    let calls: CallCounts = serde_json::from_value(a.body).unwrap();
    assert_eq!(
        (calls.validate, calls.total),
        (1, 1),
        "admin calls are not counted"
    );

    let faults = json!({"latency_ms": 0, "clock_offset_ms": -5000, "broaden_roles": true,
        "failures": {"delete": {"kind": {"status": 502}, "rate": 0.5}, "list": {"kind": "drop", "rate": 1.0}},
        "lowercase_list": true, "error_envelope": "data", "hostile": null,
        "dialect": {"seconds": true, "delete_reply": "reply_true", "validate_reply": "string",
            "validate_post": false, "ignore_paging": true, "err_code_string": true},
        "uncertain_generate": {"kind": "drop", "remaining": 2}});
    let a = send(Method::PUT, "/faults", Some(faults.clone()))
        .await
        .unwrap();
    assert_eq!((a.status, &a.body), (200, &faults));
    assert_eq!(
        send(Method::GET, "/faults", None).await.unwrap().body,
        faults
    );
    let current = emu.faults();
    assert_eq!(current.failures["delete"].kind, FailureKind::Status(502));
    assert_eq!(current.error_envelope, ErrorEnvelope::Data);
    assert!((emu.now_ms() - scanmint_real_now() + 5000).abs() < 1000);
    // Partial faults fill in defaults; nonsense is refused and changes nothing.
    let a = send(Method::PUT, "/faults", Some(json!({"latency_ms": 5})))
        .await
        .unwrap();
    assert_eq!(a.body["broaden_roles"], json!(false));
    for bad in [
        json!({"failures": {"mint": {"kind": "drop", "rate": 1.0}}}),
        json!({"failures": {"list": {"kind": "drop", "rate": 2.0}}}),
        json!({"latency_ms": "slow"}),
    ] {
        assert_eq!(
            send(Method::PUT, "/faults", Some(bad))
                .await
                .unwrap()
                .status,
            400
        );
    }
    assert_eq!(emu.faults().latency_ms, 5);
    assert_eq!(send(Method::GET, "/nope", None).await.unwrap().status, 404);
    assert_eq!(
        send(Method::DELETE, "/keys", None).await.unwrap().status,
        405
    );
    emu.shutdown().await;
}

/// Connect to the emulator through a non-loopback address of this machine, when it has one.
/// Listening there needs TLS; the admin endpoint still refuses such peers, token or not.
#[tokio::test]
async fn admin_endpoint_refuses_non_loopback_peers() {
    let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    let Some(ip) = probe
        .connect("192.0.2.1:9")
        .ok()
        .and_then(|_| probe.local_addr().ok())
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    else {
        eprintln!("no non-loopback address on this machine; skipping");
        return;
    };
    let emu = start(EmulatorConfig {
        listen: std::net::SocketAddr::new(ip, 0),
        tls: true,
        ..unlimited()
    })
    .await;
    let client = client_with(emu.ca_pem().as_deref());
    let a = send_raw(
        &client,
        Method::GET,
        format!("{}/keys", emu.admin_url()),
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.get("error").is_some());
    assert!(!a.body.to_string().contains(emu.primary_key().expose()));
    // The API itself answers there.
    let a = send_raw(
        &client,
        Method::GET,
        format!("{}{}", emu.base_url(), wire::PATH_VALIDATE),
        &auth_headers(&Caller::primary(&emu), emu.now_ms()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    emu.shutdown().await;
}

/// Issue 12: the admin endpoint serves the Primary key (`/secrets`), so any local user could
/// read it. Without the boot line's token every admin call is refused.
#[tokio::test]
async fn admin_endpoint_refuses_requests_without_its_token() {
    let emu = start(unlimited()).await;
    let client = client_with(None);
    let base = emu.base_url().to_string();
    let token = emu.admin_url().rsplit('/').next().unwrap().to_string();
    // One character off (never the token itself, whatever its last character is).
    let last = if token.ends_with('x') { 'y' } else { 'x' };
    let wrong = format!("{}{last}", &token[..token.len() - 1]);
    for url in [
        format!("{base}/_emulator/secrets"),
        format!("{base}/_emulator"),
        format!("{base}/_emulator/keys"),
        format!("{base}/_emulator/{wrong}/secrets"),
        format!("{base}/_emulator/{}/secrets", &token[..token.len() - 1]),
        format!("{base}/_emulator/secrets/{token}"),
    ] {
        let a = send_raw(&client, Method::GET, url.clone(), &[], None)
            .await
            .unwrap();
        assert_eq!(a.status, 403, "{url}: {}", a.body);
        assert!(
            !a.body.to_string().contains(emu.primary_key().expose()),
            "{url}"
        );
    }
    let a = send_raw(
        &client,
        Method::PUT,
        format!("{base}/_emulator/faults"),
        &[],
        Some(json!({"broaden_roles": true}).to_string()),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 403);
    assert!(!emu.faults().broaden_roles, "nothing changed");
    // With the token: the Primary key is there.
    let a = send_raw(
        &client,
        Method::GET,
        format!("{}/secrets", emu.admin_url()),
        &[],
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    assert!(a.body.to_string().contains(emu.primary_key().expose()));
    // Two emulators, two tokens.
    let other = start(unlimited()).await;
    assert_ne!(
        other.admin_url().rsplit('/').next(),
        emu.admin_url().rsplit('/').next()
    );
    other.shutdown().await;
    emu.shutdown().await;
}

/// Issue 12: listening beyond loopback without TLS would send keys in the clear.
#[tokio::test]
async fn listening_beyond_loopback_needs_tls() {
    for listen in ["0.0.0.0:0", "[::]:0", "192.0.2.1:0"] {
        let err = Emulator::start(EmulatorConfig {
            listen: listen.parse().unwrap(),
            ..unlimited()
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("{listen} without TLS was accepted"));
        let text = format!("{err:#}");
        assert!(
            text.contains("--tls") && text.contains("loopback"),
            "{text}"
        );
    }
    for listen in ["127.0.0.1:0", "[::1]:0"] {
        if let Ok(emu) = Emulator::start(EmulatorConfig {
            listen: listen.parse().unwrap(),
            ..unlimited()
        })
        .await
        {
            emu.shutdown().await;
        } else {
            assert_eq!(listen, "[::1]:0", "IPv4 loopback must work");
        }
    }
    let emu = start(EmulatorConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        tls: true,
        ..unlimited()
    })
    .await;
    emu.shutdown().await;
    // The command refuses it too, before printing anything.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_scanmint"))
        .args(["emulator", "--listen", "0.0.0.0:0"])
        .env_remove("CI")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "no boot line");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tls"), "{stderr}");
}

#[tokio::test]
async fn https_with_the_generated_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca_out = dir.path().join("ca.pem");
    let emu = start(EmulatorConfig {
        tls: true,
        ca_out: Some(ca_out.clone()),
        security_level: SecurityLevel::Advanced,
        ..unlimited()
    })
    .await;
    assert!(
        emu.base_url().starts_with("https://localhost:"),
        "{}",
        emu.base_url()
    );
    let ca = emu.ca_pem().unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(std::fs::read_to_string(&ca_out).unwrap(), ca);

    let primary = Caller::primary(&emu);
    let trusted = client_with(Some(&ca));
    let url = format!("{}{}", emu.base_url(), wire::PATH_VALIDATE);
    let a = send_raw(
        &trusted,
        Method::GET,
        url.clone(),
        &auth_headers(&primary, emu.now_ms()),
        None,
    )
    .await
    .unwrap();
    assert_eq!((a.status, &a.body), (200, &json!(true)));
    // The certificate is also valid for 127.0.0.1.
    let by_ip = url.replace("localhost", "127.0.0.1");
    let a = send_raw(
        &trusted,
        Method::GET,
        by_ip,
        &auth_headers(&primary, emu.now_ms()),
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    // Without the CA the handshake fails.
    let untrusted = client_with(None);
    assert!(
        send_raw(
            &untrusted,
            Method::GET,
            url,
            &auth_headers(&primary, emu.now_ms()),
            None
        )
        .await
        .is_err()
    );
    // Plain HTTP to the HTTPS port gets no HTTP answer.
    let plain = emu
        .base_url()
        .replace("https://localhost", "http://127.0.0.1");
    let a = send_raw(
        &untrusted,
        Method::GET,
        format!("{plain}/_emulator/keys"),
        &[],
        None,
    )
    .await;
    assert!(a.is_err() || a.unwrap().status != 200);
    // After shutdown, the port is closed.
    let port: u16 = emu.base_url().rsplit(':').next().unwrap().parse().unwrap();
    emu.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
}
