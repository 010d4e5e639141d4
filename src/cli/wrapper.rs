//! `scanmint wrapper`: a script to set as the IDE plugin's CLI Path, and the stripping of
//! credential flags a plugin passes, so the minted key in the environment is what the scanner
//! uses.

use std::ffi::OsString;
use std::path::Path;

use anyhow::Context;

use crate::platform::fs as fsutil;

/// Flags through which a plugin might pass its own (stale) credentials.
const CREDENTIAL_FLAGS: [&str; 3] = ["--api-key", "--api-key-id", "--api-base-url"];

/// Remove `--api-key X`, `--api-key=X` and the like, so the minted key in the environment is
/// what the scanner uses.
pub fn strip_credential_flags(args: &[OsString]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_next = false;
    for arg in args {
        if skip_next {
            skip_next = false;
            continue;
        }
        let text = arg.to_string_lossy();
        if CREDENTIAL_FLAGS.contains(&text.as_ref()) {
            skip_next = true;
            continue;
        }
        if CREDENTIAL_FLAGS
            .iter()
            .any(|f| text.starts_with(&format!("{f}=")))
        {
            continue;
        }
        out.push(arg.clone());
    }
    out
}

/// `scanmint wrapper`: a script to set as the IDE plugin's CLI Path.
pub fn write_wrapper(cli: &Path, out: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let exe = crate::cli::launcher::launcher_path().context("cannot find the scanmint binary")?;
    let quote = |p: &Path| format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"));
    let script = format!(
        "#!/bin/sh\nexec {} exec --strip-credential-flags -- {} \"$@\"\n",
        quote(&exe),
        quote(cli)
    );
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    fsutil::write_private_atomic(out, script.as_bytes())
        .with_context(|| format!("cannot write {}", out.display()))?;
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn credential_flags_are_stripped_in_both_forms() {
        let got = strip_credential_flags(&args(&[
            "code",
            "scan",
            "--api-key",
            "stale",
            "--api-key-id=7",
            "--api-base-url",
            "https://x",
            "--upload-mode",
            "no-upload",
        ]));
        assert_eq!(got, args(&["code", "scan", "--upload-mode", "no-upload"]));
    }
}
