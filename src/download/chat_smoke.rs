//! The chat data's smoke stand-ins: small files at the same repository paths as the datasets of
//! manifests/data/chat_datasets.toml (NANOCHAT.md §5.2), plus stand-ins of the identity conversations
//! and the SpellingBee word list, kept in manifests/data/chat_smoke/ and compiled into the binary by
//! build.rs from its SOURCES.toml (path, sha256, size of every file), so the container needs nothing
//! else. For the smoke preset they are written into a local Hub-shaped directory, which
//! [`LocalMirror`](super::local_mirror::LocalMirror) serves on 127.0.0.1: the revision API, the tree
//! API and the resolve URLs are answered there and the real downloader fetches every file and
//! verifies it against the sha256 of SOURCES.toml (the tree listing's LFS ids are those sha256s).
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::hub_dataset_manifest::HubDatasetManifest;
use super::manifest::{Checksum, DataManifest, ManifestError};
use super::sha256_digest::Sha256Digest;

include!(concat!(env!("OUT_DIR"), "/chat_smoke_files.rs"));

/// Where SOURCES.toml lives in the repository (for messages).
pub const CHAT_SMOKE_SOURCES_FILE: &str = "manifests/data/chat_smoke/SOURCES.toml";

#[derive(Debug, thiserror::Error)]
pub enum ChatSmokeError {
    #[error(transparent)]
    Sources(#[from] ManifestError),
    #[error("{CHAT_SMOKE_SOURCES_FILE} lists no stand-in for {what}; this build cannot serve it")]
    Missing { what: String },
    #[error("cannot write the local Hub file {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// One stand-in as SOURCES.toml records it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct StandInSource {
    /// Path under manifests/data/chat_smoke/: `<owner>/<name>/<path in the repository>`, or a plain
    /// file name for the extras.
    pub path: String,
    pub sha256: Sha256Digest,
    pub size: u64,
}

#[derive(Deserialize)]
struct SourcesFile {
    #[serde(default)]
    file: Vec<StandInSource>,
}

/// The stand-ins SOURCES.toml lists, in its order.
pub fn stand_in_sources() -> Result<Vec<StandInSource>, ManifestError> {
    let parsed: SourcesFile = toml::from_str(CHAT_SMOKE_SOURCES)
        .map_err(|e| ManifestError::Parse { path: PathBuf::from(CHAT_SMOKE_SOURCES_FILE), message: e.to_string() })?;
    Ok(parsed.file)
}

/// The embedded bytes of the stand-in at `path` (as SOURCES.toml names it).
pub fn stand_in_bytes(path: &str) -> Option<&'static [u8]> {
    CHAT_SMOKE_FILES.iter().find(|(p, _)| *p == path).map(|(_, bytes)| *bytes)
}

/// The commit the local Hub names: the first 40 hex digits of the sha256 over every (path, sha256),
/// so it changes exactly when the stand-ins do.
pub fn stand_in_commit(sources: &[StandInSource]) -> String {
    let listing: String = sources.iter().map(|s| format!("{} {}\n", s.path, s.sha256)).collect();
    Sha256Digest::of_bytes(listing.as_bytes()).as_hex()[..40].to_string()
}

/// `extras` (the chat extras manifest) pinned to the stand-ins' sha256s and sizes.
pub fn pin_extras_to_stand_ins(extras: &DataManifest) -> Result<DataManifest, ChatSmokeError> {
    let sources = stand_in_sources()?;
    let mut pinned = extras.clone();
    for entry in &mut pinned.files {
        let source = sources
            .iter()
            .find(|s| s.path == entry.name)
            .ok_or_else(|| ChatSmokeError::Missing { what: entry.name.clone() })?;
        entry.sha256 = Checksum::Pinned(source.sha256.clone());
        entry.size = Some(source.size);
    }
    Ok(pinned)
}

/// Writes the local Hub of the stand-ins under `root` and returns its commit:
/// `api/datasets/<repo>/revision/main` (`{"sha": commit}`), `api/datasets/<repo>/tree/<commit>/<dir>`
/// (the listing of every directory a pattern of `datasets` names, LFS ids = SOURCES.toml's sha256s),
/// `datasets/<repo>/resolve/<commit>/<path>` (the bytes), and the extras at `<root>/<name>`.
/// Files already there with the same bytes are left alone.
pub fn write_stand_in_hub(root: &Path, datasets: &HubDatasetManifest) -> Result<String, ChatSmokeError> {
    let sources = stand_in_sources()?;
    let commit = stand_in_commit(&sources);
    let bytes_of = |source: &StandInSource| {
        stand_in_bytes(&source.path).ok_or_else(|| ChatSmokeError::Missing { what: source.path.clone() })
    };
    for dataset in &datasets.datasets {
        let repo = &dataset.repo;
        let prefix = format!("{repo}/");
        let files: Vec<(&str, &StandInSource)> =
            sources.iter().filter_map(|s| s.path.strip_prefix(&prefix).map(|path| (path, s))).collect();
        if files.is_empty() {
            return Err(ChatSmokeError::Missing { what: format!("the dataset {repo}") });
        }
        let revision = serde_json::json!({"id": repo, "sha": commit});
        write_if_changed(&root.join(format!("api/datasets/{repo}/revision/main")), revision.to_string().as_bytes())?;
        let mut dirs: Vec<String> = dataset.patterns().iter().map(|p| p.dir().to_string()).collect();
        dirs.sort();
        dirs.dedup();
        for dir in &dirs {
            let listing: Vec<serde_json::Value> = files
                .iter()
                .filter(|(path, _)| path.rsplit_once('/').map_or("", |(d, _)| d) == dir.as_str())
                .map(|(path, source)| {
                    serde_json::json!({
                        "type": "file",
                        "oid": &source.sha256.as_hex()[..40],
                        "size": source.size,
                        "path": path,
                        "lfs": {"oid": source.sha256.as_hex(), "size": source.size, "pointerSize": 134},
                    })
                })
                .collect();
            let tree = if dir.is_empty() { format!("tree/{commit}") } else { format!("tree/{commit}/{dir}") };
            let text = serde_json::Value::Array(listing).to_string();
            write_if_changed(&root.join(format!("api/datasets/{repo}/{tree}")), text.as_bytes())?;
        }
        for (path, source) in &files {
            write_if_changed(&root.join(format!("datasets/{repo}/resolve/{commit}/{path}")), bytes_of(source)?)?;
        }
    }
    for source in sources.iter().filter(|s| !s.path.contains('/')) {
        write_if_changed(&root.join(&source.path), bytes_of(source)?)?;
    }
    Ok(commit)
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), ChatSmokeError> {
    if std::fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    crate::fsutil::write_atomic(path, bytes)
        .map_err(|source| ChatSmokeError::Write { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::bundled_manifests::{bundled_chat_datasets, bundled_manifest, CHAT_EXTRAS_MANIFEST_NAME};

    #[test]
    fn every_embedded_stand_in_matches_sources_toml() {
        let sources = stand_in_sources().unwrap();
        assert!(!sources.is_empty(), "{CHAT_SMOKE_SOURCES_FILE} lists the stand-ins");
        assert_eq!(sources.len(), CHAT_SMOKE_FILES.len(), "build.rs embeds exactly the listed files");
        for source in &sources {
            let bytes = stand_in_bytes(&source.path).unwrap_or_else(|| panic!("{} is not embedded", source.path));
            assert_eq!(bytes.len() as u64, source.size, "{}", source.path);
            assert_eq!(Sha256Digest::of_bytes(bytes), source.sha256, "{}", source.path);
        }
    }

    #[test]
    fn stand_ins_cover_every_pattern_and_extra() {
        let sources = stand_in_sources().unwrap();
        let datasets = bundled_chat_datasets().unwrap();
        for dataset in &datasets.datasets {
            for pattern in dataset.patterns() {
                let covered = sources.iter().any(|s| {
                    s.path.strip_prefix(&format!("{}/", dataset.repo)).is_some_and(|path| pattern.matches(path))
                });
                assert!(covered, "no stand-in for {}/{pattern}", dataset.repo);
            }
        }
        let extras = bundled_manifest(CHAT_EXTRAS_MANIFEST_NAME).unwrap().unwrap();
        let pinned = pin_extras_to_stand_ins(&extras).unwrap();
        assert_eq!(pinned.unpinned().count(), 0);
        // Every stand-in belongs to a dataset or is an extra.
        for source in &sources {
            let known = extras.entry(&source.path).is_some()
                || datasets
                    .datasets
                    .iter()
                    .any(|d| source.path.strip_prefix(&format!("{}/", d.repo)).is_some_and(|path| d.wants(path)));
            assert!(known, "{} is neither a dataset file nor an extra", source.path);
        }
    }

    #[test]
    fn the_local_hub_answers_the_revision_tree_and_resolve_paths() {
        let root = tempfile::tempdir().unwrap();
        let datasets = bundled_chat_datasets().unwrap();
        let commit = write_stand_in_hub(root.path(), &datasets).unwrap();
        assert_eq!(commit, stand_in_commit(&stand_in_sources().unwrap()));
        let arc = root.path().join("api/datasets/allenai/ai2_arc");
        let revision: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(arc.join("revision/main")).unwrap()).unwrap();
        assert_eq!(revision["sha"], commit.as_str());
        let listing = std::fs::read_to_string(arc.join(format!("tree/{commit}/ARC-Easy"))).unwrap();
        let files = crate::download::hub_api::parse_tree_listing(&listing).unwrap();
        assert!(files.iter().any(|f| f.path.starts_with("ARC-Easy/train-") && f.sha256.is_some()), "{files:?}");
        assert!(files.iter().all(|f| f.path.starts_with("ARC-Easy/")));
        for file in &files {
            let served = root.path().join(format!("datasets/allenai/ai2_arc/resolve/{commit}/{}", file.path));
            assert_eq!(Some(Sha256Digest::of_file(&served).unwrap()), file.sha256);
        }
        assert!(root.path().join("identity_conversations.jsonl").is_file());
        // A second write changes nothing.
        let before = std::fs::metadata(root.path().join("words_alpha.txt")).unwrap().modified().unwrap();
        assert_eq!(write_stand_in_hub(root.path(), &datasets).unwrap(), commit);
        assert_eq!(std::fs::metadata(root.path().join("words_alpha.txt")).unwrap().modified().unwrap(), before);
    }
}
