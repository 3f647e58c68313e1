//! What the chat stages read and where it comes from (NANOCHAT.md §5.2): every dataset of
//! manifests/data/chat_datasets.toml at its pinned or recorded commit, under
//! `data/hf/<owner>/<name>/<path in the repository>`, and the extras of manifests/data/chat_data.toml
//! (identity conversations, SpellingBee word list) under `data/chat-data/`. They come from the Hub
//! (`HF_ENDPOINT`), from a plain mirror (`data.mirror_url`: `<mirror>/<owner>/<name>/<path>` and
//! `<mirror>/<file name>`), or, for the smoke preset, from the stand-ins; always through the verifying
//! downloader. `nanochat data download --chat` fetches them; so does `data download` when a chat stage
//! is listed.
//!
//! The stand-ins are small files at the same repository paths as the datasets, plus stand-ins of the
//! extras, kept in manifests/data/chat_smoke/ and compiled into the binary by build.rs from its
//! SOURCES.toml (path, sha256, size of every file), so the container needs nothing else. For the smoke
//! preset they are written into a local Hub-shaped directory, which
//! [`LocalMirror`] serves on 127.0.0.1: the revision API, the tree
//! API and the resolve URLs are answered there and the real downloader fetches every file and
//! verifies it against the sha256 of SOURCES.toml (the tree listing's LFS ids are those sha256s).
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::bundled_manifests::{bundled_chat_datasets, required_manifest, with_mirror, CHAT_EXTRAS_MANIFEST_NAME};
use super::hub::{
    dataset_snapshot, hub_endpoint, DatasetSnapshot, HubDatasetManifest, RevisionError, SnapshotSource, StandInMismatch,
};
use super::local_mirror::LocalMirror;
use super::manifest::{Checksum, DataManifest, ManifestError, Sha256Digest};
use crate::paths::Paths;

include!(concat!(env!("OUT_DIR"), "/chat_smoke_files.rs"));

/// Where the chat datasets are listed, for messages.
pub const CHAT_DATASETS_MANIFEST_FILE: &str = "manifests/data/chat_datasets.toml";
/// Where the stand-ins' SOURCES.toml lives in the repository (for messages).
const CHAT_SMOKE_SOURCES_FILE: &str = "manifests/data/chat_smoke/SOURCES.toml";
/// Stages that read the chat data (a preset listing any of them downloads it).
pub const CHAT_STAGES: &[&str] = &["mid-train", "sft", "chat-eval-mid", "chat-eval-sft", "chat-eval-rl", "chat-rl"];
/// Present in `data/chat-data/` while it holds the smoke stand-ins, not the real extras.
pub const STAND_IN_MARKER: &str = ".smoke-stand-ins";

/// The line a loader prints when a chat dataset or extra is missing.
pub fn chat_data_hint() -> String {
    format!(
        "run `nanochat data download --chat` (datasets of {CHAT_DATASETS_MANIFEST_FILE} and the extras of \
         manifests/data/chat_data.toml)"
    )
}

/// Whether a preset with these `run.stages` needs the chat data.
pub fn stages_need_chat_data(stages: &[String]) -> bool {
    stages.iter().any(|stage| CHAT_STAGES.contains(&stage.as_str()))
}

/// Where the chat data lands (`data/hf/`, `data/chat-data/`): what a stage that fetches it produces.
pub fn chat_data_dirs(paths: &Paths) -> Vec<PathBuf> {
    vec![paths.data().join("hf"), paths.chat_extras()]
}

#[derive(Debug, thiserror::Error)]
pub enum ChatDataError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Snapshot(#[from] RevisionError),
    #[error("{CHAT_SMOKE_SOURCES_FILE} lists no stand-in for {what}; this build cannot serve it")]
    Missing { what: String },
    #[error("cannot serve the smoke stand-ins from {root} on 127.0.0.1: {source}")]
    Serve { root: PathBuf, source: std::io::Error },
    #[error(transparent)]
    StandIn(#[from] StandInMismatch),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Files of one directory to download, with their manifest.
#[derive(Clone, Debug)]
pub struct ChatFileGroup {
    /// `owner/name` of a dataset, or "chat extras".
    pub label: String,
    pub dir: PathBuf,
    pub manifest: DataManifest,
    /// The dataset at its commit (none for the extras).
    pub snapshot: Option<DatasetSnapshot>,
}

/// Everything the chat stages read, resolved to files and URLs. Holds the local Hub of the smoke
/// stand-ins (when used) until dropped.
pub struct ChatDownloads {
    /// Where the files come from, for the log and the report.
    pub source: String,
    /// The extras first, then the datasets in manifest order.
    pub groups: Vec<ChatFileGroup>,
    pub stand_ins: bool,
    _server: Option<LocalMirror>,
}

impl ChatDownloads {
    /// Resolves every dataset (from its record, or once through the Hub API) and the extras.
    /// `stand_ins`: the smoke preset's stand-ins, written under `<base>/mirror/chat-smoke/` and served
    /// there; else `mirror_url` when set, else the Hub at `HF_ENDPOINT`.
    pub fn resolve(paths: &Paths, stand_ins: bool, mirror_url: &str) -> Result<Self, ChatDataError> {
        let datasets = bundled_chat_datasets()?;
        let extras = required_manifest(CHAT_EXTRAS_MANIFEST_NAME)?;
        let mirror_url = mirror_url.trim().trim_end_matches('/');
        let (source, extras, server, description) = if stand_ins {
            let root = paths.base().join("mirror").join("chat-smoke");
            let commit = write_stand_in_hub(&root, &datasets)?;
            let server =
                LocalMirror::serve(&root).map_err(|source| ChatDataError::Serve { root: root.clone(), source })?;
            log::info!("serving the chat smoke stand-ins {} at {}", root.display(), server.url());
            let extras = pin_extras_to_stand_ins(&with_mirror(&extras, &server.url()))?;
            let source = SnapshotSource::StandIns { endpoint: server.url(), commit };
            let description = format!("smoke stand-ins compiled into the binary (served from {})", root.display());
            (source, extras, Some(server), description)
        } else if !mirror_url.is_empty() {
            let source = SnapshotSource::Mirror { url: mirror_url.to_string(), endpoint: hub_endpoint() };
            (source, with_mirror(&extras, mirror_url), None, format!("mirror {mirror_url}"))
        } else {
            let endpoint = hub_endpoint();
            let description = format!("the Hub at {endpoint}");
            (SnapshotSource::Hub { endpoint }, extras, None, description)
        };
        let extras_dir = paths.chat_extras();
        check_extras_origin(&extras_dir, &extras, stand_ins)?;
        let mut groups =
            vec![ChatFileGroup { label: "chat extras".into(), dir: extras_dir, manifest: extras, snapshot: None }];
        for dataset in &datasets.datasets {
            let dir = paths.hf_dataset(&dataset.repo);
            let snapshot = dataset_snapshot(dataset, &dir, &source)?;
            log::info!("dataset {}", snapshot.describe());
            groups.push(ChatFileGroup {
                label: dataset.repo.clone(),
                dir,
                manifest: snapshot.manifest(&source)?,
                snapshot: Some(snapshot),
            });
        }
        Ok(Self { source: description, groups, stand_ins, _server: server })
    }

    /// The datasets at their commits.
    pub fn snapshots(&self) -> impl Iterator<Item = &DatasetSnapshot> {
        self.groups.iter().filter_map(|g| g.snapshot.as_ref())
    }
}

/// Refuses to mix the smoke stand-ins of the extras with the real ones in one directory: the stand-ins
/// are marked with [`STAND_IN_MARKER`] (written here when a smoke run starts on an empty directory).
fn check_extras_origin(dir: &Path, extras: &DataManifest, stand_ins: bool) -> Result<(), ChatDataError> {
    let marked = dir.join(STAND_IN_MARKER).exists();
    let holds_stand_ins = marked || (stand_ins && !extras.files.iter().any(|entry| dir.join(&entry.name).exists()));
    let texts = ["the smoke stand-ins of the chat extras", "the real chat extras"];
    StandInMismatch::check(dir, texts, holds_stand_ins, stand_ins)?;
    if stand_ins && !marked {
        let marker = dir.join(STAND_IN_MARKER);
        crate::fsutil::write_atomic(&marker, b"smoke stand-ins (manifests/data/chat_smoke/), not the real files\n")
            .map_err(|source| ChatDataError::Write { path: marker, source })?;
    }
    Ok(())
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
fn stand_in_bytes(path: &str) -> Option<&'static [u8]> {
    CHAT_SMOKE_FILES.iter().find(|(p, _)| *p == path).map(|(_, bytes)| *bytes)
}

/// The commit the local Hub names: the first 40 hex digits of the sha256 over every (path, sha256),
/// so it changes exactly when the stand-ins do.
fn stand_in_commit(sources: &[StandInSource]) -> String {
    let listing: String = sources.iter().map(|s| format!("{} {}\n", s.path, s.sha256)).collect();
    Sha256Digest::of_bytes(listing.as_bytes()).as_hex()[..40].to_string()
}

/// `extras` (the chat extras manifest) pinned to the stand-ins' sha256s and sizes.
pub fn pin_extras_to_stand_ins(extras: &DataManifest) -> Result<DataManifest, ChatDataError> {
    let sources = stand_in_sources()?;
    let mut pinned = extras.clone();
    for entry in &mut pinned.files {
        let source = sources
            .iter()
            .find(|s| s.path == entry.name)
            .ok_or_else(|| ChatDataError::Missing { what: entry.name.clone() })?;
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
pub fn write_stand_in_hub(root: &Path, datasets: &HubDatasetManifest) -> Result<String, ChatDataError> {
    let sources = stand_in_sources()?;
    let commit = stand_in_commit(&sources);
    let bytes_of = |source: &StandInSource| {
        stand_in_bytes(&source.path).ok_or_else(|| ChatDataError::Missing { what: source.path.clone() })
    };
    for dataset in &datasets.datasets {
        let repo = &dataset.repo;
        let prefix = format!("{repo}/");
        let files: Vec<(&str, &StandInSource)> =
            sources.iter().filter_map(|s| s.path.strip_prefix(&prefix).map(|path| (path, s))).collect();
        if files.is_empty() {
            return Err(ChatDataError::Missing { what: format!("the dataset {repo}") });
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

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), ChatDataError> {
    crate::fsutil::write_if_changed(path, bytes)
        .map_err(|source| ChatDataError::Write { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::bundled_manifests::bundled_manifest;

    #[test]
    fn chat_stages_decide_and_the_hint_names_the_command_and_manifest() {
        let stages = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!stages_need_chat_data(&stages(&["doctor", "data", "base-train", "report"])));
        for chat in CHAT_STAGES {
            assert!(stages_need_chat_data(&stages(&["data", chat])), "{chat}");
        }
        let hint = chat_data_hint();
        assert!(hint.contains("nanochat data download --chat") && hint.contains(CHAT_DATASETS_MANIFEST_FILE));
    }

    #[test]
    fn stand_in_and_real_extras_never_share_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let extras = required_manifest(CHAT_EXTRAS_MANIFEST_NAME).unwrap();
        check_extras_origin(dir.path(), &extras, false).unwrap();
        check_extras_origin(dir.path(), &extras, true).unwrap();
        assert!(dir.path().join(STAND_IN_MARKER).exists());
        let err = check_extras_origin(dir.path(), &extras, false).unwrap_err().to_string();
        assert!(err.contains("holds the smoke stand-ins") && err.contains("--base-dir"), "{err}");

        let real = tempfile::tempdir().unwrap();
        std::fs::write(real.path().join("words_alpha.txt"), "a\n").unwrap();
        let err = check_extras_origin(real.path(), &extras, true).unwrap_err().to_string();
        assert!(err.contains("holds the real chat extras"), "{err}");
    }

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
        let files = crate::download::hub::parse_tree_listing("x", &listing).unwrap();
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
