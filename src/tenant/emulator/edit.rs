//! The console's edit call, `GET`/`PUT /platform/iam/v1/api-key/{id}` with
//! `{"request_data": {"roles", "security_level", "comment"}}` (undocumented; seen in a
//! vendor-published request collection). It lets a key's roles and level change after the key
//! was minted and verified, which is what scanmint must notice. Authenticated like every API
//! call; the caller needs Public API View/Edit to change a key and may only grant roles it holds.

use axum::http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SecurityLevel;
use super::api::{Resp, request_data};
use super::errors::{ApiError, reply};
use super::state::{self, State};
use crate::tenant::papi::wire;

/// What an edit changes; `None` keeps the field.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KeyEdit {
    pub roles: Option<Vec<String>>,
    pub security_level: Option<SecurityLevel>,
    pub comment: Option<String>,
}

/// The API form of the edit call.
pub fn api_edit(
    st: &mut State,
    caller: i64,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<Resp, ApiError> {
    let id: i64 = path
        .strip_prefix(wire::PATH_EDIT_PREFIX)
        .unwrap_or_default()
        .trim_end_matches('/')
        .parse()
        .map_err(|_| ApiError::bad_request("The key id in the path must be an integer"))?;
    let caller_key = &st.keys[&caller];
    let perms = caller_key.perms();
    if !perms.papi_view {
        return Err(ApiError::forbidden(
            "The API key does not have the required permission: Public API View",
        ));
    }
    let dialect = st.faults.dialect.clone();
    let record = |st: &State| {
        st.keys
            .get(&id)
            .filter(|k| k.deleted_at.is_none())
            .map(|k| serde_json::to_value(k.record(&dialect)).unwrap_or(Value::Null))
            .ok_or_else(|| ApiError::new(404, format!("API key {id} does not exist")))
    };
    if method == Method::GET {
        return Ok(reply(record(st)?));
    }
    if !perms.papi_edit {
        return Err(ApiError::forbidden(
            "The API key does not have the required permission: Public API View/Edit",
        ));
    }
    let data = request_data(body)?;
    let edit: KeyEdit = serde_json::from_value(Value::Object(data))
        .map_err(|e| ApiError::bad_request(format!("Invalid edit request: {e}")))?;
    if let Some(roles) = &edit.roles {
        if roles.is_empty() {
            return Err(ApiError::bad_request("roles must not be empty"));
        }
        if let Some(unknown) = roles.iter().find(|r| state::role_perms(r).is_none()) {
            return Err(
                ApiError::general(format!("Role {unknown:?} does not exist"))
                    .with_extra(json!([{"field": "roles", "value": unknown}])),
            );
        }
        if let Some(role) = roles.iter().find(|r| !caller_key.may_grant(r)) {
            return Err(ApiError::forbidden(format!(
                "The API key cannot grant the role {role:?}: a caller can only grant roles it holds"
            )));
        }
    }
    record(st)?;
    st.edit_key(id, edit);
    tracing::info!(caller, id, "edit: changed a key");
    Ok(reply(record(st)?))
}
