//! Builds the offline smoke corpus: the pinned sdists of `manifests/data/smoke_corpus.toml` are
//! downloaded through `ShardDownloader` (verified by sha256) or found in a cache, the selected
//! documentation files are read straight from the `.tar.gz`, split into section-sized documents
//! with minimal markup removal, put in a seeded deterministic order and packed into FineWeb-style
//! shards `shard_00000.parquet`… (NANOCHAT.md §2.1 layout; the last shard is validation). The same
//! inputs always give the same shard bytes; recorded shard sha256s in the manifest are checked.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::markup_cleaner::Markup;
use super::section_splitter::split_into_documents;
use crate::data::parquet_shards::ShardError;
use crate::data::shard_writer::{ShardWriter, ShardWriterOptions, ZSTD_LEVEL};
use crate::download::{
    shard_file_name, CorpusLayout, DownloadError, ExpectedShard, Sha256Digest, ShardDownloader, SmokeCorpusManifest,
    SourcePackage,
};

/// Where the manifest lives, relative to the repository root.
pub const SMOKE_CORPUS_MANIFEST: &str = "manifests/data/smoke_corpus.toml";

#[derive(Debug, thiserror::Error)]
pub enum SmokeCorpusError {
    #[error(transparent)]
    Download(#[from] DownloadError),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("cannot read source archive {path}: {message}")]
    Archive { path: PathBuf, message: String },
    #[error("{package}: {message}")]
    Source { package: String, message: String },
    #[error("the sources give {row_groups} row groups of {docs_per_row_group} documents, fewer than the {shards} shards asked for")]
    TooLittleText { row_groups: usize, docs_per_row_group: usize, shards: usize },
    #[error(
        "built {name} with sha256 {actual}, but the manifest records {expected}: the corpus is not what was pinned \
         (different sources or builder version); rebuild and update the [[shard]] tables if this is intended"
    )]
    NotReproduced { name: String, expected: Sha256Digest, actual: Sha256Digest },
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// How much each package contributed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceStats {
    pub package: String,
    pub files: usize,
    pub documents: usize,
    pub chars: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmokeCorpusReport {
    pub sources: Vec<SourceStats>,
    pub shards: Vec<ExpectedShard>,
    pub total_documents: usize,
    pub total_chars: u64,
}

impl SmokeCorpusReport {
    /// The `[[shard]]` tables to record in the manifest.
    pub fn shard_tables_toml(&self) -> String {
        self.shards
            .iter()
            .map(|s| {
                format!(
                    "[[shard]]\nname = \"{}\"\nsha256 = \"{}\"\ndocuments = {}\nchars = {}\n",
                    s.name, s.sha256, s.documents, s.chars
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Makes sure every sdist is in `cache_dir` with the pinned sha256, downloading what is missing.
pub fn fetch_sources(
    manifest: &SmokeCorpusManifest,
    downloader: &ShardDownloader,
    cache_dir: &Path,
) -> Result<Vec<PathBuf>, DownloadError> {
    let entries: Vec<_> = manifest.packages.iter().map(SourcePackage::download_entry).collect();
    Ok(downloader.download_all(&entries, cache_dir)?.into_iter().map(|file| file.path).collect())
}

/// The documents one sdist contributes: selected files in path order, each split into sections.
pub fn documents_from_sdist(
    package: &SourcePackage,
    archive: &Path,
    min_doc_chars: usize,
) -> Result<(Vec<String>, SourceStats), SmokeCorpusError> {
    let archive_error = |message: String| SmokeCorpusError::Archive { path: archive.to_path_buf(), message };
    let file = File::open(archive).map_err(|e| archive_error(e.to_string()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut selected: BTreeMap<String, String> = BTreeMap::new();
    let mut license_seen = false;
    let license_path = format!("{}/{}", package.root, package.license_file);
    for entry in tar.entries().map_err(|e| archive_error(e.to_string()))? {
        let mut entry = entry.map_err(|e| archive_error(e.to_string()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(|e| archive_error(e.to_string()))?.to_string_lossy().into_owned();
        license_seen |= path == license_path;
        let Some(relative) = package.selects(&path).map(str::to_string) else { continue };
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(|e| archive_error(format!("{path}: {e}")))?;
        match String::from_utf8(bytes) {
            Ok(text) => {
                selected.insert(relative, text);
            }
            Err(_) => log::warn!("{}: skipping {relative}: not UTF-8", package.name),
        }
    }
    if !license_seen {
        return Err(SmokeCorpusError::Source {
            package: package.name.clone(),
            message: format!("license file {license_path} not found in {}", archive.display()),
        });
    }
    if selected.is_empty() {
        return Err(SmokeCorpusError::Source {
            package: package.name.clone(),
            message: format!("no files under {:?} with extensions {:?}", package.include, package.extensions),
        });
    }
    let mut documents = Vec::new();
    for (relative, text) in &selected {
        let extension = relative.rsplit_once('.').map_or("", |(_, ext)| ext);
        documents.extend(split_into_documents(text, Markup::from_extension(extension), min_doc_chars));
    }
    let stats = SourceStats {
        package: package.name.clone(),
        files: selected.len(),
        documents: documents.len(),
        chars: documents.iter().map(|d| d.chars().count() as u64).sum(),
    };
    Ok((documents, stats))
}

/// SplitMix64: a tiny, fully specified generator, so the order never depends on a crate version.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0), by rejection so there is no modulo bias.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// Fisher–Yates shuffle driven by SplitMix64(`seed`).
pub fn shuffle_documents<T>(documents: &mut [T], seed: u64) {
    let mut rng = SplitMix64(seed);
    for i in (1..documents.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        documents.swap(i, j);
    }
}

/// Packs `documents` into `layout.shards` shards of whole row groups, spread evenly, in order.
pub fn write_corpus_shards(
    documents: &[String],
    layout: &CorpusLayout,
    out_dir: &Path,
) -> Result<Vec<ExpectedShard>, SmokeCorpusError> {
    let row_groups: Vec<&[String]> = documents.chunks(layout.docs_per_row_group.max(1)).collect();
    if row_groups.len() < layout.shards {
        return Err(SmokeCorpusError::TooLittleText {
            row_groups: row_groups.len(),
            docs_per_row_group: layout.docs_per_row_group,
            shards: layout.shards,
        });
    }
    std::fs::create_dir_all(out_dir).map_err(|source| SmokeCorpusError::Io { path: out_dir.to_path_buf(), source })?;
    let options = ShardWriterOptions { docs_per_row_group: layout.docs_per_row_group, zstd_level: ZSTD_LEVEL };
    let mut shards = Vec::with_capacity(layout.shards);
    for shard in 0..layout.shards {
        let first = shard * row_groups.len() / layout.shards;
        let end = (shard + 1) * row_groups.len() / layout.shards;
        let name = shard_file_name(shard);
        let path = out_dir.join(&name);
        let mut writer = ShardWriter::create(&path, options.clone())?;
        for group in &row_groups[first..end] {
            for document in *group {
                writer.write_document(document)?;
            }
            writer.flush_row_group()?;
        }
        let summary = writer.finish()?;
        let sha256 = Sha256Digest::of_file(&path).map_err(|source| SmokeCorpusError::Io { path, source })?;
        shards.push(ExpectedShard { name, sha256, documents: summary.documents, chars: summary.chars });
    }
    Ok(shards)
}

/// True when `out_dir` already holds every recorded shard with its recorded sha256.
pub fn smoke_corpus_is_present(manifest: &SmokeCorpusManifest, out_dir: &Path) -> bool {
    !manifest.shards.is_empty()
        && manifest
            .shards
            .iter()
            .all(|shard| Sha256Digest::of_file(&out_dir.join(&shard.name)).is_ok_and(|actual| actual == shard.sha256))
}

/// Builds the corpus into `out_dir` from the sdists in `cache_dir` (fetching missing ones with
/// `downloader` when given) and checks the result against the manifest's recorded shards.
pub fn build_smoke_corpus(
    manifest: &SmokeCorpusManifest,
    cache_dir: &Path,
    out_dir: &Path,
    downloader: Option<&ShardDownloader>,
) -> Result<SmokeCorpusReport, SmokeCorpusError> {
    let archives = match downloader {
        Some(downloader) => fetch_sources(manifest, downloader, cache_dir)?,
        None => manifest.packages.iter().map(|p| cache_dir.join(&p.filename)).collect(),
    };
    let mut documents = Vec::new();
    let mut sources = Vec::new();
    for (package, archive) in manifest.packages.iter().zip(&archives) {
        let actual = Sha256Digest::of_file(archive)
            .map_err(|e| SmokeCorpusError::Archive { path: archive.clone(), message: e.to_string() })?;
        if actual != package.sha256 {
            return Err(SmokeCorpusError::Source {
                package: package.name.clone(),
                message: format!("{} has sha256 {actual}, the manifest pins {}", archive.display(), package.sha256),
            });
        }
        let (docs, stats) = documents_from_sdist(package, archive, manifest.corpus.min_doc_chars)?;
        documents.extend(docs);
        sources.push(stats);
    }
    shuffle_documents(&mut documents, manifest.corpus.seed);
    let shards = write_corpus_shards(&documents, &manifest.corpus, out_dir)?;
    let report = SmokeCorpusReport {
        total_documents: documents.len(),
        total_chars: sources.iter().map(|s| s.chars).sum(),
        sources,
        shards,
    };
    for (expected, actual) in manifest.shards.iter().zip(&report.shards) {
        if expected.name != actual.name || expected.sha256 != actual.sha256 {
            return Err(SmokeCorpusError::NotReproduced {
                name: actual.name.clone(),
                expected: expected.sha256.clone(),
                actual: actual.sha256.clone(),
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_is_a_fixed_permutation() {
        let mut a: Vec<u32> = (0..10).collect();
        shuffle_documents(&mut a, 42);
        let mut b: Vec<u32> = (0..10).collect();
        shuffle_documents(&mut b, 42);
        assert_eq!(a, b);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(a, (0..10).collect::<Vec<_>>());
        let mut c: Vec<u32> = (0..10).collect();
        shuffle_documents(&mut c, 43);
        assert_ne!(a, c);
    }
}
