//! Private files and directories: 0700 directories, 0600 files, atomic replacement.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Kept here too: callers that reach the uid through the file helpers.
pub use super::euid;

/// Create `dir` (and parents) as 0700 if missing, then insist it is a directory owned by us with
/// no group or other access. A looser directory is refused, not silently fixed, with the fix.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    check_private(dir, true)
}

/// Check that `path` is owned by us and has no group/other permission bits.
pub fn check_private(path: &Path, want_dir: bool) -> io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if want_dir && !meta.is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            path.display()
        )));
    }
    if meta.uid() != euid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is owned by uid {}, not by you (uid {}); remove it or point scanmint elsewhere",
                path.display(),
                meta.uid(),
                euid()
            ),
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let want = if want_dir { "700" } else { "600" };
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} has mode {mode:03o}, which lets other users in; fix it with: chmod {want} {}",
                path.display(),
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Write `bytes` to `path` atomically: a 0600 temporary file in the same (private) directory,
/// fsync, then rename over the target. A crash leaves either the old or the new file, never half.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", path.display())))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_is_0600_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("p");
        ensure_private_dir(&private).unwrap();
        assert_eq!(
            fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let file = private.join("f.json");
        write_private_atomic(&file, b"one").unwrap();
        write_private_atomic(&file, b"two").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(&private).unwrap().count(),
            1,
            "no temporary file left behind"
        );
    }

    #[test]
    fn loose_directory_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let loose = dir.path().join("loose");
        fs::create_dir(&loose).unwrap();
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o755)).unwrap();
        let err = ensure_private_dir(&loose).unwrap_err().to_string();
        assert!(err.contains("chmod 700"), "{err}");
    }
}
