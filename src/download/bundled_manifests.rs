//! The data manifests shipped inside the binary (manifests/data/*.toml, via `include_str!`), so a
//! copied binary or the container needs no checkout to know what to download and which sha256s to
//! expect (DESIGN.md "Data and artifacts"). Also: the manifests of the pretraining shards, computed
//! rather than typed (`shard_{index:05d}.parquet` on the Hub: FineWeb-Edu, NANOCHAT.md §2.1, and
//! 92d63d4's ClimbMix, §12; URLs name a fixed dataset revision instead of `main`, so a rewritten
//! dataset can never change what a pinned run trains on); the offline smoke corpus manifest (which pinned PyPI
//! sdists supply text, how documents are packed into shards, the shard sha256s a build produced) and
//! the download list of its shards (built locally); the mirror rewrite (`data.mirror_url`: every file
//! from `<mirror>/<file name>`); and where each manifest's files live under the base directory. The
//! chat datasets' manifest (manifests/data/chat_datasets.toml, NANOCHAT.md §5.2) lists repositories
//! rather than files: see [`HubDatasetManifest`].
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::hub::{hub_endpoint, HubDatasetManifest};
use super::manifest::{Checksum, DataManifest, ManifestEntry, ManifestError, Sha256Digest};
use crate::paths::Paths;

/// A pretraining dataset on the Hub: `shard_00000.parquet` … in one repository, the last shard present
/// on disk the validation split (as the reference's `list_parquet_files`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardDataset {
    /// What a preset's `data.manifest` says, and the folder under `data/`.
    pub manifest_name: &'static str,
    /// `owner/name` on the Hub.
    pub repo: &'static str,
    pub shard_count: usize,
    /// The dataset commit the URLs point at. A placeholder until someone with network access reads the
    /// dataset's commit hash (HuggingFace "Files and versions") and pins it here; until then each base
    /// dir resolves `main` once and records the commit (see [`dataset_revision`](super::hub::dataset_revision)),
    /// never following `main` from one shard to the next.
    pub revision: &'static str,
    /// License note carried by every shard entry.
    pub license: &'static str,
    pub description: &'static str,
}

/// The shuffled, re-sharded FineWeb-Edu sample of the late-2025 presets (§2.1, `MAX_SHARD = 1822`).
pub const FINEWEB_EDU: ShardDataset = ShardDataset {
    manifest_name: "fineweb-edu-100b",
    repo: "karpathy/fineweb-edu-100b-shuffle",
    shard_count: 1823,
    revision: "REVISION-NOT-PINNED-YET",
    license: "ODC-By 1.0 (HuggingFaceFW/fineweb-edu, re-sharded by karpathy); subject to CommonCrawl terms of use",
    description: "FineWeb-Edu 100B shuffle (NANOCHAT.md §2.1)",
};

/// NVIDIA's ClimbMix, decoded to text and re-sharded, of the gpt2 presets (92d63d4 `nanochat/dataset.py`,
/// `MAX_SHARD = 6542`; §12 item 5).
pub const CLIMBMIX: ShardDataset = ShardDataset {
    manifest_name: "climbmix-400b",
    repo: "karpathy/climbmix-400b-shuffle",
    shard_count: 6543,
    revision: "REVISION-NOT-PINNED-YET",
    license: "the terms of nvidia/Nemotron-ClimbMix (see its dataset card), re-sharded by karpathy",
    description: "ClimbMix 400B shuffle (NANOCHAT.md §12)",
};

/// The shard datasets on the Hub a preset can name.
pub const SHARD_DATASETS: [ShardDataset; 2] = [FINEWEB_EDU, CLIMBMIX];

/// The shard dataset a `data.manifest` names, if it is one of [`SHARD_DATASETS`].
pub fn shard_dataset(manifest_name: &str) -> Option<&'static ShardDataset> {
    SHARD_DATASETS.iter().find(|d| d.manifest_name == manifest_name)
}

/// Name of the data manifest of the offline smoke corpus shards.
pub const SMOKE_MANIFEST_NAME: &str = "smoke";
/// The GPT-2/GPT-4 tiktoken files of tok-eval (NANOCHAT.md §1.6).
pub const TOKENIZERS_MANIFEST_NAME: &str = "tokenizers";
/// The chat stages' extra files: identity conversations, SpellingBee word list (NANOCHAT.md §5.2).
pub const CHAT_EXTRAS_MANIFEST_NAME: &str = "chat-data";

/// (name, TOML text) of the manifests listed as files, in the order `data pin` names them.
const BUNDLED_MANIFESTS: &[(&str, &str)] = &[
    (TOKENIZERS_MANIFEST_NAME, include_str!("../../manifests/data/tokenizers.toml")),
    ("eval-bundle", include_str!("../../manifests/data/eval_bundle.toml")),
    (CHAT_EXTRAS_MANIFEST_NAME, include_str!("../../manifests/data/chat_data.toml")),
];

/// The chat datasets' manifest compiled into the binary (NANOCHAT.md §5.2).
pub fn bundled_chat_datasets() -> Result<HubDatasetManifest, ManifestError> {
    let text = include_str!("../../manifests/data/chat_datasets.toml");
    HubDatasetManifest::parse(text, "manifests/data/chat_datasets.toml")
}

/// Every manifest name `data pin` and the download plan know.
pub fn known_manifest_names() -> Vec<&'static str> {
    SHARD_DATASETS
        .iter()
        .map(|d| d.manifest_name)
        .chain([SMOKE_MANIFEST_NAME])
        .chain(BUNDLED_MANIFESTS.iter().map(|(n, _)| *n))
        .collect()
}

/// A manifest listed as a file, parsed.
pub fn bundled_manifest(name: &str) -> Option<Result<DataManifest, ManifestError>> {
    BUNDLED_MANIFESTS.iter().find(|(n, _)| *n == name).map(|(_, text)| DataManifest::parse(text))
}

/// A manifest listed as a file that this build must have, parsed.
pub fn required_manifest(name: &str) -> Result<DataManifest, ManifestError> {
    bundled_manifest(name).unwrap_or_else(|| {
        Err(ManifestError::InvalidEntry { name: name.to_string(), reason: "missing from this build".into() })
    })
}

/// The smoke corpus manifest compiled into the binary (sources and the recorded shard sha256s).
pub fn bundled_smoke_corpus() -> Result<SmokeCorpusManifest, ManifestError> {
    let path = || PathBuf::from("manifests/data/smoke_corpus.toml");
    let manifest: SmokeCorpusManifest = toml::from_str(include_str!("../../manifests/data/smoke_corpus.toml"))
        .map_err(|e| ManifestError::Parse { path: path(), message: e.to_string() })?;
    let layout = &manifest.corpus;
    if layout.shards == 0 || layout.docs_per_row_group == 0 || manifest.shards.len() != layout.shards {
        let message = format!(
            "corpus.shards = {} and corpus.docs_per_row_group = {} must be positive, with {} [[shard]] tables \
             recorded",
            layout.shards,
            layout.docs_per_row_group,
            manifest.shards.len()
        );
        return Err(ManifestError::Parse { path: path(), message });
    }
    Ok(manifest)
}

/// File name of shard `index` (§2.1: `shard_{index:05d}.parquet`).
pub fn shard_file_name(index: usize) -> String {
    format!("shard_{index:05}.parquet")
}

impl ShardDataset {
    /// Manifest of the first `count` shards (at most [`ShardDataset::shard_count`]) at `revision` on the
    /// Hub at `endpoint`, all unpinned: sizes and checksums come from the server (`x-linked-size`,
    /// `x-linked-etag`) and the ledger.
    pub fn manifest(&self, endpoint: &str, revision: &str, count: usize) -> Result<DataManifest, ManifestError> {
        let files = (0..count.min(self.shard_count))
            .map(|index| ManifestEntry {
                name: shard_file_name(index),
                url: format!("{endpoint}/datasets/{}/resolve/{revision}/{}", self.repo, shard_file_name(index)),
                size: None,
                sha256: Checksum::Unpinned,
                license: self.license.to_string(),
            })
            .collect();
        DataManifest::new(format!("{} at revision {revision}", self.description), files)
    }
}

/// The shard manifest a preset's `data.manifest` names, limited to its first `count` shards; a Hub
/// dataset's URLs name `revision` (see [`dataset_revision`](super::hub::dataset_revision)) on the
/// Hub at `hub_endpoint()`; the smoke shards are pinned to the recorded sha256s and fetched from a
/// [`LocalMirror`](super::local_mirror::LocalMirror) (or `data.mirror_url`), never from their stand-in URL.
pub fn shard_manifest(name: &str, count: usize, revision: &str) -> Result<DataManifest, ManifestError> {
    if let Some(dataset) = shard_dataset(name) {
        return dataset.manifest(&hub_endpoint(), revision, count);
    }
    match name {
        SMOKE_MANIFEST_NAME => {
            let files = bundled_smoke_corpus()?
                .shards
                .iter()
                .take(count)
                .map(|shard| ManifestEntry {
                    name: shard.name.clone(),
                    url: format!("http://127.0.0.1/nanochat-smoke-corpus/{}", shard.name),
                    size: None,
                    sha256: Checksum::Pinned(shard.sha256.clone()),
                    license: "built from the pinned sdists of manifests/data/smoke_corpus.toml (their licenses apply)"
                        .into(),
                })
                .collect();
            DataManifest::new("offline smoke corpus shards (manifests/data/smoke_corpus.toml)", files)
        }
        other => Err(ManifestError::InvalidEntry {
            name: other.to_string(),
            reason: format!("unknown shard manifest (known: {})", known_shard_manifests()),
        }),
    }
}

/// The shard manifests' names, for messages.
pub fn known_shard_manifests() -> String {
    let names: Vec<&str> = SHARD_DATASETS.iter().map(|d| d.manifest_name).chain([SMOKE_MANIFEST_NAME]).collect();
    names.join(", ")
}

/// Directory the files of manifest `name` are downloaded into: the shard manifests under
/// `data/<name>/`, the tokenizers under `data/tokenizers/`, the chat extras under `data/chat-data/`, the
/// other bundled ones under `data/<name>/`.
pub fn download_dir(paths: &Paths, name: &str) -> PathBuf {
    match name {
        TOKENIZERS_MANIFEST_NAME => paths.baseline_tokenizers(),
        CHAT_EXTRAS_MANIFEST_NAME => paths.chat_extras(),
        other => paths.shards(other),
    }
}

/// `manifest` with every URL replaced by `<mirror_url>/<file name>` (checksums unchanged);
/// an empty `mirror_url` leaves it as it is.
pub fn with_mirror(manifest: &DataManifest, mirror_url: &str) -> DataManifest {
    let base = mirror_url.trim().trim_end_matches('/');
    if base.is_empty() {
        return manifest.clone();
    }
    let mut mirrored = manifest.clone();
    for entry in &mut mirrored.files {
        entry.url = format!("{base}/{}", entry.name);
    }
    mirrored
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_bundled_manifest_parses_and_tokenizers_are_pinned() {
        for (name, _) in BUNDLED_MANIFESTS {
            let manifest = bundled_manifest(name).unwrap().unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!manifest.files.is_empty(), "{name}");
        }
        let tokenizers = bundled_manifest(TOKENIZERS_MANIFEST_NAME).unwrap().unwrap();
        let names: Vec<_> = tokenizers.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["r50k_base.tiktoken", "cl100k_base.tiktoken"]);
        assert_eq!(tokenizers.unpinned().count(), 0);
        assert!(tokenizers
            .files
            .iter()
            .all(|f| f.url.starts_with("https://openaipublic.blob.core.windows.net/encodings/")));
        assert!(bundled_manifest("nope").is_none());
        assert_eq!(download_dir(&Paths::new("/b"), CHAT_EXTRAS_MANIFEST_NAME), Path::new("/b/data/chat-data"));
    }

    #[test]
    fn the_chat_datasets_manifest_lists_every_dataset_of_the_chat_stages() {
        let manifest = bundled_chat_datasets().unwrap();
        let repos: Vec<_> = manifest.datasets.iter().map(|d| d.repo.as_str()).collect();
        assert_eq!(
            repos,
            ["HuggingFaceTB/smol-smoltalk", "cais/mmlu", "allenai/ai2_arc", "openai/gsm8k", "openai/openai_humaneval"]
        );
        let mmlu = manifest.dataset("cais/mmlu").unwrap();
        assert!(
            mmlu.wants("all/test-00000-of-00001.parquet") && mmlu.wants("auxiliary_train/train-00000-of-00001.parquet")
        );
        assert!(!mmlu.wants("all/auxiliary_train-00000-of-00001.parquet"), "only the three splits of all/");
        let arc = manifest.dataset("allenai/ai2_arc").unwrap();
        for subset in ["ARC-Easy", "ARC-Challenge"] {
            for split in ["train", "validation", "test"] {
                assert!(arc.wants(&format!("{subset}/{split}-00000-of-00001.parquet")), "{subset} {split}");
            }
        }
        assert!(manifest.datasets.iter().all(|d| d.pinned_commit().is_some() || d.revision == "unpinned"));
    }

    #[test]
    fn smoke_shards_are_pinned_to_the_recorded_corpus() {
        let corpus = bundled_smoke_corpus().unwrap();
        let manifest = shard_manifest(SMOKE_MANIFEST_NAME, 6, "").unwrap();
        assert_eq!(manifest.files.len(), 6);
        assert_eq!(manifest.files[5].name, "shard_00005.parquet");
        for (entry, shard) in manifest.files.iter().zip(&corpus.shards) {
            assert_eq!(entry.sha256, Checksum::Pinned(shard.sha256.clone()));
        }
        assert_eq!(shard_manifest(SMOKE_MANIFEST_NAME, 2, "").unwrap().files.len(), 2);
        assert_eq!(shard_manifest(FINEWEB_EDU.manifest_name, 3, FINEWEB_EDU.revision).unwrap().files.len(), 3);
        assert_eq!(shard_manifest("climbmix-400b", 170, CLIMBMIX.revision).unwrap().files.len(), 170);
        assert!(shard_manifest("imagenet", 3, "").is_err());
    }

    #[test]
    fn mirror_rewrites_urls_and_keeps_checksums() {
        let manifest = shard_manifest(FINEWEB_EDU.manifest_name, 2, FINEWEB_EDU.revision).unwrap();
        assert_eq!(with_mirror(&manifest, ""), manifest);
        let mirrored = with_mirror(&manifest, "http://127.0.0.1:8080/data/");
        assert_eq!(mirrored.files[1].url, "http://127.0.0.1:8080/data/shard_00001.parquet");
        assert_eq!(mirrored.files[1].sha256, manifest.files[1].sha256);
    }

    #[test]
    fn generates_all_shards_at_the_pinned_revision() {
        // (dataset, shards, the last one's name) as the references' MAX_SHARD says.
        for (dataset, count, last) in
            [(FINEWEB_EDU, 1823, "shard_01822.parquet"), (CLIMBMIX, 6543, "shard_06542.parquet")]
        {
            let manifest = dataset.manifest("https://huggingface.co", dataset.revision, usize::MAX).unwrap();
            assert_eq!(manifest.files.len(), count);
            assert_eq!(manifest.files[0].name, "shard_00000.parquet");
            assert_eq!(manifest.files[count - 1].name, last);
            assert_eq!(
                manifest.files[7].url,
                format!(
                    "https://huggingface.co/datasets/{}/resolve/{}/shard_00007.parquet",
                    dataset.repo, dataset.revision
                )
            );
            assert!(manifest.files.iter().all(|f| !f.url.contains("/resolve/main/")));
            assert!(!crate::download::hub::is_commit_hash(dataset.revision), "still the placeholder");
            assert_eq!(dataset.manifest("http://127.0.0.1:1", "x", 3).unwrap().files.len(), 3);
        }
        assert_eq!(CLIMBMIX.repo, "karpathy/climbmix-400b-shuffle");
        assert_eq!(shard_dataset("climbmix-400b"), Some(&CLIMBMIX));
        assert_eq!(shard_dataset("smoke"), None);
    }
}
