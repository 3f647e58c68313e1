//! The manifest of the offline smoke corpus (`manifests/data/smoke_corpus.toml`): which pinned
//! PyPI source distributions supply text (file name, URL, size, sha256, license), which files
//! inside them are used, how documents are ordered and packed into shards, and the shard sha256s a
//! build produced (DESIGN.md: `make smoke` runs offline; every download listed with its sha256).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::manifest::{Checksum, ManifestEntry, ManifestError};
use super::sha256_digest::Sha256Digest;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusLayout {
    /// Seed of the deterministic document shuffle.
    pub seed: u64,
    /// Number of shards; the last one is validation (NANOCHAT.md §2.1).
    pub shards: usize,
    pub docs_per_row_group: usize,
    /// Sections shorter than this many characters are merged with the next one.
    pub min_doc_chars: usize,
}

/// One sdist and the part of it that becomes text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcePackage {
    pub name: String,
    pub version: String,
    pub description: String,
    pub filename: String,
    pub url: String,
    pub size: u64,
    pub sha256: Sha256Digest,
    pub license: String,
    /// The license text inside the archive, relative to `root`.
    pub license_file: String,
    /// Top folder of the archive.
    pub root: String,
    /// Directory prefixes (relative to `root`) whose files are read.
    pub include: Vec<String>,
    /// File extensions read (without the dot).
    pub extensions: Vec<String>,
    /// Files or directory prefixes (relative to `root`) skipped.
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl SourcePackage {
    /// The sdist as a download manifest entry.
    pub fn download_entry(&self) -> ManifestEntry {
        ManifestEntry {
            name: self.filename.clone(),
            url: self.url.clone(),
            size: Some(self.size),
            sha256: Checksum::Pinned(self.sha256.clone()),
            license: format!("{} ({} {})", self.license, self.name, self.version),
        }
    }

    /// The path relative to `root` if `archive_path` is a file this package contributes.
    pub fn selects<'a>(&self, archive_path: &'a str) -> Option<&'a str> {
        let relative = archive_path.strip_prefix(self.root.as_str())?.strip_prefix('/')?;
        let included = self.include.iter().any(|prefix| relative.starts_with(prefix.as_str()));
        let excluded = self.exclude.iter().any(|prefix| relative.starts_with(prefix.as_str()));
        let extension = relative.rsplit_once('.').map(|(_, ext)| ext)?;
        let wanted = self.extensions.iter().any(|e| e == extension);
        (included && !excluded && wanted).then_some(relative)
    }
}

/// A shard the builder produced, recorded so later builds can be checked against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedShard {
    pub name: String,
    pub sha256: Sha256Digest,
    pub documents: usize,
    pub chars: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeCorpusManifest {
    pub corpus: CorpusLayout,
    #[serde(rename = "package")]
    pub packages: Vec<SourcePackage>,
    #[serde(default, rename = "shard")]
    pub shards: Vec<ExpectedShard>,
}

impl SmokeCorpusManifest {
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.to_path_buf(), source })?;
        let manifest: Self = toml::from_str(&text)
            .map_err(|e| ManifestError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        if manifest.corpus.shards == 0 || manifest.corpus.docs_per_row_group == 0 {
            return Err(ManifestError::Parse {
                path: PathBuf::from(path),
                message: "corpus.shards and corpus.docs_per_row_group must be positive".into(),
            });
        }
        Ok(manifest)
    }
}
