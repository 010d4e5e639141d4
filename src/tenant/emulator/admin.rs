//! The admin endpoint under `/_emulator/{token}/`: the "console" of the emulated tenant, for
//! tests and demos. It hands out the Primary key, so it answers loopback peers only, and only
//! with the random token the boot line's `admin_url` carries (anyone else gets 403). No rate
//! limit. Times are always epoch ms here, whatever the dialect.
//!
//! | call (under `/_emulator/{token}`) | body | answer |
//! |---|---|---|
//! | `GET ` | | `{base_url, primary_key_id, security_level, now_ms, rate_limit_per_sec}` |
//! | `GET /keys` | | `[AdminKeyView]` |
//! | `POST /keys` | `{roles, security_level?, expiration?, comment?}` | `{id, key}` |
//! | `PUT /keys/{id}` | `KeyEdit`: `{roles?, security_level?, comment?}` | `{"edited": bool}` |
//! | `POST /keys/{id}/revoke` | | `{"revoked": bool}` |
//! | `GET /calls` | | `CallCounts` |
//! | `GET /secrets` | | every secret ever issued (for leak tests) |
//! | `GET /faults` | | `Faults` |
//! | `PUT /faults` | `Faults` | the new `Faults` |
//!
//! Errors: `{"error": "..."}` with 400, 403, 404 or 405.

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Method, Request};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::Resp;
use super::errors::json_response;
use super::state::{self, Shared};
use super::{Faults, KeyEdit, SecurityLevel};
use crate::tenant::papi::wire::GenerateReply;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    roles: Vec<String>,
    #[serde(default)]
    security_level: SecurityLevel,
    #[serde(default)]
    expiration: Option<i64>,
    #[serde(default)]
    comment: String,
}

fn admin_error(status: u16, msg: &str) -> Resp {
    json_response(status, &json!({ "error": msg }))
}

fn ok(value: Value) -> Resp {
    json_response(200, &value)
}

/// Only loopback peers (IPv4-mapped IPv6 loopback included) may use the admin endpoint.
pub fn peer_allowed(peer: SocketAddr) -> bool {
    peer.ip().to_canonical().is_loopback()
}

pub async fn handle(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    if !peer_allowed(peer) {
        tracing::warn!(%peer, "admin endpoint refused a non-loopback peer");
        return admin_error(
            403,
            "the emulator's admin endpoint only answers loopback peers",
        );
    }
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = match axum::body::to_bytes(Body::new(req.into_body()), 1 << 20).await {
        Ok(b) => b,
        Err(_) => return admin_error(400, "request body unreadable or too large"),
    };
    let rest = path.strip_prefix("/_emulator").unwrap_or("");
    let mut segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    // The token comes first; without it, nothing (not even whether a call exists).
    if segments.is_empty() || !shared.admin_token.ct_eq(segments[0]) {
        tracing::warn!(%peer, "admin endpoint refused a request without its token");
        return admin_error(
            403,
            "the emulator's admin endpoint needs its token: use the admin_url the emulator printed",
        );
    }
    segments.remove(0);
    match (&method, segments.as_slice()) {
        (&Method::GET, []) => {
            let st = shared.lock();
            let primary = st.keys.values().find(|k| k.is_primary);
            ok(json!({
                "base_url": shared.base_url,
                "primary_key_id": primary.map(|k| k.id),
                "security_level": primary.map(|k| k.level),
                "now_ms": st.now_ms(),
                "rate_limit_per_sec": shared.rate_limit,
            }))
        }
        (&Method::GET, ["keys"]) => ok(serde_json::to_value(shared.views()).unwrap_or(Value::Null)),
        (&Method::POST, ["keys"]) => match serde_json::from_slice::<CreateKey>(&body) {
            Ok(req) => {
                let (id, key) = shared.create_key(state::NewKey {
                    roles: req.roles,
                    level: req.security_level,
                    expiration: req.expiration,
                    comment: req.comment,
                    user: state::CONSOLE_USER.into(),
                    is_primary: false,
                });
                tracing::info!(id, "admin: created a key");
                ok(serde_json::to_value(GenerateReply { id, key }).unwrap_or(Value::Null))
            }
            Err(e) => admin_error(400, &format!("bad key request: {e}")),
        },
        (&Method::PUT, ["keys", id]) => {
            match (id.parse::<i64>(), serde_json::from_slice::<KeyEdit>(&body)) {
                (Ok(id), Ok(edit)) => {
                    let edited = shared.lock().edit_key(id, edit);
                    tracing::info!(id, edited, "admin: edited a key");
                    ok(json!({ "edited": edited }))
                }
                (Err(_), _) => admin_error(400, "key id must be an integer"),
                (_, Err(e)) => admin_error(400, &format!("bad edit: {e}")),
            }
        }
        (&Method::POST, ["keys", id, "revoke"]) => match id.parse::<i64>() {
            Ok(id) => {
                let revoked = shared.revoke(id);
                tracing::info!(id, revoked, "admin: revoke");
                ok(json!({ "revoked": revoked }))
            }
            Err(_) => admin_error(400, "key id must be an integer"),
        },
        (&Method::GET, ["secrets"]) => {
            let st = shared.lock();
            ok(Value::Array(
                st.keys
                    .values()
                    .map(|k| Value::String(k.secret.expose().to_string()))
                    .collect(),
            ))
        }
        (&Method::GET, ["calls"]) => {
            ok(serde_json::to_value(shared.lock().calls.clone()).unwrap_or(Value::Null))
        }
        (&Method::GET, ["faults"]) => {
            ok(serde_json::to_value(shared.lock().faults.clone()).unwrap_or(Value::Null))
        }
        (&Method::PUT, ["faults"]) => match serde_json::from_slice::<Faults>(&body) {
            Ok(faults) => match faults.validate() {
                Ok(()) => {
                    tracing::info!(?faults, "admin: faults changed");
                    shared.lock().faults = faults.clone();
                    ok(serde_json::to_value(faults).unwrap_or(Value::Null))
                }
                Err(e) => admin_error(400, &e),
            },
            Err(e) => admin_error(400, &format!("bad faults: {e}")),
        },
        (_, [] | ["keys"] | ["keys", _] | ["keys", _, "revoke"] | ["calls"] | ["faults"]) => {
            admin_error(405, "method not allowed")
        }
        _ => admin_error(404, "no such admin call"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_peers_are_allowed() {
        assert!(peer_allowed("127.0.0.1:1".parse().unwrap()));
        assert!(peer_allowed("[::1]:1".parse().unwrap()));
        assert!(peer_allowed("[::ffff:127.0.0.1]:1".parse().unwrap()));
        assert!(!peer_allowed("192.168.1.5:1".parse().unwrap()));
        assert!(!peer_allowed("[::ffff:10.0.0.1]:1".parse().unwrap()));
    }
}
