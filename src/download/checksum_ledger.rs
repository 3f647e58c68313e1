//! The checksum ledger: a JSON file next to the downloads that records the sha256 and size of every
//! file whose manifest entry is `unpinned`, the first time it is downloaded (from the server's
//! announced checksum, or trust-on-first-use when the server announces none). Later downloads and
//! `verify` check against it, so an unpinned file can still never change silently. Its records are
//! also what `nanochat data pin` would copy into a manifest. (DESIGN.md "Data and artifacts".)
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sha256_digest::Sha256Digest;

/// Conventional file name of the ledger inside a download directory.
pub const LEDGER_FILE_NAME: &str = "checksums.ledger.json";
const LEDGER_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot read checksum ledger {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("checksum ledger {path} is not valid JSON: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("checksum ledger {path} has version {found}, expected {LEDGER_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("cannot write checksum ledger {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{name}: the ledger already records sha256 {recorded}, refusing to overwrite it with {new}")]
    Conflict { name: String, recorded: Sha256Digest, new: Sha256Digest },
}

/// Where a recorded checksum came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChecksumSource {
    /// The server announced it (`x-linked-etag` on HuggingFace) and the bytes matched it.
    ServerHeader,
    /// Nobody announced one: the hash of the first complete download (trust on first use).
    FirstDownload,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    pub sha256: Sha256Digest,
    pub size: u64,
    pub url: String,
    pub source: ChecksumSource,
}

#[derive(Serialize, Deserialize)]
struct LedgerFile {
    version: u32,
    files: BTreeMap<String, LedgerRecord>,
}

#[derive(Debug)]
pub struct ChecksumLedger {
    path: PathBuf,
    records: BTreeMap<String, LedgerRecord>,
}

impl ChecksumLedger {
    /// Opens the ledger at `path`; a missing file is an empty ledger (created on first record).
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let records = match std::fs::read_to_string(path) {
            Ok(text) => {
                let file: LedgerFile = serde_json::from_str(&text)
                    .map_err(|e| LedgerError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
                if file.version != LEDGER_VERSION {
                    return Err(LedgerError::Version { path: path.to_path_buf(), found: file.version });
                }
                file.files
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(LedgerError::Read { path: path.to_path_buf(), source }),
        };
        Ok(Self { path: path.to_path_buf(), records })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, name: &str) -> Option<&LedgerRecord> {
        self.records.get(name)
    }

    pub fn records(&self) -> impl Iterator<Item = (&String, &LedgerRecord)> {
        self.records.iter()
    }

    /// Records `name` and saves the ledger. Recording the same sha256 again is a no-op; a different
    /// one is a [`LedgerError::Conflict`] (remove the record deliberately with [`Self::forget`]).
    pub fn record(&mut self, name: &str, record: LedgerRecord) -> Result<(), LedgerError> {
        if let Some(existing) = self.records.get(name) {
            if existing.sha256 == record.sha256 {
                return Ok(());
            }
            return Err(LedgerError::Conflict {
                name: name.to_string(),
                recorded: existing.sha256.clone(),
                new: record.sha256,
            });
        }
        self.records.insert(name.to_string(), record);
        self.save()
    }

    /// Drops the record of `name` (e.g. after the manifest pinned it) and saves.
    pub fn forget(&mut self, name: &str) -> Result<(), LedgerError> {
        if self.records.remove(name).is_some() {
            self.save()?;
        }
        Ok(())
    }

    fn save(&self) -> Result<(), LedgerError> {
        let file = LedgerFile { version: LEDGER_VERSION, files: self.records.clone() };
        let write_error = |source| LedgerError::Write { path: self.path.clone(), source };
        let mut text = serde_json::to_string_pretty(&file).map_err(|e| write_error(std::io::Error::other(e)))?;
        text.push('\n');
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write_error)?;
        let tmp = dir.join(format!(".{LEDGER_FILE_NAME}.tmp.{}", std::process::id()));
        let result = (|| {
            let mut out = std::fs::File::create(&tmp)?;
            out.write_all(text.as_bytes())?;
            out.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bytes: &[u8]) -> LedgerRecord {
        LedgerRecord {
            sha256: Sha256Digest::of_bytes(bytes),
            size: bytes.len() as u64,
            url: "http://127.0.0.1/x".into(),
            source: ChecksumSource::FirstDownload,
        }
    }

    #[test]
    fn records_persist_and_conflicts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE_NAME);
        let mut ledger = ChecksumLedger::open(&path).unwrap();
        assert!(ledger.get("a").is_none());
        ledger.record("a", record(b"one")).unwrap();
        ledger.record("a", record(b"one")).unwrap();
        assert!(matches!(ledger.record("a", record(b"two")), Err(LedgerError::Conflict { .. })));
        let reopened = ChecksumLedger::open(&path).unwrap();
        assert_eq!(reopened.get("a"), Some(&record(b"one")));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");
    }

    #[test]
    fn corrupt_ledger_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LEDGER_FILE_NAME);
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(ChecksumLedger::open(&path), Err(LedgerError::Parse { .. })));
    }
}
