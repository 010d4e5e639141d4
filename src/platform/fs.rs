//! Private files and directories: 0700 directories, 0600 files, atomic replacement.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
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

/// Read at most `cap` bytes of the regular file at `path`, as a hostile repository cannot abuse:
/// a symlink is refused (`O_NOFOLLOW`), as is anything but a regular file (a FIFO, a device such
/// as `/dev/zero`), without blocking on it (`O_NONBLOCK`); the size is what is read, never what
/// `st_size` claims (a `/proc` file says 0 and is endless).
pub fn read_regular_capped(path: &Path, cap: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.take(cap as u64).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Write `bytes` to `path` atomically: a 0600 temporary file with an unpredictable name in the
/// same (private) directory, fsync, then rename over the target. A crash leaves either the old
/// or the new file, never half; a stale temporary file (or one planted under a guessable name)
/// cannot make the write fail.
pub fn write_private_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = private_temp(path, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    sync_parent(path);
    Ok(())
}

/// Like [`write_private_atomic`], but never replaces an existing file: returns `Ok(false)` and
/// leaves it alone when `path` exists (two processes creating it at once: one wins).
pub fn write_private_new(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let tmp = private_temp(path, bytes)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {
            sync_parent(path);
            Ok(true)
        }
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error),
    }
}

fn private_temp(path: &Path, bytes: &[u8]) -> io::Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent directory", path.display())))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    Ok(tmp)
}

/// Make a rename durable.
fn sync_parent(path: &Path) {
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
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

    /// Finding 8 (issue 12): the temporary name was `.{name}.{pid}.tmp`; a stale file of that
    /// name (a crash, then pid reuse) or one planted there made every write fail.
    #[test]
    fn a_stale_temp_file_under_the_old_predictable_name_does_not_block_writes() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("p");
        ensure_private_dir(&private).unwrap();
        let file = private.join("ledger.json");
        let stale = private.join(format!(".ledger.json.{}.tmp", std::process::id()));
        fs::write(&stale, b"stale").unwrap();
        write_private_atomic(&file, b"new").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"new");
        assert!(
            !write_private_new(&file, b"other").unwrap(),
            "never clobbers"
        );
        assert_eq!(fs::read(&file).unwrap(), b"new");
    }

    /// Finding 5 (issue 12): links, FIFOs and devices are refused without blocking; reads stop
    /// at the cap whatever the size says.
    #[test]
    fn capped_reads_refuse_links_fifos_and_devices() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        fs::write(&plain, b"0123456789").unwrap();
        assert_eq!(read_regular_capped(&plain, 4).unwrap(), b"0123");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&plain, &link).unwrap();
        assert!(read_regular_capped(&link, 4).is_err(), "a symlink");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(
            read_regular_capped(&fifo, 4).is_err(),
            "a FIFO, without blocking"
        );
        assert!(read_regular_capped(Path::new("/dev/zero"), 4).is_err());
        assert_eq!(
            read_regular_capped(Path::new("/proc/self/status"), 4)
                .unwrap()
                .len(),
            4
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
