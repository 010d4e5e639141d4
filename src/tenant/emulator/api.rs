//! The Public API endpoints: counting, faults, the rate limit, authentication, the calls
//! themselves and their error envelopes.
//!
//! Order of processing for an API request: count it in [`CallCounts`] → injected latency →
//! injected failure → tenant-wide rate limit → method check → authentication (401) →
//! permission (403) → body validation (400) → semantic checks (500 for unknown roles, bad
//! expiration, unsupported filters) → grant check (403) → the call.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::header::{CONTENT_TYPE, DATE};
use axum::http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::state::{self, INSTANCE_ADMINISTRATOR, MAX_EXPIRATION_AHEAD_MS, Shared, State};
use super::{CallCounts, ErrorEnvelope, FailureKind, Faults, auth};
use crate::tenant::papi::wire::{self, GenerateReply, SecurityLevel};

pub type Resp = Response<Body>;

/// Bodies larger than this are refused.
const MAX_BODY: usize = 1 << 20;
/// At most this many records per `get_api_keys` page (`search_to - search_from`).
const MAX_PAGE: u64 = 100;

/// Returned by the service to make hyper abort the connection without a reply (the `drop`
/// fault): the client sees a transport error, not an HTTP status.
#[derive(Debug)]
pub struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for DropConnection {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Generate,
    List,
    Delete,
    Validate,
    DownloadLink,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Endpoint> {
        Some(match path {
            wire::PATH_GENERATE => Endpoint::Generate,
            wire::PATH_LIST => Endpoint::List,
            wire::PATH_DELETE => Endpoint::Delete,
            wire::PATH_VALIDATE => Endpoint::Validate,
            wire::PATH_DOWNLOAD_LINK => Endpoint::DownloadLink,
            _ => return None,
        })
    }

    /// The name used in [`Faults::failures`].
    fn name(self) -> &'static str {
        match self {
            Endpoint::Generate => "generate",
            Endpoint::List => "list",
            Endpoint::Delete => "delete",
            Endpoint::Validate => "validate",
            Endpoint::DownloadLink => "download_link",
        }
    }

    fn method(self) -> Method {
        match self {
            Endpoint::Validate | Endpoint::DownloadLink => Method::GET,
            _ => Method::POST,
        }
    }

    fn counter(self, calls: &mut CallCounts) -> &mut u64 {
        match self {
            Endpoint::Generate => &mut calls.generate,
            Endpoint::List => &mut calls.list,
            Endpoint::Delete => &mut calls.delete,
            Endpoint::Validate => &mut calls.validate,
            Endpoint::DownloadLink => &mut calls.download_link,
        }
    }
}

/// An error answer: status and the three error fields.
#[derive(Debug)]
pub struct ApiError {
    status: u16,
    msg: String,
    extra: Option<Value>,
}

impl ApiError {
    fn new(status: u16, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            msg: msg.into(),
            extra: None,
        }
    }
    fn with_extra(mut self, extra: Value) -> ApiError {
        self.extra = Some(extra);
        self
    }
    fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::new(400, msg)
    }
    fn forbidden(msg: impl Into<String>) -> ApiError {
        ApiError::new(403, msg)
    }
    fn general(msg: impl Into<String>) -> ApiError {
        ApiError::new(500, msg)
    }
}

/// The error fields in the configured place.
pub fn error_json(envelope: ErrorEnvelope, code: u16, msg: &str, extra: Option<Value>) -> Value {
    match envelope {
        ErrorEnvelope::Reply => wire::error_body_json(code, msg, extra),
        ErrorEnvelope::Root => json!({
            "err_code": code,
            "err_msg": msg,
            "err_extra": extra.unwrap_or(Value::Null),
        }),
        ErrorEnvelope::Data => json!({
            "data": {
                "err_msg": msg,
                "err_extra": extra.unwrap_or(Value::Null),
                "metadata": {"err_code": code},
            }
        }),
    }
}

pub fn json_response(status: u16, value: &Value) -> Resp {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error_response(envelope: ErrorEnvelope, e: &ApiError) -> Resp {
    json_response(
        e.status,
        &error_json(envelope, e.status, &e.msg, e.extra.clone()),
    )
}

fn reply(value: Value) -> Resp {
    json_response(200, &json!({ "reply": value }))
}

fn too_many_requests() -> ApiError {
    ApiError::new(429, "Too many requests").with_extra(json!("Rate limit exceeded for this tenant"))
}

/// Every request: the admin endpoint or the API, then the tenant's `Date` header.
pub async fn handle(
    shared: Arc<Shared>,
    peer: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Result<Resp, DropConnection> {
    let path = req.uri().path();
    let mut resp = if path == "/_emulator" || path.starts_with("/_emulator/") {
        super::admin::handle(&shared, peer, req).await
    } else {
        api(&shared, req).await?
    };
    let now = shared.lock().now_ms();
    if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(state::system_time(now))) {
        resp.headers_mut().insert(DATE, date);
    }
    Ok(resp)
}

async fn api(shared: &Shared, req: Request<Incoming>) -> Result<Resp, DropConnection> {
    let endpoint = Endpoint::from_path(req.uri().path());
    let faults: Faults = {
        let mut st = shared.lock();
        st.calls.total += 1;
        if let Some(ep) = endpoint {
            *ep.counter(&mut st.calls) += 1;
        }
        st.faults.clone()
    };
    let envelope = faults.error_envelope;
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let Some(ep) = endpoint else {
        return Ok(error_response(envelope, &ApiError::new(404, "Not found")));
    };
    let failure = faults
        .failures
        .get(ep.name())
        .or_else(|| faults.failures.get("all"));
    if let Some(failure) = failure
        && rand::random::<f64>() < failure.rate
    {
        match failure.kind {
            FailureKind::Drop => {
                tracing::info!(endpoint = ep.name(), "fault: dropping the connection");
                return Err(DropConnection);
            }
            FailureKind::Status(status) => {
                tracing::info!(endpoint = ep.name(), status, "fault: injected status");
                let e = match status {
                    429 => too_many_requests(),
                    502 => ApiError::new(502, "Bad Gateway"),
                    503 => ApiError::new(503, "Service Unavailable"),
                    504 => ApiError::new(504, "Gateway Timeout"),
                    s => ApiError::new(s, "Internal server error (injected fault)"),
                };
                return Ok(error_response(envelope, &e));
            }
        }
    }
    {
        let mut st = shared.lock();
        if !st.admit(shared.rate_limit) {
            st.calls.rate_limited += 1;
            drop(st);
            tracing::debug!(endpoint = ep.name(), "rate limited");
            return Ok(error_response(envelope, &too_many_requests()));
        }
    }
    if req.method() != ep.method() {
        return Ok(error_response(
            envelope,
            &ApiError::new(405, "Method not allowed"),
        ));
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Ok(error_response(
                envelope,
                &ApiError::bad_request("Request body unreadable or too large"),
            ));
        }
    };
    let result = {
        let mut st = shared.lock();
        match auth::authenticate(&mut st, &parts.headers) {
            Err(e) => Err(ApiError::new(401, e.0)),
            Ok(caller) => match ep {
                Endpoint::Generate => generate(&mut st, caller, &body),
                Endpoint::List => list(&st, caller, &body),
                Endpoint::Delete => delete(&mut st, caller, &body),
                Endpoint::Validate => Ok(json_response(200, &Value::Bool(true))),
                Endpoint::DownloadLink => download_link(&st, caller, parts.uri.query()),
            },
        }
    };
    Ok(match result {
        Ok(resp) => match (faults.hostile, ep) {
            (Some(h), Endpoint::Generate | Endpoint::List) => hostile_reply(h, resp).await,
            _ => resp,
        },
        Err(e) => {
            tracing::debug!(endpoint = ep.name(), status = e.status, msg = %e.msg, "API error");
            error_response(envelope, &e)
        }
    })
}

/// Rewrite a successful reply the way a broken or hostile tenant would.
async fn hostile_reply(hostile: super::Hostile, resp: Resp) -> Resp {
    use super::Hostile::*;
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 8 << 20).await else {
        return json_response(500, &Value::Null);
    };
    let mut value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let reply = &mut value["reply"];
    let records: Vec<Value> = reply
        .get("DATA")
        .or_else(|| reply.get("data"))
        .and_then(|d| d.as_array())
        .cloned()
        .unwrap_or_default();
    let list_key = if reply.get("DATA").is_some() {
        "DATA"
    } else {
        "data"
    };
    tracing::info!(?hostile, "fault: hostile reply");
    match hostile {
        HugeBody => {
            let padding = "x".repeat(2 << 20);
            return json_response(
                parts.status.as_u16(),
                &serde_json::json!({ "reply": reply.clone(), "padding": padding }),
            );
        }
        WrongTypes => {
            if let Some(id) = reply.get("id").cloned() {
                reply["id"] = Value::String(id.to_string());
            }
            let broken: Vec<Value> = records
                .into_iter()
                .map(|mut r| {
                    r["id"] = Value::String(r["id"].to_string());
                    r["roles"] = Value::String(r["roles"].to_string());
                    r["expiration"] = Value::String(r["expiration"].to_string());
                    r
                })
                .collect();
            if reply.get(list_key).is_some() {
                reply[list_key] = Value::Array(broken);
            }
        }
        GenerateWithoutKey => {
            if let Some(o) = reply.as_object_mut() {
                o.remove("key");
            }
        }
        NegativeExpiration | AbsurdExpiration => {
            let exp = if hostile == NegativeExpiration {
                -86_400_000i64
            } else {
                i64::MAX / 2
            };
            let changed: Vec<Value> = records
                .into_iter()
                .map(|mut r| {
                    r["expiration"] = Value::from(exp);
                    r
                })
                .collect();
            if reply.get(list_key).is_some() {
                reply[list_key] = Value::Array(changed);
            }
        }
        DuplicateIds => {
            let mut doubled = Vec::new();
            for r in records {
                let mut copy = r.clone();
                if let Some(roles) = copy["roles"].as_array_mut() {
                    roles.push(Value::String(INSTANCE_ADMINISTRATOR.into()));
                }
                doubled.push(r);
                doubled.push(copy);
            }
            if reply.get(list_key).is_some() {
                reply[list_key] = Value::Array(doubled);
            }
        }
    }
    json_response(parts.status.as_u16(), &value)
}

/// `{"request_data": {...}}` → the inner object; anything else is a 400.
fn request_data(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("Invalid JSON in request body"))?;
    match value {
        Value::Object(mut root) => match root.remove("request_data") {
            Some(Value::Object(data)) => Ok(data),
            Some(_) => Err(ApiError::bad_request("request_data must be an object")),
            None => Err(ApiError::bad_request("Missing request_data")),
        },
        _ => Err(ApiError::bad_request("Request body must be a JSON object")),
    }
}

fn generate(st: &mut State, caller: i64, body: &[u8]) -> Result<Resp, ApiError> {
    let caller_key = &st.keys[&caller];
    if !caller_key.perms().papi_edit {
        return Err(ApiError::forbidden(
            "The API key does not have the required permission: Public API View/Edit",
        ));
    }
    let data = request_data(body)?;
    let roles: Vec<String> = match data.get("roles") {
        None | Some(Value::Null) => return Err(ApiError::bad_request("Missing roles")),
        Some(Value::Array(items)) => {
            let mut roles: Vec<String> = Vec::new();
            for item in items {
                let role = item
                    .as_str()
                    .ok_or_else(|| ApiError::bad_request("roles must be an array of role names"))?;
                if !roles.iter().any(|r| r == role) {
                    roles.push(role.to_string());
                }
            }
            roles
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "roles must be an array of role names",
            ));
        }
    };
    if roles.is_empty() {
        return Err(ApiError::bad_request("roles must not be empty"));
    }
    let level = match data.get("security_level") {
        Some(Value::String(s)) if s == "standard" => SecurityLevel::Standard,
        Some(Value::String(s)) if s == "advanced" => SecurityLevel::Advanced,
        None | Some(Value::Null) => return Err(ApiError::bad_request("Missing security_level")),
        Some(_) => {
            return Err(ApiError::bad_request(
                "security_level must be \"standard\" or \"advanced\"",
            ));
        }
    };
    let comment = match data.get("comment") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::bad_request("comment must be a string")),
    };
    let unknown: Vec<&String> = roles
        .iter()
        .filter(|r| state::role_perms(r).is_none())
        .collect();
    if let Some(first) = unknown.first() {
        return Err(
            ApiError::general(format!("Role {first:?} does not exist")).with_extra(Value::Array(
                unknown
                    .iter()
                    .map(|r| json!({"field": "roles", "value": r, "error": "unknown role"}))
                    .collect(),
            )),
        );
    }
    let now = st.now_ms();
    let expiration = match data.get("expiration") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let ms = v.as_i64().ok_or_else(|| {
                ApiError::general(
                    "Invalid expiration: must be an integer epoch time in milliseconds",
                )
            })?;
            if ms <= now {
                return Err(ApiError::general(
                    "Invalid expiration: the expiration time is in the past",
                ));
            }
            if ms - now > MAX_EXPIRATION_AHEAD_MS {
                return Err(ApiError::general(
                    "Invalid expiration: the expiration time is too far in the future",
                ));
            }
            Some(ms)
        }
    };
    if let Some(role) = roles.iter().find(|r| !caller_key.may_grant(r)) {
        return Err(ApiError::forbidden(format!(
            "The API key cannot grant the role {role:?}: a caller can only grant roles it holds"
        )));
    }
    let user = caller_key.user_name.clone();
    let mut roles = roles;
    if st.faults.broaden_roles && !roles.iter().any(|r| r == INSTANCE_ADMINISTRATOR) {
        roles.push(INSTANCE_ADMINISTRATOR.to_string());
    }
    let (id, key) = st.insert_key(state::NewKey {
        roles,
        level,
        expiration,
        comment,
        user,
        is_primary: false,
    });
    tracing::info!(caller, id, "generate: minted a key");
    let reply_value = serde_json::to_value(GenerateReply { id, key })
        .map_err(|_| ApiError::general("Internal error"))?;
    Ok(reply(reply_value))
}

/// One parsed filter of `get_api_keys` / `delete`.
#[derive(Debug, PartialEq)]
enum Predicate {
    IdIn(Vec<i64>),
    ExpirationGte(i64),
    ExpirationLte(i64),
    /// The key holds every one of these roles.
    RolesContain(Vec<String>),
}

impl Predicate {
    fn matches(&self, k: &state::KeyEntry) -> bool {
        match self {
            Predicate::IdIn(ids) => ids.contains(&k.id),
            // A key that never expires (`null`) counts as expiring at +infinity.
            Predicate::ExpirationGte(t) => k.expiration.is_none_or(|e| e >= *t),
            Predicate::ExpirationLte(t) => k.expiration.is_some_and(|e| e <= *t),
            Predicate::RolesContain(roles) => roles.iter().all(|r| k.roles.contains(r)),
        }
    }
}

/// Parse `filters`. Malformed shapes and ill-typed values are 400; well-formed filters on an
/// unsupported field or operator are 500, like the tenant's other semantic errors.
fn parse_filters(value: Option<&Value>) -> Result<Vec<Predicate>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::bad_request("filters must be an array")),
    };
    let mut out = Vec::new();
    for item in items {
        let obj = item
            .as_object()
            .ok_or_else(|| ApiError::bad_request("each filter must be an object"))?;
        let field = obj
            .get("field")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("filter field must be a string"))?;
        let operator = obj
            .get("operator")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("filter operator must be a string"))?;
        let value = obj
            .get("value")
            .ok_or_else(|| ApiError::bad_request("filter value is missing"))?;
        let int = |v: &Value| {
            v.as_i64().ok_or_else(|| {
                ApiError::bad_request(format!("filter on {field}: value must be an integer"))
            })
        };
        let predicate = match (field, operator.to_ascii_lowercase().as_str()) {
            ("id", "in") => match value {
                Value::Array(ids) => Predicate::IdIn(ids.iter().map(int).collect::<Result<_, _>>()?),
                single => Predicate::IdIn(vec![int(single)?]),
            },
            ("expiration", "gte") => Predicate::ExpirationGte(int(value)?),
            ("expiration", "lte") => Predicate::ExpirationLte(int(value)?),
            ("roles", "contains") => match value {
                Value::String(r) => Predicate::RolesContain(vec![r.clone()]),
                Value::Array(rs) => Predicate::RolesContain(
                    rs.iter()
                        .map(|r| {
                            r.as_str().map(str::to_string).ok_or_else(|| {
                                ApiError::bad_request("filter on roles: value must be a role name or an array of them")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => {
                    return Err(ApiError::bad_request(
                        "filter on roles: value must be a role name or an array of them",
                    ));
                }
            },
            _ => {
                return Err(ApiError::general(format!(
                    "Unsupported filter: field {field:?} with operator {operator:?}"
                ))
                .with_extra(json!([{"field": field, "operator": operator}])));
            }
        };
        out.push(predicate);
    }
    Ok(out)
}

fn page_bound(data: &Map<String, Value>, name: &str, default: u64) -> Result<u64, ApiError> {
    match data.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be a non-negative integer"))),
    }
}

fn list(st: &State, caller: i64, body: &[u8]) -> Result<Resp, ApiError> {
    if !st.keys[&caller].perms().papi_view {
        return Err(ApiError::forbidden(
            "The API key does not have the required permission: Public API View",
        ));
    }
    let data = request_data(body)?;
    let predicates = parse_filters(data.get("filters"))?;
    let (sort_field, descending) = match data.get("sort") {
        None | Some(Value::Null) => ("id".to_string(), false),
        Some(Value::Object(sort)) => {
            let field = match sort.get("field") {
                None | Some(Value::Null) => "id".to_string(),
                Some(Value::String(f)) => f.clone(),
                Some(_) => return Err(ApiError::bad_request("sort field must be a string")),
            };
            let descending = match sort.get("keyword") {
                None | Some(Value::Null) => false,
                Some(Value::String(k)) if k.eq_ignore_ascii_case("asc") => false,
                Some(Value::String(k)) if k.eq_ignore_ascii_case("desc") => true,
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "sort keyword must be \"asc\" or \"desc\"",
                    ));
                }
            };
            (field, descending)
        }
        Some(_) => return Err(ApiError::bad_request("sort must be an object")),
    };
    let from = page_bound(&data, "search_from", 0)?;
    let to = page_bound(&data, "search_to", from + MAX_PAGE)?;

    let inventory: Vec<&state::KeyEntry> = st
        .keys
        .values()
        .filter(|k| k.deleted_at.is_none())
        .collect();
    let mut matching: Vec<&state::KeyEntry> = inventory
        .iter()
        .copied()
        .filter(|k| predicates.iter().all(|p| p.matches(k)))
        .collect();
    match sort_field.as_str() {
        "id" => matching.sort_by_key(|k| k.id),
        "creation_time" => matching.sort_by_key(|k| (k.creation_time, k.id)),
        "expiration" => matching.sort_by_key(|k| (k.expiration.unwrap_or(i64::MAX), k.id)),
        "comment" => matching.sort_by(|a, b| a.comment.cmp(&b.comment).then(a.id.cmp(&b.id))),
        "user_name" | "created_by" => {
            matching.sort_by(|a, b| a.user_name.cmp(&b.user_name).then(a.id.cmp(&b.id)))
        }
        other => {
            return Err(ApiError::general(format!(
                "Unsupported sort field {other:?}"
            )));
        }
    }
    if descending {
        matching.reverse();
    }
    let filter_count = matching.len();
    let end = to.min(from.saturating_add(MAX_PAGE));
    let page: Vec<Value> = matching
        .iter()
        .skip(from as usize)
        .take(end.saturating_sub(from) as usize)
        .map(|k| serde_json::to_value(k.record()).unwrap_or(Value::Null))
        .collect();
    let (data_name, total_name, filter_name) = if st.faults.lowercase_list {
        ("data", "total_count", "filter_count")
    } else {
        ("DATA", "TOTAL_COUNT", "FILTER_COUNT")
    };
    let mut out = Map::new();
    out.insert(data_name.into(), Value::Array(page));
    out.insert(total_name.into(), json!(inventory.len()));
    out.insert(filter_name.into(), json!(filter_count));
    Ok(reply(Value::Object(out)))
}

fn delete(st: &mut State, caller: i64, body: &[u8]) -> Result<Resp, ApiError> {
    if !st.keys[&caller].perms().papi_edit {
        return Err(ApiError::forbidden(
            "The API key does not have the required permission: Public API View/Edit",
        ));
    }
    let data = request_data(body)?;
    if !matches!(data.get("filters"), Some(Value::Array(_))) {
        return Err(ApiError::bad_request("filters must be an array"));
    }
    let predicates = parse_filters(data.get("filters"))?;
    if predicates.is_empty() {
        return Err(ApiError::bad_request("filters must not be empty"));
    }
    let mut ids: Vec<i64> = Vec::new();
    for p in predicates {
        match p {
            Predicate::IdIn(list) => ids.extend(list),
            _ => {
                return Err(ApiError::general(
                    "Unsupported filter for delete: only field \"id\" with operator \"in\"",
                ));
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.contains(&caller) {
        return Err(ApiError::general(
            "An API key cannot delete itself; delete it from the console or with another key",
        ));
    }
    let deleted = ids.iter().filter(|id| st.delete_key(**id)).count();
    tracing::info!(caller, deleted, "delete");
    Ok(reply(json!({ "update_count": deleted })))
}

fn download_link(st: &State, caller: i64, query: Option<&str>) -> Result<Resp, ApiError> {
    if !st.keys[&caller].perms().cli_view {
        return Err(ApiError::forbidden(
            "The API key does not have the required permission: CLI Tools View",
        ));
    }
    let param = |name: &str| {
        query.unwrap_or("").split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name).then(|| v.to_string())
        })
    };
    let os = param("os").ok_or_else(|| ApiError::bad_request("Missing query parameter os"))?;
    let arch = param("architecture")
        .ok_or_else(|| ApiError::bad_request("Missing query parameter architecture"))?;
    if !["linux", "macos", "darwin", "windows"].contains(&os.as_str()) {
        return Err(ApiError::bad_request(format!("Unsupported os {os:?}")));
    }
    if !["amd64", "arm64"].contains(&arch.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Unsupported architecture {arch:?}"
        )));
    }
    let suffix = if os == "windows" { ".exe" } else { "" };
    let file_name = format!("cortexcli-{os}-{arch}{suffix}");
    let expires = st.now_ms() / 1000 + 900;
    let signature = crate::domain::secret::random_alphanumeric(32);
    let signed_url = format!(
        "https://cli-downloads.emulator.invalid/unified-cli/latest/{file_name}?Expires={expires}&Signature={signature}"
    );
    Ok(reply(
        json!({ "signed_url": signed_url, "file_name": file_name }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_classify_errors() {
        let ok = json!([
            {"field": "id", "operator": "in", "value": [1, 2]},
            {"field": "expiration", "operator": "gte", "value": 5},
            {"field": "roles", "operator": "contains", "value": "CLI Role"},
        ]);
        assert_eq!(
            parse_filters(Some(&ok)).unwrap(),
            vec![
                Predicate::IdIn(vec![1, 2]),
                Predicate::ExpirationGte(5),
                Predicate::RolesContain(vec!["CLI Role".into()]),
            ]
        );
        let unknown = json!([{"field": "name", "operator": "in", "value": [1]}]);
        assert_eq!(parse_filters(Some(&unknown)).unwrap_err().status, 500);
        let ill_typed = json!([{"field": "id", "operator": "in", "value": ["x"]}]);
        assert_eq!(parse_filters(Some(&ill_typed)).unwrap_err().status, 400);
        assert_eq!(parse_filters(Some(&json!({}))).unwrap_err().status, 400);
    }

    #[test]
    fn error_envelopes_put_fields_in_three_places() {
        for env in [
            ErrorEnvelope::Reply,
            ErrorEnvelope::Root,
            ErrorEnvelope::Data,
        ] {
            let body = error_json(env, 403, "no", None).to_string();
            let parsed = wire::parse_error_body(body.as_bytes()).unwrap();
            assert_eq!(parsed.err_code.as_deref(), Some("403"), "{env:?}");
            assert_eq!(parsed.err_msg.as_deref(), Some("no"), "{env:?}");
        }
    }
}
