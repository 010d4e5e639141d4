//! Replies that break the contract ([`super::Hostile`]), for testing that nothing bad is handed
//! out: the call itself still takes effect, only its answer is rewritten.

use serde_json::Value;

use super::api::Resp;
use super::errors::json_response;
use super::state::INSTANCE_ADMINISTRATOR;

/// Rewrite a successful reply the way a broken or hostile tenant would.
pub async fn hostile_reply(hostile: super::Hostile, resp: Resp) -> Resp {
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
