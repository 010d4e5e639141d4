//! What the broker needs from a tenant, as a trait: the lifecycle is written against this, not
//! against HTTP. `papi::Client` is the real implementation.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::secret::Secret;
use crate::tenant::papi::wire::{
    Filter, GenerateReply, GenerateRequest, KeyRecord, ListRequest, SecurityLevel,
};
use crate::tenant::papi::{Client, ClientOptions, PapiError};

/// The Primary key: the one credential allowed to mint and delete keys.
#[derive(Clone)]
pub struct PrimaryKey {
    pub base_url: String,
    pub key_id: i64,
    pub key: Secret,
    pub security_level: SecurityLevel,
}

#[async_trait]
pub trait Tenant: Send + Sync {
    async fn generate(&self, req: &GenerateRequest) -> Result<GenerateReply, PapiError>;
    /// Every key matching `filters`, across pages.
    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<KeyRecord>, PapiError>;
    async fn delete(&self, ids: &[i64]) -> Result<u64, PapiError>;
    /// Whether a minted (Standard) key works, asked the way the scanner would authenticate.
    async fn validate(&self, key_id: i64, key: &Secret) -> Result<bool, PapiError>;
    /// Tenant clock minus ours (ms), 0 until measured.
    fn clock_offset_ms(&self) -> i64;
    /// Whether [`Tenant::clock_offset_ms`] was measured (a reply carried a `Date` header).
    fn clock_offset_known(&self) -> bool {
        true
    }
    fn base_url(&self) -> &str;
}

/// Makes a tenant connection for a Primary key.
pub trait Connector: Send + Sync {
    fn connect(
        &self,
        primary: &PrimaryKey,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Arc<dyn Tenant>, PapiError>;
}

/// The real thing: HTTPS to the tenant's Public API.
pub struct HttpConnector;

impl Connector for HttpConnector {
    fn connect(
        &self,
        primary: &PrimaryKey,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Arc<dyn Tenant>, PapiError> {
        let mut opts = ClientOptions::new(
            &primary.base_url,
            primary.key_id,
            primary.key.clone(),
            primary.security_level,
        );
        opts.ca_file = ca_file.map(|p| p.to_path_buf());
        Ok(Arc::new(Client::new(opts)?))
    }
}

const PAGE: u64 = 100;
/// A tenant with more keys than this is not one we page through on every reconcile.
const MAX_PAGES: u64 = 50;

#[async_trait]
impl Tenant for Client {
    async fn generate(&self, req: &GenerateRequest) -> Result<GenerateReply, PapiError> {
        Client::generate(self, req).await
    }

    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<KeyRecord>, PapiError> {
        let mut all = Vec::new();
        for page in 0..MAX_PAGES {
            let req = ListRequest {
                filters: filters.clone(),
                sort: None,
                search_from: Some(page * PAGE),
                search_to: Some((page + 1) * PAGE),
            };
            let reply = self.get_api_keys(&req).await?;
            let n = reply.data.len() as u64;
            all.extend(reply.data);
            if n < PAGE {
                break;
            }
        }
        Ok(all)
    }

    async fn delete(&self, ids: &[i64]) -> Result<u64, PapiError> {
        Client::delete(self, ids).await
    }

    async fn validate(&self, key_id: i64, key: &Secret) -> Result<bool, PapiError> {
        self.as_key(key_id, key.clone(), SecurityLevel::Standard)
            .validate()
            .await
    }

    fn clock_offset_ms(&self) -> i64 {
        Client::clock_offset_ms(self).unwrap_or(0)
    }

    fn clock_offset_known(&self) -> bool {
        Client::clock_offset_ms(self).is_some()
    }

    fn base_url(&self) -> &str {
        Client::base_url(self)
    }
}
