//! Which commit of the FineWeb-Edu dataset the shard URLs name: never the moving `main` (issue 4).
//! The build's pin (`FINEWEB_EDU_REVISION`) when it has one. Until then, the commit `main` points to
//! when a base dir first downloads shards, resolved through the Hub API and recorded in
//! `data/<manifest>/revision.json`: every shard of the run, and of every later run on that base dir,
//! comes from that one commit. Like an unpinned checksum, it is flagged in the report.
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::fineweb_edu_manifest::{fineweb_edu_revision_is_placeholder, FINEWEB_EDU_REPO, FINEWEB_EDU_REVISION};

/// The record kept next to the shards.
pub const REVISION_RECORD_FILE: &str = "revision.json";
/// The Hub, or a mirror of its API (HuggingFace's own `HF_ENDPOINT` variable).
pub const DEFAULT_HUB_ENDPOINT: &str = "https://huggingface.co";

#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    #[error(
        "cannot resolve which commit of {repo} to download ({url}: {message}); with no access to the Hub, \
         set data.mirror_url to a mirror holding the shards (--set data.mirror_url=URL)"
    )]
    Resolve { repo: String, url: String, message: String },
    #[error("{path} is not a revision record ({message}): delete it to resolve the dataset commit again")]
    BadRecord { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub repo: String,
    pub commit: String,
    /// The branch it was resolved from.
    pub resolved_from: String,
    pub resolved_at: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatasetRevision {
    /// Pinned in this build.
    Pinned(String),
    /// Resolved from `main` at this base dir's first download and recorded.
    Recorded(RevisionRecord),
}

impl DatasetRevision {
    pub fn commit(&self) -> &str {
        match self {
            DatasetRevision::Pinned(commit) => commit,
            DatasetRevision::Recorded(record) => &record.commit,
        }
    }

    /// For the log and the report.
    pub fn describe(&self) -> String {
        match self {
            DatasetRevision::Pinned(commit) => format!("{FINEWEB_EDU_REPO} at commit {commit} (pinned in this build)"),
            DatasetRevision::Recorded(r) => format!(
                "{} at commit {} (**not pinned in this build**: `{}` as of {}, recorded in {REVISION_RECORD_FILE} \
                 at the first download)",
                r.repo, r.commit, r.resolved_from, r.resolved_at
            ),
        }
    }
}

/// The Hub endpoint: `HF_ENDPOINT` or huggingface.co.
pub fn hub_endpoint() -> String {
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_default();
    let endpoint = endpoint.trim().trim_end_matches('/');
    if endpoint.is_empty() {
        DEFAULT_HUB_ENDPOINT.to_string()
    } else {
        endpoint.to_string()
    }
}

/// The FineWeb-Edu commit for the shards in `shard_dir`: the build's pin, the recorded one, or `main`
/// resolved now (and recorded).
pub fn fineweb_edu_revision(shard_dir: &Path, endpoint: &str) -> Result<DatasetRevision, RevisionError> {
    if !fineweb_edu_revision_is_placeholder(FINEWEB_EDU_REVISION) {
        return Ok(DatasetRevision::Pinned(FINEWEB_EDU_REVISION.to_string()));
    }
    let path = shard_dir.join(REVISION_RECORD_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        let record: RevisionRecord = serde_json::from_str(&text)
            .map_err(|e| RevisionError::BadRecord { path: path.clone(), message: e.to_string() })?;
        if fineweb_edu_revision_is_placeholder(&record.commit) {
            return Err(RevisionError::BadRecord { path, message: format!("{:?} is not a commit", record.commit) });
        }
        return Ok(DatasetRevision::Recorded(record));
    }
    let record = RevisionRecord {
        repo: FINEWEB_EDU_REPO.to_string(),
        commit: resolve_branch(endpoint, FINEWEB_EDU_REPO, "main")?,
        resolved_from: "main".to_string(),
        resolved_at: chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
    };
    crate::fsutil::write_json_atomic(&path, &record).map_err(|source| RevisionError::Write { path, source })?;
    log::info!("dataset {FINEWEB_EDU_REPO}: `main` is commit {}; recorded for this base dir", record.commit);
    Ok(DatasetRevision::Recorded(record))
}

/// The commit a branch of a Hub dataset points to (`GET /api/datasets/<repo>/revision/<branch>` → `sha`).
fn resolve_branch(endpoint: &str, repo: &str, branch: &str) -> Result<String, RevisionError> {
    let url = format!("{endpoint}/api/datasets/{repo}/revision/{branch}");
    let failed = |message: String| RevisionError::Resolve { repo: repo.to_string(), url: url.clone(), message };
    let agent = super::remote_file::build_agent(Duration::from_secs(20), Duration::from_secs(60), "nanochat");
    let mut response = agent.get(&url).call().map_err(|e| failed(e.to_string()))?;
    if response.status() != 200 {
        return Err(failed(format!("HTTP {}", response.status())));
    }
    #[derive(Deserialize)]
    struct RevisionInfo {
        sha: String,
    }
    let text = response.body_mut().read_to_string().map_err(|e| failed(e.to_string()))?;
    let info: RevisionInfo = serde_json::from_str(&text).map_err(|e| failed(format!("unexpected answer: {e}")))?;
    if fineweb_edu_revision_is_placeholder(&info.sha) {
        return Err(failed(format!("{:?} is not a commit hash", info.sha)));
    }
    Ok(info.sha)
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
