//! The typed Public API client: authentication, the calls, error envelopes and retries.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HeaderMap, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{ErrorKind, PapiError};
use super::wire::*;
use crate::domain::secret::{Secret, random_alphanumeric};

/// The tenant's rate limit counts requests per second.
const RATE_LIMIT_WINDOW: Duration = Duration::from_secs(1);

/// An Advanced call refused while our clock was off by more than this is signed again.
const SKEW_RESIGN_MS: i64 = 60_000;

/// Reply bodies larger than this are refused: no key call needs more.
pub const MAX_BODY: usize = 1 << 20;

/// How failed calls are retried: exponential backoff with full jitter, bounded in attempts and time.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No new attempt starts after this much time since the first.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
            deadline: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    pub fn none() -> Self {
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        }
    }

    /// Full jitter: a uniform delay in `[0, min(max, base·2^attempt)]`.
    fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        let millis = ceiling.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=millis))
    }
}

/// What the client needs to talk to one tenant as one key.
pub struct ClientOptions {
    pub base_url: String,
    pub key_id: i64,
    pub key: Secret,
    pub security_level: SecurityLevel,
    /// Extra CA certificates (PEM) to trust besides the system's: corporate TLS, the emulator.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl ClientOptions {
    pub fn new(base_url: &str, key_id: i64, key: Secret, security_level: SecurityLevel) -> Self {
        ClientOptions {
            base_url: base_url.to_string(),
            key_id,
            key,
            security_level,
            ca_file: None,
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }
}

/// Whether a call may be sent again after a failure that might have reached the tenant.
#[derive(Clone, Copy, PartialEq)]
enum Idempotence {
    /// Reads and deletes: repeating them is harmless.
    Safe,
    /// `generate`: a repeat could mint a second key, so only retry what surely was not processed.
    MintsKeys,
}

/// Shared between a client and the clients derived from it (same tenant, same connection pool).
struct Shared {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
    retry: RetryPolicy,
    /// Tenant clock minus ours, from the last `Date` header (ms); `i64::MIN` until measured.
    clock_offset_ms: AtomicI64,
    calls: AtomicU64,
}

/// A client for one tenant, authenticated as one key. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    key_id: i64,
    key: Secret,
    level: SecurityLevel,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Plain http is only for the local emulator: a key must never cross a network in the clear.
fn check_base_url(base_url: &str) -> Result<String, PapiError> {
    let url = reqwest::Url::parse(base_url).map_err(|e| {
        PapiError::new(
            ErrorKind::Config,
            format!("base URL {base_url:?} is not a URL: {e}"),
        )
    })?;
    let host = url.host_str().unwrap_or_default();
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => {
            return Err(PapiError::new(
                ErrorKind::Config,
                format!(
                    "refusing plain http:// to {host}: keys may only travel over https (http is allowed for loopback only)"
                ),
            ));
        }
        other => {
            return Err(PapiError::new(
                ErrorKind::Config,
                format!("unsupported URL scheme {other:?}"),
            ));
        }
    }
    if host.is_empty() {
        return Err(PapiError::new(
            ErrorKind::Config,
            format!("base URL {base_url:?} has no host"),
        ));
    }
    Ok(base_url.trim_end_matches('/').to_string())
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn build_http(opts: &ClientOptions) -> Result<reqwest::Client, PapiError> {
    // reqwest is built without a default crypto provider; ring is ours. Installing twice is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(60))
        // The Public API does not redirect; following one would resend a POST as a GET.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scanmint/", env!("CARGO_PKG_VERSION")));
    // Proxies come from the environment, but never for a tenant on this machine.
    let loopback = reqwest::Url::parse(&opts.base_url)
        .ok()
        .and_then(|u| u.host_str().map(is_loopback))
        .unwrap_or(false);
    if loopback {
        builder = builder.no_proxy();
    }
    if let Some(ca_file) = &opts.ca_file {
        let pem = std::fs::read(ca_file).map_err(|e| {
            PapiError::new(
                ErrorKind::Config,
                format!("cannot read CA file {}: {e}", ca_file.display()),
            )
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            PapiError::new(
                ErrorKind::Config,
                format!(
                    "CA file {} holds no usable PEM certificate: {e}",
                    ca_file.display()
                ),
            )
        })?;
        // A file without any PEM block parses as an empty bundle: refuse it rather than
        // silently trusting nothing extra.
        if certs.is_empty() {
            return Err(PapiError::new(
                ErrorKind::Config,
                format!("CA file {} holds no PEM certificate", ca_file.display()),
            ));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| PapiError::new(ErrorKind::Config, format!("cannot set up HTTPS: {e}")))
}

impl Client {
    pub fn new(opts: ClientOptions) -> Result<Client, PapiError> {
        let base_url = check_base_url(&opts.base_url)?;
        let http = build_http(&opts)?;
        Ok(Client {
            shared: Arc::new(Shared {
                http,
                base_url,
                timeout: opts.timeout,
                retry: opts.retry,
                clock_offset_ms: AtomicI64::new(i64::MIN),
                calls: AtomicU64::new(0),
            }),
            key_id: opts.key_id,
            key: opts.key,
            level: opts.security_level,
        })
    }

    /// A client for the same tenant and connection pool, authenticated as another key
    /// (used to validate a minted key the way the scanner will use it).
    pub fn as_key(&self, key_id: i64, key: Secret, level: SecurityLevel) -> Client {
        Client {
            shared: self.shared.clone(),
            key_id,
            key,
            level,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    pub fn key_id(&self) -> i64 {
        self.key_id
    }

    /// Tenant clock minus ours, in ms, from the last reply's `Date` header (1 s resolution).
    pub fn clock_offset_ms(&self) -> Option<i64> {
        match self.shared.clock_offset_ms.load(Ordering::Relaxed) {
            i64::MIN => None,
            v => Some(v),
        }
    }

    /// HTTP requests sent through this client's pool, retries included.
    pub fn calls_sent(&self) -> u64 {
        self.shared.calls.load(Ordering::Relaxed)
    }

    pub async fn generate(&self, req: &GenerateRequest) -> Result<GenerateReply, PapiError> {
        let body = self
            .post(PATH_GENERATE, req, Idempotence::MintsKeys)
            .await?;
        decode_generate_reply(&body)
    }

    pub async fn get_api_keys(&self, req: &ListRequest) -> Result<ListReply, PapiError> {
        let body = self.post(PATH_LIST, req, Idempotence::Safe).await?;
        decode_list_reply(&body)
    }

    /// Delete keys by id; returns the tenant's `update_count`.
    pub async fn delete(&self, ids: &[i64]) -> Result<u64, PapiError> {
        let req = DeleteRequest {
            filters: vec![Filter::ids(ids)],
        };
        let body = self.post(PATH_DELETE, &req, Idempotence::Safe).await?;
        Ok(decode_delete_reply(&body)?.update_count)
    }

    /// Whether this client's key works: `Ok(false)` when the tenant refuses it (401).
    pub async fn validate(&self) -> Result<bool, PapiError> {
        match self
            .send(reqwest::Method::GET, PATH_VALIDATE, None, Idempotence::Safe)
            .await
        {
            Ok(body) => match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(serde_json::Value::Bool(ok)) => Ok(ok),
                Ok(serde_json::Value::Object(o))
                    if o.get("reply").is_some_and(|r| r.is_boolean()) =>
                {
                    Ok(o["reply"].as_bool().unwrap_or(false))
                }
                _ => Err(malformed("validate did not answer true or false")),
            },
            Err(e) if e.kind == ErrorKind::Unauthorized => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The call the Cortex CLI makes with its key: proves a key works for a scanner.
    pub async fn download_link(&self) -> Result<DownloadLinkReply, PapiError> {
        let path = format!("{PATH_DOWNLOAD_LINK}?os=linux&architecture=amd64");
        let body = self
            .send(reqwest::Method::GET, &path, None, Idempotence::Safe)
            .await?;
        let envelope: ReplyEnvelope<DownloadLinkReply> = parse_json(&body)?;
        Ok(envelope.reply)
    }

    async fn post<T: Serialize>(
        &self,
        path: &str,
        data: &T,
        idem: Idempotence,
    ) -> Result<Vec<u8>, PapiError> {
        let body = serde_json::to_vec(&RequestEnvelope { request_data: data }).map_err(|e| {
            PapiError::new(ErrorKind::Config, format!("cannot encode request: {e}"))
        })?;
        self.send(reqwest::Method::POST, path, Some(body), idem)
            .await
    }

    /// Send with the retry policy: transient failures back off with full jitter, within bounded
    /// attempts and an overall deadline; 400/401/402/403 are never retried.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        idem: Idempotence,
    ) -> Result<Vec<u8>, PapiError> {
        let policy = self.shared.retry;
        let started = Instant::now();
        let mut attempt = 0;
        let mut resigned = false;
        loop {
            let signed_with = self.clock_offset_ms().unwrap_or(0);
            let result = self.send_once(method.clone(), path, body.clone()).await;
            let err = match result {
                Ok(body) => return Ok(body),
                Err(err) => err,
            };
            // An Advanced signature made with a skewed clock is refused like a bad key. The
            // refusal's Date header told us the tenant's clock: sign again with it, once.
            if err.kind == ErrorKind::Unauthorized
                && self.level == SecurityLevel::Advanced
                && !resigned
                && (self.clock_offset_ms().unwrap_or(0) - signed_with).abs() > SKEW_RESIGN_MS
            {
                resigned = true;
                tracing::info!(
                    path,
                    offset_ms = self.clock_offset_ms(),
                    "re-signing with the tenant's clock"
                );
                continue;
            }
            attempt += 1;
            let retryable = match (err.kind, idem) {
                (ErrorKind::RateLimited, _) => true,
                (ErrorKind::Server, Idempotence::Safe) => matches!(err.status, Some(502..=504)),
                (ErrorKind::Transport | ErrorKind::Timeout, Idempotence::Safe) => true,
                _ => false,
            };
            // The rate limit is per second: a retry sooner than that only spends another call.
            let delay = if err.kind == ErrorKind::RateLimited {
                policy
                    .delay(attempt - 1)
                    .max(RATE_LIMIT_WINDOW + policy.delay(0))
            } else {
                policy.delay(attempt - 1)
            };
            if !retryable
                || attempt >= policy.max_attempts
                || started.elapsed() + delay > policy.deadline
            {
                return Err(err);
            }
            tracing::debug!(path, attempt, kind = ?err.kind, delay_ms = delay.as_millis() as u64, "retrying Public API call");
            tokio::time::sleep(delay).await;
        }
    }

    async fn send_once(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>, PapiError> {
        let url = format!("{}{}", self.shared.base_url, path);
        let mut req = self
            .shared
            .http
            .request(method, &url)
            .headers(self.auth_headers()?)
            .timeout(self.shared.timeout);
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        let mut resp = req.send().await.map_err(|e| self.transport_error(e))?;
        self.record_date(resp.headers());
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(e))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(malformed(format!(
                    "reply to {path} is larger than {} KiB",
                    MAX_BODY / 1024
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if (200..300).contains(&status) {
            return Ok(body);
        }
        // Redact before parsing: the error fields are cut to a maximum length, and a cut
        // inside an echoed key would leave a piece of it that a later redaction cannot see.
        let body = self.redact_body(body);
        let detail = parse_error_body(&body).map(|e| {
            let mut text = e.err_msg.unwrap_or_default();
            if let Some(extra) = e.err_extra.filter(|x| !x.is_empty() && x != "null") {
                text.push_str(&format!(" ({extra})"));
            }
            self.redact(&text)
        });
        Err(PapiError::from_status(status, detail))
    }

    fn auth_headers(&self) -> Result<HeaderMap, PapiError> {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_AUTH_ID, HeaderValue::from(self.key_id));
        // Zeroized once the header holds its own copy.
        let authorization: zeroize::Zeroizing<String> = match self.level {
            SecurityLevel::Standard => self.key.expose().to_string().into(),
            SecurityLevel::Advanced => {
                let nonce = random_alphanumeric(NONCE_LEN);
                // Sign with the tenant's clock when we know it, so a skewed laptop still authenticates.
                let timestamp = (now_ms() + self.clock_offset_ms().unwrap_or(0)).to_string();
                let hash = advanced_auth_hash(&self.key, &nonce, &timestamp);
                headers.insert(HEADER_NONCE, header_value(&nonce)?);
                headers.insert(HEADER_TIMESTAMP, header_value(&timestamp)?);
                hash.into()
            }
        };
        let mut value = HeaderValue::from_str(&authorization).map_err(|_| {
            PapiError::new(
                ErrorKind::Config,
                "the key holds characters that cannot go in an HTTP header",
            )
        })?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
        Ok(headers)
    }

    fn record_date(&self, headers: &HeaderMap) {
        let date = headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| httpdate::parse_http_date(s).ok());
        if let Some(date) = date {
            let server_ms = date
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            // Date has 1 s resolution and is truncated: add half a second to centre the estimate.
            let offset = server_ms + 500 - now_ms();
            // Each reply's estimate wobbles by up to ±0.5 s; keep the first one unless the clocks
            // really moved, so timestamps taken moments apart stay in order.
            let known = self.shared.clock_offset_ms.load(Ordering::Relaxed);
            if known == i64::MIN || (offset - known).abs() > 1_000 {
                self.shared.clock_offset_ms.store(offset, Ordering::Relaxed);
            }
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> PapiError {
        let kind = if e.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Transport
        };
        // reqwest's message names the URL (no secret in it) and the cause.
        let mut message = format!("cannot reach the tenant at {}: {e}", self.shared.base_url);
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        PapiError::new(kind, self.redact(&message))
    }

    /// Our key replaced in every string (and object key) of a JSON reply, before anything is
    /// cut or quoted from it; bodies that are not JSON are returned as they are.
    fn redact_body(&self, body: Vec<u8>) -> Vec<u8> {
        if self.key.is_empty() {
            return body;
        }
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return body;
        };
        fn walk(v: &mut serde_json::Value, redact: &dyn Fn(&str) -> String) {
            match v {
                serde_json::Value::String(s) => *s = redact(s),
                serde_json::Value::Array(items) => items.iter_mut().for_each(|i| walk(i, redact)),
                serde_json::Value::Object(map) => {
                    let entries = std::mem::take(map);
                    for (k, mut v) in entries {
                        walk(&mut v, redact);
                        map.insert(redact(&k), v);
                    }
                }
                _ => {}
            }
        }
        walk(&mut value, &|s| self.redact(s));
        serde_json::to_vec(&value).unwrap_or(body)
    }

    /// A hostile or buggy tenant could echo our key back in an error; never pass it on.
    fn redact(&self, text: &str) -> String {
        if !self.key.is_empty() && text.contains(self.key.expose()) {
            text.replace(self.key.expose(), "[redacted]")
        } else {
            text.to_string()
        }
    }
}

fn header_value(s: &str) -> Result<HeaderValue, PapiError> {
    HeaderValue::from_str(s).map_err(|_| PapiError::new(ErrorKind::Config, "invalid header value"))
}

fn malformed(message: impl Into<String>) -> PapiError {
    PapiError::new(ErrorKind::Malformed, message)
}

/// Decode a `generate` reply (`{"reply": {"id": .., "key": ..}}`).
pub fn decode_generate_reply(body: &[u8]) -> Result<GenerateReply, PapiError> {
    // Serde's message could quote the reply (e.g. "invalid type: string \"<the new key>\""); the
    // reply holds a secret, so never pass serde's text on: say only what is wrong.
    let envelope: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| malformed("generate reply is not valid JSON"))?;
    let Some(reply) = envelope.get("reply").filter(|r| r.is_object()) else {
        return Err(malformed("generate reply has no `reply` object"));
    };
    let id = reply.get("id").and_then(|v| v.as_i64());
    let key = reply
        .get("key")
        .and_then(|v| v.as_str())
        .filter(|k| !k.is_empty());
    match (id, key) {
        (Some(id), Some(key)) if id > 0 => Ok(GenerateReply {
            id,
            key: Secret::new(key),
        }),
        (None, _) => Err(malformed("generate reply has no integer `id`")),
        (Some(_), None) => Err(malformed(
            "generate reply has no `key`: the new key cannot be used",
        )),
        (Some(id), Some(_)) => Err(malformed(format!(
            "generate reply has an impossible id {id}"
        ))),
    }
}

/// Decode a `get_api_keys` reply (`{"reply": {"DATA": [..], ..}}`).
pub fn decode_list_reply(body: &[u8]) -> Result<ListReply, PapiError> {
    let envelope: ReplyEnvelope<ListReply> = parse_json(body)?;
    Ok(envelope.reply)
}

/// Decode a `delete` reply (`{"reply": {"update_count": n}}`).
pub fn decode_delete_reply(body: &[u8]) -> Result<DeleteReply, PapiError> {
    let envelope: ReplyEnvelope<DeleteReply> = parse_json(body)?;
    Ok(envelope.reply)
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, PapiError> {
    serde_json::from_slice(body).map_err(|e| {
        malformed(format!(
            "the tenant's reply does not match the API: {}",
            truncate(&e.to_string(), 200)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback() {
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://localhost:1/").is_ok());
        assert!(check_base_url("http://[::1]:9").is_ok());
        assert!(check_base_url("https://api-acme.xdr.us.paloaltonetworks.com").is_ok());
        let err = check_base_url("http://api-acme.example.com").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Config);
        assert!(err.message.contains("https"), "{}", err.message);
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("not a url").is_err());
    }

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let p = RetryPolicy::default();
        for attempt in 0..20 {
            assert!(p.delay(attempt) <= p.max_delay);
        }
        assert!(p.delay(0) <= p.base_delay);
    }
}
