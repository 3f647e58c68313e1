//! HuggingFace datasets at a fixed commit (DESIGN.md "Data and artifacts"; NANOCHAT.md §2.1, §5.2).
//!
//! The Hub API calls the downloads make: which commit a branch points to (`GET
//! /api/datasets/<repo>/revision/<branch>` → `sha`), which files a directory holds at a commit (`GET
//! /api/datasets/<repo>/tree/<commit>/<dir>` → `[{type, path, size, lfs: {oid, size}}]`, paged with
//! `Link: <…>; rel="next"`), and the URL a file is downloaded from (`/datasets/<repo>/resolve/<commit>/<path>`).
//! The LFS `oid` of a file is its sha256: the publisher's checksum, which the downloader then verifies
//! the bytes against. The endpoint is `HF_ENDPOINT` (HuggingFace's own variable) or huggingface.co.
//!
//! Download URLs never name the moving `main` (issue 4): they name the build's pin when it has one;
//! until then the commit `main` points to when a base dir first downloads the dataset, recorded in
//! `revision.json` in the dataset's directory, so every file of the run and of every later run on
//! that base dir comes from that one commit (flagged in the report, like an unpinned checksum). Used
//! for the pretraining shards on the Hub (`data/<manifest>/revision.json`) and the chat datasets
//! (`data/hf/<owner>/<name>/revision.json`), whose record also lists the files the manifest's patterns
//! select in the Hub's tree listing at that commit, with their sizes and LFS sha256s, so later runs
//! ask the Hub nothing.
//!
//! The chat datasets' manifest (manifests/data/chat_datasets.toml) names repositories, not files:
//!
//! ```toml
//! description = "Datasets of the chat stages (NANOCHAT.md §5.2)"
//! [[dataset]]
//! repo = "allenai/ai2_arc"
//! revision = "unpinned"    # or the 40-hex commit
//! files = ["ARC-Easy/train-*.parquet", "ARC-Easy/test-*.parquet"]
//! license = "CC BY-SA 4.0"
//! ```
//!
//! Sources: the Hub (or a mirror of its API, `HF_ENDPOINT`); a plain mirror (`data.mirror_url`) holding
//! `<mirror>/<owner>/<name>/<path>` and, when it is a copy of a base dir's `data/hf/`, the record at
//! `<mirror>/<owner>/<name>/revision.json` (else the file list comes from the Hub); or the smoke
//! stand-ins, served as a local Hub on 127.0.0.1 (see [`chat_data`](super::chat_data)).
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::bundled_manifests::ShardDataset;
use super::downloader::{build_agent, resolve_location};
use super::manifest::{
    is_plain_relative_path, Checksum, DataManifest, ManifestEntry, ManifestError, Sha256Digest, LEDGER_FILE_NAME,
    UNPINNED,
};
use crate::fsutil::PARTIAL_SUFFIX;

/// The record kept next to the dataset's files.
pub const REVISION_RECORD_FILE: &str = "revision.json";
/// Pages of one directory listing followed before giving up (the Hub pages 1,000 entries at a time).
const MAX_TREE_PAGES: usize = 100;
/// What `resolved_from` says for a commit the build pins.
const PINNED_FROM: &str = "pinned";

/// The Hub endpoint: `HF_ENDPOINT` or huggingface.co.
pub fn hub_endpoint() -> String {
    let endpoint = std::env::var("HF_ENDPOINT").unwrap_or_default();
    match endpoint.trim().trim_end_matches('/') {
        "" => "https://huggingface.co".to_string(),
        endpoint => endpoint.to_string(),
    }
}

/// True for a full git commit hash (40 hex digits), the only revision a download may name.
pub fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A Hub request that failed: the URL asked and what went wrong.
#[derive(Debug, thiserror::Error)]
#[error("{url}: {message}")]
pub struct HubApiError {
    pub url: String,
    pub message: String,
    /// The Hub answered 404: no such dataset, branch, commit or directory.
    pub not_found: bool,
}

impl HubApiError {
    fn new(url: &str, message: impl ToString) -> Self {
        Self { url: url.to_string(), message: message.to_string(), not_found: false }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    #[error(
        "cannot resolve which commit of {repo} to download ({source}); check the network or HF_ENDPOINT \
         (a Hub mirror), or with no access to the Hub set data.mirror_url to a mirror holding the files \
         (--set data.mirror_url=URL)"
    )]
    Resolve { repo: String, source: HubApiError },
    #[error("{path} is not a revision record ({message}): delete it to resolve the dataset commit again")]
    BadRecord { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot list the files of {repo} at commit {commit} ({source}); check the network or HF_ENDPOINT \
         (a Hub mirror), or with no access to the Hub set data.mirror_url to a mirror holding the files \
         (--set data.mirror_url=URL)"
    )]
    List { repo: String, commit: String, source: HubApiError },
    #[error("{repo} at commit {commit} has no file matching {pattern} ({found}); {advice}")]
    NoFiles { repo: String, commit: String, pattern: String, found: String, advice: String },
    #[error("cannot read the record of {repo} from the mirror ({url}: {message}); check data.mirror_url")]
    Mirror { repo: String, url: String, message: String },
    #[error(transparent)]
    StandIn(#[from] StandInMismatch),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// A directory holds the smoke stand-ins where the real data is wanted, or the other way round.
#[derive(Debug, thiserror::Error)]
#[error("{dir} holds {holds}, but this run wants {wants}: use another base dir (--base-dir) or delete {dir}")]
pub struct StandInMismatch {
    pub dir: PathBuf,
    pub holds: String,
    pub wants: String,
}

impl StandInMismatch {
    /// `Err` when `dir` holds the stand-ins (`holds_stand_in`) and this run wants the real data or the
    /// other way round; `[stand_in, real]` say what each is.
    pub fn check(dir: &Path, [stand_in, real]: [&str; 2], holds_stand_in: bool, wants: bool) -> Result<(), Self> {
        let text = |is_stand_in: bool| if is_stand_in { stand_in.to_string() } else { real.to_string() };
        if holds_stand_in == wants {
            return Ok(());
        }
        Err(Self { dir: dir.to_path_buf(), holds: text(holds_stand_in), wants: text(wants) })
    }
}

/// One file of a dataset: in a tree listing, and as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HubFile {
    /// Path inside the repository (`ARC-Easy/train-00000-of-00001.parquet`), and under the dataset's directory.
    pub path: String,
    /// Size in bytes (of the LFS object for an LFS file, not of its pointer).
    pub size: u64,
    /// The LFS object id, which is the file's sha256; `None` for a file stored in git itself, whose
    /// `oid` is a git blob id (then the downloader's unpinned-checksum policy applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256Digest>,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    lfs: Option<LfsInfo>,
}

#[derive(Deserialize)]
struct LfsInfo {
    oid: String,
    #[serde(default)]
    size: Option<u64>,
}

/// The files (not directories) of one page of a tree listing read from `url`.
pub fn parse_tree_listing(url: &str, json: &str) -> Result<Vec<HubFile>, HubApiError> {
    let entries: Vec<TreeEntry> =
        serde_json::from_str(json).map_err(|e| HubApiError::new(url, format!("not a tree listing: {e}")))?;
    let mut files = Vec::new();
    for entry in entries.into_iter().filter(|e| e.kind == "file") {
        if !is_plain_relative_path(&entry.path) {
            return Err(HubApiError::new(url, format!("{:?} is not a plain relative path", entry.path)));
        }
        let (size, sha256) = match entry.lfs {
            Some(lfs) => (lfs.size.or(entry.size), Sha256Digest::parse(&lfs.oid)),
            None => (entry.size, None),
        };
        let size = size.ok_or_else(|| HubApiError::new(url, format!("{} has no size", entry.path)))?;
        files.push(HubFile { path: entry.path, size, sha256 });
    }
    Ok(files)
}

/// The `rel="next"` target of a `Link` header, if any.
fn next_page(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let next = params.split(';').any(|p| p.trim().replace(' ', "") == "rel=\"next\"");
        next.then(|| target.trim().trim_start_matches('<').trim_end_matches('>'))
    })
}

/// Percent-encodes everything but unreserved characters and `/` in a repository path.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A client of one Hub endpoint.
pub struct HubApi {
    endpoint: String,
    agent: ureq::Agent,
}

impl HubApi {
    pub fn new(endpoint: &str) -> Self {
        let user_agent = format!("nanochat/{}", env!("CARGO_PKG_VERSION"));
        let agent = build_agent(Duration::from_secs(20), Duration::from_secs(60), &user_agent);
        Self { endpoint: endpoint.trim().trim_end_matches('/').to_string(), agent }
    }

    /// Where the file at `path` of dataset `repo` at `commit` is downloaded from.
    pub fn file_url(&self, repo: &str, commit: &str, path: &str) -> String {
        format!("{}/datasets/{repo}/resolve/{commit}/{}", self.endpoint, encode_path(path))
    }

    /// The first URL [`Self::list_dir`] asks (`dir` empty: the top of the repository).
    fn tree_url(&self, repo: &str, commit: &str, dir: &str) -> String {
        let dir = if dir.is_empty() { String::new() } else { format!("/{}", encode_path(dir)) };
        format!("{}/api/datasets/{repo}/tree/{commit}{dir}", self.endpoint)
    }

    /// The commit `branch` of dataset `repo` points to.
    pub fn branch_commit(&self, repo: &str, branch: &str) -> Result<String, HubApiError> {
        let url = format!("{}/api/datasets/{repo}/revision/{branch}", self.endpoint);
        #[derive(Deserialize)]
        struct RevisionInfo {
            sha: String,
        }
        let info: RevisionInfo = serde_json::from_str(&self.get(&url)?.0).map_err(|e| HubApiError::new(&url, e))?;
        if !is_commit_hash(&info.sha) {
            return Err(HubApiError::new(&url, format!("{:?} is not a commit hash", info.sha)));
        }
        Ok(info.sha.to_ascii_lowercase())
    }

    /// Every file directly inside `dir` of dataset `repo` at `commit` (all pages).
    pub fn list_dir(&self, repo: &str, commit: &str, dir: &str) -> Result<Vec<HubFile>, HubApiError> {
        let mut url = self.tree_url(repo, commit, dir);
        let mut files = Vec::new();
        for _ in 0..MAX_TREE_PAGES {
            let (text, next) = self.get(&url)?;
            files.extend(parse_tree_listing(&url, &text)?);
            match next {
                Some(next) => url = next,
                None => return Ok(files),
            }
        }
        Err(HubApiError::new(&url, format!("more than {MAX_TREE_PAGES} pages")))
    }

    /// GET `url` (any URL, e.g. a record on a plain mirror): its body and the absolute URL of the next
    /// page, if the answer has one.
    pub fn get(&self, url: &str) -> Result<(String, Option<String>), HubApiError> {
        let mut response = self.agent.get(url).call().map_err(|e| HubApiError::new(url, e))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(HubApiError { not_found: status == 404, ..HubApiError::new(url, format!("HTTP {status}")) });
        }
        let next = response
            .headers()
            .get("link")
            .and_then(|v| v.to_str().ok())
            .and_then(next_page)
            .map(|target| resolve_location(url, target));
        let text = response.body_mut().read_to_string().map_err(|e| HubApiError::new(url, e))?;
        Ok((text, next))
    }
}

/// `revision.json` of a dataset: the commit, and for a chat dataset the listing it was made from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub repo: String,
    pub commit: String,
    /// The branch it was resolved from (`pinned` for a commit the build pins).
    pub resolved_from: String,
    pub resolved_at: String,
    /// The manifest's `files` patterns the listing was made for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patterns: Vec<String>,
    /// Set when the files are the smoke stand-ins, not the dataset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stand_in: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<HubFile>,
}

impl RevisionRecord {
    /// A record of `commit`, taken from `resolved_from` now.
    pub fn now(repo: &str, commit: &str, resolved_from: &str) -> Self {
        Self {
            repo: repo.to_string(),
            commit: commit.to_string(),
            resolved_from: resolved_from.to_string(),
            resolved_at: chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
            ..Self::default()
        }
    }

    fn write(&self, path: &Path) -> Result<(), RevisionError> {
        crate::fsutil::write_json_atomic(path, self)
            .map_err(|source| RevisionError::Write { path: path.to_path_buf(), source })
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

/// Reads the record at `path`; `None` when there is none, an error naming the way out when it is
/// damaged or names no commit.
pub fn read_revision_record(path: &Path) -> Result<Option<RevisionRecord>, RevisionError> {
    let bad = |message: String| RevisionError::BadRecord { path: path.to_path_buf(), message };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(e.to_string())),
    };
    let record: RevisionRecord = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if !is_commit_hash(&record.commit) {
        return Err(bad(format!("{:?} is not a commit", record.commit)));
    }
    Ok(Some(record))
}

/// The commit `main` of dataset `repo` points to now, asked of the Hub at `endpoint`.
pub fn resolve_main(repo: &str, endpoint: &str) -> Result<String, RevisionError> {
    HubApi::new(endpoint)
        .branch_commit(repo, "main")
        .map_err(|source| RevisionError::Resolve { repo: repo.into(), source })
}

/// The commit of shard `dataset` for the shards in `shard_dir`: the build's pin (when it is a commit),
/// else the one recorded in `shard_dir/revision.json`, else `main` resolved now through the Hub at
/// `endpoint` (and recorded).
pub fn dataset_revision(
    dataset: &ShardDataset,
    shard_dir: &Path,
    endpoint: &str,
) -> Result<DatasetRevision, RevisionError> {
    let repo = dataset.repo;
    if is_commit_hash(dataset.revision) {
        return Ok(DatasetRevision::Pinned { repo: repo.to_string(), commit: dataset.revision.to_string() });
    }
    let path = shard_dir.join(REVISION_RECORD_FILE);
    if let Some(record) = read_revision_record(&path)? {
        return Ok(DatasetRevision::Recorded(record));
    }
    let commit = resolve_main(repo, endpoint)?;
    let record = RevisionRecord::now(repo, &commit, "main");
    record.write(&path)?;
    log::info!("dataset {repo}: `main` is commit {commit}; recorded for this base dir");
    Ok(DatasetRevision::Recorded(record))
}

/// One dataset repository and the files of it that are needed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubDataset {
    /// `owner/name` on the Hub.
    pub repo: String,
    /// The commit to download (40 hex digits), or `unpinned`: then `main` is resolved once per base dir.
    pub revision: String,
    /// `dir/glob` patterns of the needed files (`*` matches within the file name only).
    pub files: Vec<String>,
    /// Who publishes the data and under which terms.
    pub license: String,
}

impl HubDataset {
    /// The commit this build pins, if any.
    pub fn pinned_commit(&self) -> Option<&str> {
        is_commit_hash(&self.revision).then_some(self.revision.as_str())
    }

    /// The parsed `files` patterns (valid once the manifest parsed).
    pub fn patterns(&self) -> Vec<FilePattern> {
        self.files.iter().filter_map(|p| FilePattern::parse(p).ok()).collect()
    }

    /// Whether `path` (inside the repository) is one of the needed files.
    pub fn wants(&self, path: &str) -> bool {
        self.patterns().iter().any(|p| p.matches(path))
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |reason: String| ManifestError::InvalidEntry { name: self.repo.clone(), reason };
        let name_ok = |part: &str| {
            !part.is_empty()
                && !part.starts_with('.')
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        };
        match self.repo.split_once('/') {
            Some((owner, name)) if name_ok(owner) && name_ok(name) => {}
            _ => return Err(invalid("repo must be `owner/name`".into())),
        }
        if self.revision != UNPINNED && !is_commit_hash(&self.revision) {
            return Err(invalid(format!("revision {:?} must be a 40-hex commit or {UNPINNED:?}", self.revision)));
        }
        if self.files.is_empty() {
            return Err(invalid("files lists no pattern".into()));
        }
        for pattern in &self.files {
            FilePattern::parse(pattern).map_err(|reason| invalid(format!("files pattern {pattern:?}: {reason}")))?;
        }
        if self.license.trim().is_empty() {
            return Err(invalid("license note is empty".into()));
        }
        Ok(())
    }
}

/// Why a `files` pattern of a dataset is refused.
#[derive(Debug, thiserror::Error)]
pub enum PatternError {
    #[error("`*` may only appear in the file name")]
    StarInDir,
    #[error("must be a relative path of plain names (no `..`, nothing hidden)")]
    NotPlain,
    #[error("names a file the downloader keeps for itself")]
    Reserved,
}

/// A `dir/glob` pattern: the files directly inside `dir` whose name matches `glob` (`*` = any run of
/// characters). `dir` may be nested or empty (the top of the repository).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePattern {
    dir: String,
    glob: String,
}

impl FilePattern {
    pub fn parse(pattern: &str) -> Result<Self, PatternError> {
        let (dir, glob) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        if dir.contains('*') {
            return Err(PatternError::StarInDir);
        }
        if !is_plain_relative_path(pattern) {
            return Err(PatternError::NotPlain);
        }
        if glob.ends_with(PARTIAL_SUFFIX)
            || (dir.is_empty() && [REVISION_RECORD_FILE, LEDGER_FILE_NAME].contains(&glob))
        {
            return Err(PatternError::Reserved);
        }
        Ok(Self { dir: dir.to_string(), glob: glob.to_string() })
    }

    /// The directory the Hub is asked to list ("" = the top of the repository).
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// Whether `path` (inside the repository) is directly inside `dir` with a matching name.
    pub fn matches(&self, path: &str) -> bool {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        dir == self.dir && glob_matches(&self.glob, name)
    }
}

impl std::fmt::Display for FilePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.dir.is_empty() {
            f.write_str(&self.glob)
        } else {
            write!(f, "{}/{}", self.dir, self.glob)
        }
    }
}

/// `*` matches any run of characters (possibly none); everything else matches itself.
fn glob_matches(glob: &str, name: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else { return false };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else { return rest.is_empty() };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// A list of dataset repositories, in download order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubDatasetManifest {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, rename = "dataset")]
    pub datasets: Vec<HubDataset>,
}

impl HubDatasetManifest {
    /// Parses the TOML `text` of the manifest at `path` (the path is for messages only).
    pub fn parse(text: &str, path: &str) -> Result<Self, ManifestError> {
        let manifest: Self = toml::from_str(text)
            .map_err(|e| ManifestError::Parse { path: PathBuf::from(path), message: e.to_string() })?;
        let mut seen = HashSet::new();
        for dataset in &manifest.datasets {
            dataset.validate()?;
            if !seen.insert(dataset.repo.as_str()) {
                return Err(ManifestError::InvalidEntry {
                    name: dataset.repo.clone(),
                    reason: "listed more than once".into(),
                });
            }
        }
        Ok(manifest)
    }

    pub fn dataset(&self, repo: &str) -> Option<&HubDataset> {
        self.datasets.iter().find(|d| d.repo == repo)
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

/// A dataset at its commit, with the files to download.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetSnapshot {
    pub dataset: HubDataset,
    pub revision: DatasetRevision,
    pub files: Vec<HubFile>,
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
            let (repo, commit) = (&self.dataset.repo, self.commit());
            format!("{repo}: smoke stand-ins (manifests/data/chat_smoke/) at local commit {commit}")
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
) -> Result<DatasetSnapshot, RevisionError> {
    let repo = dataset.repo.as_str();
    let path = dir.join(REVISION_RECORD_FILE);
    let recorded = read_revision_record(&path)?;
    if let Some(record) = &recorded {
        check_record(dataset, record, &path, source, dir)?;
    }
    // The commit a record must name to be used as it is.
    let (wanted, pin) = match source {
        SnapshotSource::StandIns { commit, .. } => (Some(commit.as_str()), None),
        _ => (dataset.pinned_commit(), dataset.pinned_commit()),
    };
    let fits = |record: &RevisionRecord| {
        wanted.is_none_or(|c| c == record.commit) && record.patterns == dataset.files && !record.files.is_empty()
    };
    if let Some(record) = recorded.as_ref().filter(|r| fits(r)) {
        return Ok(snapshot_of(dataset, record.clone()));
    }
    if let SnapshotSource::Mirror { url, .. } = source {
        if let Some(record) = mirror_record(dataset, url)? {
            let same_commit = recorded.as_ref().is_none_or(|r| r.commit == record.commit);
            if same_commit && fits(&record) && !record.stand_in {
                replace_record(dir, recorded.as_ref(), &record)?;
                log::info!("dataset {repo}: commit {} and its file list taken from the mirror", record.commit);
                return Ok(snapshot_of(dataset, record));
            }
        }
    }
    let mut record = match (pin, &recorded) {
        (Some(commit), _) => RevisionRecord::now(repo, commit, PINNED_FROM),
        (None, Some(record)) if wanted.is_none_or(|c| c == record.commit) => record.clone(),
        _ => {
            let commit = resolve_main(repo, source.endpoint())?;
            // Recorded before the listing: a failed listing never lets the commit move.
            let early = RevisionRecord { stand_in: source.is_stand_in(), ..RevisionRecord::now(repo, &commit, "main") };
            early.write(&path)?;
            log::info!("dataset {repo}: `main` is commit {commit}; recorded for this base dir");
            early
        }
    };
    record.files = list_files(dataset, &record.commit, pin.is_some(), source)?;
    record.patterns = dataset.files.clone();
    record.stand_in = source.is_stand_in();
    replace_record(dir, recorded.as_ref(), &record)?;
    log::debug!(
        "dataset {repo}: {} file(s) at commit {} recorded in {}",
        record.files.len(),
        record.commit,
        path.display()
    );
    Ok(snapshot_of(dataset, record))
}

/// Refuses a record that mixes stand-ins and real data, or names files the manifest does not want.
fn check_record(
    dataset: &HubDataset,
    record: &RevisionRecord,
    path: &Path,
    source: &SnapshotSource,
    dir: &Path,
) -> Result<(), RevisionError> {
    let texts = [format!("the smoke stand-ins of {}", dataset.repo), format!("the real dataset {}", dataset.repo)];
    StandInMismatch::check(dir, [&texts[0], &texts[1]], record.stand_in, source.is_stand_in())?;
    let bad = |message: String| RevisionError::BadRecord { path: path.to_path_buf(), message };
    if record.repo != dataset.repo {
        return Err(bad(format!("it records {:?}, not {:?}", record.repo, dataset.repo)));
    }
    if let Some(file) = record.files.iter().find(|f| !dataset.wants(&f.path)) {
        if record.patterns == dataset.files {
            return Err(bad(format!("it lists {:?}, which no pattern of the manifest selects", file.path)));
        }
    }
    Ok(())
}

/// Writes `record` in place of `old` and deletes the files only `old` listed, so a loader reading
/// `<dir>/<split>-*.parquet` never mixes two commits (e.g. `train-00000-of-00004` left beside
/// `train-00000-of-00005`).
fn replace_record(dir: &Path, old: Option<&RevisionRecord>, record: &RevisionRecord) -> Result<(), RevisionError> {
    record.write(&dir.join(REVISION_RECORD_FILE))?;
    let stale = old.map_or(&[][..], |old| &old.files[..]);
    for file in stale.iter().filter(|f| !record.files.iter().any(|n| n.path == f.path)) {
        if !is_plain_relative_path(&file.path) {
            continue;
        }
        match std::fs::remove_file(dir.join(&file.path)) {
            Ok(()) => log::info!("{}: not in commit {}; removed", file.path, record.commit),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::warn!("{}: not in commit {} but cannot be removed: {e}", file.path, record.commit),
        }
    }
    Ok(())
}

fn snapshot_of(dataset: &HubDataset, record: RevisionRecord) -> DatasetSnapshot {
    let (files, stand_in) = (record.files.clone(), record.stand_in);
    let revision = match dataset.pinned_commit() {
        Some(commit) if commit == record.commit && !stand_in => {
            DatasetRevision::Pinned { repo: dataset.repo.clone(), commit: commit.to_string() }
        }
        _ => DatasetRevision::Recorded(record),
    };
    DatasetSnapshot { dataset: dataset.clone(), revision, files, stand_in }
}

/// `<mirror>/<owner>/<name>/revision.json`, if the mirror has one (404: it has none).
fn mirror_record(dataset: &HubDataset, mirror: &str) -> Result<Option<RevisionRecord>, RevisionError> {
    let url = format!("{}/{}/{REVISION_RECORD_FILE}", mirror.trim().trim_end_matches('/'), dataset.repo);
    let failed = |message: String| RevisionError::Mirror { repo: dataset.repo.clone(), url: url.clone(), message };
    let text = match HubApi::new(mirror).get(&url) {
        Ok((text, _)) => text,
        Err(e) if e.not_found => return Ok(None),
        Err(e) => return Err(failed(e.message)),
    };
    let record: RevisionRecord =
        serde_json::from_str(&text).map_err(|e| failed(format!("not a revision record: {e}")))?;
    if record.repo != dataset.repo || record.files.iter().any(|f| !dataset.wants(&f.path)) {
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
) -> Result<Vec<HubFile>, RevisionError> {
    let repo = dataset.repo.as_str();
    let api = HubApi::new(source.endpoint());
    let mut listings: BTreeMap<String, Vec<HubFile>> = BTreeMap::new();
    let mut selected: BTreeMap<String, HubFile> = BTreeMap::new();
    for pattern in dataset.patterns() {
        let dir = pattern.dir().to_string();
        if !listings.contains_key(&dir) {
            let listing = match api.list_dir(repo, commit, &dir) {
                Ok(files) => files,
                Err(e) if e.not_found => {
                    let found = format!("no directory {:?} at all", dir);
                    return Err(no_files(dataset, commit, &pattern.to_string(), found, pinned, source));
                }
                Err(source) => return Err(RevisionError::List { repo: repo.into(), commit: commit.into(), source }),
            };
            listings.insert(dir.clone(), listing);
        }
        let listing = &listings[&dir];
        let matching: Vec<&HubFile> = listing.iter().filter(|f| pattern.matches(&f.path)).collect();
        if matching.is_empty() {
            let found = format!("{} other file(s) in {:?}", listing.len(), dir);
            return Err(no_files(dataset, commit, &pattern.to_string(), found, pinned, source));
        }
        for file in matching {
            selected.insert(file.path.clone(), file.clone());
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
) -> RevisionError {
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
    let (repo, commit, pattern) = (dataset.repo.clone(), commit.to_string(), pattern.to_string());
    RevisionError::NoFiles { repo, commit, pattern, found, advice }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::download::FINEWEB_EDU;

    const SHA_A: &str = "b2c7f0a3a0f7d9e4c1d2e3f405162738495a6b7c8d9e0f1a2b3c4d5e6f708192";

    #[test]
    fn tree_listing_gives_files_with_their_lfs_sha256_and_size() {
        let json = format!(
            r#"[
              {{"type":"directory","oid":"1111111111111111111111111111111111111111","size":0,"path":"ARC-Easy/sub"}},
              {{"type":"file","oid":"2222222222222222222222222222222222222222","size":134,
                "lfs":{{"oid":"{SHA_A}","size":331532,"pointerSize":134}},
                "path":"ARC-Easy/train-00000-of-00001.parquet","xetHash":"abc"}},
              {{"type":"file","oid":"3333333333333333333333333333333333333333","size":1234,"path":"ARC-Easy/README.md"}}
            ]"#
        );
        let files = parse_tree_listing("x", &json).unwrap();
        assert_eq!(
            files,
            [
                HubFile {
                    path: "ARC-Easy/train-00000-of-00001.parquet".into(),
                    size: 331_532,
                    sha256: Sha256Digest::parse(SHA_A),
                },
                // Not in LFS: the oid is a git blob id, not a sha256, so nothing pins it.
                HubFile { path: "ARC-Easy/README.md".into(), size: 1234, sha256: None },
            ]
        );
        assert_eq!(parse_tree_listing("x", "[]").unwrap(), []);
    }

    #[test]
    fn tree_listing_refuses_what_it_cannot_use() {
        for bad in [
            r#"{"error":"Repository not found"}"#,
            r#"[{"type":"file","path":"../escape.parquet","size":3}]"#,
            r#"[{"type":"file","path":"a/.hidden","size":3}]"#,
            r#"[{"type":"file","path":"no-size.parquet"}]"#,
            "not json",
        ] {
            assert!(parse_tree_listing("x", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn link_headers_name_the_next_page() {
        let link = r#"<https://huggingface.co/api/datasets/x/y/tree/c/data?cursor=ZXlK>; rel="next""#;
        assert_eq!(next_page(link), Some("https://huggingface.co/api/datasets/x/y/tree/c/data?cursor=ZXlK"));
        assert_eq!(next_page(r#"</a>; rel="prev", </b>; rel="next""#), Some("/b"));
        assert_eq!(next_page(r#"</a>; rel="prev""#), None);
    }

    #[test]
    fn urls_name_the_commit_and_encode_paths() {
        let api = HubApi::new("http://127.0.0.1:8080/");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            api.file_url("openai/gsm8k", commit, "main/test-00000-of-00001.parquet"),
            format!("http://127.0.0.1:8080/datasets/openai/gsm8k/resolve/{commit}/main/test-00000-of-00001.parquet")
        );
        assert_eq!(
            api.tree_url("openai/gsm8k", commit, "a dir"),
            format!("http://127.0.0.1:8080/api/datasets/openai/gsm8k/tree/{commit}/a%20dir")
        );
        assert_eq!(api.tree_url("o/n", commit, ""), format!("http://127.0.0.1:8080/api/datasets/o/n/tree/{commit}"));
        assert!(is_commit_hash(commit) && !is_commit_hash("main") && !is_commit_hash(&commit[1..]));
    }

    const SAMPLE: &str = r#"
description = "two datasets"

[[dataset]]
repo = "allenai/ai2_arc"
revision = "unpinned"
files = ["ARC-Easy/train-*.parquet", "ARC-Easy/test-*.parquet"]
license = "CC BY-SA 4.0"

[[dataset]]
repo = "openai/gsm8k"
revision = "0123456789abcdef0123456789abcdef01234567"
files = ["main/train-*.parquet"]
license = "MIT"
"#;

    #[test]
    fn parses_datasets_with_patterns_and_revisions() {
        let manifest = HubDatasetManifest::parse(SAMPLE, "sample.toml").unwrap();
        assert_eq!(manifest.datasets.len(), 2);
        let arc = manifest.dataset("allenai/ai2_arc").unwrap();
        assert_eq!(arc.pinned_commit(), None);
        assert_eq!(arc.patterns().iter().map(|p| p.dir()).collect::<Vec<_>>(), ["ARC-Easy", "ARC-Easy"]);
        assert!(arc.wants("ARC-Easy/train-00000-of-00001.parquet"));
        assert!(arc.wants("ARC-Easy/test-00000-of-00001.parquet"));
        assert!(!arc.wants("ARC-Easy/validation-00000-of-00001.parquet"));
        assert!(!arc.wants("ARC-Challenge/train-00000-of-00001.parquet"));
        assert!(!arc.wants("ARC-Easy/sub/train-00000-of-00001.parquet"), "`*` never crosses a directory");
        let gsm8k = manifest.dataset("openai/gsm8k").unwrap();
        assert_eq!(gsm8k.pinned_commit(), Some("0123456789abcdef0123456789abcdef01234567"));
    }

    #[test]
    fn refuses_bad_repos_revisions_patterns_and_duplicates() {
        let cases = [
            ("repo = \"allenai/ai2_arc\"", "repo = \"ai2_arc\""),
            ("repo = \"allenai/ai2_arc\"", "repo = \"allenai/../x\""),
            ("revision = \"unpinned\"", "revision = \"main\""),
            ("\"ARC-Easy/train-*.parquet\", ", "\"../train-*.parquet\", "),
            ("\"ARC-Easy/train-*.parquet\", ", "\"ARC-*/train.parquet\", "),
            ("\"ARC-Easy/train-*.parquet\", ", "\".git/x\", "),
            ("\"ARC-Easy/train-*.parquet\", ", "\"revision.json\", "),
            ("\"ARC-Easy/train-*.parquet\", \"ARC-Easy/test-*.parquet\"", ""),
            ("license = \"MIT\"", "license = \" \""),
            ("repo = \"openai/gsm8k\"", "repo = \"allenai/ai2_arc\""),
        ];
        for (from, to) in cases {
            assert!(SAMPLE.contains(from), "{from}");
            let text = SAMPLE.replace(from, to);
            assert!(HubDatasetManifest::parse(&text, "x.toml").is_err(), "{to:?} accepted");
        }
        let unknown = SAMPLE.replace("license = \"MIT\"", "license = \"MIT\"\nsplit = \"train\"");
        assert!(matches!(HubDatasetManifest::parse(&unknown, "x.toml"), Err(ManifestError::Parse { .. })));
    }

    #[test]
    fn globs_match_like_a_shell_within_one_name() {
        for (glob, name, expected) in [
            ("train-*.parquet", "train-00000-of-00001.parquet", true),
            ("train-*.parquet", "train-.parquet", true),
            ("train-*.parquet", "test-00000-of-00001.parquet", false),
            ("train-*.parquet", "train-0.parquet.partial", false),
            ("*", "anything", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("a*a", "a", false),
            ("exact.txt", "exact.txt", true),
            ("exact.txt", "exact.txt2", false),
        ] {
            assert_eq!(glob_matches(glob, name), expected, "{glob} vs {name}");
        }
        let top = FilePattern::parse("words_*.txt").unwrap();
        assert_eq!(top.dir(), "");
        assert!(top.matches("words_alpha.txt") && !top.matches("x/words_alpha.txt"));
        assert_eq!(top.to_string(), "words_*.txt");
        assert_eq!(FilePattern::parse("a/b/c-*.parquet").unwrap().dir(), "a/b");
    }

    #[test]
    fn a_recorded_commit_is_used_and_a_damaged_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let unreachable = "http://127.0.0.1:9";
        let record = RevisionRecord {
            repo: FINEWEB_EDU.repo.into(),
            commit: "c".repeat(40),
            resolved_from: "main".into(),
            resolved_at: "2026-11-24 06:00:00".into(),
            ..RevisionRecord::default()
        };
        crate::fsutil::write_json_atomic(&dir.path().join(REVISION_RECORD_FILE), &record).unwrap();
        let revision = dataset_revision(&FINEWEB_EDU, dir.path(), unreachable).unwrap();
        assert_eq!(revision, DatasetRevision::Recorded(record), "no Hub request needed");
        assert!(revision.describe().contains("**not pinned in this build**"));

        std::fs::write(dir.path().join(REVISION_RECORD_FILE), "{\"commit\": 3").unwrap();
        let err = dataset_revision(&FINEWEB_EDU, dir.path(), unreachable).unwrap_err().to_string();
        assert!(err.contains("is not a revision record") && err.contains("delete it"), "{err}");
        let not_a_commit = r#"{"repo":"r","commit":"main","resolved_from":"main","resolved_at":"x"}"#;
        std::fs::write(dir.path().join(REVISION_RECORD_FILE), not_a_commit).unwrap();
        let err = dataset_revision(&FINEWEB_EDU, dir.path(), unreachable).unwrap_err().to_string();
        assert!(err.contains("\"main\" is not a commit"), "{err}");
    }

    fn dataset(revision: &str) -> HubDataset {
        HubDataset {
            repo: "openai/gsm8k".into(),
            revision: revision.into(),
            files: vec!["main/train-*.parquet".into(), "main/test-*.parquet".into()],
            license: "MIT".into(),
        }
    }

    fn record(commit: &str, files: &[&str]) -> RevisionRecord {
        RevisionRecord {
            patterns: dataset("unpinned").files,
            files: files
                .iter()
                .map(|p| HubFile { path: p.to_string(), size: 3, sha256: Some(Sha256Digest::of_bytes(b"abc")) })
                .collect(),
            ..RevisionRecord::now("openai/gsm8k", commit, "main")
        }
    }

    const UNREACHABLE: &str = "http://127.0.0.1:9";

    #[test]
    fn a_fitting_record_is_used_without_any_request() {
        let dir = tempfile::tempdir().unwrap();
        let commit = "c".repeat(40);
        let files = ["main/test-00000-of-00001.parquet", "main/train-00000-of-00001.parquet"];
        record(&commit, &files).write(&dir.path().join(REVISION_RECORD_FILE)).unwrap();
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

        record(&"c".repeat(40), &["main/../../escape.parquet"]).write(&path).unwrap();
        let err = dataset_snapshot(&dataset("unpinned"), dir.path(), &source).unwrap_err().to_string();
        assert!(err.contains("no pattern of the manifest selects") && err.contains("delete it"), "{err}");

        let mut stand_in = record(&"c".repeat(40), &["main/test-0.parquet"]);
        stand_in.stand_in = true;
        stand_in.write(&path).unwrap();
        let err = dataset_snapshot(&dataset("unpinned"), dir.path(), &source).unwrap_err().to_string();
        assert!(err.contains("holds the smoke stand-ins") && err.contains("--base-dir"), "{err}");
    }

    #[test]
    fn a_new_pin_is_listed_and_the_files_only_the_old_commit_had_are_removed() {
        let (old_commit, new_commit) = ("c".repeat(40), "e".repeat(40));
        let dir = tempfile::tempdir().unwrap();
        let old_files = ["main/test-00000-of-00001.parquet", "main/train-00000-of-00002.parquet"];
        record(&old_commit, &old_files).write(&dir.path().join(REVISION_RECORD_FILE)).unwrap();
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
        let recorded = read_revision_record(&dir.path().join(REVISION_RECORD_FILE)).unwrap().unwrap();
        assert_eq!((recorded.commit.as_str(), recorded.resolved_from.as_str()), (new_commit.as_str(), PINNED_FROM));
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
