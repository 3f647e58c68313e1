//! What the chat stages read and where it comes from (NANOCHAT.md §5.2): every dataset of
//! manifests/data/chat_datasets.toml at its pinned or recorded commit, under
//! `data/hf/<owner>/<name>/<path in the repository>`, and the extras of manifests/data/chat_data.toml
//! (identity conversations, SpellingBee word list) under `data/chat-data/`. They come from the Hub
//! (`HF_ENDPOINT`), from a plain mirror (`data.mirror_url`: `<mirror>/<owner>/<name>/<path>` and
//! `<mirror>/<file name>`), or, for the smoke preset, from the stand-ins compiled into the binary and
//! served as a local Hub on 127.0.0.1; always through the verifying downloader.
//! `nanochat data download --chat` fetches them; so does `data download` when a chat stage is listed.
use std::path::{Path, PathBuf};

use super::bundled_manifests::{bundled_chat_datasets, required_manifest, with_mirror, CHAT_EXTRAS_MANIFEST_NAME};
use super::chat_smoke::{pin_extras_to_stand_ins, write_stand_in_hub, ChatSmokeError};
use super::hub_api::hub_endpoint;
use super::hub_dataset_snapshot::{dataset_snapshot, DatasetSnapshot, SnapshotError, SnapshotSource};
use super::local_mirror::LocalMirror;
use super::manifest::{DataManifest, ManifestError};
use crate::paths::Paths;

/// Where the chat datasets are listed, for messages.
pub const CHAT_DATASETS_MANIFEST_FILE: &str = "manifests/data/chat_datasets.toml";
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
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    StandIns(#[from] ChatSmokeError),
    #[error("cannot serve the smoke stand-ins from {root} on 127.0.0.1: {source}")]
    Serve { root: PathBuf, source: std::io::Error },
    #[error("{dir} holds {holds}, but this run wants {wants}: use another base dir (--base-dir) or delete {dir}")]
    ExtrasMismatch { dir: PathBuf, holds: &'static str, wants: &'static str },
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
    let any_present = extras.files.iter().any(|entry| dir.join(&entry.name).exists());
    let (stand_in_text, real_text) = ("the smoke stand-ins of the chat extras", "the real chat extras");
    if marked && !stand_ins {
        return Err(ChatDataError::ExtrasMismatch { dir: dir.to_path_buf(), holds: stand_in_text, wants: real_text });
    }
    if stand_ins && !marked {
        if any_present {
            return Err(ChatDataError::ExtrasMismatch {
                dir: dir.to_path_buf(),
                holds: real_text,
                wants: stand_in_text,
            });
        }
        let marker = dir.join(STAND_IN_MARKER);
        crate::fsutil::write_atomic(&marker, b"smoke stand-ins (manifests/data/chat_smoke/), not the real files\n")
            .map_err(|source| ChatDataError::Write { path: marker, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
