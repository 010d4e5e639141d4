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
use axum::http::header::DATE;
use axum::http::{HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use serde_json::{Map, Value, json};

use super::errors::{ApiError, error_response, json_response, reply, too_many_requests};
use super::filters::{Predicate, parse_filters};
use super::state::{self, INSTANCE_ADMINISTRATOR, MAX_EXPIRATION_AHEAD_MS, Shared, State};
use super::{CallCounts, DeleteReply, Dialect, FailureKind, Faults, ValidateReply, auth};
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
    /// `GET`/`PUT /platform/iam/v1/api-key/{id}`: the console's edit call.
    Edit,
}

impl Endpoint {
    fn from_path(path: &str) -> Option<Endpoint> {
        Some(match path {
            wire::PATH_GENERATE => Endpoint::Generate,
            wire::PATH_LIST => Endpoint::List,
            wire::PATH_DELETE => Endpoint::Delete,
            wire::PATH_VALIDATE | wire::PATH_VALIDATE_POST => Endpoint::Validate,
            wire::PATH_DOWNLOAD_LINK => Endpoint::DownloadLink,
            p if p.starts_with(wire::PATH_EDIT_PREFIX) => Endpoint::Edit,
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
            Endpoint::Edit => "edit",
        }
    }

    /// Whether `method` is how this endpoint is called (in this dialect); `Err` is the status
    /// for a wrong one.
    fn allows(self, method: &Method, dialect: &Dialect) -> Result<(), ApiError> {
        let ok = match self {
            // A tenant that only knows the POST form has no GET route at all.
            Endpoint::Validate if dialect.validate_post => {
                if method == Method::GET {
                    return Err(ApiError::new(404, "Not found"));
                }
                method == Method::POST
            }
            Endpoint::Validate | Endpoint::DownloadLink => method == Method::GET,
            Endpoint::Edit => method == Method::GET || method == Method::PUT,
            _ => method == Method::POST,
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::new(405, "Method not allowed"))
        }
    }

    fn counter(self, calls: &mut CallCounts) -> &mut u64 {
        match self {
            Endpoint::Generate => &mut calls.generate,
            Endpoint::List => &mut calls.list,
            Endpoint::Delete => &mut calls.delete,
            Endpoint::Validate => &mut calls.validate,
            Endpoint::DownloadLink => &mut calls.download_link,
            Endpoint::Edit => &mut calls.edit,
        }
    }
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
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let Some(ep) = endpoint else {
        return Ok(error_response(&faults, &ApiError::new(404, "Not found")));
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
                return Ok(error_response(&faults, &e));
            }
        }
    }
    {
        let mut st = shared.lock();
        if !st.admit(shared.rate_limit) {
            st.calls.rate_limited += 1;
            drop(st);
            tracing::debug!(endpoint = ep.name(), "rate limited");
            return Ok(error_response(&faults, &too_many_requests()));
        }
    }
    if let Err(e) = ep.allows(req.method(), &faults.dialect) {
        return Ok(error_response(&faults, &e));
    }
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return Ok(error_response(
                &faults,
                &ApiError::bad_request("Request body unreadable or too large"),
            ));
        }
    };
    let (result, uncertain) = {
        let mut st = shared.lock();
        let result = match auth::authenticate(&mut st, &parts.headers) {
            Err(e) => Err(ApiError::new(401, e.0)),
            Ok(caller) => match ep {
                Endpoint::Generate => generate(&mut st, caller, &body),
                Endpoint::List => list(&st, caller, &body),
                Endpoint::Delete => delete(&mut st, caller, &body),
                Endpoint::Validate => Ok(validate_reply(&faults.dialect)),
                Endpoint::DownloadLink => download_link(&st, caller, parts.uri.query()),
                Endpoint::Edit => {
                    super::edit::api_edit(&mut st, caller, &parts.method, parts.uri.path(), &body)
                }
            },
        };
        // The key is minted by now; the caller is told otherwise.
        let uncertain = match (&result, ep) {
            (Ok(_), Endpoint::Generate) => take_uncertain(&mut st),
            _ => None,
        };
        (result, uncertain)
    };
    match uncertain {
        Some(FailureKind::Drop) => {
            tracing::info!("fault: generate minted, then dropped the connection");
            return Err(DropConnection);
        }
        Some(FailureKind::Status(status)) => {
            tracing::info!(status, "fault: generate minted, then answered an error");
            let e = ApiError::new(status, "Service Unavailable");
            return Ok(error_response(&faults, &e));
        }
        None => {}
    }
    Ok(match result {
        Ok(resp) => match (faults.hostile, ep) {
            (Some(h), Endpoint::Generate | Endpoint::List) => {
                super::hostile::hostile_reply(h, resp).await
            }
            _ => resp,
        },
        Err(e) => {
            tracing::debug!(endpoint = ep.name(), status = e.status, msg = %e.msg, "API error");
            error_response(&faults, &e)
        }
    })
}

/// Count down an uncertain-generate fault; what to answer instead of the minted key.
fn take_uncertain(st: &mut State) -> Option<FailureKind> {
    let fault = st.faults.uncertain_generate.as_mut()?;
    let kind = fault.kind;
    fault.remaining = fault.remaining.saturating_sub(1);
    if fault.remaining == 0 {
        st.faults.uncertain_generate = None;
    }
    Some(kind)
}

/// `validate` says yes in the dialect's words.
fn validate_reply(dialect: &Dialect) -> Resp {
    let yes = match dialect.validate_reply {
        ValidateReply::Bool => json!(true),
        ValidateReply::String => json!("true"),
        ValidateReply::Reply => json!({ "reply": true }),
    };
    json_response(200, &yes)
}

/// `{"request_data": {...}}` → the inner object; anything else is a 400.
pub(super) fn request_data(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
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
    let dialect = st.faults.dialect.clone();
    let expiration = match data.get("expiration") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let ms = dialect.to_ms(v.as_i64().ok_or_else(|| {
                ApiError::general(format!(
                    "Invalid expiration: must be an integer epoch time in {}",
                    dialect.unit_name()
                ))
            })?);
            if ms <= now {
                return Err(ApiError::general(
                    "Invalid expiration: the expiration time is in the past",
                ));
            }
            // A seconds tenant records a ms value as given: an expiry millennia away.
            if !dialect.seconds && ms - now > MAX_EXPIRATION_AHEAD_MS {
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
    let dialect = &st.faults.dialect;
    let predicates: Vec<Predicate> = parse_filters(data.get("filters"))?
        .into_iter()
        .map(|p| p.in_ms(dialect))
        .collect();
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
    let (from, end) = if dialect.ignore_paging {
        (0, u64::MAX)
    } else {
        (from, to.min(from.saturating_add(MAX_PAGE)))
    };
    let page: Vec<Value> = matching
        .iter()
        .skip(from as usize)
        .take(end.saturating_sub(from).min(usize::MAX as u64) as usize)
        .map(|k| serde_json::to_value(k.record(dialect)).unwrap_or(Value::Null))
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
    Ok(match st.faults.dialect.delete_reply {
        DeleteReply::UpdateCount => reply(json!({ "update_count": deleted })),
        DeleteReply::ReplyTrue => reply(json!(true)),
    })
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
