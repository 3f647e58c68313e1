//! sha256 digests of stage inputs and outputs. Directories are expanded to their files (sorted);
//! digests are cached by (size, mtime) so re-verifying 24 GB of shards does not re-read them.
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::progress::{Progress, Unit};

/// Hashing more than this many bytes shows a progress bar.
pub const PROGRESS_THRESHOLD: u64 = 256 << 20;

/// Marker digest of a path that does not exist.
pub const MISSING: &str = "missing";

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    sha256_file_with_progress(path, &mut |_| {})
}

/// sha256 of a file, reporting each chunk's size to `on_bytes`.
pub fn sha256_file_with_progress(path: &Path, on_bytes: &mut dyn FnMut(u64)) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        on_bytes(n as u64);
    }
    Ok(hex::encode(hasher.finalize()))
}

pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CachedDigest {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

/// Digest cache kept in a JSON file; an entry is trusted only while size and mtime are unchanged.
#[derive(Debug, Default)]
pub struct DigestCache {
    path: Option<PathBuf>,
    entries: BTreeMap<String, CachedDigest>,
    dirty: bool,
}

impl DigestCache {
    pub fn load(path: PathBuf) -> Self {
        let entries = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        DigestCache { path: Some(path), entries, dirty: false }
    }

    pub fn save(&mut self) -> std::io::Result<()> {
        match (&self.path, self.dirty) {
            (Some(path), true) => {
                crate::fsutil::write_json_atomic(path, &self.entries)?;
                self.dirty = false;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub fn file_digest(&mut self, path: &Path) -> std::io::Result<String> {
        self.file_digest_with_progress(path, &mut |_| {})
    }

    fn cached(&self, path: &Path) -> std::io::Result<(Option<String>, u64, u128)> {
        let meta = std::fs::metadata(path)?;
        let mtime_ns = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let hit = self.entries.get(&*path.to_string_lossy()).filter(|c| c.size == meta.len() && c.mtime_ns == mtime_ns);
        Ok((hit.map(|c| c.sha256.clone()), meta.len(), mtime_ns))
    }

    fn file_digest_with_progress(&mut self, path: &Path, on_bytes: &mut dyn FnMut(u64)) -> std::io::Result<String> {
        let (hit, size, mtime_ns) = self.cached(path)?;
        if let Some(sha256) = hit {
            return Ok(sha256);
        }
        let key = path.to_string_lossy().to_string();
        let sha256 = sha256_file_with_progress(path, on_bytes)?;
        self.entries.insert(key, CachedDigest { size, mtime_ns, sha256: sha256.clone() });
        self.dirty = true;
        Ok(sha256)
    }

    /// Digest of every file under `paths` (directories walked recursively), keyed by path.
    /// Paths that do not exist map to [`MISSING`].
    /// Shows progress when more than [`PROGRESS_THRESHOLD`] bytes need hashing.
    pub fn digest_paths(&mut self, paths: &[PathBuf]) -> std::io::Result<BTreeMap<String, String>> {
        let mut out = BTreeMap::new();
        let mut files = Vec::new();
        for path in paths {
            if path.exists() {
                files.extend(files_under(path)?);
            } else {
                out.insert(path.to_string_lossy().to_string(), MISSING.to_string());
            }
        }
        let mut to_hash = 0u64;
        for file in &files {
            if let (None, size, _) = self.cached(file)? {
                to_hash += size;
            }
        }
        let mut progress = (to_hash > PROGRESS_THRESHOLD).then(|| Progress::new("hashing", to_hash, Unit::Bytes));
        for file in files {
            let digest = self.file_digest_with_progress(&file, &mut |n| {
                if let Some(p) = progress.as_mut() {
                    p.advance(n)
                }
            })?;
            out.insert(file.to_string_lossy().to_string(), digest);
        }
        Ok(out)
    }
}

fn files_under(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        // Temporary files of atomic writes are never part of a stage's result.
        if entry.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')) {
            continue;
        }
        files.extend(files_under(&entry)?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_and_directory_expansion() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("d/sub")).unwrap();
        std::fs::write(dir.path().join("d/a"), b"abc").unwrap();
        std::fs::write(dir.path().join("d/sub/b"), b"").unwrap();
        std::fs::write(dir.path().join("d/.a.tmp.1"), b"partial").unwrap();
        let mut cache = DigestCache::default();
        let digests = cache.digest_paths(&[dir.path().join("d"), dir.path().join("gone")]).unwrap();
        let values: Vec<&str> = digests.values().map(String::as_str).collect();
        assert_eq!(
            values,
            [
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                MISSING
            ]
        );
    }

    #[test]
    fn cache_notices_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"one").unwrap();
        let mut cache = DigestCache::load(dir.path().join("cache.json"));
        let first = cache.file_digest(&f).unwrap();
        cache.save().unwrap();
        std::fs::write(&f, b"two!").unwrap();
        let mut reloaded = DigestCache::load(dir.path().join("cache.json"));
        assert_ne!(reloaded.file_digest(&f).unwrap(), first);
    }
}
