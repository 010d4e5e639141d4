//! The typed Public API client: authentication, the calls, error envelopes and retries.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HeaderMap, HeaderValue};
use serde::Serialize;

use super::dialect::{self, ObservedDialect, ValidateForm};
use super::error::{ErrorKind, PapiError};
use super::http::{build_http, check_base_url};
use super::replies::{
    DeleteOutcome, decode_delete_reply, decode_generate_reply, decode_list_reply,
    decode_validate_reply, malformed, parse_json, quote_body,
};
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
    /// The tenant's dialect as seen in its replies.
    dialect: Mutex<ObservedDialect>,
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
                dialect: Mutex::new(ObservedDialect::default()),
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

    /// Mint a key. Retried only on 429: a repeat could mint twice. A failure after the request
    /// may have reached the tenant is [`PapiError::is_uncertain`]: look the key up by its tag
    /// before sending `generate` again.
    pub async fn generate(&self, req: &GenerateRequest) -> Result<GenerateReply, PapiError> {
        let body = self
            .post(PATH_GENERATE, req, Idempotence::MintsKeys)
            .await?;
        decode_generate_reply(&body)
    }

    /// One page of the inventory, timestamps as the tenant sent them. See also
    /// [`Client::list_all`].
    pub async fn get_api_keys(&self, req: &ListRequest) -> Result<ListReply, PapiError> {
        let body = self.post(PATH_LIST, req, Idempotence::Safe).await?;
        let reply = decode_list_reply(&body)?;
        let casing = dialect::list_casing(&body);
        self.observe(|d| d.saw_list(casing, &reply.data));
        Ok(reply)
    }

    /// Delete keys by id; returns the tenant's `update_count`, or the number of ids asked for
    /// when the tenant only answered `true` (use [`Client::delete_keys`] to tell these apart).
    pub async fn delete(&self, ids: &[i64]) -> Result<u64, PapiError> {
        Ok(self.delete_keys(ids).await?.count_or(ids.len() as u64))
    }

    /// Delete keys by id and say what the tenant answered: a count, or only "accepted" (then
    /// confirm by listing the ids when it matters).
    pub async fn delete_keys(&self, ids: &[i64]) -> Result<DeleteOutcome, PapiError> {
        let req = DeleteRequest {
            filters: vec![Filter::ids(ids)],
        };
        let body = self.post(PATH_DELETE, &req, Idempotence::Safe).await?;
        let outcome = decode_delete_reply(&body)?;
        self.observe(|d| d.saw_delete(outcome));
        Ok(outcome)
    }

    /// Whether this client's key works: `Ok(false)` when the tenant refuses it (401, or a
    /// `false` answer). Accepts `true`, `"true"` and `{"reply": true}`. Asks with `GET`; a tenant
    /// that answers 404/405 to that is asked with the `POST` form, and the form that worked is
    /// remembered for this tenant.
    pub async fn validate(&self) -> Result<bool, PapiError> {
        let known = self.observed_dialect().validate;
        let mut form = known.unwrap_or(ValidateForm::Get);
        loop {
            let result = match form {
                ValidateForm::Get => {
                    self.send(reqwest::Method::GET, PATH_VALIDATE, None, Idempotence::Safe)
                        .await
                }
                ValidateForm::Post => {
                    self.post(
                        PATH_VALIDATE_POST,
                        &serde_json::json!({}),
                        Idempotence::Safe,
                    )
                    .await
                }
            };
            match result {
                Ok(body) => {
                    let ok = decode_validate_reply(&body)?;
                    self.observe(|d| d.validate = Some(form));
                    return Ok(ok);
                }
                Err(e) if e.kind == ErrorKind::Unauthorized => return Ok(false),
                Err(e)
                    if known.is_none()
                        && form == ValidateForm::Get
                        && matches!(e.status, Some(404 | 405)) =>
                {
                    tracing::info!(status = e.status, "validate: GET refused, trying POST");
                    form = ValidateForm::Post;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The tenant's dialect as seen so far in replies to any client sharing this one's pool.
    pub fn observed_dialect(&self) -> ObservedDialect {
        self.shared
            .dialect
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn observe(&self, f: impl FnOnce(&mut ObservedDialect)) {
        f(&mut self
            .shared
            .dialect
            .lock()
            .unwrap_or_else(|e| e.into_inner()));
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
                // Only a call that mints keys has an outcome worth calling uncertain.
                return Err(match idem {
                    Idempotence::MintsKeys if err.is_uncertain() => {
                        err.with_uncertain(false).into_uncertain()
                    }
                    _ => err.with_uncertain(false),
                });
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
        // From here on the request reached the tenant.
        self.record_date(resp.headers());
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(e).with_uncertain(true))?
        {
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
        let envelope = parse_error_body(&body);
        let explained = envelope.is_some();
        let detail = match envelope {
            Some(e) => {
                let mut text = e.err_msg.unwrap_or_default();
                if let Some(extra) = e.err_extra.filter(|x| !x.is_empty() && x != "null") {
                    text.push_str(&format!(" ({extra})"));
                }
                if text.is_empty()
                    && let Some(code) = e.err_code
                {
                    text = format!("err_code {code}");
                }
                Some(self.redact(&text))
            }
            // Not an error envelope (a proxy's HTML page, plain text): quote its start.
            None if !body.is_empty() => Some(self.redact(&quote_body(&body, 200))),
            None => None,
        };
        // A 5xx may come after the tenant acted, unless it is a 500 the tenant explained
        // (bad role names and expirations are documented to come back that way).
        let maybe_processed = status >= 501 || (status == 500 && !explained);
        Err(PapiError::from_status(status, detail).with_uncertain(maybe_processed))
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
        // A connection never made cannot have delivered the request; anything later may have.
        let maybe_processed = !e.is_connect();
        // reqwest's message names the URL (no secret in it) and the cause.
        let mut message = format!("cannot reach the tenant at {}: {e}", self.shared.base_url);
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        PapiError::new(kind, self.redact(&message)).with_uncertain(maybe_processed)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_full_jitter() {
        let p = RetryPolicy::default();
        for attempt in 0..20 {
            assert!(p.delay(attempt) <= p.max_delay);
        }
        assert!(p.delay(0) <= p.base_delay);
    }
}
