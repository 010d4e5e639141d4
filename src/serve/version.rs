//! Which scanmint is serving, and whether a client is newer than the daemon it reached, so an
//! upgrade replaces the old daemon instead of leaving old code serving for hours.
//!
//! The version is the crate's (`CARGO_PKG_VERSION`), compared as semver. Tests need a daemon
//! that is older than its client without building two releases: a debug build (and only a debug
//! build: the variable is not read at all in a release) reports `SCANMINT_TEST_VERSION`
//! instead when it is set.

/// The version this binary reports in `initialize` (`serverInfo.version`) and compares with.
pub fn own() -> String {
    #[cfg(debug_assertions)]
    if let Ok(v) = std::env::var("SCANMINT_TEST_VERSION")
        && !v.is_empty()
    {
        return v;
    }
    env!("CARGO_PKG_VERSION").to_string()
}

/// True when `mine` is a newer version than `daemon`. A version that does not parse is never
/// replaced: two clients must not take turns stopping a daemon they cannot judge.
pub fn is_newer(mine: &str, daemon: &str) -> bool {
    match (semver::Version::parse(mine), semver::Version::parse(daemon)) {
        (Ok(mine), Ok(daemon)) => mine > daemon,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_is_semver_not_text() {
        assert!(is_newer("0.10.0", "0.9.3"));
        assert!(!is_newer("0.9.3", "0.10.0"));
        assert!(is_newer("1.0.0", "1.0.0-rc.1"));
        assert!(!is_newer("1.0.0", "1.0.0"));
        assert!(!is_newer("1.0.0", "garbage"));
        assert!(!is_newer("garbage", "0.0.1"));
    }
}
