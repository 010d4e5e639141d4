//! `scanmint/credentials`: the one request that hands out a key (to `exec` sessions, or an
//! editor that opted in), leased for as long as the session uses it.

use super::*;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct CredentialsParams {
    pub(crate) profile: Option<String>,
    pub(crate) min_valid_secs: Option<u64>,
    /// The scanner just failed with this key: validate it (and replace it if bad) first.
    pub(crate) rejected_key_id: Option<i64>,
}

impl Session {
    pub(crate) async fn credentials(&self, params: CredentialsParams) -> Result<Value> {
        let profile = self.profile(params.profile.as_deref());
        if let Some(key_id) = params.rejected_key_id.filter(|_| self.remote) {
            // A remote key the tenant rejects is not handed out again.
            self.broker()
                .remote_scan_failed(&profile, key_id)
                .await
                .map_err(err)?;
        } else if let Some(key_id) = params.rejected_key_id {
            self.broker()
                .scan_failed(&profile, key_id)
                .await
                .map_err(err)?;
        }
        let min_valid = Duration::from_secs(params.min_valid_secs.unwrap_or(60).min(86_400 * 365));
        // A remote session gets a key of its own (tagged as remote), leased while it lives.
        let (c, remote_lease) = if self.remote {
            let (c, lease) = self
                .broker()
                .remote_credentials(&profile, min_valid)
                .await
                .map_err(err)?;
            (c, Some(lease))
        } else {
            let c = self
                .broker()
                .credentials(&profile, min_valid)
                .await
                .map_err(err)?;
            (c, None)
        };
        let mut reply = json!({
            "profile": c.profile,
            "baseUrl": c.base_url,
            "keyId": c.key_id,
            "expiresAt": c.expires_ms,
            "generation": c.generation,
            "role": c.role,
            "fingerprint": c.key.fingerprint(),
        });
        if self.may_see_secret() {
            let mut leases = self.leases.lock().unwrap();
            // An editor that fetched a newer key has moved on from the old one; a scanner may
            // still use every key it was given (one lease per key is enough).
            if !self.is_exec() {
                leases.clear();
            }
            if !leases.iter().any(|l| l.key_id() == c.key_id) {
                leases
                    .push(remote_lease.unwrap_or_else(|| self.broker().lease(&profile, c.key_id)));
            }
            reply["key"] = json!(c.key.expose());
            reply["env"] = json!({
                "CORTEX_API_BASE_URL": c.base_url,
                "CORTEX_API_KEY_ID": c.key_id.to_string(),
                "CORTEX_API_KEY": c.key.expose(),
            });
        }
        Ok(reply)
    }
}
