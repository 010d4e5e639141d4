//! `scanmint/status`: the status snapshot of a profile.

use super::*;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ProfileParams {
    pub(crate) profile: Option<String>,
}

impl Session {
    pub(crate) async fn status(&self, params: ProfileParams) -> Result<Value> {
        let report = self
            .broker()
            .status(&self.profile(params.profile.as_deref()))
            .await;
        Ok(serde_json::to_value(report).unwrap_or(Value::Null))
    }
}
