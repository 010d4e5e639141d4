//! Authentication of an API call: Standard (raw secret) or Advanced (hash with nonce and
//! timestamp, replay-protected). Every failure is a 401.

use axum::http::HeaderMap;

use super::state::{ADVANCED_SKEW_MS, State};
use crate::domain::secret::Secret;
use crate::tenant::papi::wire::{self, SecurityLevel};

/// Why authentication failed (the message goes into `err_msg`; never a secret).
#[derive(Debug, PartialEq, Eq)]
pub struct AuthError(pub &'static str);

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Check the auth headers against the inventory; the id of the calling key on success.
/// A Standard key must authenticate the Standard way and an Advanced key the Advanced way.
pub fn authenticate(st: &mut State, headers: &HeaderMap) -> Result<i64, AuthError> {
    let id: i64 = header(headers, wire::HEADER_AUTH_ID)
        .ok_or(AuthError("Missing x-xdr-auth-id header"))?
        .parse()
        .map_err(|_| AuthError("Invalid x-xdr-auth-id header"))?;
    let authorization =
        header(headers, "authorization").ok_or(AuthError("Missing Authorization header"))?;
    let now = st.now_ms();
    let key = st
        .keys
        .get(&id)
        .ok_or(AuthError("Public API request unauthorized"))?;
    if key.deleted_at.is_some() {
        return Err(AuthError("Public API request unauthorized"));
    }
    if key.expiration.is_some_and(|e| e <= now) {
        return Err(AuthError("API key has expired"));
    }
    match key.level {
        SecurityLevel::Standard => {
            if key.secret.ct_eq(authorization) {
                Ok(id)
            } else {
                Err(AuthError("Public API request unauthorized"))
            }
        }
        SecurityLevel::Advanced => {
            let nonce = header(headers, wire::HEADER_NONCE)
                .ok_or(AuthError("Missing x-xdr-nonce header"))?;
            if nonce.len() != wire::NONCE_LEN || !nonce.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(AuthError("Invalid x-xdr-nonce header"));
            }
            let timestamp = header(headers, wire::HEADER_TIMESTAMP)
                .ok_or(AuthError("Missing x-xdr-timestamp header"))?;
            let ts: i64 = if timestamp.bytes().all(|b| b.is_ascii_digit()) {
                timestamp
                    .parse()
                    .map_err(|_| AuthError("Invalid x-xdr-timestamp header"))?
            } else {
                return Err(AuthError("Invalid x-xdr-timestamp header"));
            };
            if ts.abs_diff(now) > ADVANCED_SKEW_MS as u64 {
                return Err(AuthError("Request timestamp is outside the allowed window"));
            }
            let expected = Secret::new(wire::advanced_auth_hash(&key.secret, nonce, timestamp));
            if !expected.ct_eq(authorization) {
                return Err(AuthError("Public API request unauthorized"));
            }
            // Nonces older than the window can never pass the timestamp check again.
            st.nonces.retain(|_, seen| *seen >= now - ADVANCED_SKEW_MS);
            if st.nonces.contains_key(nonce) {
                return Err(AuthError("Nonce was already used"));
            }
            st.nonces.insert(nonce.to_string(), ts);
            Ok(id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::{NewKey, Shared};
    use super::*;
    use crate::tenant::emulator::Faults;

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn new_key(shared: &Shared, level: SecurityLevel) -> (i64, Secret) {
        shared.create_key(NewKey {
            roles: vec![],
            level,
            expiration: None,
            comment: String::new(),
            user: "u".into(),
            is_primary: false,
        })
    }

    /// The Advanced headers a correct client would send.
    fn advanced_headers(id: i64, key: &Secret, nonce: &str, ts: &str) -> HeaderMap {
        headers(&[
            ("x-xdr-auth-id", id.to_string()),
            ("x-xdr-nonce", nonce.to_string()),
            ("x-xdr-timestamp", ts.to_string()),
            ("authorization", wire::advanced_auth_hash(key, nonce, ts)),
        ])
    }

    #[test]
    fn advanced_key_refuses_standard_auth_and_replays() {
        let shared = Shared::new(String::new(), 10, Faults::default());
        let (id, key) = new_key(&shared, SecurityLevel::Advanced);
        let mut st = shared.lock();
        let standard = headers(&[
            ("x-xdr-auth-id", id.to_string()),
            ("authorization", key.expose().to_string()),
        ]);
        assert!(authenticate(&mut st, &standard).is_err());
        let nonce = "a".repeat(64);
        let ts = st.now_ms().to_string();
        let advanced = advanced_headers(id, &key, &nonce, &ts);
        assert_eq!(authenticate(&mut st, &advanced), Ok(id));
        assert_eq!(
            authenticate(&mut st, &advanced),
            Err(AuthError("Nonce was already used"))
        );
    }

    #[test]
    fn standard_key_refuses_the_hash() {
        let shared = Shared::new(String::new(), 10, Faults::default());
        let (id, key) = new_key(&shared, SecurityLevel::Standard);
        let mut st = shared.lock();
        let nonce = "b".repeat(64);
        let ts = st.now_ms().to_string();
        let advanced = advanced_headers(id, &key, &nonce, &ts);
        assert!(authenticate(&mut st, &advanced).is_err());
        let bad_id = headers(&[
            ("x-xdr-auth-id", "x1".into()),
            ("authorization", key.expose().into()),
        ]);
        assert_eq!(
            authenticate(&mut st, &bad_id),
            Err(AuthError("Invalid x-xdr-auth-id header"))
        );
    }
}
