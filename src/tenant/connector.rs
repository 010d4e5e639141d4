//! The domain's `Tenant` and `Connector` implemented over the Public API client: HTTPS to the
//! tenant, paging through listings, and converting between the wire shapes (`papi::wire`) and
//! the broker's own types, so that the domain never names papi.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::broker::{
    Connector, DeleteOutcome, DialectSeen, ErrorKind, Filter, GenerateReply, GenerateRequest,
    KeyRecord, PrimaryKey, SecurityLevel, Tenant, TenantError,
};
use crate::domain::secret::Secret;
use crate::tenant::papi::{self, Client, ClientOptions, PapiError, wire};

/// The real thing: HTTPS to the tenant's Public API.
pub struct HttpConnector;

impl Connector for HttpConnector {
    fn connect(
        &self,
        primary: &PrimaryKey,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Arc<dyn Tenant>, TenantError> {
        let mut opts = ClientOptions::new(
            &primary.base_url,
            primary.key_id,
            primary.key.clone(),
            wire_level(primary.security_level),
        );
        opts.ca_file = ca_file.map(|p| p.to_path_buf());
        Ok(Arc::new(Client::new(opts).map_err(domain_error)?))
    }
}

#[async_trait]
impl Tenant for Client {
    async fn generate(&self, req: &GenerateRequest) -> Result<GenerateReply, TenantError> {
        let req = wire::GenerateRequest {
            roles: req.roles.clone(),
            security_level: wire_level(req.security_level),
            expiration: req.expiration,
            comment: req.comment.clone(),
        };
        let reply = Client::generate(self, &req).await.map_err(domain_error)?;
        Ok(GenerateReply {
            id: reply.id,
            key: reply.key,
        })
    }

    async fn list(&self, filters: Vec<Filter>) -> Result<Vec<KeyRecord>, TenantError> {
        let filters: Vec<wire::Filter> = filters.into_iter().map(wire_filter).collect();
        // list_all pages robustly: stops on FILTER_COUNT, drops duplicates, never loops on a
        // tenant that ignores search_from/search_to.
        let listing = self.list_all(filters).await.map_err(domain_error)?;
        Ok(listing.records.into_iter().map(domain_record).collect())
    }

    async fn delete(&self, ids: &[i64]) -> Result<DeleteOutcome, TenantError> {
        Ok(match self.delete_keys(ids).await.map_err(domain_error)? {
            papi::DeleteOutcome::Count(n) => DeleteOutcome::Count(n),
            papi::DeleteOutcome::Accepted => DeleteOutcome::Accepted,
        })
    }

    async fn validate(&self, key_id: i64, key: &Secret) -> Result<bool, TenantError> {
        self.as_key(key_id, key.clone(), wire::SecurityLevel::Standard)
            .validate()
            .await
            .map_err(domain_error)
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

    fn dialect(&self) -> DialectSeen {
        let seen = self.observed_dialect();
        let name = |v: serde_json::Value| v.as_str().map(String::from);
        DialectSeen {
            list_casing: seen.list_casing.and_then(|c| name(serde_json::json!(c))),
            paging: seen.paging.and_then(|p| name(serde_json::json!(p))),
            delete_reply: seen.delete_reply.and_then(|d| name(serde_json::json!(d))),
            validate: seen.validate.and_then(|v| name(serde_json::json!(v))),
            time_unit: seen.time_unit.map(|u| u.as_str().to_string()),
        }
    }
}

pub fn wire_level(level: SecurityLevel) -> wire::SecurityLevel {
    match level {
        SecurityLevel::Standard => wire::SecurityLevel::Standard,
        SecurityLevel::Advanced => wire::SecurityLevel::Advanced,
    }
}

impl From<wire::SecurityLevel> for SecurityLevel {
    fn from(level: wire::SecurityLevel) -> Self {
        match level {
            wire::SecurityLevel::Standard => SecurityLevel::Standard,
            wire::SecurityLevel::Advanced => SecurityLevel::Advanced,
        }
    }
}

impl From<SecurityLevel> for wire::SecurityLevel {
    fn from(level: SecurityLevel) -> Self {
        wire_level(level)
    }
}

fn wire_filter(f: Filter) -> wire::Filter {
    wire::Filter {
        field: f.field,
        operator: f.operator,
        value: f.value,
    }
}

fn domain_record(r: wire::KeyRecord) -> KeyRecord {
    KeyRecord {
        id: r.id,
        roles: r.roles,
        created_by: r.created_by,
        creation_time: r.creation_time,
        expiration: r.expiration,
        comment: r.comment,
        user_name: r.user_name,
        security_level: r.security_level,
    }
}

/// The same kinds on both sides; the message (the tenant's words) passes through unchanged.
pub fn domain_error(e: PapiError) -> TenantError {
    let kind = match e.kind {
        papi::ErrorKind::BadRequest => ErrorKind::BadRequest,
        papi::ErrorKind::Unauthorized => ErrorKind::Unauthorized,
        papi::ErrorKind::PaymentRequired => ErrorKind::PaymentRequired,
        papi::ErrorKind::Forbidden => ErrorKind::Forbidden,
        papi::ErrorKind::RateLimited => ErrorKind::RateLimited,
        papi::ErrorKind::Server => ErrorKind::Server,
        papi::ErrorKind::Transport => ErrorKind::Transport,
        papi::ErrorKind::Timeout => ErrorKind::Timeout,
        papi::ErrorKind::Malformed => ErrorKind::Malformed,
        papi::ErrorKind::Config => ErrorKind::Config,
    };
    TenantError {
        kind,
        status: e.status,
        uncertain: e.is_uncertain(),
        message: e.message,
    }
}
