//! `scanmint/scanFailed`: a scanner says its key failed; the broker decides whether to rotate.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ScanFailedParams {
    pub(crate) key_id: i64,
    #[serde(default)]
    pub(crate) exit_code: Option<i32>,
    #[serde(default)]
    pub(crate) reason: Option<String>,
    #[serde(default)]
    pub(crate) profile: Option<String>,
}

impl Session {
    pub(crate) async fn scan_failed(&self, params: ScanFailedParams) {
        let profile = self.profile(params.profile.as_deref());
        report_scan_failed(self.broker(), &profile, self.remote, params).await
    }
}

/// A scanner says its key failed: check it, and replace it if the tenant rejects it.
pub(crate) async fn report_scan_failed(
    broker: &Broker,
    profile: &str,
    remote: bool,
    params: ScanFailedParams,
) {
    tracing::info!(
        key_id = params.key_id,
        exit_code = params.exit_code,
        reason = params.reason.as_deref().unwrap_or(""),
        "a scanner reported an authentication failure"
    );
    if remote {
        // Only the remote sessions' own key is checked: never the workstation's.
        if let Err(e) = broker.remote_scan_failed(profile, params.key_id).await {
            tracing::warn!(error = %e, "could not check the reported key");
        }
        return;
    }
    match broker.scan_failed(profile, params.key_id).await {
        Ok(ScanFailure::Replaced(generation)) => {
            tracing::info!(generation, "replaced the rejected key")
        }
        Ok(outcome) => tracing::info!(?outcome, "scan failure checked"),
        Err(e) => tracing::warn!(error = %e, "could not check the reported key"),
    }
}
