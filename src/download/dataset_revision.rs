//! Which commit of a HuggingFace dataset the download URLs name: never the moving `main` (issue 4).
//! The build's pin when it has one. Until then, the commit `main` points to when a base dir first
//! downloads the dataset, resolved through the Hub API and recorded in `revision.json` in the
//! dataset's directory: every file of the run, and of every later run on that base dir, comes from
//! that one commit. Like an unpinned checksum, it is flagged in the report. Used for the FineWeb-Edu
//! shards (`data/<manifest>/revision.json`, NANOCHAT.md §2.1) and the chat datasets
//! (`data/hf/<owner>/<name>/revision.json`, §5.2, which also records their file list: see
//! [`hub_dataset_snapshot`](super::hub_dataset_snapshot)).
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::fineweb_edu_manifest::{FINEWEB_EDU_REPO, FINEWEB_EDU_REVISION};
pub use super::hub_api::hub_endpoint;
use super::hub_api::{is_commit_hash, HubApi, HubApiError};

/// The record kept next to the dataset's files.
pub const REVISION_RECORD_FILE: &str = "revision.json";

#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    #[error(
        "cannot resolve which commit of {repo} to download ({url}: {message}); check the network or HF_ENDPOINT \
         (a Hub mirror), or with no access to the Hub set data.mirror_url to a mirror holding the files \
         (--set data.mirror_url=URL)"
    )]
    Resolve { repo: String, url: String, message: String },
    #[error("{path} is not a revision record ({message}): delete it to resolve the dataset commit again")]
    BadRecord { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl RevisionError {
    fn resolve(repo: &str, error: HubApiError) -> Self {
        let (url, message) = error.into_url_and_message();
        RevisionError::Resolve { repo: repo.to_string(), url, message }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub repo: String,
    pub commit: String,
    /// The branch it was resolved from.
    pub resolved_from: String,
    pub resolved_at: String,
}

impl RevisionRecord {
    /// A record of `commit`, taken from `resolved_from` now.
    pub fn now(repo: &str, commit: &str, resolved_from: &str) -> Self {
        Self {
            repo: repo.to_string(),
            commit: commit.to_string(),
            resolved_from: resolved_from.to_string(),
            resolved_at: chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetRevision {
    /// Pinned in this build.
    Pinned { repo: String, commit: String },
    /// Resolved from `main` at this base dir's first download and recorded.
    Recorded(RevisionRecord),
}

impl DatasetRevision {
    pub fn commit(&self) -> &str {
        match self {
            DatasetRevision::Pinned { commit, .. } => commit,
            DatasetRevision::Recorded(record) => &record.commit,
        }
    }

    pub fn is_pinned(&self) -> bool {
        matches!(self, DatasetRevision::Pinned { .. })
    }

    /// For the log and the report.
    pub fn describe(&self) -> String {
        match self {
            DatasetRevision::Pinned { repo, commit } => format!("{repo} at commit {commit} (pinned in this build)"),
            DatasetRevision::Recorded(r) => format!(
                "{} at commit {} (**not pinned in this build**: `{}` as of {}, recorded in {REVISION_RECORD_FILE} \
                 at the first download)",
                r.repo, r.commit, r.resolved_from, r.resolved_at
            ),
        }
    }
}

/// Reads the record at `path` as `T` (a [`RevisionRecord`] or a record that extends it); `None` when
/// there is none, an error naming the way out when it is damaged or names no commit.
pub fn read_revision_record<T: DeserializeOwned + AsRef<RevisionRecord>>(
    path: &Path,
) -> Result<Option<T>, RevisionError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RevisionError::BadRecord { path: path.to_path_buf(), message: e.to_string() }),
    };
    let record: T = serde_json::from_str(&text)
        .map_err(|e| RevisionError::BadRecord { path: path.to_path_buf(), message: e.to_string() })?;
    let commit = &record.as_ref().commit;
    if !is_commit_hash(commit) {
        return Err(RevisionError::BadRecord {
            path: path.to_path_buf(),
            message: format!("{commit:?} is not a commit"),
        });
    }
    Ok(Some(record))
}

impl AsRef<RevisionRecord> for RevisionRecord {
    fn as_ref(&self) -> &RevisionRecord {
        self
    }
}

/// The commit of dataset `repo` whose files go to `dir`: `pinned` (the build's pin, when it is a
/// commit), else the one recorded in `dir/revision.json`, else `main` resolved now through the Hub
/// at `endpoint` (and recorded).
pub fn dataset_revision(
    repo: &str,
    pinned: Option<&str>,
    dir: &Path,
    endpoint: &str,
) -> Result<DatasetRevision, RevisionError> {
    if let Some(commit) = pinned.filter(|c| is_commit_hash(c)) {
        return Ok(DatasetRevision::Pinned { repo: repo.to_string(), commit: commit.to_string() });
    }
    let path = dir.join(REVISION_RECORD_FILE);
    if let Some(record) = read_revision_record::<RevisionRecord>(&path)? {
        return Ok(DatasetRevision::Recorded(record));
    }
    let commit = resolve_main(repo, endpoint)?;
    let record = RevisionRecord::now(repo, &commit, "main");
    crate::fsutil::write_json_atomic(&path, &record).map_err(|source| RevisionError::Write { path, source })?;
    log::info!("dataset {repo}: `main` is commit {commit}; recorded for this base dir");
    Ok(DatasetRevision::Recorded(record))
}

/// The commit `main` of dataset `repo` points to now, asked of the Hub at `endpoint`.
pub fn resolve_main(repo: &str, endpoint: &str) -> Result<String, RevisionError> {
    HubApi::new(endpoint).branch_commit(repo, "main").map_err(|e| RevisionError::resolve(repo, e))
}

/// The FineWeb-Edu commit for the shards in `shard_dir`: the build's pin, the recorded one, or `main`
/// resolved now (and recorded).
pub fn fineweb_edu_revision(shard_dir: &Path, endpoint: &str) -> Result<DatasetRevision, RevisionError> {
    dataset_revision(FINEWEB_EDU_REPO, Some(FINEWEB_EDU_REVISION), shard_dir, endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_commit_is_used_and_a_damaged_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let unreachable = "http://127.0.0.1:9";
        let record = RevisionRecord {
            repo: FINEWEB_EDU_REPO.into(),
            commit: "c".repeat(40),
            resolved_from: "main".into(),
            resolved_at: "2026-11-24 06:00:00".into(),
        };
        crate::fsutil::write_json_atomic(&dir.path().join(REVISION_RECORD_FILE), &record).unwrap();
        let revision = fineweb_edu_revision(dir.path(), unreachable).unwrap();
        assert_eq!(revision, DatasetRevision::Recorded(record), "no Hub request needed");
        assert!(revision.describe().contains("**not pinned in this build**"));

        std::fs::write(dir.path().join(REVISION_RECORD_FILE), "{\"commit\": 3").unwrap();
        let err = fineweb_edu_revision(dir.path(), unreachable).unwrap_err().to_string();
        assert!(err.contains("is not a revision record") && err.contains("delete it"), "{err}");
        let not_a_commit = r#"{"repo":"r","commit":"main","resolved_from":"main","resolved_at":"x"}"#;
        std::fs::write(dir.path().join(REVISION_RECORD_FILE), not_a_commit).unwrap();
        let err = fineweb_edu_revision(dir.path(), unreachable).unwrap_err().to_string();
        assert!(err.contains("\"main\" is not a commit"), "{err}");
    }
}
