//! Verification: a fresh key must be exactly the role, security level and expiry asked for,
//! and work the way the scanner will use it, before anyone gets it.

use super::*;

/// The inventory record of a fresh key must match the request exactly.
pub(super) fn check_record(
    record: &KeyRecord,
    p: &Profile,
    expires_ms: i64,
) -> Result<(), BrokerError> {
    check_grant(record, p)?;
    match record.expiration {
        Some(e) if e.abs_diff(expires_ms) <= 1000 => Ok(()),
        other => Err(BrokerError::new(
            "wrong_expiry",
            format!(
                "the new key {} expires at {:?}, not at {expires_ms} as asked; the key was revoked",
                record.id, other
            ),
        )),
    }
}

/// Exactly the one role, at the Standard level: checked at mint and again whenever the
/// inventory is read (the console can edit a key's roles after it was verified).
pub(super) fn check_grant(record: &KeyRecord, p: &Profile) -> Result<(), BrokerError> {
    let mut roles = record.roles.clone();
    roles.sort();
    if roles != [p.role.clone()] {
        return Err(BrokerError::new(
            "too_broad",
            format!(
                "the tenant gave the new key {} the roles {:?}, but scanmint asked for exactly [{:?}]; the key was revoked and not used",
                record.id, record.roles, p.role
            ),
        ));
    }
    if let Some(level) = record.security_level.as_deref()
        && SecurityLevel::parse_lenient(level) != Some(SecurityLevel::Standard)
    {
        return Err(BrokerError::new(
            "wrong_level",
            format!(
                "the new key {} has security level {level:?}; scanners need Standard; the key was revoked",
                record.id
            ),
        ));
    }
    Ok(())
}

impl Broker {
    /// The seed's last step: the key in the inventory must be exactly what was asked for.
    pub(super) async fn verify(
        &self,
        tenant: &Arc<dyn Tenant>,
        id: i64,
        p: &Profile,
        expires_ms: i64,
    ) -> Result<(), BrokerError> {
        let sent_in = self.unit(tenant);
        let records = self
            .list_ms(tenant, &p.name, vec![Filter::ids(&[id])])
            .await
            .map_err(|e| {
                BrokerError::new(
                    "unverified",
                    format!(
                        "cannot verify the new key, so it is not used: {}",
                        e.message
                    ),
                )
            })?;
        let mut matching = records.iter().filter(|r| r.id == id);
        let record = matching.next().ok_or_else(|| {
            BrokerError::new(
                "unverified",
                format!("the new key {id} is missing from the tenant's inventory"),
            )
        })?;
        if matching.next().is_some() {
            return Err(BrokerError::new(
                "unverified",
                format!(
                    "the tenant's inventory lists the new key {id} more than once; it cannot be verified, so it is not used"
                ),
            ));
        }
        // Read in the unit the tenant's own stamps show (learned from this very listing), an
        // expiry in 1970 or millennia away means `expiration` went out in the wrong unit.
        if let Some(recorded) = record.expiration
            && units::absurd(recorded, self.tenant_now(tenant))
        {
            let now_in = self.unit(tenant);
            let why = if now_in == sent_in {
                format!("scanmint sent it in {}", sent_in.name())
            } else {
                format!(
                    "scanmint sent it in {}, but the tenant's own timestamps are in {}",
                    sent_in.name(),
                    now_in.name()
                )
            };
            return Err(BrokerError::new(
                "wrong_unit",
                format!(
                    "the tenant recorded an absurd expiry for the new key {id} ({recorded} ms since 1970; {why}); the key was revoked and never used"
                ),
            ));
        }
        check_record(record, p, expires_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(roles: &[&str], level: Option<&str>, expiration: Option<i64>) -> KeyRecord {
        KeyRecord {
            id: 7,
            roles: roles.iter().map(|r| r.to_string()).collect(),
            created_by: None,
            creation_time: None,
            expiration,
            comment: None,
            user_name: None,
            security_level: level.map(String::from),
        }
    }

    #[test]
    fn verification_demands_exactly_what_was_asked() {
        let p = Profile::defaults("p");
        assert!(
            check_record(
                &record(
                    &[crate::domain::config::DEFAULT_ROLE],
                    Some("standard"),
                    Some(1000)
                ),
                &p,
                1000
            )
            .is_ok()
        );
        let broad = check_record(
            &record(
                &[
                    crate::domain::config::DEFAULT_ROLE,
                    "Instance Administrator",
                ],
                None,
                Some(1000),
            ),
            &p,
            1000,
        )
        .unwrap_err();
        assert_eq!(broad.code, "too_broad");
        assert!(
            broad.message.contains("Instance Administrator"),
            "{}",
            broad.message
        );
        assert_eq!(
            check_record(
                &record(
                    &[crate::domain::config::DEFAULT_ROLE],
                    Some("Advanced"),
                    Some(1000)
                ),
                &p,
                1000
            )
            .unwrap_err()
            .code,
            "wrong_level"
        );
        assert_eq!(
            check_record(
                &record(&[crate::domain::config::DEFAULT_ROLE], None, None),
                &p,
                1000
            )
            .unwrap_err()
            .code,
            "wrong_expiry"
        );
        assert_eq!(
            check_record(
                &record(&[crate::domain::config::DEFAULT_ROLE], None, Some(900_000)),
                &p,
                1000
            )
            .unwrap_err()
            .code,
            "wrong_expiry"
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for n in 0..30 {
            let b = backoff_ms(n);
            assert!((500..=600_000).contains(&b));
        }
    }
}
