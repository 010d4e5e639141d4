//! The managed `cortex.env`: for each profile that opts in, a subscriber to the broker's events
//! keeps the file holding the current key (0600, atomic), and never overwrites a file it did
//! not write.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::domain::broker::{Broker, Event, SCAN_MIN_VALID_SECS};
use crate::domain::secret::Secret;
use crate::platform::fs as fsutil;
use crate::serve::scan::{MANAGED_MARKER, managed_key_id};

/// The `#` comment that marked the managed file before it held only `KEY=VALUE` lines: a file
/// of that shape from an older scanmint is still ours to rewrite or remove.
const LEGACY_MARKER: &str =
    "# managed by scanmint: rewritten on every rotation, deleted on logout; do not edit";

/// Whether `text` is a file scanmint wrote: exactly the managed shape (marker and the three
/// settings, nothing else). Anything else is a person's file and is never touched.
fn written_by_us(text: &str) -> bool {
    let current = managed_key_id(text).is_some();
    let legacy = text
        .strip_prefix(LEGACY_MARKER)
        .is_some_and(|rest| managed_key_id(&format!("{MANAGED_MARKER}{rest}")).is_some());
    current || legacy
}

/// Keeps each profile's opt-in `cortex.env` holding the current key.
pub struct CortexEnvWriter;

impl CortexEnvWriter {
    pub fn start(broker: Broker) {
        let profiles: Vec<(String, PathBuf)> = broker
            .config()
            .profiles
            .values()
            .filter_map(|p| Some((p.name.clone(), p.cortex_env.clone()?)))
            .collect();
        if profiles.is_empty() {
            return;
        }
        let mut events = broker.subscribe();
        tokio::spawn(async move {
            // The scanner reads the file without asking us: have a key there from the start.
            for (profile, path) in &profiles {
                refresh(&broker, profile, path).await;
            }
            loop {
                match events.recv().await {
                    Ok(Event::KeyChanged {
                        profile,
                        generation,
                    }) => {
                        let Some((_, path)) = profiles.iter().find(|(p, _)| *p == profile) else {
                            continue;
                        };
                        match generation {
                            Some(_) => refresh(&broker, &profile, path).await,
                            None => remove_managed(path),
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        for (profile, path) in &profiles {
                            refresh(&broker, profile, path).await;
                        }
                    }
                    Err(_) => return,
                }
            }
        });
    }
}

async fn refresh(broker: &Broker, profile: &str, path: &Path) {
    if broker.status(profile).await.state == crate::domain::broker::State::NeedsLogin {
        return;
    }
    match broker
        .credentials(profile, Duration::from_secs(SCAN_MIN_VALID_SECS))
        .await
    {
        Ok(c) => match write_cortex_env(path, &c.base_url, c.key_id, &c.key) {
            Ok(()) => {
                tracing::info!(path = %path.display(), key_id = c.key_id, "cortex.env updated")
            }
            Err(e) => broker.report_problem(profile, "cortex_env", &e.to_string()),
        },
        Err(e) => tracing::warn!(error = %e, "no key for cortex.env"),
    }
}

/// Write the managed file atomically (0600), refusing to overwrite a file we did not create.
pub fn write_cortex_env(
    path: &Path,
    base_url: &str,
    key_id: i64,
    key: &Secret,
) -> anyhow::Result<()> {
    if let Ok(existing) = std::fs::read_to_string(path)
        && !written_by_us(&existing)
    {
        bail!(
            "{} exists and was not written by scanmint, so it is left alone; remove its literal key (the editor offers a quick fix) or delete the file to let scanmint manage it",
            path.display()
        );
    }
    let text = zeroize::Zeroizing::new(format!(
        "{MANAGED_MARKER}\nCORTEX_API_BASE_URL={base_url}\nCORTEX_API_KEY_ID={key_id}\nCORTEX_API_KEY={}\n",
        key.expose()
    ));
    fsutil::write_private_atomic(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Delete the managed file (only if it is ours).
pub fn remove_managed(path: &Path) {
    if let Ok(existing) = std::fs::read_to_string(path)
        && written_by_us(&existing)
    {
        let _ = std::fs::remove_file(path);
        tracing::info!(path = %path.display(), "managed cortex.env removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_cortex_env_never_clobbers_a_users_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cortex.env");
        write_cortex_env(&path, "https://t", 5, &Secret::new("k1")).unwrap();
        write_cortex_env(&path, "https://t", 6, &Secret::new("k2")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(MANAGED_MARKER)
                && text.contains("CORTEX_API_KEY_ID=6")
                && text.contains("CORTEX_API_KEY=k2")
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        remove_managed(&path);
        assert!(!path.exists());

        std::fs::write(&path, "CORTEX_API_KEY=mine\n").unwrap();
        let err = write_cortex_env(&path, "https://t", 7, &Secret::new("k3"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not written by scanmint"), "{err}");
        remove_managed(&path);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "CORTEX_API_KEY=mine\n"
        );

        // A person's file that starts with the marker but holds anything else stays theirs.
        let imitation = format!("{MANAGED_MARKER}\nCORTEX_API_KEY=mine\nOTHER=1\n");
        std::fs::write(&path, &imitation).unwrap();
        assert!(write_cortex_env(&path, "https://t", 8, &Secret::new("k4")).is_err());
        remove_managed(&path);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), imitation);

        // A file written by an older scanmint (the `#` marker) is still ours.
        std::fs::write(
            &path,
            format!("{LEGACY_MARKER}\nCORTEX_API_BASE_URL=https://t\nCORTEX_API_KEY_ID=4\nCORTEX_API_KEY=k0\n"),
        )
        .unwrap();
        write_cortex_env(&path, "https://t", 9, &Secret::new("k5")).unwrap();
    }

    /// Issue 11: the managed file holds only `KEY=VALUE` lines.
    #[test]
    fn the_managed_file_holds_only_key_value_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cortex.env");
        write_cortex_env(&path, "https://t", 5, &Secret::new("k1")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let (name, _) = line.split_once('=').expect("KEY=VALUE");
            assert!(
                !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{line}"
            );
        }
        assert_eq!(managed_key_id(&text), Some(5));
    }
}
