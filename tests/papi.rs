//! The Public API client (`scanmint::tenant::papi`) driven against the tenant emulator over real
//! loopback HTTP(S), plus a tiny hostile server for replies the emulator never sends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use scanmint::domain::secret::{Secret, random_alphanumeric};
use scanmint::tenant::emulator::{
    CLI_READ_ONLY_CUSTOM, CLI_WRITE_CUSTOM, Emulator, EmulatorConfig, ErrorEnvelope, Failure,
    FailureKind, Faults, INSTANCE_ADMINISTRATOR, KeyState, PAPI_VIEW,
};
use scanmint::tenant::papi::wire::{self, Filter, GenerateRequest, ListRequest, SecurityLevel};
use scanmint::tenant::papi::{Client, ClientOptions, ErrorKind, MAX_BODY, PapiError, RetryPolicy};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The tenant dialects (issue 11): reply variants, paging, time unit, uncertain generate.
#[path = "papi/dialect.rs"]
mod dialect;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Short delays so retries cost milliseconds, not seconds.
fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        deadline: Duration::from_secs(5),
    }
}

/// No rate limit unless a test asks for one, so parallel tests stay deterministic.
fn unlimited() -> EmulatorConfig {
    EmulatorConfig {
        rate_limit_per_sec: 0,
        ..EmulatorConfig::default()
    }
}

async fn start(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).await.expect("emulator starts")
}

fn options(base_url: &str, id: i64, key: Secret, level: SecurityLevel) -> ClientOptions {
    let mut opts = ClientOptions::new(base_url, id, key, level);
    opts.retry = fast_retry(3);
    opts.timeout = Duration::from_secs(5);
    opts
}

fn client_as(emu: &Emulator, id: i64, key: Secret, level: SecurityLevel) -> Client {
    Client::new(options(emu.base_url(), id, key, level)).expect("client builds")
}

fn primary(emu: &Emulator) -> Client {
    client_as(
        emu,
        emu.primary_key_id(),
        emu.primary_key(),
        emu.security_level(),
    )
}

fn primary_with(emu: &Emulator, retry: RetryPolicy) -> Client {
    let mut opts = options(
        emu.base_url(),
        emu.primary_key_id(),
        emu.primary_key(),
        emu.security_level(),
    );
    opts.retry = retry;
    Client::new(opts).unwrap()
}

fn gen_req(roles: &[&str], expiration: Option<i64>) -> GenerateRequest {
    GenerateRequest {
        roles: roles.iter().map(|r| r.to_string()).collect(),
        security_level: SecurityLevel::Standard,
        expiration,
        comment: "papi integration test".into(),
    }
}

fn list_req(filters: Vec<Filter>) -> ListRequest {
    ListRequest {
        filters,
        ..Default::default()
    }
}

fn filter(field: &str, operator: &str, value: serde_json::Value) -> Filter {
    Filter {
        field: field.into(),
        operator: operator.into(),
        value,
    }
}

fn ids_of(reply: &wire::ListReply) -> Vec<i64> {
    let mut ids: Vec<i64> = reply.data.iter().map(|k| k.id).collect();
    ids.sort_unstable();
    ids
}

/// `unwrap_err` without needing `Debug` for the success value (a `GenerateReply` holds a secret).
trait Fails {
    fn fails(self) -> PapiError;
}

impl<T> Fails for Result<T, PapiError> {
    fn fails(self) -> PapiError {
        match self {
            Ok(_) => panic!("the call succeeded, an error was expected"),
            Err(e) => e,
        }
    }
}

fn assert_kind(err: &PapiError, kind: ErrorKind, status: Option<u16>) {
    assert_eq!(err.kind, kind, "{err:?}");
    assert_eq!(err.status, status, "{err:?}");
}

fn assert_no_secret(message: &str, secret: &str) {
    assert!(!message.contains(secret), "secret leaked: {message}");
    // Not even a recognisable piece of it.
    for window in secret.as_bytes().windows(16) {
        let piece = std::str::from_utf8(window).unwrap();
        assert!(
            !message.contains(piece),
            "part of the secret leaked ({piece}): {message}"
        );
    }
}

fn raw_http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

// --- a tiny hostile tenant: answers fixed HTTP replies and records what it was sent ----------

#[derive(Clone, Debug)]
struct RawRequest {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Hostile {
    base_url: String,
    requests: Arc<Mutex<Vec<RawRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    fn requests(&self) -> Vec<RawRequest> {
        self.requests.lock().unwrap().clone()
    }
}

/// A full HTTP/1.1 reply that closes the connection.
fn http_reply(status: u16, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// Serve `replies` in order (the last one repeats) to whoever connects.
async fn hostile(replies: Vec<Vec<u8>>) -> Hostile {
    assert!(!replies.is_empty());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let replies = Arc::new(replies);
    let recorded = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let recorded = recorded.clone();
            let replies = replies.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut stream).await else {
                    return;
                };
                let n = {
                    let mut all = recorded.lock().unwrap();
                    all.push(request);
                    all.len() - 1
                };
                let reply = &replies[n.min(replies.len() - 1)];
                let _ = stream.write_all(reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Hostile {
        base_url,
        requests,
        task,
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<RawRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(RawRequest {
        request_line,
        headers,
        body,
    })
}

fn hostile_client(h: &Hostile, key: &Secret, level: SecurityLevel) -> Client {
    Client::new(options(&h.base_url, 42, key.clone(), level)).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The calls
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn generate_list_delete_validate_round_trip() {
    let emu = start(unlimited()).await;
    let papi = primary(&emu);
    assert!(papi.validate().await.unwrap(), "the Primary key works");

    let expiration = emu.now_ms() + 3_600_000;
    let minted = papi
        .generate(&gen_req(&[CLI_READ_ONLY_CUSTOM], Some(expiration)))
        .await
        .unwrap();
    assert!(minted.id > 0);
    assert_eq!(minted.key.expose().len(), 128);

    // The tenant's inventory agrees with what the client was told.
    let view = emu.keys().into_iter().find(|k| k.id == minted.id).unwrap();
    assert_eq!(view.roles, vec![CLI_READ_ONLY_CUSTOM.to_string()]);
    assert_eq!(view.expiration, Some(expiration));
    assert_eq!(view.security_level, SecurityLevel::Standard);
    assert_eq!(view.comment, "papi integration test");

    // Looked up through the API: exactly the narrow role, never the secret.
    let listed = papi
        .get_api_keys(&list_req(vec![Filter::ids(&[minted.id])]))
        .await
        .unwrap();
    assert_eq!(ids_of(&listed), vec![minted.id]);
    let record = &listed.data[0];
    assert_eq!(record.roles, vec![CLI_READ_ONLY_CUSTOM.to_string()]);
    assert_eq!(record.expiration, Some(expiration));
    assert_eq!(record.security_level.as_deref(), Some("standard"));
    assert_eq!(record.comment.as_deref(), Some("papi integration test"));
    assert!(record.creation_time.is_some() && record.created_by.is_some());
    assert_eq!(listed.filter_count, 1);
    assert_eq!(listed.total_count, 2, "Primary + the minted key");

    // The minted key works as itself, then stops working once deleted.
    let scanner = papi.as_key(minted.id, minted.key.clone(), SecurityLevel::Standard);
    assert_eq!(scanner.key_id(), minted.id);
    assert!(scanner.validate().await.unwrap());
    assert_eq!(papi.delete(&[minted.id]).await.unwrap(), 1);
    assert_eq!(
        papi.delete(&[minted.id]).await.unwrap(),
        0,
        "already deleted"
    );
    assert!(
        !scanner.validate().await.unwrap(),
        "deleted key → Ok(false)"
    );
    let err = scanner.download_link().await.fails();
    assert_kind(&err, ErrorKind::Unauthorized, Some(401));
    assert_eq!(
        emu.keys()
            .into_iter()
            .find(|k| k.id == minted.id)
            .unwrap()
            .state,
        KeyState::Deleted
    );
    let after = papi
        .get_api_keys(&list_req(vec![Filter::ids(&[minted.id])]))
        .await
        .unwrap();
    assert!(after.data.is_empty());

    // The Primary key must not delete itself; the tenant says why (500).
    let err = papi.delete(&[emu.primary_key_id()]).await.fails();
    assert_kind(&err, ErrorKind::Server, Some(500));
    assert!(err.message.contains("cannot delete itself"), "{err}");
}

#[tokio::test]
async fn download_link_works_for_a_minted_cli_read_only_key() {
    let emu = start(unlimited()).await;
    let papi = primary(&emu);
    let minted = papi
        .generate(&gen_req(
            &[CLI_READ_ONLY_CUSTOM],
            Some(emu.now_ms() + 600_000),
        ))
        .await
        .unwrap();
    let scanner = papi.as_key(minted.id, minted.key, SecurityLevel::Standard);
    let link = scanner.download_link().await.unwrap();
    assert_eq!(link.file_name, "cortexcli-linux-amd64");
    assert!(
        link.signed_url.starts_with("https://"),
        "{}",
        link.signed_url
    );
    assert!(link.signed_url.contains("cortexcli-linux-amd64"));
    assert_eq!(emu.calls().download_link, 1);
    // Least privilege: the scanner key cannot see the key inventory.
    let err = scanner.get_api_keys(&ListRequest::default()).await.fails();
    assert_kind(&err, ErrorKind::Forbidden, Some(403));
}

async fn check_list_filters(emu: &Emulator, papi: &Client) {
    let now = emu.now_ms();
    let hour = 3_600_000;
    let a = papi
        .generate(&gen_req(&[CLI_READ_ONLY_CUSTOM], Some(now + hour)))
        .await
        .unwrap()
        .id;
    let b = papi
        .generate(&gen_req(&[CLI_WRITE_CUSTOM], Some(now + 3 * hour)))
        .await
        .unwrap()
        .id;
    let c = papi
        .generate(&gen_req(
            &[CLI_READ_ONLY_CUSTOM, CLI_WRITE_CUSTOM],
            Some(now + 5 * hour),
        ))
        .await
        .unwrap()
        .id;
    let p = emu.primary_key_id();

    let all = papi.get_api_keys(&ListRequest::default()).await.unwrap();
    assert!(ids_of(&all).ends_with(&[a, b, c]), "{:?}", ids_of(&all));
    assert_eq!(all.filter_count as usize, all.data.len());
    assert!(all.total_count >= 4, "{}", all.total_count);

    let by_id = papi
        .get_api_keys(&list_req(vec![Filter::ids(&[a, c])]))
        .await
        .unwrap();
    assert_eq!(ids_of(&by_id), vec![a, c]);
    assert_eq!(by_id.filter_count, 2);

    // gte: a key that never expires (the Primary) counts as expiring at +infinity.
    let later = papi
        .get_api_keys(&list_req(vec![filter(
            "expiration",
            "gte",
            json!(now + 2 * hour),
        )]))
        .await
        .unwrap();
    let later_ids = ids_of(&later);
    assert!(later_ids.contains(&b) && later_ids.contains(&c) && later_ids.contains(&p));
    assert!(!later_ids.contains(&a), "{later_ids:?}");

    let sooner = papi
        .get_api_keys(&list_req(vec![
            filter("expiration", "lte", json!(now + 4 * hour)),
            Filter::ids(&[a, b, c, p]),
        ]))
        .await
        .unwrap();
    assert_eq!(ids_of(&sooner), vec![a, b]);

    let window = papi
        .get_api_keys(&list_req(vec![
            filter("expiration", "gte", json!(now + 2 * hour)),
            filter("expiration", "lte", json!(now + 4 * hour)),
        ]))
        .await
        .unwrap();
    assert_eq!(ids_of(&window), vec![b]);

    let writers = papi
        .get_api_keys(&list_req(vec![
            filter("roles", "contains", json!(CLI_WRITE_CUSTOM)),
            Filter::ids(&[a, b, c]),
        ]))
        .await
        .unwrap();
    assert_eq!(ids_of(&writers), vec![b, c]);
    let both = papi
        .get_api_keys(&list_req(vec![filter(
            "roles",
            "contains",
            json!([CLI_READ_ONLY_CUSTOM, CLI_WRITE_CUSTOM]),
        )]))
        .await
        .unwrap();
    // The Path B Primary holds both too.
    assert_eq!(ids_of(&both), vec![p, c]);
    for record in &both.data {
        assert!(record.roles.contains(&CLI_WRITE_CUSTOM.to_string()));
    }
}

#[tokio::test]
async fn list_filters_with_upper_case_reply() {
    let emu = start(unlimited()).await;
    let papi = primary(&emu);
    check_list_filters(&emu, &papi).await;
}

#[tokio::test]
async fn list_filters_with_lower_case_reply() {
    let emu = start(EmulatorConfig {
        faults: Faults {
            lowercase_list: true,
            ..Faults::default()
        },
        ..unlimited()
    })
    .await;
    let papi = primary(&emu);
    check_list_filters(&emu, &papi).await;
    // Proof that the tenant really answered in lower case.
    let body = raw_http()
        .post(format!("{}{}", emu.base_url(), wire::PATH_LIST))
        .header(wire::HEADER_AUTH_ID, emu.primary_key_id())
        .header("authorization", emu.primary_key().expose())
        .header("content-type", "application/json")
        .body(r#"{"request_data":{}}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("\"data\"") && !body.contains("\"DATA\""),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------------
// Transport: TLS and the plain-http rule
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn tls_is_trusted_only_with_the_ca_file() {
    let emu = start(EmulatorConfig {
        tls: true,
        ..unlimited()
    })
    .await;
    assert!(emu.base_url().starts_with("https://localhost:"));
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, emu.ca_pem().unwrap()).unwrap();

    let mut opts = options(
        emu.base_url(),
        emu.primary_key_id(),
        emu.primary_key(),
        SecurityLevel::Standard,
    );
    opts.ca_file = Some(ca_path.clone());
    let trusted = Client::new(opts).unwrap();
    assert!(trusted.validate().await.unwrap());
    let listed = trusted.get_api_keys(&ListRequest::default()).await.unwrap();
    assert_eq!(ids_of(&listed), vec![emu.primary_key_id()]);

    // Without the CA: the handshake fails, a transport error; no request reached the API.
    let before = emu.calls().total;
    let mut opts = options(
        emu.base_url(),
        emu.primary_key_id(),
        emu.primary_key(),
        SecurityLevel::Standard,
    );
    opts.retry = RetryPolicy::none();
    let untrusting = Client::new(opts).unwrap();
    let err = untrusting.validate().await.fails();
    assert_kind(&err, ErrorKind::Transport, None);
    assert_eq!(emu.calls().total, before, "nothing got past TLS");
    assert_no_secret(&err.message, emu.primary_key().expose());

    // A CA file that is not a certificate is a configuration error.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let mut opts = options(emu.base_url(), 1, Secret::new("k"), SecurityLevel::Standard);
    opts.ca_file = Some(junk);
    let err = Client::new(opts).err().expect("junk CA refused");
    assert_kind(&err, ErrorKind::Config, None);
    let mut opts = options(emu.base_url(), 1, Secret::new("k"), SecurityLevel::Standard);
    opts.ca_file = Some(dir.path().join("missing.pem"));
    let err = Client::new(opts).err().expect("missing CA refused");
    assert_kind(&err, ErrorKind::Config, None);
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused_before_sending() {
    // A listener that would see any request, reached by a non-loopback name is impossible here;
    // what matters is that the client refuses to be built, so nothing can be sent.
    for url in [
        "http://api-acme.xdr.us.paloaltonetworks.com",
        "http://10.0.0.1:8080",
        "http://127.0.0.1.example.com",
        "ftp://127.0.0.1",
    ] {
        let err = Client::new(options(
            url,
            1,
            Secret::new("secret-value"),
            SecurityLevel::Standard,
        ))
        .err()
        .unwrap_or_else(|| panic!("{url} accepted"));
        assert_kind(&err, ErrorKind::Config, None);
        assert_no_secret(&err.message, "secret-value");
    }
    // Loopback over plain http is fine (the emulator).
    for url in [
        "http://127.0.0.1:1",
        "http://localhost:1/",
        "http://[::1]:1",
    ] {
        assert!(
            Client::new(options(url, 1, Secret::new("k"), SecurityLevel::Standard)).is_ok(),
            "{url}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication: Advanced keys, nonces, clock skew
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn advanced_primary_key_works_with_fresh_nonces() {
    let emu = start(EmulatorConfig {
        security_level: SecurityLevel::Advanced,
        ..unlimited()
    })
    .await;
    let papi = primary(&emu);
    // Consecutive calls each need a new nonce; a reused one would be a 401.
    assert!(papi.validate().await.unwrap());
    assert!(papi.validate().await.unwrap());
    let listed = papi.get_api_keys(&ListRequest::default()).await.unwrap();
    assert_eq!(ids_of(&listed), vec![emu.primary_key_id()]);
    let minted = papi
        .generate(&gen_req(
            &[CLI_READ_ONLY_CUSTOM],
            Some(emu.now_ms() + 600_000),
        ))
        .await
        .unwrap();
    assert_eq!(papi.delete(&[minted.id]).await.unwrap(), 1);
    assert_eq!(emu.calls().total, 5);

    // The same key signed the Standard way is refused.
    let standard = client_as(
        &emu,
        emu.primary_key_id(),
        emu.primary_key(),
        SecurityLevel::Standard,
    );
    assert!(!standard.validate().await.unwrap());
}

#[tokio::test]
async fn advanced_headers_are_well_formed_unique_and_replay_is_rejected() {
    let emu = start(EmulatorConfig {
        security_level: SecurityLevel::Advanced,
        ..unlimited()
    })
    .await;
    // Capture what the client sends: the hostile server answers `true` to everything.
    let h = hostile(vec![http_reply(503, b"{}"), http_reply(200, b"true")]).await;
    let mut opts = options(
        &h.base_url,
        emu.primary_key_id(),
        emu.primary_key(),
        SecurityLevel::Advanced,
    );
    opts.retry = fast_retry(3);
    let papi = Client::new(opts).unwrap();
    assert!(papi.validate().await.unwrap(), "503, then retried");
    assert!(papi.validate().await.unwrap());
    let sent = h.requests();
    assert_eq!(sent.len(), 3);
    let mut nonces = Vec::new();
    for r in &sent {
        assert_eq!(r.request_line, "GET /api_keys/validate HTTP/1.1");
        let nonce = r.header(wire::HEADER_NONCE).unwrap();
        assert_eq!(nonce.len(), 64);
        assert!(nonce.bytes().all(|b| b.is_ascii_alphanumeric()), "{nonce}");
        let ts: i64 = r.header(wire::HEADER_TIMESTAMP).unwrap().parse().unwrap();
        assert!((ts - emu.now_ms()).abs() < 10_000, "timestamp in ms");
        let auth = r.header("authorization").unwrap();
        assert_eq!(
            auth,
            wire::advanced_auth_hash(
                &emu.primary_key(),
                nonce,
                r.header(wire::HEADER_TIMESTAMP).unwrap()
            )
        );
        assert!(!auth.contains(emu.primary_key().expose()));
        assert_eq!(
            r.header(wire::HEADER_AUTH_ID).unwrap(),
            emu.primary_key_id().to_string()
        );
        nonces.push(nonce.to_string());
    }
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 3, "a nonce was reused, even across a retry");

    // Replay the client's own headers to the emulator: accepted once, then refused.
    let http = raw_http();
    let replay = |r: &RawRequest| {
        let mut req = http.get(format!("{}{}", emu.base_url(), wire::PATH_VALIDATE));
        for name in [
            wire::HEADER_AUTH_ID,
            wire::HEADER_NONCE,
            wire::HEADER_TIMESTAMP,
            "authorization",
        ] {
            req = req.header(name, r.header(name).unwrap());
        }
        req.send()
    };
    let first = replay(&sent[2]).await.unwrap();
    assert_eq!(first.status(), 200);
    let second = replay(&sent[2]).await.unwrap();
    assert_eq!(second.status(), 401);
    assert!(
        second
            .text()
            .await
            .unwrap()
            .contains("Nonce was already used")
    );
}

#[tokio::test]
async fn standard_requests_carry_the_documented_headers_and_body() {
    let key = Secret::new("standard-secret-abc123");
    let h = hostile(vec![http_reply(200, br#"{"reply":{"update_count":2}}"#)]).await;
    let papi = hostile_client(&h, &key, SecurityLevel::Standard);
    assert_eq!(papi.delete(&[7, 8]).await.unwrap(), 2);
    let r = &h.requests()[0];
    assert_eq!(
        r.request_line,
        "POST /public_api/v1/api_keys/delete HTTP/1.1"
    );
    assert_eq!(r.header("authorization"), Some(key.expose()));
    assert_eq!(r.header(wire::HEADER_AUTH_ID), Some("42"));
    assert_eq!(r.header(wire::HEADER_NONCE), None);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        body,
        json!({"request_data": {"filters": [{"field": "id", "operator": "in", "value": [7, 8]}]}})
    );
}

#[tokio::test]
async fn skewed_tenant_clock_is_learned_from_the_date_header() {
    const SKEW: i64 = 10 * 60 * 1000;
    let emu = start(EmulatorConfig {
        security_level: SecurityLevel::Advanced,
        faults: Faults {
            clock_offset_ms: SKEW,
            ..Faults::default()
        },
        ..unlimited()
    })
    .await;
    let papi = primary(&emu);
    assert_eq!(papi.clock_offset_ms(), None);
    // Signed with our clock, 10 minutes behind the tenant's: refused once; the refusal carried
    // the tenant's Date, so the client signs again with tenant time and gets through.
    let listed = papi.get_api_keys(&ListRequest::default()).await.unwrap();
    assert_eq!(ids_of(&listed), vec![emu.primary_key_id()]);
    assert_eq!(emu.calls().list, 2, "exactly one re-signed attempt");
    let offset = papi.clock_offset_ms().expect("offset measured");
    assert!((offset - SKEW).abs() <= 2_000, "offset {offset}");
    let listed = papi.get_api_keys(&ListRequest::default()).await.unwrap();
    assert_eq!(ids_of(&listed), vec![emu.primary_key_id()]);
    assert!(papi.validate().await.unwrap());

    // A client that measured the offset on an earlier (Standard) reply succeeds at once, and
    // clients derived from it share the measurement.
    let (view_id, view_key) = emu.create_key(&[PAPI_VIEW], SecurityLevel::Standard, None);
    let viewer = client_as(&emu, view_id, view_key, SecurityLevel::Standard);
    assert!(viewer.validate().await.unwrap());
    let derived = viewer.as_key(
        emu.primary_key_id(),
        emu.primary_key(),
        SecurityLevel::Advanced,
    );
    let offset = derived.clock_offset_ms().expect("shared measurement");
    assert!((offset - SKEW).abs() <= 2_000, "offset {offset}");
    assert!(derived.validate().await.unwrap());
}

#[tokio::test]
async fn date_header_sets_the_clock_offset() {
    for skew in [0i64, -3 * 3_600_000, 90_000] {
        let emu = start(EmulatorConfig {
            faults: Faults {
                clock_offset_ms: skew,
                ..Faults::default()
            },
            ..unlimited()
        })
        .await;
        let papi = primary(&emu);
        assert_eq!(papi.clock_offset_ms(), None);
        assert!(papi.validate().await.unwrap());
        let offset = papi.clock_offset_ms().unwrap();
        assert!(
            (offset - skew).abs() <= 2_000,
            "skew {skew}: offset {offset}"
        );
    }
    // A reply without Date leaves it unknown.
    let h = hostile(vec![http_reply(200, b"true")]).await;
    let c = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard);
    assert!(c.validate().await.unwrap());
    assert_eq!(c.clock_offset_ms(), None);
}

// ---------------------------------------------------------------------------------------------
// Error kinds
// ---------------------------------------------------------------------------------------------

#[test]
fn status_codes_map_to_kinds() {
    let cases = [
        (400, ErrorKind::BadRequest),
        (401, ErrorKind::Unauthorized),
        (402, ErrorKind::PaymentRequired),
        (403, ErrorKind::Forbidden),
        (429, ErrorKind::RateLimited),
        (500, ErrorKind::Server),
        (502, ErrorKind::Server),
        (503, ErrorKind::Server),
        (504, ErrorKind::Server),
        (404, ErrorKind::Malformed),
        (302, ErrorKind::Malformed),
    ];
    for (status, kind) in cases {
        let e = PapiError::from_status(status, Some("the detail".into()));
        assert_eq!(e.kind, kind, "{status}");
        assert_eq!(e.status, Some(status));
        assert!(e.message.contains(&format!("HTTP {status}")), "{e}");
        assert!(e.message.ends_with(": the detail"), "{e}");
        assert_eq!(e.to_string(), e.message);
    }
    let licence = PapiError::from_status(402, None);
    assert!(licence.message.contains("licence"), "{licence}");
    assert!(
        !licence.message.contains(": "),
        "no empty detail: {licence}"
    );
    assert!(ErrorKind::PaymentRequired.is_auth() && !ErrorKind::PaymentRequired.is_transient());
    assert_eq!(ErrorKind::PaymentRequired.code(), "licence_required");
    assert!(ErrorKind::Unauthorized.is_auth() && ErrorKind::Forbidden.is_auth());
    assert!(ErrorKind::RateLimited.is_transient() && ErrorKind::Transport.is_transient());
    assert!(!ErrorKind::BadRequest.is_transient() && !ErrorKind::Malformed.is_transient());
    assert!(!ErrorKind::Config.is_transient() && !ErrorKind::Config.is_auth());
}

#[tokio::test]
async fn bad_request_400_is_reached_and_not_retried() {
    let emu = start(unlimited()).await;
    let papi = primary(&emu);
    let err = papi.generate(&gen_req(&[], None)).await.fails();
    assert_kind(&err, ErrorKind::BadRequest, Some(400));
    assert!(err.message.contains("roles must not be empty"), "{err}");
    // A safe call's 400 is not retried either.
    let err = papi
        .get_api_keys(&list_req(vec![filter("id", "in", json!(["x"]))]))
        .await
        .fails();
    assert_kind(&err, ErrorKind::BadRequest, Some(400));
    let calls = emu.calls();
    assert_eq!((calls.generate, calls.list), (1, 1));
    // A 402 the emulator cannot produce: a hostile tenant can.
    let h = hostile(vec![http_reply(
        402,
        br#"{"reply":{"err_code":402,"err_msg":"No Cortex licence","err_extra":null}}"#,
    )])
    .await;
    let err = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard)
        .get_api_keys(&ListRequest::default())
        .await
        .fails();
    assert_kind(&err, ErrorKind::PaymentRequired, Some(402));
    assert!(err.message.contains("No Cortex licence"), "{err}");
    assert_eq!(h.requests().len(), 1, "402 is not retried");
}

#[tokio::test]
async fn unauthorized_401_for_wrong_expired_and_deleted_keys() {
    let emu = start(unlimited()).await;
    let id = emu.primary_key_id();

    let wrong = client_as(
        &emu,
        id,
        Secret::new(random_alphanumeric(128)),
        SecurityLevel::Standard,
    );
    assert!(!wrong.validate().await.unwrap());
    let err = wrong.get_api_keys(&ListRequest::default()).await.fails();
    assert_kind(&err, ErrorKind::Unauthorized, Some(401));
    assert!(err.kind.is_auth());
    assert_eq!(emu.calls().list, 1, "401 is never retried");
    let unknown_id = client_as(&emu, 999_999, emu.primary_key(), SecurityLevel::Standard);
    assert!(!unknown_id.validate().await.unwrap());

    // Expired in the past, and expiring while in use.
    let (past_id, past_key) = emu.create_key(
        &[CLI_READ_ONLY_CUSTOM],
        SecurityLevel::Standard,
        Some(emu.now_ms() - 1_000),
    );
    let past = client_as(&emu, past_id, past_key, SecurityLevel::Standard);
    assert!(!past.validate().await.unwrap());
    let err = past.download_link().await.fails();
    assert_kind(&err, ErrorKind::Unauthorized, Some(401));
    assert!(err.message.contains("expired"), "{err}");

    let (soon_id, soon_key) = emu.create_key(
        &[CLI_READ_ONLY_CUSTOM],
        SecurityLevel::Standard,
        Some(emu.now_ms() + 1_000),
    );
    let soon = client_as(&emu, soon_id, soon_key, SecurityLevel::Standard);
    assert!(soon.download_link().await.is_ok());
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert!(!soon.validate().await.unwrap());

    // Deleted in the console.
    let (del_id, del_key) = emu.create_key(&[PAPI_VIEW], SecurityLevel::Standard, None);
    let deleted = client_as(&emu, del_id, del_key, SecurityLevel::Standard);
    assert!(deleted.validate().await.unwrap());
    assert!(emu.revoke(del_id));
    assert!(!deleted.validate().await.unwrap());
    let err = deleted.get_api_keys(&ListRequest::default()).await.fails();
    assert_kind(&err, ErrorKind::Unauthorized, Some(401));
}

#[tokio::test]
async fn forbidden_403_for_missing_permission_and_ungrantable_role() {
    let emu = start(unlimited()).await;
    let (view_id, view_key) = emu.create_key(&[PAPI_VIEW], SecurityLevel::Standard, None);
    let viewer = client_as(&emu, view_id, view_key, SecurityLevel::Standard);
    assert!(viewer.get_api_keys(&ListRequest::default()).await.is_ok());
    let err = viewer
        .generate(&gen_req(&[CLI_READ_ONLY_CUSTOM], None))
        .await
        .fails();
    assert_kind(&err, ErrorKind::Forbidden, Some(403));
    assert!(err.message.contains("Public API View/Edit"), "{err}");
    let err = viewer.delete(&[emu.primary_key_id()]).await.fails();
    assert_kind(&err, ErrorKind::Forbidden, Some(403));

    // Path B: the Primary may only hand out roles it holds.
    let papi = primary(&emu);
    let err = papi
        .generate(&gen_req(&[INSTANCE_ADMINISTRATOR], None))
        .await
        .fails();
    assert_kind(&err, ErrorKind::Forbidden, Some(403));
    assert!(err.message.contains("cannot grant"), "{err}");
    assert!(err.message.contains(INSTANCE_ADMINISTRATOR), "{err}");
    assert_eq!(emu.calls().generate, 2, "403 is never retried");
    assert_eq!(emu.live_keys().len(), 2, "nothing minted");
}

#[tokio::test]
async fn rate_limit_burst_gets_through_with_retries() {
    let emu = start(EmulatorConfig {
        rate_limit_per_sec: 10,
        ..EmulatorConfig::default()
    })
    .await;
    let papi = primary_with(
        &emu,
        RetryPolicy {
            max_attempts: 50,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(300),
            deadline: Duration::from_secs(10),
        },
    );
    // Generate is not idempotent, but a 429 surely was not processed: it is retried, and
    // every call mints exactly one key.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let papi = papi.clone();
        let expiration = emu.now_ms() + 600_000;
        tasks.spawn(async move {
            papi.generate(&gen_req(&[CLI_READ_ONLY_CUSTOM], Some(expiration)))
                .await
        });
    }
    let mut ids = Vec::new();
    while let Some(result) = tasks.join_next().await {
        ids.push(result.unwrap().expect("retried until admitted").id);
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    let calls = emu.calls();
    assert!(calls.rate_limited > 0, "{calls:?}");
    assert_eq!(calls.generate, 30 + calls.rate_limited, "{calls:?}");
    assert_eq!(papi.calls_sent(), calls.generate);
    assert_eq!(emu.live_keys().len(), 31, "one key per call, no duplicates");
}

#[tokio::test]
async fn rate_limit_without_retries_fails_some_calls() {
    let emu = start(EmulatorConfig {
        rate_limit_per_sec: 10,
        ..EmulatorConfig::default()
    })
    .await;
    let papi = primary_with(&emu, RetryPolicy::none());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..30 {
        let papi = papi.clone();
        tasks.spawn(async move { papi.get_api_keys(&ListRequest::default()).await });
    }
    let (mut ok, mut limited) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_kind(&e, ErrorKind::RateLimited, Some(429));
                assert!(e.message.contains("Too many requests"), "{e}");
                limited += 1;
            }
        }
    }
    assert!(ok >= 10 && limited > 0, "ok {ok}, limited {limited}");
    let calls = emu.calls();
    assert_eq!(calls.list, 30, "no retries: {calls:?}");
    assert_eq!(calls.rate_limited, limited as u64);
}

#[tokio::test]
async fn server_500_for_unknown_role_and_bad_expiration() {
    let emu = start(unlimited()).await;
    let papi = primary(&emu);
    let err = papi
        .generate(&gen_req(&["No Such Role"], None))
        .await
        .fails();
    assert_kind(&err, ErrorKind::Server, Some(500));
    assert!(
        err.message
            .contains(r#"Role "No Such Role" does not exist"#),
        "{err}"
    );
    assert!(err.message.contains("unknown role"), "err_extra: {err}");

    let err = papi
        .generate(&gen_req(
            &[CLI_READ_ONLY_CUSTOM],
            Some(emu.now_ms() - 60_000),
        ))
        .await
        .fails();
    assert_kind(&err, ErrorKind::Server, Some(500));
    assert!(
        err.message.contains("expiration time is in the past"),
        "{err}"
    );

    // Seconds instead of milliseconds is in the past too.
    let err = papi
        .generate(&gen_req(&[CLI_READ_ONLY_CUSTOM], Some(emu.now_ms() / 1000)))
        .await
        .fails();
    assert_kind(&err, ErrorKind::Server, Some(500));
    assert!(err.message.contains("Invalid expiration"), "{err}");

    // A safe call's 500 is not retried either.
    let err = papi
        .get_api_keys(&list_req(vec![filter("name", "in", json!([1]))]))
        .await
        .fails();
    assert_kind(&err, ErrorKind::Server, Some(500));
    assert!(err.message.contains("Unsupported filter"), "{err}");
    let calls = emu.calls();
    assert_eq!((calls.generate, calls.list), (3, 1));
    assert_eq!(emu.live_keys().len(), 1);
}

fn fail_always(endpoint: &str, kind: FailureKind) -> Faults {
    let mut faults = Faults::default();
    faults
        .failures
        .insert(endpoint.into(), Failure { kind, rate: 1.0 });
    faults
}

#[tokio::test]
async fn gateway_errors_are_retried_up_to_max_attempts_for_safe_calls() {
    let emu = start(unlimited()).await;
    let papi = primary_with(&emu, fast_retry(3));
    for (i, status) in [502u16, 503, 504].into_iter().enumerate() {
        emu.set_faults(fail_always("list", FailureKind::Status(status)));
        let err = papi.get_api_keys(&ListRequest::default()).await.fails();
        assert_kind(&err, ErrorKind::Server, Some(status));
        assert_eq!(emu.calls().list, 3 * (i as u64 + 1), "status {status}");
    }
    emu.set_faults(fail_always("validate", FailureKind::Status(503)));
    assert!(papi.validate().await.is_err());
    assert_eq!(emu.calls().validate, 3);
    emu.set_faults(fail_always("delete", FailureKind::Status(502)));
    assert!(papi.delete(&[12345]).await.is_err());
    assert_eq!(emu.calls().delete, 3);
    emu.set_faults(fail_always("download_link", FailureKind::Status(504)));
    assert!(papi.download_link().await.is_err());
    assert_eq!(emu.calls().download_link, 3);

    // A different bound.
    let five = primary_with(&emu, fast_retry(5));
    emu.set_faults(fail_always("all", FailureKind::Status(503)));
    let before = emu.calls().list;
    assert!(five.get_api_keys(&ListRequest::default()).await.is_err());
    assert_eq!(emu.calls().list - before, 5);
    // An injected 500 is not a gateway error: not retried.
    emu.set_faults(fail_always("list", FailureKind::Status(500)));
    let before = emu.calls().list;
    let err = five.get_api_keys(&ListRequest::default()).await.fails();
    assert_kind(&err, ErrorKind::Server, Some(500));
    assert_eq!(emu.calls().list - before, 1);
    // Back to health: works again.
    emu.set_faults(Faults::default());
    assert!(five.validate().await.unwrap());
}

#[tokio::test]
async fn generate_is_retried_only_on_429() {
    let emu = start(unlimited()).await;
    let papi = primary_with(&emu, fast_retry(4));
    let req = gen_req(&[CLI_READ_ONLY_CUSTOM], None);
    for status in [502u16, 503, 504] {
        emu.set_faults(fail_always("generate", FailureKind::Status(status)));
        let before = emu.calls().generate;
        let err = papi.generate(&req).await.fails();
        assert_kind(&err, ErrorKind::Server, Some(status));
        assert!(err.is_uncertain(), "{status} may have minted: {err}");
        assert_eq!(emu.calls().generate - before, 1, "{status} not retried");
    }
    emu.set_faults(fail_always("generate", FailureKind::Drop));
    let before = emu.calls().generate;
    let err = papi.generate(&req).await.fails();
    assert_kind(&err, ErrorKind::Transport, None);
    assert!(err.is_uncertain(), "{err}");
    assert_eq!(
        emu.calls().generate - before,
        1,
        "a dropped mint is not retried"
    );

    emu.set_faults(fail_always("generate", FailureKind::Status(429)));
    let before = emu.calls().generate;
    let err = papi.generate(&req).await.fails();
    assert_kind(&err, ErrorKind::RateLimited, Some(429));
    assert!(!err.is_uncertain(), "a 429 was not processed");
    assert_eq!(emu.calls().generate - before, 4, "429 is retried");
    assert_eq!(emu.live_keys().len(), 1, "nothing minted");
}

#[tokio::test]
async fn dropped_connections_are_transport_errors_retried_for_safe_calls() {
    let emu = start(unlimited()).await;
    let papi = primary_with(&emu, fast_retry(3));
    // Warm the pool so the drop hits a kept-alive connection too.
    assert!(papi.validate().await.unwrap());
    emu.set_faults(fail_always("all", FailureKind::Drop));
    let err = papi.get_api_keys(&ListRequest::default()).await.fails();
    assert_kind(&err, ErrorKind::Transport, None);
    assert!(err.kind.is_transient());
    assert_eq!(emu.calls().list, 3);
    assert_no_secret(&err.message, emu.primary_key().expose());
    let err = papi.validate().await.fails();
    assert_kind(&err, ErrorKind::Transport, None);
    assert_eq!(emu.calls().validate, 1 + 3);
    emu.set_faults(Faults::default());
    assert!(papi.validate().await.unwrap(), "recovers");
}

#[tokio::test]
async fn slow_tenant_is_a_timeout() {
    let emu = start(EmulatorConfig {
        faults: Faults {
            latency_ms: 600,
            ..Faults::default()
        },
        ..unlimited()
    })
    .await;
    let mut opts = options(
        emu.base_url(),
        emu.primary_key_id(),
        emu.primary_key(),
        SecurityLevel::Standard,
    );
    opts.timeout = Duration::from_millis(150);
    opts.retry = fast_retry(2);
    let papi = Client::new(opts).unwrap();
    let err = papi.validate().await.fails();
    assert_kind(&err, ErrorKind::Timeout, None);
    assert_eq!(
        emu.calls().validate,
        2,
        "a timeout on a safe call is retried"
    );
}

// ---------------------------------------------------------------------------------------------
// Error envelopes, hostile replies, secrets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_error_envelope_carries_the_tenant_message() {
    let emu = start(unlimited()).await;
    let papi = primary_with(&emu, RetryPolicy::none());
    let (view_id, view_key) = emu.create_key(&[PAPI_VIEW], SecurityLevel::Standard, None);
    let viewer = papi.as_key(view_id, view_key, SecurityLevel::Standard);
    let mut styles: Vec<Faults> = [
        ErrorEnvelope::Reply,
        ErrorEnvelope::Root,
        ErrorEnvelope::Data,
        ErrorEnvelope::Metadata,
        ErrorEnvelope::Camel,
    ]
    .into_iter()
    .map(|envelope| Faults {
        error_envelope: envelope,
        ..Faults::default()
    })
    .collect();
    // The same places with err_code as a string.
    for dialect in ["root-errors", "metadata-errors", "camel-errors"] {
        styles.push(Faults::with_dialects(dialect).unwrap());
    }
    for style in styles {
        let envelope = (style.error_envelope, style.dialect.err_code_string);
        emu.set_faults(style.clone());
        let err = papi
            .generate(&gen_req(&["Made Up Role"], None))
            .await
            .fails();
        assert_kind(&err, ErrorKind::Server, Some(500));
        assert!(
            !err.is_uncertain(),
            "a 500 the tenant explained is a refusal, not an unknown outcome: {envelope:?}: {err}"
        );
        assert!(
            err.message
                .contains(r#"Role "Made Up Role" does not exist"#),
            "{envelope:?}: {err}"
        );
        assert!(err.message.contains("unknown role"), "{envelope:?}: {err}");

        let err = viewer
            .generate(&gen_req(&[CLI_READ_ONLY_CUSTOM], None))
            .await
            .fails();
        assert_kind(&err, ErrorKind::Forbidden, Some(403));
        assert!(
            err.message.contains("required permission"),
            "{envelope:?}: {err}"
        );

        let wrong = papi.as_key(view_id, Secret::new("nope"), SecurityLevel::Standard);
        let err = wrong.get_api_keys(&ListRequest::default()).await.fails();
        assert!(
            err.message.contains("Public API request unauthorized"),
            "{envelope:?}: {err}"
        );

        let mut faults = fail_always("list", FailureKind::Status(503));
        faults.error_envelope = style.error_envelope;
        faults.dialect = style.dialect.clone();
        emu.set_faults(faults);
        let err = papi.get_api_keys(&ListRequest::default()).await.fails();
        assert!(
            err.message.contains("Service Unavailable"),
            "{envelope:?}: {err}"
        );
    }
}

#[tokio::test]
async fn replies_over_one_mib_are_refused() {
    let big = vec![b' '; 2 * 1024 * 1024];
    let mut ok_body = br#"{"reply":{"DATA":[],"TOTAL_COUNT":0,"FILTER_COUNT":0}}"#.to_vec();
    ok_body.extend_from_slice(&big);
    let h = hostile(vec![http_reply(200, &ok_body)]).await;
    let papi = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard);
    let err = papi.get_api_keys(&ListRequest::default()).await.fails();
    assert_kind(&err, ErrorKind::Malformed, None);
    assert!(err.message.contains("larger than"), "{err}");
    assert_eq!(h.requests().len(), 1, "malformed is not retried");

    // An error body that large too.
    let h = hostile(vec![http_reply(500, &big)]).await;
    let papi = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard);
    let err = papi.validate().await.fails();
    assert_kind(&err, ErrorKind::Malformed, None);

    // Just under the limit is fine.
    let mut fits = br#"{"reply":{"DATA":[],"TOTAL_COUNT":0,"FILTER_COUNT":0}}"#.to_vec();
    fits.resize(MAX_BODY, b' ');
    let h = hostile(vec![http_reply(200, &fits)]).await;
    let papi = hostile_client(&h, &Secret::new("k"), SecurityLevel::Standard);
    assert!(papi.get_api_keys(&ListRequest::default()).await.is_ok());
}

#[tokio::test]
async fn malformed_generate_replies_never_show_secrets() {
    let own = Secret::new(random_alphanumeric(128));
    let minted = random_alphanumeric(128);
    let bodies: Vec<(Vec<u8>, &str)> = vec![
        (br#"{"reply":{"id":7}}"#.to_vec(), "no `key`"),
        (
            json!({"reply": {"id": 7, "key": ""}})
                .to_string()
                .into_bytes(),
            "no `key`",
        ),
        (
            json!({"reply": {"key": minted}}).to_string().into_bytes(),
            "no integer `id`",
        ),
        (
            json!({"reply": {"id": "7", "key": minted}})
                .to_string()
                .into_bytes(),
            "no integer `id`",
        ),
        (
            json!({"reply": {"id": -3, "key": minted}})
                .to_string()
                .into_bytes(),
            "impossible id",
        ),
        // Not the documented shape at all, with the new key where a parser would quote it.
        (
            json!(format!("your key is {minted}"))
                .to_string()
                .into_bytes(),
            "",
        ),
        (
            json!({"result": {"id": 7, "key": minted}})
                .to_string()
                .into_bytes(),
            "",
        ),
        (
            format!(r#"{{"reply":{{"id":7,"key":"{minted}""#).into_bytes(),
            "",
        ),
    ];
    for (body, expected) in bodies {
        let h = hostile(vec![http_reply(200, &body)]).await;
        let papi = hostile_client(&h, &own, SecurityLevel::Standard);
        let err = papi
            .generate(&gen_req(&[CLI_READ_ONLY_CUSTOM], None))
            .await
            .err()
            .unwrap_or_else(|| panic!("accepted {}", String::from_utf8_lossy(&body)));
        assert_kind(&err, ErrorKind::Malformed, None);
        assert!(err.message.contains(expected), "{err}");
        assert_no_secret(&err.message, own.expose());
        assert_no_secret(&err.message, &minted);
    }
}

#[tokio::test]
async fn echoed_secrets_are_redacted() {
    let own = Secret::new(random_alphanumeric(128));
    let echoes = [
        // In err_msg, in err_extra, in every envelope.
        json!({"reply": {"err_code": 401, "err_msg": format!("bad key {}", own.expose()), "err_extra": null}}),
        json!({"err_code": 500, "err_msg": "oops", "err_extra": [{"authorization": own.expose()}]}),
        json!({"data": {"err_msg": format!("key={}!", own.expose()), "metadata": {"err_code": 403}}}),
        // Long enough that the tenant's text is cut inside the secret.
        json!({"reply": {"err_code": 500, "err_msg": format!("{} {}", "x".repeat(450), own.expose())}}),
        json!({"reply": {"err_code": 500, "err_msg": "m", "err_extra": format!("{}{}", "y".repeat(500), own.expose())}}),
    ];
    for (level, status) in [
        (SecurityLevel::Standard, 401u16),
        (SecurityLevel::Advanced, 500),
    ] {
        for echo in &echoes {
            let h = hostile(vec![http_reply(status, echo.to_string().as_bytes())]).await;
            let papi = hostile_client(&h, &own, level);
            let err = papi.get_api_keys(&ListRequest::default()).await.fails();
            assert_no_secret(&err.message, own.expose());
            assert_no_secret(&err.to_string(), own.expose());
            assert_no_secret(&format!("{err:?}"), own.expose());
            assert!(err.message.contains("[redacted]"), "{echo}: {err}");
        }
    }
}

#[tokio::test]
async fn redirects_are_not_followed() {
    // A redirect would resend a POST (with its body gone) elsewhere; the Public API never
    // redirects, so the client reports it instead of following it.
    let redirect = b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
    let h = hostile(vec![redirect]).await;
    let papi = hostile_client(&h, &Secret::new("k".repeat(64)), SecurityLevel::Standard);
    let err = papi
        .generate(&gen_req(&[CLI_READ_ONLY_CUSTOM], None))
        .await
        .fails();
    assert_eq!(err.status, Some(302), "{err}");
    assert_eq!(h.requests().len(), 1, "nothing sent to the Location");
}
