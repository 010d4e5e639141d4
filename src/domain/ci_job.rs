//! Which CI job this process runs in, from the variables CI systems set, so a key's comment tag
//! tells a person reading the console which job it belonged to.
//!
//! The values are attacker-influenced (a job name comes from the repository's workflow file, a
//! Jenkins tag from the job's name): they are cut to a bounded length and to a small alphabet
//! before they go into a tag.

/// The CI systems we recognize: (system, variables naming the job, in tag order).
const SYSTEMS: [(&str, &[&str]); 5] = [
    ("github", &["GITHUB_RUN_ID", "GITHUB_JOB"]),
    ("gitlab", &["CI_JOB_ID"]),
    ("azure", &["BUILD_BUILDID"]),
    ("jenkins", &["BUILD_TAG"]),
    ("circleci", &["CIRCLE_BUILD_NUM"]),
];
/// Longest piece of one variable kept in a tag.
const MAX_PART: usize = 40;
/// Every tag owner for a CI job starts with this: the sweeper (`revoke --all --older-than`)
/// looks for it.
pub const OWNER_PREFIX: &str = "ci/";

/// `CI` says this is a CI job (`true`, any case, or `1`).
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
        .unwrap_or(false)
}

/// Keep `[A-Za-z0-9._-]`, replace anything else with `_`, and cut to `MAX_PART` characters.
pub fn sanitize(value: &str) -> String {
    value
        .trim()
        .chars()
        .take(MAX_PART)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The job as one tag token, e.g. `ci/github/123456789/build`, read through `get` (the process
/// environment in production, a map in tests). `None` outside a recognized CI job.
pub fn owner_from(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    for (system, vars) in SYSTEMS {
        let parts: Vec<String> = vars
            .iter()
            .filter_map(|v| get(v))
            .map(|v| sanitize(&v))
            .filter(|v| !v.is_empty())
            .collect();
        if !parts.is_empty() {
            return Some(format!("{OWNER_PREFIX}{system}/{}", parts.join("/")));
        }
    }
    None
}

/// The tag owner for this process's CI job, when `CI` is set and a CI system names the job.
pub fn owner() -> Option<String> {
    if !in_ci() {
        return None;
    }
    owner_from(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner_of(vars: &[(&str, &str)]) -> Option<String> {
        owner_from(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn each_ci_system_names_its_job() {
        assert_eq!(
            owner_of(&[("GITHUB_RUN_ID", "991"), ("GITHUB_JOB", "scan")]).as_deref(),
            Some("ci/github/991/scan")
        );
        assert_eq!(
            owner_of(&[("CI_JOB_ID", "42")]).as_deref(),
            Some("ci/gitlab/42")
        );
        assert_eq!(
            owner_of(&[("BUILD_BUILDID", "7")]).as_deref(),
            Some("ci/azure/7")
        );
        assert_eq!(
            owner_of(&[("BUILD_TAG", "jenkins-app-12")]).as_deref(),
            Some("ci/jenkins/jenkins-app-12")
        );
        assert_eq!(
            owner_of(&[("CIRCLE_BUILD_NUM", "5")]).as_deref(),
            Some("ci/circleci/5")
        );
        assert_eq!(owner_of(&[("HOME", "/root")]), None);
    }

    #[test]
    fn hostile_job_names_are_bounded_and_tamed() {
        // A job name is whatever the workflow file says: spaces would split the tag, and a long
        // value would crowd out the rest of the comment.
        let long = "x".repeat(5000);
        let got = owner_of(&[
            ("GITHUB_RUN_ID", "1 scanmint evil@host default"),
            ("GITHUB_JOB", &long),
        ])
        .unwrap();
        assert!(!got.contains(' '), "{got}");
        assert!(got.len() <= 3 + 7 + 2 * (MAX_PART + 1), "{got}");
        assert_eq!(sanitize("a\nb\u{202e}c$(id)"), "a_b_c__id_");
    }
}
