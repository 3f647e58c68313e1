//! Crash-safe file writing: content goes to a temporary sibling, is synced, then renamed over the
//! final name, so a killed process never leaves a torn file under the name readers look for. A
//! write that fails for lack of space says so in one wording ([`NoSpace`]), wherever it happens.
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Why a write ran out of room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpaceLimit {
    /// ENOSPC: the filesystem is full.
    DiskFull,
    /// EDQUOT: the user's disk quota is used up.
    Quota,
    /// EFBIG: the file would exceed the process's file size limit (`ulimit -f`, RLIMIT_FSIZE).
    FileSizeLimit,
}

impl SpaceLimit {
    /// The limit an I/O error reports, if it is one of these.
    pub fn of(error: &io::Error) -> Option<Self> {
        match error.raw_os_error() {
            Some(libc::ENOSPC) => Some(SpaceLimit::DiskFull),
            Some(libc::EDQUOT) => Some(SpaceLimit::Quota),
            Some(libc::EFBIG) => Some(SpaceLimit::FileSizeLimit),
            _ => match error.kind() {
                io::ErrorKind::StorageFull => Some(SpaceLimit::DiskFull),
                io::ErrorKind::QuotaExceeded => Some(SpaceLimit::Quota),
                io::ErrorKind::FileTooLarge => Some(SpaceLimit::FileSizeLimit),
                _ => None,
            },
        }
    }

    fn advice(self, bytes: u64, dir: &Path) -> String {
        let size = human_bytes(bytes);
        match self {
            SpaceLimit::DiskFull => format!("the disk is full; free at least {size} on {} and rerun", dir.display()),
            SpaceLimit::Quota => {
                format!(
                    "the disk quota is used up; free at least {size} on {} (or raise the quota) and rerun",
                    dir.display()
                )
            }
            SpaceLimit::FileSizeLimit => {
                "the file size limit of this process is reached; raise it (`ulimit -f unlimited`) and rerun".to_string()
            }
        }
    }
}

/// A write that failed for lack of space: what it tried to write, where, and what to do.
#[derive(Debug, thiserror::Error)]
#[error("out of space writing {} to {}: {}", human_bytes(*.bytes), .path.display(), .limit.advice(*.bytes, .dir))]
pub struct NoSpace {
    pub path: PathBuf,
    /// The directory whose filesystem needs the room.
    pub dir: PathBuf,
    /// The size of the whole write that failed.
    pub bytes: u64,
    pub limit: SpaceLimit,
    #[source]
    pub source: io::Error,
}

/// Suffix of a file still being downloaded or written; never read as data (see `data::parquet_shards`).
pub const PARTIAL_SUFFIX: &str = ".partial";

/// `error` from writing `bytes` to `path`: a lack of space becomes an [`NoSpace`] inside an
/// `io::Error` of the same kind (its message names the path, the size and what to do next);
/// anything else passes through unchanged.
pub fn explain_write_error(error: io::Error, path: &Path, bytes: u64) -> io::Error {
    match SpaceLimit::of(&error) {
        Some(limit) => {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
            let kind = error.kind();
            io::Error::new(kind, NoSpace { path: path.to_path_buf(), dir, bytes, limit, source: error })
        }
        None => error,
    }
}

/// "512 B", "1.5 KiB", "12.3 MiB", "2.0 GiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The temporary sibling `write_atomic` writes `path` through, for this process.
pub fn temporary_path(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    dir.join(format!(".{name}.tmp.{}", std::process::id()))
}

/// Moves a complete temporary file over `path` after syncing it; removes it when anything fails.
/// A failure to sync for lack of space is reported as one of `bytes` bytes.
pub fn commit_temporary(tmp: &Path, path: &Path, bytes: u64) -> io::Result<()> {
    let result = fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| explain_write_error(e, path, bytes))
        .and_then(|()| fs::rename(tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = temporary_path(path);
    if let Some(dir) = tmp.parent() {
        fs::create_dir_all(dir)?;
    }
    let written = fs::File::create(&tmp)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(|e| explain_write_error(e, path, bytes.len() as u64));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    commit_temporary(&tmp, path, bytes.len() as u64)
}

/// [`write_atomic`] unless `path` already holds exactly `bytes` (then it is left alone, mtime and all).
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    write_atomic(path, bytes)
}

pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// An exclusive lock on the file at `path` (created if missing), held until dropped or until the
/// process dies, so that two processes never work on the same files at once. When another process
/// holds it, one line says so and the call waits for it.
pub fn lock_exclusive(path: &Path, holder: &str) -> io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    match file.try_lock() {
        Ok(()) => return Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => log::info!("{holder} holds {}; waiting for it", path.display()),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    file.lock()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_lock_is_held_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let held = lock_exclusive(&path, "a test").unwrap();
        // A second open file description cannot take it while the first holds it.
        let other = std::fs::File::open(&path).unwrap();
        assert!(matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
        drop(held);
        other.try_lock().unwrap();
    }

    #[test]
    fn replaces_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.json")]);
    }

    #[test]
    fn a_lack_of_space_names_the_path_the_size_and_what_to_do() {
        let path = Path::new("/data/base_d20/model_021400.safetensors");
        let full = explain_write_error(io::Error::from_raw_os_error(libc::ENOSPC), path, 3 << 20);
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);
        assert_eq!(
            full.to_string(),
            "out of space writing 3.0 MiB to /data/base_d20/model_021400.safetensors: the disk is full; \
             free at least 3.0 MiB on /data/base_d20 and rerun"
        );
        let quota = explain_write_error(io::Error::from_raw_os_error(libc::EDQUOT), path, 1536);
        assert!(quota.to_string().contains("writing 1.5 KiB to") && quota.to_string().contains("quota"), "{quota}");
        let limit = explain_write_error(io::Error::from_raw_os_error(libc::EFBIG), path, 100);
        assert!(limit.to_string().contains("writing 100 B to") && limit.to_string().contains("ulimit -f"), "{limit}");
        let denied = explain_write_error(io::Error::from_raw_os_error(libc::EACCES), path, 1);
        assert_eq!(denied.raw_os_error(), Some(libc::EACCES), "other errors pass through unchanged");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
