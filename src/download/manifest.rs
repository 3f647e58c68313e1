//! Data manifests: the list of files a stage downloads (DESIGN.md "Data and artifacts": every
//! download is listed with URL, size and sha256). TOML, one `[[file]]` table per file:
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
//! downloader then uses the server-announced sha256 and records what it got in the
//! [`ChecksumLedger`](super::checksum_ledger::ChecksumLedger).
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sha256_digest::Sha256Digest;

/// The word a manifest uses for "no checksum known yet".
pub const UNPINNED: &str = "unpinned";

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
}
