//! The data manifests shipped inside the binary (manifests/data/*.toml, via `include_str!`), so a
//! copied binary or the container needs no checkout to know what to download and which sha256s to
//! expect (DESIGN.md "Data and artifacts"). Also: the download list of the smoke shards (built
//! locally, pinned by the corpus manifest), the mirror rewrite (`data.mirror_url`: every file from
//! `<mirror>/<file name>`), and where each manifest's files live under the base directory. The chat
//! datasets' manifest (manifests/data/chat_datasets.toml, NANOCHAT.md §5.2) lists repositories rather
//! than files: see [`hub_dataset_manifest`](super::hub_dataset_manifest).
use std::path::PathBuf;

use super::dataset_revision::hub_endpoint;
use super::fineweb_edu_manifest::fineweb_edu_manifest;
use super::hub_dataset_manifest::HubDatasetManifest;
use super::manifest::{Checksum, DataManifest, ManifestEntry, ManifestError};
use super::smoke_corpus_manifest::SmokeCorpusManifest;
use crate::paths::Paths;

/// Name of the data manifest of the generated FineWeb-Edu shard list (NANOCHAT.md §2.1).
pub const FINEWEB_EDU_MANIFEST_NAME: &str = "fineweb-edu-100b";
/// Name of the data manifest of the offline smoke corpus shards.
pub const SMOKE_MANIFEST_NAME: &str = "smoke";
/// The GPT-2/GPT-4 tiktoken files of tok-eval (NANOCHAT.md §1.6).
pub const TOKENIZERS_MANIFEST_NAME: &str = "tokenizers";
/// The chat stages' extra files: identity conversations, SpellingBee word list (NANOCHAT.md §5.2).
pub const CHAT_EXTRAS_MANIFEST_NAME: &str = "chat-data";

/// (name, TOML text) of the manifests listed as files, in the order `data pin` names them.
pub const BUNDLED_MANIFESTS: &[(&str, &str)] = &[
    (TOKENIZERS_MANIFEST_NAME, include_str!("../../manifests/data/tokenizers.toml")),
    ("eval-bundle", include_str!("../../manifests/data/eval_bundle.toml")),
    (CHAT_EXTRAS_MANIFEST_NAME, include_str!("../../manifests/data/chat_data.toml")),
];

/// The HuggingFace datasets of the chat stages (NANOCHAT.md §5.2).
pub const CHAT_DATASETS_TOML: &str = include_str!("../../manifests/data/chat_datasets.toml");

/// The chat datasets' manifest compiled into the binary.
pub fn bundled_chat_datasets() -> Result<HubDatasetManifest, ManifestError> {
    HubDatasetManifest::parse(CHAT_DATASETS_TOML, "manifests/data/chat_datasets.toml")
}

/// The smoke corpus manifest (sources and the recorded shard sha256s).
pub const SMOKE_CORPUS_TOML: &str = include_str!("../../manifests/data/smoke_corpus.toml");

/// Stand-in origin of the smoke shards: they are built on this machine and served by
/// [`LocalMirror`](super::local_mirror::LocalMirror) (or fetched from `data.mirror_url`), never from here.
pub const SMOKE_SHARDS_ORIGIN: &str = "http://127.0.0.1/nanochat-smoke-corpus";

/// Every manifest name `data pin` and the download plan know.
pub fn known_manifest_names() -> Vec<&'static str> {
    [FINEWEB_EDU_MANIFEST_NAME, SMOKE_MANIFEST_NAME]
        .into_iter()
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

/// The smoke corpus manifest compiled into the binary.
pub fn bundled_smoke_corpus() -> Result<SmokeCorpusManifest, ManifestError> {
    let path = || PathBuf::from("manifests/data/smoke_corpus.toml");
    let manifest: SmokeCorpusManifest =
        toml::from_str(SMOKE_CORPUS_TOML).map_err(|e| ManifestError::Parse { path: path(), message: e.to_string() })?;
    if manifest.corpus.shards == 0 || manifest.shards.len() != manifest.corpus.shards {
        return Err(ManifestError::Parse {
            path: path(),
            message: format!(
                "corpus.shards = {} but {} [[shard]] tables are recorded",
                manifest.corpus.shards,
                manifest.shards.len()
            ),
        });
    }
    Ok(manifest)
}

/// The first `count` smoke shards as download entries, pinned to the recorded sha256s.
pub fn smoke_shard_manifest(corpus: &SmokeCorpusManifest, count: usize) -> Result<DataManifest, ManifestError> {
    let files = corpus
        .shards
        .iter()
        .take(count)
        .map(|shard| ManifestEntry {
            name: shard.name.clone(),
            url: format!("{SMOKE_SHARDS_ORIGIN}/{}", shard.name),
            size: None,
            sha256: Checksum::Pinned(shard.sha256.clone()),
            license: "built from the pinned sdists of manifests/data/smoke_corpus.toml (their licenses apply)".into(),
        })
        .collect();
    DataManifest::new("offline smoke corpus shards (manifests/data/smoke_corpus.toml)", files)
}

/// The shard manifest a preset's `data.manifest` names, limited to its first `count` shards; FineWeb-Edu
/// URLs name `fineweb_revision` (see dataset_revision.rs) on the Hub at `hub_endpoint()`.
pub fn shard_manifest(name: &str, count: usize, fineweb_revision: &str) -> Result<DataManifest, ManifestError> {
    match name {
        FINEWEB_EDU_MANIFEST_NAME => fineweb_edu_manifest(&hub_endpoint(), fineweb_revision, count),
        SMOKE_MANIFEST_NAME => smoke_shard_manifest(&bundled_smoke_corpus()?, count),
        other => Err(ManifestError::InvalidEntry {
            name: other.to_string(),
            reason: format!("unknown shard manifest (known: {FINEWEB_EDU_MANIFEST_NAME}, {SMOKE_MANIFEST_NAME})"),
        }),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::fineweb_edu_manifest::FINEWEB_EDU_REVISION;
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
        assert_eq!(shard_manifest(FINEWEB_EDU_MANIFEST_NAME, 3, FINEWEB_EDU_REVISION).unwrap().files.len(), 3);
        assert!(shard_manifest("imagenet", 3, "").is_err());
    }

    #[test]
    fn mirror_rewrites_urls_and_keeps_checksums() {
        let manifest = shard_manifest(FINEWEB_EDU_MANIFEST_NAME, 2, FINEWEB_EDU_REVISION).unwrap();
        assert_eq!(with_mirror(&manifest, ""), manifest);
        let mirrored = with_mirror(&manifest, "http://127.0.0.1:8080/data/");
        assert_eq!(mirrored.files[1].url, "http://127.0.0.1:8080/data/shard_00001.parquet");
        assert_eq!(mirrored.files[1].sha256, manifest.files[1].sha256);
    }
}
