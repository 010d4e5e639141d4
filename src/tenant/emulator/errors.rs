//! Error answers of the emulated API: the status and the three error fields, in the place and
//! with the `err_code` type the configured envelope and dialect ask for.

use axum::body::Body;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use super::api::Resp;
use super::{ErrorEnvelope, Faults};

/// An error answer: status and the three error fields.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: u16,
    pub(super) msg: String,
    extra: Option<Value>,
}

impl ApiError {
    pub(super) fn new(status: u16, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            msg: msg.into(),
            extra: None,
        }
    }
    pub(super) fn with_extra(mut self, extra: Value) -> ApiError {
        self.extra = Some(extra);
        self
    }
    pub(super) fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError::new(400, msg)
    }
    pub(super) fn forbidden(msg: impl Into<String>) -> ApiError {
        ApiError::new(403, msg)
    }
    pub(super) fn general(msg: impl Into<String>) -> ApiError {
        ApiError::new(500, msg)
    }
}

/// The error fields in the configured place, `err_code` an integer or (`code_as_string`) a
/// string.
pub fn error_json(
    envelope: ErrorEnvelope,
    code_as_string: bool,
    code: u16,
    msg: &str,
    extra: Option<Value>,
) -> Value {
    let extra = extra.unwrap_or(Value::Null);
    let code = if code_as_string {
        json!(code.to_string())
    } else {
        json!(code)
    };
    match envelope {
        ErrorEnvelope::Reply => {
            json!({ "reply": { "err_code": code, "err_msg": msg, "err_extra": extra } })
        }
        ErrorEnvelope::Root => json!({ "err_code": code, "err_msg": msg, "err_extra": extra }),
        ErrorEnvelope::Data => json!({
            "data": { "err_msg": msg, "err_extra": extra, "metadata": { "err_code": code } }
        }),
        ErrorEnvelope::Metadata => json!({
            "data": { "err_msg": msg, "metadata": { "err_code": code, "err_extra": extra } }
        }),
        ErrorEnvelope::Camel => json!({ "errorCode": code, "message": msg, "details": extra }),
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

pub(super) fn error_response(faults: &Faults, e: &ApiError) -> Resp {
    json_response(
        e.status,
        &error_json(
            faults.error_envelope,
            faults.dialect.err_code_string,
            e.status,
            &e.msg,
            e.extra.clone(),
        ),
    )
}

pub(super) fn reply(value: Value) -> Resp {
    json_response(200, &json!({ "reply": value }))
}

pub(super) fn too_many_requests() -> ApiError {
    ApiError::new(429, "Too many requests").with_extra(json!("Rate limit exceeded for this tenant"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::papi::wire;

    #[test]
    fn error_envelopes_put_fields_where_the_client_finds_them() {
        for (env, as_string) in [
            (ErrorEnvelope::Reply, false),
            (ErrorEnvelope::Root, true),
            (ErrorEnvelope::Data, false),
            (ErrorEnvelope::Metadata, true),
            (ErrorEnvelope::Camel, true),
        ] {
            let body = error_json(env, as_string, 403, "no", None).to_string();
            let parsed = wire::parse_error_body(body.as_bytes()).unwrap();
            assert_eq!(parsed.err_code.as_deref(), Some("403"), "{env:?}");
            assert_eq!(parsed.err_msg.as_deref(), Some("no"), "{env:?}");
        }
    }
}
