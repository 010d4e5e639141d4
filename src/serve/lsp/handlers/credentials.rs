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

/// Who asks for a key: what `hand_out` needs to know of a session.
pub(crate) struct Asker<'a> {
    pub(crate) broker: &'a Broker,
    pub(crate) profile: String,
    /// Through the restricted socket: a key of its own, tagged as remote.
    pub(crate) remote: bool,
    /// A scanner (an `exec` or remote session): it keeps every key it was handed.
    pub(crate) exec: bool,
    pub(crate) may_see_secret: bool,
    /// Keys handed to this session: they count as in use until it ends or moves on.
    pub(crate) leases: &'a Mutex<Vec<Lease>>,
}

impl Session {
    pub(crate) async fn credentials(&self, params: CredentialsParams) -> Result<Value> {
        let asker = Asker {
            broker: self.broker(),
            profile: self.profile(params.profile.as_deref()),
            remote: self.remote,
            exec: self.is_exec(),
            may_see_secret: self.may_see_secret(),
            leases: &self.leases,
        };
        hand_out(asker, params).await.map_err(err)
    }
}

/// The reply to `scanmint/credentials`: a key (minted if need be), leased to the session.
pub(crate) async fn hand_out(
    asker: Asker<'_>,
    params: CredentialsParams,
) -> std::result::Result<Value, BrokerError> {
    let Asker {
        broker,
        profile,
        remote,
        exec,
        may_see_secret,
        leases,
    } = asker;
    if let Some(key_id) = params.rejected_key_id.filter(|_| remote) {
        // A remote key the tenant rejects is not handed out again.
        broker.remote_scan_failed(&profile, key_id).await?;
    } else if let Some(key_id) = params.rejected_key_id {
        broker.scan_failed(&profile, key_id).await?;
    }
    let min_valid = Duration::from_secs(params.min_valid_secs.unwrap_or(60).min(86_400 * 365));
    // A remote session gets a key of its own (tagged as remote), leased while it lives.
    let (c, remote_lease) = if remote {
        let (c, lease) = broker.remote_credentials(&profile, min_valid).await?;
        (c, Some(lease))
    } else {
        (broker.credentials(&profile, min_valid).await?, None)
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
    if may_see_secret {
        let mut leases = leases.lock().unwrap();
        // An editor that fetched a newer key has moved on from the old one; a scanner may
        // still use every key it was given (one lease per key is enough).
        if !exec {
            leases.clear();
        }
        if !leases.iter().any(|l| l.key_id() == c.key_id) {
            leases.push(remote_lease.unwrap_or_else(|| broker.lease(&profile, c.key_id)));
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
