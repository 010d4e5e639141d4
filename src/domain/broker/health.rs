//! The checks behind `scanmint doctor`, end to end, each with pass/warn/fail and the fix: the
//! ones that need the broker (config, storage, ledger, Primary key, clock, canary). The serving
//! layer passes in what it found about its socket; the CLI only renders the report.

use serde::Serialize;

use super::{
    ADMIN_ROLES, Broker, DialectSeen, Filter, PRIMARY_KEY_GUIDANCE, SecurityLevel, State, TimeUnit,
};
use crate::domain::config::{Config, ConfigError};
use crate::domain::store::Tier;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Verdict,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Machine-readable findings (the `dialect` check's fields), for bug reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub profile: String,
    pub checks: Vec<Check>,
}

struct Checks(Vec<Check>);

impl Checks {
    fn add(&mut self, name: &str, status: Verdict, detail: impl Into<String>, fix: Option<&str>) {
        self.0.push(Check {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: fix.map(String::from),
            data: None,
        });
    }
}

/// Run every check for `profile`. Nothing secret goes into the report. `socket` is the serving
/// layer's finding about its runtime directory and socket (a description, or what is wrong).
pub async fn run(broker: &Broker, profile: &str, socket: Result<String, String>) -> Report {
    let mut c = Checks(Vec::new());
    let config = broker.config();
    let p = config.profile(Some(profile));

    // The file as it is now (the daemon runs with what it read at start) and the profile in it.
    let status = broker.status(profile).await;
    let (verdict, detail, fix) = config_check(Config::load(), profile, status.base_url.as_deref());
    c.add("config", verdict, detail, fix);
    if p.ttl.as_secs() >= 86_400 {
        c.add(
            "ttl",
            Verdict::Warn,
            "keys live a day or more: the console warns about expiring keys",
            Some("set ttl below 24h, e.g. \"8h\""),
        );
    }

    let store = broker.store();
    let skipped = if store.skipped().is_empty() {
        String::new()
    } else {
        format!("; passed over: {}", store.skipped().join("; "))
    };
    let works = store.get("doctor-probe").await;
    match store.tier() {
        tier if works.is_err() => c.add(
            "storage",
            Verdict::Fail,
            format!("the {} store does not work: {}", tier.as_str(), works.err().map(|e| e.message).unwrap_or_default()),
            Some("unlock or start the keyring (e.g. GNOME Keyring), or choose another store in the profile (store = \"keyutils\")"),
        ),
        Tier::Memory => c.add(
            "storage",
            Verdict::Warn,
            format!("secrets are kept in memory only and vanish when the daemon exits{skipped}"),
            Some("unlock a Secret Service keyring (GNOME Keyring, KWallet) or set store = \"keyutils\""),
        ),
        tier => c.add("storage", Verdict::Pass, format!("{} store{skipped}", tier.as_str()), None),
    }

    match socket {
        Ok(detail) => c.add("socket", Verdict::Pass, detail, None),
        Err(e) => c.add(
            "socket",
            Verdict::Fail,
            e,
            Some("remove the directory or fix its mode as the message says"),
        ),
    }

    if let Some(recovered) = broker.ledger_recovered_from() {
        c.add(
            "ledger",
            Verdict::Warn,
            format!(
                "the ledger was unreadable and was moved to {}",
                recovered.display()
            ),
            Some("nothing to do: reconciliation rebuilt it from the tenant"),
        );
    } else {
        c.add(
            "ledger",
            Verdict::Pass,
            format!("{} failed revocation(s) waiting", broker.outbox_len()),
            None,
        );
    }

    let Some((primary_id, level, tier)) = broker.primary_info(profile).await else {
        // Say why when the broker knows (a tenant URL that changed since the login, say).
        let why = status
            .last_error
            .as_ref()
            .filter(|e| e.code == "needs_login")
            .map(|e| format!("not logged in: {}", e.message));
        c.add(
            "primary key",
            Verdict::Fail,
            why.unwrap_or_else(|| "not logged in".into()),
            Some("run `scanmint login`"),
        );
        return finish(profile, c);
    };
    if status.state == State::NeedsLogin {
        let why = status.last_error.map(|e| e.message).unwrap_or_default();
        c.add(
            "primary key",
            Verdict::Fail,
            format!("the tenant refused the Primary key: {why}"),
            Some("run `scanmint login` with a working key"),
        );
        return finish(profile, c);
    }
    let Ok(tenant) = broker.tenant(profile).await else {
        c.add(
            "primary key",
            Verdict::Fail,
            "no tenant connection",
            Some("run `scanmint login`"),
        );
        return finish(profile, c);
    };

    // The Primary key's own record: its level and whether it is broader than it needs to be.
    match tenant.list(vec![Filter::ids(&[primary_id])]).await {
        Ok(records) => match records.iter().find(|r| r.id == primary_id) {
            Some(r) => {
                let admin = r
                    .roles
                    .iter()
                    .find(|role| ADMIN_ROLES.contains(&role.as_str()));
                let level_note = match level {
                    SecurityLevel::Advanced => "Advanced",
                    SecurityLevel::Standard => "Standard (Advanced is safer for a Primary key)",
                };
                match admin {
                    Some(admin) => c.add(
                        "primary key",
                        Verdict::Warn,
                        format!("key {primary_id} ({level_note}, from the {} store) holds the admin role {admin:?} (Path A)", tier.as_str()),
                        Some("give the Primary key a narrower \"Public API (PAPI) Edit\" role plus the CLI roles (Path B)"),
                    ),
                    None => c.add(
                        "primary key",
                        if level == SecurityLevel::Advanced { Verdict::Pass } else { Verdict::Warn },
                        format!("key {primary_id} ({level_note}, from the {} store), roles {:?}", tier.as_str(), r.roles),
                        (level == SecurityLevel::Standard).then_some("generate the Primary key with the Advanced security level"),
                    ),
                }
            }
            None => c.add(
                "primary key",
                Verdict::Warn,
                format!("key {primary_id} is not in the inventory it can see"),
                None,
            ),
        },
        Err(e) => c.add(
            "primary key",
            Verdict::Fail,
            format!("cannot list keys: {e}"),
            Some(PRIMARY_KEY_GUIDANCE),
        ),
    }

    // Measured on the call above, if the tenant sent a `Date` header.
    let (verdict, detail, fix) = clock_check(tenant.clock_offset_known(), tenant.clock_offset_ms());
    c.add("clock", verdict, detail, fix);

    match broker.canary_check(profile).await {
        Ok(id) => c.add("canary", Verdict::Pass, format!("minted canary {id} with role {:?}, verified it, validated it as a scanner would, revoked it", p.role), None),
        Err(e) => c.add(
            "canary",
            Verdict::Fail,
            e.message.clone(),
            Some(if e.code == "tenant_rejected" { "set `role` in the profile to a role that exists on the tenant" } else { "see the message; `scanmint login` again if the key was refused" }),
        ),
    }

    // The keys this machine holds, verified again: the console may have changed them.
    match broker.reconcile(profile).await {
        Ok(r) if r.changed.is_empty() => c.add(
            "live keys",
            Verdict::Pass,
            format!(
                "{} live key(s) of this machine checked on the tenant: exactly [{:?}] at Standard",
                r.verified.len(),
                p.role
            ),
            None,
        ),
        Ok(r) => c.add(
            "live keys",
            Verdict::Warn,
            r.changed.join("; "),
            Some("nothing to repair here: the keys were revoked and replaced by narrow ones; ask who edits keys in the console"),
        ),
        Err(e) => c.add(
            "live keys",
            Verdict::Warn,
            format!("cannot read the inventory to check them: {e}"),
            None,
        ),
    }

    // Last, so the canary's delete and validate have shown their replies too.
    let (verdict, detail, data) = dialect_check(&tenant.dialect(), broker.learned_unit(&tenant));
    c.add(
        "dialect",
        verdict,
        detail,
        (verdict == Verdict::Warn)
            .then_some("nothing to do unless mints fail; include this line in a bug report"),
    );
    if let Some(last) = c.0.last_mut() {
        last.data = Some(data);
    }
    finish(profile, c)
}

type Finding = (Verdict, String, Option<&'static str>);

/// The config check: the file parses now, and the profile has a tenant URL (its own, or the one
/// its Primary key was logged in with) and a role.
fn config_check(now: Result<Config, ConfigError>, profile: &str, url: Option<&str>) -> Finding {
    let config = match now {
        Ok(config) => config,
        Err(e) => {
            return (
                Verdict::Fail,
                format!("the config file does not parse: {}", e.0),
                Some("correct it as the message says; the daemon reads it again when it restarts"),
            );
        }
    };
    let source = if config.path.exists() {
        format!("{}", config.path.display())
    } else {
        format!("defaults ({} does not exist)", config.path.display())
    };
    let p = config.profile(Some(profile));
    let url = p.base_url.as_deref().or(url);
    let Some(url) = url else {
        return (
            Verdict::Fail,
            format!("profile {profile:?} has no tenant URL (from {source})"),
            Some(
                "set base_url in the profile (or SCANMINT_BASE_URL), or `scanmint login --base-url URL`",
            ),
        );
    };
    if p.role.trim().is_empty() {
        return (
            Verdict::Fail,
            format!("profile {profile:?} has an empty role (from {source})"),
            Some("set role to the role minted keys get, e.g. \"CLI Read-Only Custom\""),
        );
    }
    let detail = format!(
        "profile {profile:?} from {source}; tenant {url}, role {:?}, ttl {}",
        p.role,
        humantime::format_duration(p.ttl)
    );
    if !config.profiles.contains_key(profile) {
        return (
            Verdict::Warn,
            format!("{detail}; the profile is not in the file, so defaults apply"),
            Some("add a [profile.NAME] section to the config file"),
        );
    }
    (Verdict::Pass, detail, None)
}

/// The clock check: a pass only for an offset that was measured.
fn clock_check(known: bool, offset_ms: i64) -> Finding {
    if !known {
        return (
            Verdict::Warn,
            "tenant clock not measured yet (no reply with a Date header)".into(),
            Some("run doctor again once the tenant has answered"),
        );
    }
    let (verdict, fix) = match offset_ms.abs() {
        o if o > 300_000 => (
            Verdict::Fail,
            Some("set the system clock (NTP): Advanced authentication allows about ±5 minutes"),
        ),
        o if o > 30_000 => (
            Verdict::Warn,
            Some(
                "check NTP: expiries are corrected for it, but Advanced authentication allows about ±5 minutes",
            ),
        ),
        _ => (Verdict::Pass, None),
    };
    let detail = format!(
        "tenant clock is {:+.1}s from ours",
        offset_ms as f64 / 1000.0
    );
    (verdict, detail, fix)
}

/// What the tenant showed of its dialect, in one line for people and as fields for a bug
/// report. The time unit is the one the broker learned (and acts on).
fn dialect_check(
    seen: &DialectSeen,
    unit: Option<TimeUnit>,
) -> (Verdict, String, serde_json::Value) {
    let or_unseen = |v: &Option<String>| v.clone().unwrap_or_else(|| "not seen".into());
    let unit_text = match unit {
        Some(u) => format!("{} (from the tenant's own timestamps)", u.name()),
        None => "unknown (no timestamp told; milliseconds are sent, as documented)".into(),
    };
    let paging = match seen.paging.as_deref() {
        Some("unknown") => "not tested (every listing fitted one page)".to_string(),
        Some(p) => p.to_string(),
        None => "not seen".into(),
    };
    let delete = match seen.delete_reply.as_deref() {
        Some("update_count") => "{\"update_count\": n}".to_string(),
        Some("reply_true") => "{\"reply\": true}".to_string(),
        other => other.unwrap_or("not seen").to_string(),
    };
    let validate = match seen.validate.as_deref() {
        Some("get") => "GET /api_keys/validate".to_string(),
        Some("post") => "POST /api_keys/validate/".to_string(),
        other => other.unwrap_or("not seen").to_string(),
    };
    let detail = format!(
        "time unit {unit_text}; list casing {}; paging {paging}; delete answers {delete}; validate as {validate}",
        or_unseen(&seen.list_casing)
    );
    let data = serde_json::json!({
        "time_unit": unit.map(|u| u.name()),
        "list_casing": seen.list_casing,
        "paging": seen.paging,
        "delete_reply": seen.delete_reply,
        "validate": seen.validate,
    });
    let verdict = if unit.is_some() {
        Verdict::Pass
    } else {
        Verdict::Warn
    };
    (verdict, detail, data)
}

fn finish(profile: &str, c: Checks) -> Report {
    let ok = c.0.iter().all(|check| check.status != Verdict::Fail);
    Report {
        ok,
        profile: profile.to_string(),
        checks: c.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parsed(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/scanmint/config.toml"), text)
    }

    #[test]
    fn an_unmeasured_clock_is_not_a_pass() {
        let (verdict, detail, _) = clock_check(false, 0);
        assert_eq!(verdict, Verdict::Warn);
        assert!(detail.contains("not measured yet"), "{detail}");
        assert!(!detail.contains("+0.0s"), "{detail}");
        assert_eq!(clock_check(true, 0).0, Verdict::Pass);
        assert_eq!(clock_check(true, -400_000).0, Verdict::Fail);
        assert_eq!(clock_check(true, 40_000).0, Verdict::Warn);
    }

    #[test]
    fn the_config_check_fails_what_cannot_work() {
        let bad = parsed("[profile.default]\nttl = \"forever\"\n");
        let (verdict, detail, _) = config_check(bad, "default", None);
        assert_eq!(verdict, Verdict::Fail, "{detail}");
        assert!(detail.contains("does not parse"), "{detail}");

        let no_url = parsed("[profile.default]\nrole = \"r\"\n");
        let (verdict, detail, _) = config_check(no_url, "default", None);
        assert_eq!(verdict, Verdict::Fail, "{detail}");
        assert!(detail.contains("no tenant URL"), "{detail}");

        let ok = "[profile.default]\nbase_url = \"https://api-x.example\"\n";
        let (verdict, detail, _) = config_check(parsed(ok), "default", None);
        assert_eq!(verdict, Verdict::Pass, "{detail}");
        // A profile the file does not have: no URL of its own.
        let (verdict, _, _) = config_check(parsed(ok), "typo", None);
        assert_eq!(verdict, Verdict::Fail);
        // ...unless it was logged in with one: then it works, on defaults.
        let (verdict, _, _) = config_check(parsed(ok), "other", Some("https://api-y.example"));
        assert_eq!(verdict, Verdict::Warn);
    }
}
