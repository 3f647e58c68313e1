//! A HuggingFace dataset at one commit, as the downloads see it (NANOCHAT.md §5.2; DESIGN.md "Data
//! and artifacts"): the commit (the build's pin, or `main` resolved once per base dir, see
//! [`dataset_revision`](super::dataset_revision)) and the files the manifest's patterns select in the
//! Hub's tree listing at that commit, with their sizes and LFS sha256s. Both are recorded in
//! `<dataset dir>/revision.json` (atomic write), so every later run downloads exactly these files at
//! that commit, verified against the publisher's sha256, without asking the Hub anything.
//!
//! Sources: the Hub (or a mirror of its API, `HF_ENDPOINT`); a plain mirror (`data.mirror_url`) holding
//! `<mirror>/<owner>/<name>/<path>` and, when it is a copy of a base dir's `data/hf/`, the record at
//! `<mirror>/<owner>/<name>/revision.json` (else the file list comes from the Hub); or the smoke
//! stand-ins, served as a local Hub on 127.0.0.1 (see [`chat_smoke`](super::chat_smoke)).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dataset_revision::{
    read_revision_record, resolve_main, DatasetRevision, RevisionError, RevisionRecord, REVISION_RECORD_FILE,
};
use super::hub_api::{encode_path, HubApi, TreeFile};
use super::hub_dataset_manifest::HubDataset;
use super::manifest::{is_plain_relative_path, Checksum, DataManifest, ManifestEntry, ManifestError};
use super::sha256_digest::Sha256Digest;

/// What `resolved_from` says for a commit the build pins.
const PINNED_FROM: &str = "pinned";

/// One recorded file of a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// Path inside the repository, and under the dataset's directory.
    pub path: String,
    pub size: u64,
    /// The publisher's LFS sha256; absent for a file kept in git (then the checksum ledger applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
}

impl From<TreeFile> for SnapshotFile {
    fn from(file: TreeFile) -> Self {
        Self { path: file.path, size: file.size, sha256: file.sha256 }
    }
}

/// `revision.json` of a dataset: the revision record plus the listing it was made from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    #[serde(flatten)]
    pub revision: RevisionRecord,
    /// The manifest's `files` patterns the listing was made for.
    #[serde(default)]
    pub patterns: Vec<String>,
    /// Set when the files are the smoke stand-ins, not the dataset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stand_in: bool,
    #[serde(default)]
    pub files: Vec<SnapshotFile>,
}

impl AsRef<RevisionRecord> for SnapshotRecord {
    fn as_ref(&self) -> &RevisionRecord {
        &self.revision
    }
}

/// Where the commit, the file list and the bytes come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotSource {
    /// The Hub, or a mirror of its API, at `endpoint`.
    Hub { endpoint: String },
    /// Files from `<url>/<owner>/<name>/<path>`; the file list from `<url>/<owner>/<name>/revision.json`
    /// when the mirror has it, else from the Hub at `endpoint`.
    Mirror { url: String, endpoint: String },
    /// The smoke stand-ins, answered by a local Hub at `endpoint` whose `main` is `commit`.
    StandIns { endpoint: String, commit: String },
}

impl SnapshotSource {
    /// Where the Hub API is asked.
    pub fn endpoint(&self) -> &str {
        match self {
            SnapshotSource::Hub { endpoint }
            | SnapshotSource::Mirror { endpoint, .. }
            | SnapshotSource::StandIns { endpoint, .. } => endpoint,
        }
    }

    /// Where the file at `path` of `repo` at `commit` is downloaded from.
    pub fn file_url(&self, repo: &str, commit: &str, path: &str) -> String {
        match self {
            SnapshotSource::Mirror { url, .. } => {
                format!("{}/{repo}/{}", url.trim().trim_end_matches('/'), encode_path(path))
            }
            other => HubApi::new(other.endpoint()).file_url(repo, commit, path),
        }
    }

    fn is_stand_in(&self) -> bool {
        matches!(self, SnapshotSource::StandIns { .. })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Revision(#[from] RevisionError),
    #[error(
        "cannot list the files of {repo} at commit {commit} ({url}: {message}); check the network or HF_ENDPOINT \
         (a Hub mirror), or with no access to the Hub set data.mirror_url to a mirror holding the files \
         (--set data.mirror_url=URL)"
    )]
    List { repo: String, commit: String, url: String, message: String },
    #[error("{repo} at commit {commit} has no file matching {pattern} ({found}); {advice}")]
    NoFiles { repo: String, commit: String, pattern: String, found: String, advice: String },
    #[error("cannot read the record of {repo} from the mirror ({url}: {message}); check data.mirror_url")]
    Mirror { repo: String, url: String, message: String },
    #[error(
        "{dir} holds {holds} of {repo}, but this run wants {wants}: use another base dir (--base-dir) or delete {dir}"
    )]
    StandInMismatch { repo: String, dir: PathBuf, holds: &'static str, wants: &'static str },
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// A dataset at its commit, with the files to download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetSnapshot {
    pub dataset: HubDataset,
    pub revision: DatasetRevision,
    pub files: Vec<SnapshotFile>,
    /// The smoke stand-ins rather than the dataset.
    pub stand_in: bool,
}

impl DatasetSnapshot {
    pub fn commit(&self) -> &str {
        self.revision.commit()
    }

    /// The download list: every file at its path, from `source`, with its size and (when the listing
    /// had one) the publisher's sha256 pinned.
    pub fn manifest(&self, source: &SnapshotSource) -> Result<DataManifest, ManifestError> {
        let files = self
            .files
            .iter()
            .map(|file| ManifestEntry {
                name: file.path.clone(),
                url: source.file_url(&self.dataset.repo, self.commit(), &file.path),
                size: Some(file.size),
                sha256: file.sha256.clone().map_or(Checksum::Unpinned, Checksum::Pinned),
                license: self.dataset.license.clone(),
            })
            .collect();
        DataManifest::new(format!("{} at commit {} (NANOCHAT.md §5.2)", self.dataset.repo, self.commit()), files)
    }

    /// For the log and the report.
    pub fn describe(&self) -> String {
        if self.stand_in {
            format!(
                "{}: smoke stand-ins (manifests/data/chat_smoke/) at local commit {}",
                self.dataset.repo,
                self.commit()
            )
        } else {
            self.revision.describe()
        }
    }
}

/// The snapshot of `dataset` whose files go to `dir`: the record in `dir/revision.json` when it fits
/// the manifest (no request at all), else the commit (pinned, recorded, or `main` resolved now and
/// recorded at once) listed through the Hub API and recorded with its files.
pub fn dataset_snapshot(
    dataset: &HubDataset,
    dir: &Path,
    source: &SnapshotSource,
) -> Result<DatasetSnapshot, SnapshotError> {
    let repo = dataset.repo.as_str();
    let path = dir.join(REVISION_RECORD_FILE);
    let recorded = read_revision_record::<SnapshotRecord>(&path)?;
    if let Some(record) = &recorded {
        check_record(dataset, record, &path, source, dir)?;
    }
    // The commit a record must name to be used as it is.
    let (wanted, pin) = match source {
        SnapshotSource::StandIns { commit, .. } => (Some(commit.as_str()), None),
        _ => (dataset.pinned_commit(), dataset.pinned_commit()),
    };
    let fits = |record: &SnapshotRecord| {
        wanted.is_none_or(|c| c == record.revision.commit)
            && record.patterns == dataset.files
            && !record.files.is_empty()
    };
    if let Some(record) = recorded.as_ref().filter(|r| fits(r)) {
        return Ok(snapshot_of(dataset, record.clone()));
    }
    if let SnapshotSource::Mirror { url, .. } = source {
        if let Some(record) = mirror_record(dataset, url)? {
            let same_commit = recorded.as_ref().is_none_or(|r| r.revision.commit == record.revision.commit);
            if same_commit && fits(&record) && !record.stand_in {
                replace_record(dir, recorded.as_ref(), &record)?;
                log::info!("dataset {repo}: commit {} and its file list taken from the mirror", record.revision.commit);
                return Ok(snapshot_of(dataset, record));
            }
        }
    }
    let revision = match (pin, &recorded) {
        (Some(commit), _) => RevisionRecord::now(repo, commit, PINNED_FROM),
        (None, Some(record)) if wanted.is_none_or(|c| c == record.revision.commit) => record.revision.clone(),
        _ => {
            let commit = resolve_main(repo, source.endpoint())?;
            let revision = RevisionRecord::now(repo, &commit, "main");
            // Recorded before the listing: a failed listing never lets the commit move.
            let early = SnapshotRecord {
                revision: revision.clone(),
                patterns: Vec::new(),
                stand_in: source.is_stand_in(),
                files: Vec::new(),
            };
            write_record(&path, &early)?;
            log::info!("dataset {repo}: `main` is commit {commit}; recorded for this base dir");
            revision
        }
    };
    let files = list_files(dataset, &revision.commit, pin.is_some(), source)?;
    let record = SnapshotRecord { revision, patterns: dataset.files.clone(), stand_in: source.is_stand_in(), files };
    replace_record(dir, recorded.as_ref(), &record)?;
    log::debug!(
        "dataset {repo}: {} file(s) at commit {} recorded in {}",
        record.files.len(),
        record.revision.commit,
        path.display()
    );
    Ok(snapshot_of(dataset, record))
}

/// Refuses a record that mixes stand-ins and real data, or names files the manifest does not want.
fn check_record(
    dataset: &HubDataset,
    record: &SnapshotRecord,
    path: &Path,
    source: &SnapshotSource,
    dir: &Path,
) -> Result<(), SnapshotError> {
    if record.stand_in != source.is_stand_in() {
        let (stand_ins, real) = ("the smoke stand-ins", "the real dataset");
        let (holds, wants) = if record.stand_in { (stand_ins, real) } else { (real, stand_ins) };
        return Err(SnapshotError::StandInMismatch {
            repo: dataset.repo.clone(),
            dir: dir.to_path_buf(),
            holds,
            wants,
        });
    }
    if record.revision.repo != dataset.repo {
        let message = format!("it records {:?}, not {:?}", record.revision.repo, dataset.repo);
        return Err(RevisionError::BadRecord { path: path.to_path_buf(), message }.into());
    }
    if let Some(file) = record.files.iter().find(|f| !dataset.wants(&f.path)) {
        if record.patterns == dataset.files {
            let message = format!("it lists {:?}, which no pattern of the manifest selects", file.path);
            return Err(RevisionError::BadRecord { path: path.to_path_buf(), message }.into());
        }
    }
    Ok(())
}

/// Writes `record` in place of `old` and deletes the files only `old` listed.
fn replace_record(dir: &Path, old: Option<&SnapshotRecord>, record: &SnapshotRecord) -> Result<(), SnapshotError> {
    write_record(&dir.join(REVISION_RECORD_FILE), record)?;
    if let Some(old) = old {
        remove_stale_files(dir, old, record);
    }
    Ok(())
}

/// Deletes the files a replaced record listed that the new one does not, so a loader reading
/// `<dir>/<split>-*.parquet` never mixes two commits (e.g. `train-00000-of-00004` left beside
/// `train-00000-of-00005`).
fn remove_stale_files(dir: &Path, old: &SnapshotRecord, new: &SnapshotRecord) {
    for file in old.files.iter().filter(|f| !new.files.iter().any(|n| n.path == f.path)) {
        if !is_plain_relative_path(&file.path) {
            continue;
        }
        match std::fs::remove_file(dir.join(&file.path)) {
            Ok(()) => log::info!("{}: not in commit {}; removed", file.path, new.revision.commit),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("{}: not in commit {} but cannot be removed: {e}", file.path, new.revision.commit),
        }
    }
}

fn snapshot_of(dataset: &HubDataset, record: SnapshotRecord) -> DatasetSnapshot {
    let revision = match dataset.pinned_commit() {
        Some(commit) if commit == record.revision.commit && !record.stand_in => {
            DatasetRevision::Pinned { repo: dataset.repo.clone(), commit: commit.to_string() }
        }
        _ => DatasetRevision::Recorded(record.revision),
    };
    DatasetSnapshot { dataset: dataset.clone(), revision, files: record.files, stand_in: record.stand_in }
}

fn write_record(path: &Path, record: &SnapshotRecord) -> Result<(), SnapshotError> {
    crate::fsutil::write_json_atomic(path, record)
        .map_err(|source| RevisionError::Write { path: path.to_path_buf(), source }.into())
}

/// `<mirror>/<owner>/<name>/revision.json`, if the mirror has one (404: it has none).
fn mirror_record(dataset: &HubDataset, mirror: &str) -> Result<Option<SnapshotRecord>, SnapshotError> {
    let url = format!("{}/{}/{REVISION_RECORD_FILE}", mirror.trim().trim_end_matches('/'), dataset.repo);
    let failed = |message: String| SnapshotError::Mirror { repo: dataset.repo.clone(), url: url.clone(), message };
    let text = match HubApi::new(mirror).fetch_text(&url) {
        Ok(text) => text,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(failed(e.into_url_and_message().1)),
    };
    let record: SnapshotRecord =
        serde_json::from_str(&text).map_err(|e| failed(format!("not a revision record: {e}")))?;
    if record.revision.repo != dataset.repo || record.files.iter().any(|f| !dataset.wants(&f.path)) {
        return Err(failed(format!("it does not describe the files of {} this build wants", dataset.repo)));
    }
    Ok(Some(record))
}

/// The files the patterns select at `commit`, asked of the Hub (each directory once), sorted by path.
fn list_files(
    dataset: &HubDataset,
    commit: &str,
    pinned: bool,
    source: &SnapshotSource,
) -> Result<Vec<SnapshotFile>, SnapshotError> {
    let repo = dataset.repo.as_str();
    let api = HubApi::new(source.endpoint());
    let mut listings: BTreeMap<String, Vec<TreeFile>> = BTreeMap::new();
    let mut selected: BTreeMap<String, SnapshotFile> = BTreeMap::new();
    for pattern in dataset.patterns() {
        let dir = pattern.dir().to_string();
        if !listings.contains_key(&dir) {
            let listing = match api.list_dir(repo, commit, &dir) {
                Ok(files) => files,
                Err(e) if e.is_not_found() => {
                    let found = format!("no directory {:?} at all", dir);
                    return Err(no_files(dataset, commit, &pattern.to_string(), found, pinned, source));
                }
                Err(e) => {
                    let (url, message) = e.into_url_and_message();
                    return Err(SnapshotError::List { repo: repo.into(), commit: commit.into(), url, message });
                }
            };
            listings.insert(dir.clone(), listing);
        }
        let listing = &listings[&dir];
        let matching: Vec<&TreeFile> = listing.iter().filter(|f| pattern.matches(&f.path)).collect();
        if matching.is_empty() {
            let found = format!("{} other file(s) in {:?}", listing.len(), dir);
            return Err(no_files(dataset, commit, &pattern.to_string(), found, pinned, source));
        }
        for file in matching {
            selected.insert(file.path.clone(), file.clone().into());
        }
    }
    Ok(selected.into_values().collect())
}

fn no_files(
    dataset: &HubDataset,
    commit: &str,
    pattern: &str,
    found: String,
    pinned: bool,
    source: &SnapshotSource,
) -> SnapshotError {
    let advice = if source.is_stand_in() {
        "the smoke stand-ins in manifests/data/chat_smoke/ lack it (add one and list it in SOURCES.toml)".to_string()
    } else if pinned {
        "the commit pinned in manifests/data/chat_datasets.toml does not have these files: fix the pin or the pattern"
            .to_string()
    } else {
        format!(
            "the dataset's layout at this commit is not what this build expects: pin a commit that has the files in \
             manifests/data/chat_datasets.toml, or delete data/hf/{}/{REVISION_RECORD_FILE} to resolve `main` again",
            dataset.repo
        )
    };
    SnapshotError::NoFiles {
        repo: dataset.repo.clone(),
        commit: commit.to_string(),
        pattern: pattern.to_string(),
        found,
        advice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(revision: &str) -> HubDataset {
        HubDataset {
            repo: "openai/gsm8k".into(),
            revision: revision.into(),
            files: vec!["main/train-*.parquet".into(), "main/test-*.parquet".into()],
            license: "MIT".into(),
        }
    }

    fn record(commit: &str, files: &[&str]) -> SnapshotRecord {
        SnapshotRecord {
            revision: RevisionRecord::now("openai/gsm8k", commit, "main"),
            patterns: dataset("unpinned").files,
            stand_in: false,
            files: files
                .iter()
                .map(|p| SnapshotFile { path: p.to_string(), size: 3, sha256: Some(Sha256Digest::of_bytes(b"abc")) })
                .collect(),
        }
    }

    const UNREACHABLE: &str = "http://127.0.0.1:9";

    #[test]
    fn a_fitting_record_is_used_without_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let commit = "c".repeat(40);
        let files = ["main/test-00000-of-00001.parquet", "main/train-00000-of-00001.parquet"];
        write_record(&dir.path().join(REVISION_RECORD_FILE), &record(&commit, &files)).unwrap();
        let source = SnapshotSource::Hub { endpoint: UNREACHABLE.into() };
        let snapshot = dataset_snapshot(&dataset("unpinned"), dir.path(), &source).unwrap();
        assert_eq!(snapshot.commit(), commit);
        assert!(!snapshot.revision.is_pinned());
        let manifest = snapshot.manifest(&source).unwrap();
        assert_eq!(manifest.files[1].name, files[1]);
        assert_eq!(manifest.files[1].url, format!("{UNREACHABLE}/datasets/openai/gsm8k/resolve/{commit}/{}", files[1]));
        assert_eq!(manifest.files[1].size, Some(3));
        assert_eq!(manifest.files[1].sha256, Checksum::Pinned(Sha256Digest::of_bytes(b"abc")));

        // The same commit pinned by the build: reported as pinned, still no request.
        let pinned = dataset_snapshot(&dataset(&commit), dir.path(), &source).unwrap();
        assert!(pinned.revision.is_pinned() && pinned.describe().contains("pinned in this build"));

        // A file kept in git (no LFS sha256): unpinned, so the downloader's ledger policy applies.
        let mut git_file = record(&commit, &files);
        git_file.files[0].sha256 = None;
        let unpinned = snapshot_of(&dataset("unpinned"), git_file).manifest(&source).unwrap();
        assert_eq!(unpinned.files[0].sha256, Checksum::Unpinned);
        assert_eq!(unpinned.files[0].size, Some(3));

        // A plain mirror: files at <mirror>/<repo>/<path>.
        let mirror = SnapshotSource::Mirror { url: "http://m:1/hf/".into(), endpoint: UNREACHABLE.into() };
        let snapshot = dataset_snapshot(&dataset("unpinned"), dir.path(), &mirror).unwrap();
        assert_eq!(
            snapshot.manifest(&mirror).unwrap().files[0].url,
            format!("http://m:1/hf/openai/gsm8k/{}", files[0])
        );
    }

    #[test]
    fn damaged_or_foreign_records_are_refused_with_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REVISION_RECORD_FILE);
        let source = SnapshotSource::Hub { endpoint: UNREACHABLE.into() };
        std::fs::write(&path, "{\"repo\": \"openai/gsm8k\", \"commit\": ").unwrap();
        let err = dataset_snapshot(&dataset("unpinned"), dir.path(), &source).unwrap_err().to_string();
        assert!(err.contains("is not a revision record") && err.contains("delete it"), "{err}");

        write_record(&path, &record(&"c".repeat(40), &["main/../../escape.parquet"])).unwrap();
        let err = dataset_snapshot(&dataset("unpinned"), dir.path(), &source).unwrap_err().to_string();
        assert!(err.contains("no pattern of the manifest selects") && err.contains("delete it"), "{err}");

        let mut stand_in = record(&"c".repeat(40), &["main/test-0.parquet"]);
        stand_in.stand_in = true;
        write_record(&path, &stand_in).unwrap();
        let err = dataset_snapshot(&dataset("unpinned"), dir.path(), &source).unwrap_err().to_string();
        assert!(err.contains("holds the smoke stand-ins") && err.contains("--base-dir"), "{err}");
    }

    #[test]
    fn a_new_pin_is_listed_and_the_files_only_the_old_commit_had_are_removed() {
        let (old_commit, new_commit) = ("c".repeat(40), "e".repeat(40));
        let dir = tempfile::tempdir().unwrap();
        let old_files = ["main/test-00000-of-00001.parquet", "main/train-00000-of-00002.parquet"];
        write_record(&dir.path().join(REVISION_RECORD_FILE), &record(&old_commit, &old_files)).unwrap();
        for file in old_files {
            crate::fsutil::write_atomic(&dir.path().join(file), b"abc").unwrap();
        }
        // A Hub with the new commit: train is now one file of another name.
        let hub = tempfile::tempdir().unwrap();
        let listing = serde_json::json!([
            {"type": "file", "path": "main/test-00000-of-00001.parquet", "size": 3,
             "lfs": {"oid": Sha256Digest::of_bytes(b"abc").as_hex(), "size": 3}},
            {"type": "file", "path": "main/train-00000-of-00001.parquet", "size": 3,
             "lfs": {"oid": Sha256Digest::of_bytes(b"xyz").as_hex(), "size": 3}},
        ]);
        let tree = hub.path().join(format!("api/datasets/openai/gsm8k/tree/{new_commit}/main"));
        crate::fsutil::write_atomic(&tree, listing.to_string().as_bytes()).unwrap();
        let server = crate::download::LocalMirror::serve(hub.path()).unwrap();
        let source = SnapshotSource::Hub { endpoint: server.url() };

        let snapshot = dataset_snapshot(&dataset(&new_commit), dir.path(), &source).unwrap();
        assert!(snapshot.revision.is_pinned());
        let paths: Vec<_> = snapshot.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["main/test-00000-of-00001.parquet", "main/train-00000-of-00001.parquet"]);
        assert!(dir.path().join(old_files[0]).exists(), "still listed: kept (the downloader re-checks it)");
        assert!(!dir.path().join(old_files[1]).exists(), "only the old commit had it: removed");
        let recorded: SnapshotRecord = read_revision_record(&dir.path().join(REVISION_RECORD_FILE)).unwrap().unwrap();
        assert_eq!(
            (recorded.revision.commit.as_str(), recorded.revision.resolved_from.as_str()),
            (new_commit.as_str(), PINNED_FROM)
        );
    }

    #[test]
    fn an_unreachable_hub_names_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        let source = SnapshotSource::Hub { endpoint: UNREACHABLE.into() };
        let err = dataset_snapshot(&dataset("unpinned"), dir.path(), &source).unwrap_err().to_string();
        assert!(err.contains("cannot resolve which commit of openai/gsm8k"), "{err}");
        assert!(err.contains("HF_ENDPOINT") && err.contains("data.mirror_url"), "{err}");
        // A pinned commit needs no resolution, but the listing still needs the Hub.
        let err = dataset_snapshot(&dataset(&"d".repeat(40)), dir.path(), &source).unwrap_err().to_string();
        assert!(err.contains("cannot list the files of openai/gsm8k"), "{err}");
        assert!(err.contains("HF_ENDPOINT") && err.contains("data.mirror_url"), "{err}");
        assert!(!dir.path().join(REVISION_RECORD_FILE).exists(), "nothing recorded");
    }
}
