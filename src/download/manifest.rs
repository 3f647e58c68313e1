//! Data manifests and their checksums (DESIGN.md "Data and artifacts": every download is listed with
//! URL, size and sha256, and verified against the sha256 before it is accepted). TOML, one `[[file]]`
//! table per file:
//!
//! ```toml
//! description = "FineWeb-Edu 100B shuffle (NANOCHAT.md §2.1)"
//! [[file]]
//! name = "shard_00000.parquet"
//! url = "https://huggingface.co/datasets/.../resolve/<commit>/shard_00000.parquet"
//! size = 92700000          # optional: omitted when not known yet
//! sha256 = "unpinned"      # or 64 hex digits
//! license = "ODC-By 1.0"
//! ```
//!
//! A checksum we cannot obtain offline is never invented: such an entry says `unpinned`, the
//! downloader then uses the server-announced sha256 and records what it got in the [`ChecksumLedger`],
//! a JSON file next to the downloads (trust on first use when the server announces none), so an
//! unpinned file can still never change silently. Pinning (`nanochat data pin`) copies the ledger's
//! records, or what the server announces without downloading, into the manifest; nothing is guessed.
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::downloader::ShardDownloader;

/// The word a manifest uses for "no checksum known yet".
pub const UNPINNED: &str = "unpinned";
/// Conventional file name of the checksum ledger inside a download directory.
pub const LEDGER_FILE_NAME: &str = "checksums.ledger.json";
const LEDGER_VERSION: u32 = 1;

/// A sha256 digest, stored and printed as 64 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Digest(String);

impl Sha256Digest {
    /// Parses 64 hex digits (either case), optionally wrapped in quotes or prefixed with `W/` or
    /// `sha256:` as ETag-style headers write them. Anything else (e.g. a 40-digit git sha1) is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
        let text = text.strip_prefix("sha256:").unwrap_or(text);
        (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Self(text.to_ascii_lowercase()))
    }

    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    pub fn of_file(path: &Path) -> io::Result<Self> {
        let mut hasher = Sha256::new();
        io::copy(&mut BufReader::with_capacity(1 << 20, File::open(path)?), &mut hasher)?;
        Ok(Self(hex::encode(hasher.finalize())))
    }

    pub fn as_hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Sha256Digest {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text).ok_or_else(|| format!("not a sha256 digest (64 hex digits): {text:?}"))
    }
}

impl From<Sha256Digest> for String {
    fn from(digest: Sha256Digest) -> String {
        digest.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot parse manifest {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("manifest entry {name:?} is invalid: {reason}")]
    InvalidEntry { name: String, reason: String },
    #[error("cannot write manifest: {0}")]
    Serialize(String),
}
/// The expected sha256 of a file, or the explicit statement that none is known yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Checksum {
    Pinned(Sha256Digest),
    Unpinned,
}

impl Checksum {
    pub fn pinned(&self) -> Option<&Sha256Digest> {
        match self {
            Checksum::Pinned(digest) => Some(digest),
            Checksum::Unpinned => None,
        }
    }
}

impl TryFrom<String> for Checksum {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        if text == UNPINNED {
            return Ok(Checksum::Unpinned);
        }
        Sha256Digest::try_from(text).map(Checksum::Pinned).map_err(|e| format!("{e} (or {UNPINNED:?})"))
    }
}

impl From<Checksum> for String {
    fn from(checksum: Checksum) -> String {
        match checksum {
            Checksum::Pinned(digest) => digest.into(),
            Checksum::Unpinned => UNPINNED.to_string(),
        }
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checksum::Pinned(digest) => write!(f, "{digest}"),
            Checksum::Unpinned => f.write_str(UNPINNED),
        }
    }
}

/// One downloadable file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    /// Path under the destination directory: a plain file name, or a relative path whose every
    /// component is a plain visible name (HuggingFace dataset files keep their path in the repository).
    pub name: String,
    pub url: String,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub sha256: Checksum,
    /// Who publishes the data and under which terms.
    pub license: String,
}

impl ManifestEntry {
    fn validate(&self) -> Result<(), ManifestError> {
        let invalid =
            |reason: &str| ManifestError::InvalidEntry { name: self.name.clone(), reason: reason.to_string() };
        if !is_plain_relative_path(&self.name) || self.name.ends_with(crate::fsutil::PARTIAL_SUFFIX) {
            return Err(invalid(
                "name must be a file name or a relative path of plain names (no `..`, nothing hidden, not *.partial)",
            ));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(invalid("url must start with http:// or https://"));
        }
        if self.license.trim().is_empty() {
            return Err(invalid("license note is empty"));
        }
        Ok(())
    }
}

/// True for `name` or `dir/name` where every component is non-empty, visible (no leading `.`, so no
/// `.` or `..` either) and free of `\\` and NUL: a path that stays inside the directory it is joined to.
pub fn is_plain_relative_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|part| !part.is_empty() && !part.starts_with('.') && !part.contains(['\\', '\0']))
}

/// A list of files to download, in priority order (the first entries are fetched first).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataManifest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, rename = "file")]
    pub files: Vec<ManifestEntry>,
}

impl DataManifest {
    pub fn new(description: impl Into<String>, files: Vec<ManifestEntry>) -> Result<Self, ManifestError> {
        let manifest = Self { description: description.into(), files };
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text).map_err(|e| match e {
            ManifestError::Parse { message, .. } => ManifestError::Parse { path: path.to_path_buf(), message },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: Self = toml::from_str(text)
            .map_err(|e| ManifestError::Parse { path: PathBuf::from("<text>"), message: e.to_string() })?;
        manifest.validate()?;
        Ok(manifest)
    }

    pub fn to_toml_string(&self) -> Result<String, ManifestError> {
        toml::to_string(self).map_err(|e| ManifestError::Serialize(e.to_string()))
    }

    pub fn entry(&self, name: &str) -> Option<&ManifestEntry> {
        self.files.iter().find(|entry| entry.name == name)
    }

    /// Entries whose checksum is not pinned yet.
    pub fn unpinned(&self) -> impl Iterator<Item = &ManifestEntry> {
        self.files.iter().filter(|entry| entry.sha256 == Checksum::Unpinned)
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let mut seen = HashSet::new();
        for entry in &self.files {
            entry.validate()?;
            if !seen.insert(entry.name.as_str()) {
                return Err(ManifestError::InvalidEntry {
                    name: entry.name.clone(),
                    reason: "listed more than once".into(),
                });
            }
        }
        Ok(())
    }
}

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

    pub fn get(&self, name: &str) -> Option<&LedgerRecord> {
        self.records.get(name)
    }

    pub fn records(&self) -> impl Iterator<Item = (&String, &LedgerRecord)> {
        self.records.iter()
    }

    /// Records `name` and saves the ledger. Recording the same sha256 again is a no-op; a different
    /// one is a [`LedgerError::Conflict`] (remove the record by hand to accept new bytes).
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

    fn save(&self) -> Result<(), LedgerError> {
        let file = LedgerFile { version: LEDGER_VERSION, files: self.records.clone() };
        crate::fsutil::write_json_atomic(&self.path, &file)
            .map_err(|source| LedgerError::Write { path: self.path.clone(), source })
    }
}

/// What a pinning pass did.
#[derive(Debug, Default)]
pub struct PinReport {
    pub pinned: Vec<String>,
    /// Entries left unpinned, with the reason.
    pub unpinned: Vec<(String, String)>,
}

/// Pins every unpinned entry that the ledger has a record for (sha256 and size).
pub fn pin_from_ledger(manifest: &mut DataManifest, ledger: &ChecksumLedger) -> PinReport {
    let mut report = PinReport::default();
    for entry in manifest.files.iter_mut().filter(|e| e.sha256 == Checksum::Unpinned) {
        match ledger.get(&entry.name) {
            Some(record) if entry.size.is_none_or(|size| size == record.size) => {
                entry.sha256 = Checksum::Pinned(record.sha256.clone());
                entry.size = Some(record.size);
                report.pinned.push(entry.name.clone());
            }
            Some(record) => report.unpinned.push((
                entry.name.clone(),
                format!("ledger size {} differs from manifest size {:?}", record.size, entry.size),
            )),
            None => report.unpinned.push((entry.name.clone(), "not in the ledger".into())),
        }
    }
    report
}

/// Pins every unpinned entry whose server announces a sha256 (one HEAD request per entry, with
/// redirects followed by hand). Network failures of single entries are reported, not fatal.
pub fn pin_from_server(manifest: &mut DataManifest, downloader: &ShardDownloader) -> PinReport {
    let mut report = PinReport::default();
    for entry in manifest.files.iter_mut().filter(|e| e.sha256 == Checksum::Unpinned) {
        match downloader.probe(&entry.url) {
            Ok(announced) => match announced.sha256 {
                Some(sha256) => {
                    entry.sha256 = Checksum::Pinned(sha256);
                    entry.size = announced.size.or(entry.size);
                    report.pinned.push(entry.name.clone());
                }
                None => report.unpinned.push((entry.name.clone(), "the server announces no sha256".into())),
            },
            Err(error) => report.unpinned.push((entry.name.clone(), error.to_string())),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
description = "two files"

[[file]]
name = "a.parquet"
url = "https://example.org/a.parquet"
size = 10
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
license = "CC0"

[[file]]
name = "b.parquet"
url = "https://example.org/b.parquet"
sha256 = "unpinned"
license = "CC0"
"#;

    #[test]
    fn parses_pinned_and_unpinned_entries_and_round_trips() {
        let manifest = DataManifest::parse(SAMPLE).unwrap();
        assert_eq!(manifest.files.len(), 2);
        assert_eq!(manifest.files[0].size, Some(10));
        assert!(manifest.files[0].sha256.pinned().is_some());
        assert_eq!(manifest.files[1].sha256, Checksum::Unpinned);
        assert_eq!(manifest.unpinned().count(), 1);
        let again = DataManifest::parse(&manifest.to_toml_string().unwrap()).unwrap();
        assert_eq!(again, manifest);
    }

    #[test]
    fn rejects_bad_checksums_names_and_duplicates() {
        let bad_sum = SAMPLE.replace("\"unpinned\"", "\"deadbeef\"");
        assert!(matches!(DataManifest::parse(&bad_sum), Err(ManifestError::Parse { .. })));
        let bad_name = SAMPLE.replace("b.parquet\"\nurl", "../b.parquet\"\nurl");
        assert!(matches!(DataManifest::parse(&bad_name), Err(ManifestError::InvalidEntry { .. })));
        let duplicate = SAMPLE.replace("name = \"b.parquet\"", "name = \"a.parquet\"");
        assert!(matches!(DataManifest::parse(&duplicate), Err(ManifestError::InvalidEntry { .. })));
    }

    #[test]
    fn names_may_be_relative_paths_that_stay_inside() {
        let nested = SAMPLE.replace("name = \"b.parquet\"", "name = \"ARC-Easy/train-00000-of-00001.parquet\"");
        assert_eq!(DataManifest::parse(&nested).unwrap().files[1].name, "ARC-Easy/train-00000-of-00001.parquet");
        for bad in [
            "/abs.parquet",
            "a//b.parquet",
            "a/../b.parquet",
            "a/./b.parquet",
            "a/.git/b",
            "a/",
            "a\\\\b",
            "a/b.partial",
        ] {
            let text = SAMPLE.replace("name = \"b.parquet\"", &format!("name = {bad:?}"));
            assert!(matches!(DataManifest::parse(&text), Err(ManifestError::InvalidEntry { .. })), "{bad}");
        }
        assert!(is_plain_relative_path("a/b/c.txt") && !is_plain_relative_path(""));
    }

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

    #[test]
    fn hashes_known_vector() {
        assert_eq!(
            Sha256Digest::of_bytes(b"abc").as_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parses_etag_forms_and_rejects_other_hashes() {
        let hex = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        let expected = Sha256Digest::of_bytes(b"abc");
        assert_eq!(Sha256Digest::parse(hex), Some(expected.clone()));
        assert_eq!(Sha256Digest::parse(&format!("\"{hex}\"")), Some(expected.clone()));
        assert_eq!(Sha256Digest::parse(&format!("W/\"{hex}\"")), Some(expected.clone()));
        assert_eq!(Sha256Digest::parse(&format!("sha256:{hex}")), Some(expected));
        assert_eq!(Sha256Digest::parse("\"a9993e364706816aba3e25717850c26c9cd0d89d\""), None);
        assert_eq!(Sha256Digest::parse("unpinned"), None);
    }
}
