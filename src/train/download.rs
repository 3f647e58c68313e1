//! The `data` stage: `nanochat data download | verify | pin` fetch what a preset needs (its shards,
//! NANOCHAT.md §2.1, the GPT-2/GPT-4 tokenizer files of tok-eval, §1.6, and the chat stages' datasets
//! and extras, §5.2, when a chat stage is listed or with `--chat`) through the verifying downloader,
//! let the tokenizer start after the first shards while a detached process fetches the rest (§10.1
//! step 4), repair damaged files, pin manifests, and write the "Data" report section (DESIGN.md "Data
//! and artifacts", "Reproducibility": the sha256 of every input).
//!
//! The "smoke" manifest is built offline: the pinned sdists become shards under `mirror/smoke/`
//! (`smoke/`), which a [`LocalMirror`] serves on 127.0.0.1 so the shards reach `data/smoke/` through
//! the same download-and-verify path as real data; the chat stand-ins of the smoke preset likewise come
//! from a local Hub on 127.0.0.1 (see [`ChatDownloads`]). `data.mirror_url` replaces every manifest URL
//! with `<mirror_url>/<file name>` (chat datasets: `<mirror_url>/<owner>/<name>/<path>`); pinned
//! checksums never come from the mirror.
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::config::RunConfig;
use crate::download::bundled_manifests::{
    bundled_manifest, bundled_smoke_corpus, download_dir, known_manifest_names, known_shard_manifests, shard_dataset,
    shard_manifest, with_mirror, SMOKE_MANIFEST_NAME, TOKENIZERS_MANIFEST_NAME,
};
use crate::download::{dataset_revision, hub_endpoint, ChatDataError, ChecksumSource, DatasetRevision, RevisionError};
use crate::download::{
    pin_from_ledger, pin_from_server, stages_need_chat_data, ChatDownloads, ChecksumLedger, DataManifest,
    DownloadOptions, DownloadProgress, DownloadedFile, FileStatus, LedgerError, LocalMirror, ManifestEntry,
    ManifestError, RetryPolicy, Sha256Digest, ShardDownloader, LEDGER_FILE_NAME,
};
use crate::paths::Paths;
use crate::progress::{Progress, Unit};
use crate::report_section::ReportSection;
use crate::smoke::{build_smoke_corpus, smoke_corpus_is_present, SmokeCorpusError};

/// Why the data stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum DataStageError {
    #[error("the {0} manifest is missing from this build")]
    MissingManifest(&'static str),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("data.manifest = {name:?} (known: {}): {source}", known_shard_manifests())]
    ShardManifest { name: String, source: ManifestError },
    #[error("unknown data manifest {name:?}: give one of {known} or a path to a manifest TOML file")]
    UnknownManifest { name: String, known: String },
    #[error(
        "--write rewrites a manifest file, but {0:?} is compiled into the binary: use --output FILE and copy the \
         result into manifests/data/"
    )]
    CompiledManifest(String),
    #[error("--from ledger needs --ledger FILE for a manifest file")]
    NeedLedger,
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Revision(#[from] RevisionError),
    #[error("building the smoke corpus (run again to resume the sdist downloads): {0}")]
    SmokeCorpus(#[from] SmokeCorpusError),
    #[error("resolving the chat datasets (manifests/data/chat_datasets.toml): {0}")]
    ChatData(#[from] ChatDataError),
    #[error("{label}: {} of {total} file(s) could not be downloaded:\n  {}\n{WHAT_NEXT}", lines.len(), lines.join("\n  "))]
    Incomplete { label: String, total: usize, lines: Vec<String> },
    #[error("{} file(s) could not be repaired:\n  {}\n{WHAT_NEXT}", lines.len(), lines.join("\n  "))]
    Unrepaired { lines: Vec<String> },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

/// An I/O error with what was being done, for `map_err`.
fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> DataStageError {
    let what = what.to_string();
    move |source| DataStageError::Io { what, source }
}

type Result<T, E = DataStageError> = std::result::Result<T, E>;

/// Pid of the process started by `--background-rest`, inside the shard directory.
pub const BACKGROUND_PID_FILE: &str = ".download-rest.pid";
/// Log of the background process, under logs/.
pub const BACKGROUND_LOG: &str = "data-download-rest.log";
/// Held (flock) by every process downloading into a shard directory.
const LOCK_FILE: &str = ".download.lock";
const POLL: Duration = Duration::from_millis(200);

/// Files of one manifest and the directory they go to.
struct FileGroup {
    label: String,
    dir: PathBuf,
    manifest: DataManifest,
    /// What a pinned sha256 of this group is, for the report.
    pinned_by: &'static str,
}

impl FileGroup {
    fn new(label: &str, dir: PathBuf, manifest: DataManifest) -> Self {
        Self { label: label.to_string(), dir, manifest, pinned_by: "pinned in the manifest" }
    }
}

/// Everything a preset needs: its shards (first `data.train_shards`) and the extras (tokenizers).
struct DataPlan {
    manifest_name: String,
    shards: FileGroup,
    extras: Vec<FileGroup>,
    mirror_url: String,
    /// Where the files come from, for the log and the report.
    source: String,
    workers: usize,
    attempts: u32,
    /// Serves the locally built smoke corpus while this plan is alive.
    local_mirror: Option<LocalMirror>,
}

impl DataPlan {
    fn new(config: &RunConfig, paths: &Paths, attempts: u32) -> Result<Self> {
        let name = config.data.manifest.as_str();
        let mirror_url = config.data.mirror_url.trim().to_string();
        let (shards, revision) = shard_manifest_at_revision(paths, name, config.data.train_shards, &mirror_url)?;
        let mut extras = Vec::new();
        if config.tok_eval.compare_baselines {
            let tokenizers = bundled_manifest(TOKENIZERS_MANIFEST_NAME)
                .ok_or(DataStageError::MissingManifest(TOKENIZERS_MANIFEST_NAME))??;
            extras.push(FileGroup::new(
                "baseline tokenizers",
                download_dir(paths, TOKENIZERS_MANIFEST_NAME),
                with_mirror(&tokenizers, &mirror_url),
            ));
        }
        let source = if !mirror_url.is_empty() {
            format!("mirror {mirror_url}")
        } else if name == SMOKE_MANIFEST_NAME {
            "smoke corpus built on this machine".to_string()
        } else if let Some(revision) = &revision {
            revision.describe()
        } else {
            "the manifests' URLs".to_string()
        };
        Ok(Self {
            manifest_name: name.to_string(),
            shards: FileGroup::new("shards", paths.shards(name), with_mirror(&shards, &mirror_url)),
            extras,
            source,
            mirror_url,
            workers: config.data.download_workers.max(1) as usize,
            attempts,
            local_mirror: None,
        })
    }

    fn options(&self) -> DownloadOptions {
        download_options(self.workers, self.attempts)
    }

    /// For "smoke" without a mirror: unless the first `count` shards are already in place, builds
    /// the corpus under mirror/smoke/ (once) and serves it on 127.0.0.1 for the downloader.
    fn prepare_smoke_source(&mut self, paths: &Paths, count: usize) -> Result<()> {
        if self.manifest_name != SMOKE_MANIFEST_NAME || !self.mirror_url.is_empty() || self.local_mirror.is_some() {
            return Ok(());
        }
        let needed = &self.shards.manifest.files[..count.min(self.shards.manifest.files.len())];
        let in_place = needed.iter().all(|entry| {
            entry.sha256.pinned().is_some_and(|expected| {
                Sha256Digest::of_file(&self.shards.dir.join(&entry.name)).is_ok_and(|actual| actual == *expected)
            })
        });
        if in_place {
            return Ok(());
        }
        let corpus = bundled_smoke_corpus()?;
        let mirror_dir = smoke_mirror_dir(paths);
        if !smoke_corpus_is_present(&corpus, &mirror_dir) {
            let cache = paths.base().join("cache/smoke-sdists");
            log::info!(
                "building the smoke corpus into {} from {} pinned PyPI sdists (cached in {}; ~101 MB the first time)",
                mirror_dir.display(),
                corpus.packages.len(),
                cache.display()
            );
            let progress = Arc::new(ByteProgress::new("smoke sdists"));
            let downloader = ShardDownloader::new(self.options()).with_progress(move |p| progress.update(p));
            let report = build_smoke_corpus(&corpus, &cache, &mirror_dir, Some(&downloader))?;
            log::info!(
                "smoke corpus: {} documents, {} chars in {} shards",
                report.total_documents,
                report.total_chars,
                report.shards.len()
            );
        }
        let server = LocalMirror::serve(&mirror_dir)
            .map_err(io(format_args!("serving {} on 127.0.0.1", mirror_dir.display())))?;
        log::info!("serving the smoke corpus {} at {}", mirror_dir.display(), server.url());
        self.shards.manifest = with_mirror(&self.shards.manifest, &server.url());
        self.source = format!("smoke corpus built in {} (served on 127.0.0.1)", mirror_dir.display());
        self.local_mirror = Some(server);
        Ok(())
    }

    /// The extras and the first `count` shards, in that order, with the shards' entries.
    fn groups(&self, count: usize) -> Vec<(&FileGroup, Vec<ManifestEntry>)> {
        let shards = self.shards.manifest.files.iter().take(count).cloned().collect();
        self.extras.iter().map(|g| (g, g.manifest.files.clone())).chain([(&self.shards, shards)]).collect()
    }

    /// Downloads the extras and the first `count` shards (present files are re-hashed, not fetched).
    fn fetch(&mut self, paths: &Paths, count: usize) -> Result<Vec<FileRow>> {
        self.prepare_smoke_source(paths, count)?;
        fetch_groups(paths, &self.groups(count), &self.options())
    }

    /// Re-hashes the extras and the first `count` shards, fetching again what is missing or damaged.
    fn verify(&mut self, paths: &Paths, count: usize) -> Result<Vec<FileRow>> {
        self.prepare_smoke_source(paths, count)?;
        verify_groups(paths, &self.groups(count), &self.options())
    }
}

fn download_options(workers: usize, attempts: u32) -> DownloadOptions {
    let retry = RetryPolicy { max_attempts: attempts.max(1), ..RetryPolicy::default() };
    DownloadOptions { parallelism: workers.max(1), retry, ..DownloadOptions::default() }
}

const WHAT_NEXT: &str = "Run the same command again to resume (partial files are kept)";

/// Downloads the entries of each group (present files are re-hashed, not fetched) and lists them.
fn fetch_groups(
    paths: &Paths,
    groups: &[(&FileGroup, Vec<ManifestEntry>)],
    options: &DownloadOptions,
) -> Result<Vec<FileRow>> {
    let mut rows = Vec::new();
    for (group, entries) in groups {
        let files = fetch_group(group, entries, options)?;
        let fetched: Vec<&DownloadedFile> =
            files.iter().filter(|f| matches!(f.status, FileStatus::Downloaded { .. })).collect();
        log::info!(
            "{}: {} file(s), {} in {} ({} downloaded, {} already there)",
            group.label,
            files.len(),
            mib(files.iter().map(|f| f.size).sum()),
            group.dir.display(),
            fetched.len(),
            files.len() - fetched.len()
        );
        rows.extend(file_rows(paths, group, entries)?);
    }
    Ok(rows)
}

fn fetch_group(group: &FileGroup, entries: &[ManifestEntry], options: &DownloadOptions) -> Result<Vec<DownloadedFile>> {
    let progress = Arc::new(ByteProgress::new(&group.label));
    let downloader = group_downloader(group, options)?.with_progress(move |p| progress.update(p));
    let results = downloader.start(entries.to_vec(), group.dir.clone()).join();
    drop(downloader); // clears the progress bar
    let (files, errors): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    if !errors.is_empty() {
        let lines: Vec<String> = errors.into_iter().filter_map(Result::err).map(|e| e.to_string()).collect();
        return Err(DataStageError::Incomplete { label: group.label.clone(), total: entries.len(), lines });
    }
    Ok(files.into_iter().filter_map(Result::ok).collect())
}

fn group_downloader(group: &FileGroup, options: &DownloadOptions) -> Result<ShardDownloader> {
    let ledger = ChecksumLedger::open(&group.dir.join(LEDGER_FILE_NAME))?;
    Ok(ShardDownloader::new(options.clone()).with_ledger(ledger))
}

/// Re-hashes the entries of each group, fetching again what is missing or damaged.
fn verify_groups(
    paths: &Paths,
    groups: &[(&FileGroup, Vec<ManifestEntry>)],
    options: &DownloadOptions,
) -> Result<Vec<FileRow>> {
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (group, entries) in groups {
        let report = group_downloader(group, options)?.verify(entries, &group.dir);
        log::info!(
            "{}: {} intact, {} repaired, {} failed ({})",
            group.label,
            report.intact.len(),
            report.repaired.len(),
            report.failed.len(),
            group.dir.display()
        );
        for name in &report.repaired {
            log::warn!("{}: was missing or damaged; downloaded again", name);
        }
        failures.extend(report.failed.iter().map(|e| e.to_string()));
        rows.extend(file_rows(paths, group, entries)?);
    }
    if !failures.is_empty() {
        return Err(DataStageError::Unrepaired { lines: failures });
    }
    Ok(rows)
}

/// The chat stages' data (NANOCHAT.md §5.2): the datasets at their recorded commits and the extras,
/// resolved while holding the lock of `data/hf/` (records are written there).
struct ChatPlan {
    downloads: ChatDownloads,
    groups: Vec<FileGroup>,
    options: DownloadOptions,
    _lock: File,
}

impl ChatPlan {
    fn new(config: &RunConfig, paths: &Paths, attempts: u32) -> Result<Self> {
        let hf = paths.data().join("hf");
        fs::create_dir_all(&hf).map_err(io(format_args!("creating {}", hf.display())))?;
        let lock = lock_dir(&hf)?;
        let stand_ins = config.data.manifest == SMOKE_MANIFEST_NAME;
        let downloads = ChatDownloads::resolve(paths, stand_ins, &config.data.mirror_url)?;
        let groups = downloads
            .groups
            .iter()
            .map(|g| FileGroup {
                label: g.label.clone(),
                dir: g.dir.clone(),
                manifest: g.manifest.clone(),
                pinned_by: match (&g.snapshot, stand_ins) {
                    (_, true) => "pinned in manifests/data/chat_smoke/SOURCES.toml",
                    (Some(_), false) => "the publisher's LFS sha256 at the dataset's commit",
                    (None, false) => "pinned in the manifest",
                },
            })
            .collect();
        let options = download_options(config.data.download_workers as usize, attempts);
        Ok(Self { downloads, groups, options, _lock: lock })
    }

    fn entries(&self) -> Vec<(&FileGroup, Vec<ManifestEntry>)> {
        self.groups.iter().map(|g| (g, g.manifest.files.clone())).collect()
    }

    fn fetch(&self, paths: &Paths) -> Result<Vec<FileRow>> {
        log::info!("fetching the chat data from {}", self.downloads.source);
        fetch_groups(paths, &self.entries(), &self.options)
    }

    fn verify(&self, paths: &Paths) -> Result<Vec<FileRow>> {
        verify_groups(paths, &self.entries(), &self.options)
    }
}

/// The first `count` shards of manifest `name`, and the Hub dataset commit their URLs name when the URLs
/// are used (not for the smoke corpus or a mirror, whose URLs replace them).
fn shard_manifest_at_revision(
    paths: &Paths,
    name: &str,
    count: u32,
    mirror_url: &str,
) -> Result<(DataManifest, Option<DatasetRevision>)> {
    let dataset = shard_dataset(name);
    let revision = match dataset {
        Some(dataset) if mirror_url.is_empty() => {
            Some(dataset_revision(dataset, &paths.shards(name), &hub_endpoint())?)
        }
        _ => None,
    };
    let commit = revision.as_ref().map_or(dataset.map_or("", |d| d.revision), |r| r.commit());
    let manifest = shard_manifest(name, count as usize, commit)
        .map_err(|source| DataStageError::ShardManifest { name: name.to_string(), source })?;
    Ok((manifest, revision))
}

fn smoke_mirror_dir(paths: &Paths) -> PathBuf {
    paths.base().join("mirror").join(SMOKE_MANIFEST_NAME)
}

/// How far a file's sha256 is vouched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trust {
    /// The manifest pins it.
    Pinned,
    /// Not pinned, but the server announced it and the bytes matched.
    ServerAnnounced,
    /// Not pinned, nothing announced: recorded in the ledger at the first download only.
    FirstDownload,
}

impl Trust {
    /// `pinned_by`: what a pinned sha256 is for the file's group.
    fn describe(self, pinned_by: &'static str) -> &'static str {
        match self {
            Trust::Pinned => pinned_by,
            Trust::ServerAnnounced => "verified against the server-announced sha256 (not pinned)",
            Trust::FirstDownload => "**unpinned**: recorded in the ledger at first download only",
        }
    }
}

struct FileRow {
    /// Relative to the base directory.
    path: String,
    size: u64,
    sha256: Sha256Digest,
    trust: Trust,
    pinned_by: &'static str,
}

/// Rows for the entries present in the group's directory (each verified just before).
fn file_rows(paths: &Paths, group: &FileGroup, entries: &[ManifestEntry]) -> Result<Vec<FileRow>> {
    let ledger = ChecksumLedger::open(&group.dir.join(LEDGER_FILE_NAME))?;
    let mut rows = Vec::new();
    for entry in entries {
        let path = group.dir.join(&entry.name);
        let Ok(meta) = fs::metadata(&path) else { continue };
        let (sha256, trust) = match (entry.sha256.pinned(), ledger.get(&entry.name)) {
            (Some(digest), _) => (digest.clone(), Trust::Pinned),
            (None, Some(record)) => (
                record.sha256.clone(),
                match record.source {
                    ChecksumSource::ServerHeader => Trust::ServerAnnounced,
                    ChecksumSource::FirstDownload => Trust::FirstDownload,
                },
            ),
            (None, None) => continue,
        };
        let shown = path.strip_prefix(paths.base()).unwrap_or(&path).display().to_string();
        rows.push(FileRow { path: shown, size: meta.len(), sha256, trust, pinned_by: group.pinned_by });
    }
    Ok(rows)
}

/// What the "Data" report section describes: the manifest and source of the shards (when they were
/// part of the command) and the chat data (when it was).
struct ReportScope<'a> {
    shards: Option<&'a DataPlan>,
    chat: Option<&'a ChatPlan>,
}

/// Writes the "Data" report section: every file with its sha256 and how it was checked, and the commit
/// of every dataset with whether this build pins it.
fn write_report(paths: &Paths, scope: ReportScope<'_>, rows: &[FileRow]) -> Result<()> {
    let count = |trust| rows.iter().filter(|r| r.trust == trust).count();
    let unpinned = count(Trust::FirstDownload);
    let mut table = "| File | Bytes | sha256 | Checksum |\n|------|-------|--------|----------|\n".to_string();
    for row in rows {
        table +=
            &format!("| {} | {} | `{}` | {} |\n", row.path, row.size, row.sha256, row.trust.describe(row.pinned_by));
    }
    let mut section = ReportSection::new("Data");
    if let Some(plan) = scope.shards {
        section = section.value("manifest", plan.manifest_name.as_str()).value("source", plan.source.as_str());
    }
    if let Some(chat) = scope.chat {
        let datasets: Vec<serde_json::Value> = chat
            .downloads
            .snapshots()
            .map(|s| {
                serde_json::json!({
                    "repo": s.dataset.repo,
                    "commit": s.commit(),
                    "pinned": s.revision.is_pinned(),
                    "stand_in": s.stand_in,
                    "files": s.files.len(),
                })
            })
            .collect();
        section = section.value("chat_source", chat.downloads.source.as_str()).value("chat_datasets", datasets);
    }
    section = section
        .value("files", rows.len())
        .value("bytes", rows.iter().map(|r| r.size).sum::<u64>())
        .value("pinned", count(Trust::Pinned))
        .value("server_announced", count(Trust::ServerAnnounced))
        .value("unpinned_first_download", unpinned);
    if let Some(chat) = scope.chat {
        let lines: Vec<String> = chat.downloads.snapshots().map(|s| format!("- {}", s.describe())).collect();
        section = section.markdown(format!(
            "Chat datasets (from {}; NANOCHAT.md §5.2):\n\n{}\n",
            chat.downloads.source,
            lines.join("\n")
        ));
    }
    section = section.markdown(table);
    if unpinned > 0 {
        section = section.markdown(format!(
            "{unpinned} file(s) are unpinned: nothing but their own first download vouches for their bytes. \
             `nanochat data pin --from ledger` turns the recorded sha256s into pinned manifest entries."
        ));
    }
    let path = section
        .write(&paths.report())
        .map_err(io(format_args!("writing the report section in {}", paths.report().display())))?;
    log::debug!("report section: {}", path.display());
    Ok(())
}

/// What `download` and `verify` both start from: the (created) shard directory of the preset's
/// manifest and the background download recorded there.
fn open_shards_dir(config: &RunConfig, paths: &Paths) -> Result<(PathBuf, BackgroundDownload)> {
    let shards_dir = paths.shards(&config.data.manifest);
    fs::create_dir_all(&shards_dir).map_err(io(format_args!("creating {}", shards_dir.display())))?;
    let background = BackgroundDownload { pid_file: shards_dir.join(BACKGROUND_PID_FILE) };
    Ok((shards_dir, background))
}

/// `--chat`: only the chat data, fetched or re-checked; the report section describes just that.
fn chat_only(config: &RunConfig, paths: &Paths, attempts: u32, verify: bool) -> Result<()> {
    let chat = ChatPlan::new(config, paths, attempts)?;
    let rows = if verify { chat.verify(paths)? } else { chat.fetch(paths)? };
    write_report(paths, ReportScope { shards: None, chat: Some(&chat) }, &rows)?;
    log::info!("chat data: all {} file(s) in place and verified", rows.len());
    Ok(())
}

/// The chat data of a preset that lists a chat stage (none otherwise).
fn chat_plan_if_needed(config: &RunConfig, paths: &Paths, attempts: u32) -> Result<Option<ChatPlan>> {
    if !stages_need_chat_data(&config.run.stages) {
        return Ok(None);
    }
    ChatPlan::new(config, paths, attempts).map(Some)
}

/// What `nanochat data download` asks for.
#[derive(Clone, Debug, Default)]
pub struct DownloadRequest {
    /// Only the chat data.
    pub chat_only: bool,
    /// Return as soon as the first N shards are verified in place.
    pub first: Option<usize>,
    /// With `first`: fetch the remaining shards in a detached `nanochat <these global options> data
    /// download --background-child`.
    pub background_rest: Option<Vec<String>>,
    /// Wait for a background download to end, then verify everything and fetch what is missing.
    pub wait: bool,
    /// This is the process `background_rest` started.
    pub background_child: bool,
    /// Tries per file.
    pub attempts: u32,
}

/// `nanochat data download`.
pub fn download(config: &RunConfig, paths: &Paths, args: &DownloadRequest) -> Result<()> {
    if args.chat_only {
        return chat_only(config, paths, args.attempts, false);
    }
    let (shards_dir, background) = open_shards_dir(config, paths)?;
    let all = config.data.train_shards as usize;

    if args.background_child {
        let result = fetch_everything(config, paths, &shards_dir, args.attempts);
        if let Err(e) = &result {
            log::error!("background download failed: {e}");
        }
        background.clear_if(std::process::id());
        return result;
    }

    if let Some(first) = args.first {
        let first = first.min(all);
        if let Some(pid) = background.running() {
            log::info!("a background download (pid {pid}) is fetching the shards; waiting for the first {first}");
            let plan = DataPlan::new(config, paths, args.attempts)?;
            let wanted: Vec<PathBuf> =
                plan.groups(first).iter().flat_map(|(g, e)| e.iter().map(|e| g.dir.join(&e.name))).collect();
            // The downloader gives a file its final name only once verified.
            while background.is_alive(pid) && !wanted.iter().all(|p| p.exists()) {
                std::thread::sleep(POLL);
            }
            if wanted.iter().all(|p| p.exists()) {
                log::info!("the first {first} shard(s) are in place in {}", shards_dir.display());
                return Ok(());
            }
        }
        let lock = lock_dir(&shards_dir)?;
        let mut plan = DataPlan::new(config, paths, args.attempts)?;
        log::info!("fetching the first {first} of {all} shard(s) of {} from {}", plan.manifest_name, plan.source);
        let rows = plan.fetch(paths, first)?;
        write_report(paths, ReportScope { shards: Some(&plan), chat: None }, &rows)?;
        drop(plan);
        drop(lock);
        if first < all {
            if let Some(global_args) = &args.background_rest {
                spawn_rest(global_args, paths, &background, args.attempts)?;
            } else {
                log::info!("{} more shard(s) to fetch: `nanochat data download` fetches them", all - first);
            }
        }
        return Ok(());
    }

    if let Some(pid) = background.running() {
        log::info!(
            "waiting for the background download (pid {pid}, log {}) to finish",
            paths.logs().join(BACKGROUND_LOG).display()
        );
        while background.is_alive(pid) {
            std::thread::sleep(POLL);
        }
        log::info!("the background download has ended; checking every file");
    } else if args.wait {
        log::info!("no background download is running; checking every file");
    }
    background.clear();
    fetch_everything(config, paths, &shards_dir, args.attempts)
}

fn fetch_everything(config: &RunConfig, paths: &Paths, shards_dir: &Path, attempts: u32) -> Result<()> {
    let _lock = lock_dir(shards_dir)?;
    let mut plan = DataPlan::new(config, paths, attempts)?;
    let all = config.data.train_shards as usize;
    log::info!("fetching {all} shard(s) of {} from {}", plan.manifest_name, plan.source);
    let mut rows = plan.fetch(paths, all)?;
    // After the shards: the chat data, when a chat stage needs it (NANOCHAT.md §10.1 steps 8-9).
    let chat = chat_plan_if_needed(config, paths, attempts)?;
    if let Some(chat) = &chat {
        rows.extend(chat.fetch(paths)?);
    }
    write_report(paths, ReportScope { shards: Some(&plan), chat: chat.as_ref() }, &rows)
}

/// `nanochat data verify`: re-hashes every file the preset needs, fetching again what is missing or damaged.
pub fn verify(config: &RunConfig, paths: &Paths, attempts: u32, chat: bool) -> Result<()> {
    if chat {
        return chat_only(config, paths, attempts, true);
    }
    let (shards_dir, background) = open_shards_dir(config, paths)?;
    if let Some(pid) = background.running() {
        log::info!("waiting for the background download (pid {pid}) to finish before verifying");
        while background.is_alive(pid) {
            std::thread::sleep(POLL);
        }
    }
    background.clear();
    let _lock = lock_dir(&shards_dir)?;
    let mut plan = DataPlan::new(config, paths, attempts)?;
    let mut rows = plan.verify(paths, config.data.train_shards as usize)?;
    let chat = chat_plan_if_needed(config, paths, attempts)?;
    if let Some(chat) = &chat {
        rows.extend(chat.verify(paths)?);
    }
    write_report(paths, ReportScope { shards: Some(&plan), chat: chat.as_ref() }, &rows)?;
    log::info!("all {} file(s) verified", rows.len());
    Ok(())
}

/// The process started by `--background-rest`, known by its pid file.
struct BackgroundDownload {
    pid_file: PathBuf,
}

impl BackgroundDownload {
    fn recorded(&self) -> Option<u32> {
        fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()
    }

    /// The recorded pid if that process still runs.
    fn running(&self) -> Option<u32> {
        self.recorded().filter(|pid| self.is_alive(*pid))
    }

    /// True while `pid` is a live (not zombie) background `nanochat data download`.
    fn is_alive(&self, pid: u32) -> bool {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        if !Path::new("/proc/self").exists() {
            // SAFETY: kill with signal 0 only checks whether the process exists.
            return unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        }
        let Ok(stat) = fs::read_to_string(proc_dir.join("stat")) else { return false };
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
        if matches!(state, Some('Z' | 'X' | 'x')) {
            return false;
        }
        // A recycled pid belongs to some other program.
        fs::read(proc_dir.join("cmdline"))
            .map(|cmdline| cmdline.split(|b| *b == 0).any(|arg| arg == b"--background-child"))
            .unwrap_or(true)
    }

    fn record(&self, pid: u32) -> Result<()> {
        crate::fsutil::write_atomic(&self.pid_file, format!("{pid}\n").as_bytes())
            .map_err(io(format_args!("writing {}", self.pid_file.display())))
    }

    fn clear(&self) {
        let _ = fs::remove_file(&self.pid_file);
    }

    fn clear_if(&self, pid: u32) {
        if self.recorded() == Some(pid) {
            self.clear();
        }
    }
}

/// Starts `nanochat data download` for the remaining shards as a detached process (own process
/// group, no inherited pipes, so neither a terminal's Ctrl-C nor a speedrun parent reading this
/// process's output waits on it) with the same preset, overrides and base directory.
fn spawn_rest(global_args: &[String], paths: &Paths, background: &BackgroundDownload, attempts: u32) -> Result<()> {
    let exe = std::env::current_exe().map_err(io("cannot find this executable to start the background download"))?;
    let log_path = paths.logs().join(BACKGROUND_LOG);
    fs::create_dir_all(paths.logs()).map_err(io(format_args!("creating {}", paths.logs().display())))?;
    let mut log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io(format_args!("opening {}", log_path.display())))?;
    let args = global_args;
    writeln!(
        log_file,
        "==== {} nanochat {} data download (the remaining shards)",
        crate::logging::now_timestamp(),
        args.join(" ")
    )
    .map_err(io(format_args!("writing {}", log_path.display())))?;
    let child = Command::new(exe)
        .args(args)
        .args(["data", "download", "--background-child", "--attempts", &attempts.to_string()])
        // Its output goes to the log file already: no second copy.
        .env(crate::logging::CAPTURED_ENV, "1")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(io(format_args!("opening {}", log_path.display())))?)
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .map_err(io("starting the background download"))?;
    let pid = child.id();
    background.record(pid)?;
    log::info!(
        "fetching the remaining shards in the background (pid {pid}, log {}); \
         `nanochat data download --wait` waits for them",
        log_path.display()
    );
    Ok(())
}

/// The shard directory's lock, so two downloads never write the same partial file.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    crate::fsutil::lock_exclusive(&path, "another `nanochat data` process")
        .map_err(io(format_args!("locking {}", path.display())))
}

/// A bytes bar for a download run. Sizes of unpinned files become known only when their transfer
/// starts, so the total is estimated from the sizes known so far; the bar is redrawn with the new
/// total when the estimate moves by more than 2%.
struct ByteProgress {
    label: String,
    bar: Mutex<Option<(Progress, u64)>>,
}

impl ByteProgress {
    fn new(label: &str) -> Self {
        Self { label: label.to_string(), bar: Mutex::new(None) }
    }

    fn update(&self, p: &DownloadProgress) {
        let known = p.files_total.saturating_sub(p.sizes_pending) as u64;
        if known == 0 {
            return;
        }
        let total = p.bytes_total + p.bytes_total / known * p.sizes_pending as u64;
        let mut guard = self.bar.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.as_ref().is_none_or(|(_, shown)| shown.abs_diff(total).saturating_mul(50) > *shown) {
            *guard = None;
            *guard = Some((Progress::new(&self.label, total, Unit::Bytes), total));
        }
        if let Some((bar, shown)) = guard.as_mut() {
            bar.set_position(p.bytes_done.min(*shown));
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Where `data pin` takes the checksums from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinFrom {
    /// HEAD requests: the server's announced sha256 and size.
    Server,
    /// The checksum ledger of earlier verified downloads.
    Ledger,
    /// The ledger first, then the server for what is left.
    Both,
}

/// What `nanochat data pin` asks for.
#[derive(Clone, Debug)]
pub struct PinRequest {
    /// A built-in manifest name or a manifest TOML file (default: the preset's data.manifest).
    pub manifest: Option<String>,
    pub from: PinFrom,
    /// The ledger to pin from (default: the one in the manifest's download directory).
    pub ledger: Option<PathBuf>,
    /// Rewrite the manifest file in place.
    pub write: bool,
    /// Write the manifest here (else to stdout).
    pub output: Option<PathBuf>,
}

/// `nanochat data pin`: fills the unpinned checksums of a manifest from the ledger and/or the server.
pub fn pin(config: &RunConfig, paths: &Paths, args: &PinRequest) -> Result<()> {
    let name = args.manifest.clone().unwrap_or_else(|| config.data.manifest.clone());
    let known = known_manifest_names();
    let (mut manifest, file, default_ledger) = if shard_dataset(&name).is_some() || name == SMOKE_MANIFEST_NAME {
        let (manifest, _) = shard_manifest_at_revision(paths, &name, config.data.train_shards, "")?;
        (manifest, None, Some(download_dir(paths, &name).join(LEDGER_FILE_NAME)))
    } else if let Some(parsed) = bundled_manifest(&name) {
        (parsed?, None, Some(download_dir(paths, &name).join(LEDGER_FILE_NAME)))
    } else if name.ends_with(".toml") || Path::new(&name).is_file() {
        let path = PathBuf::from(&name);
        (DataManifest::load(&path)?, Some(path), None)
    } else {
        return Err(DataStageError::UnknownManifest { name, known: known.join(", ") });
    };
    if args.write && file.is_none() {
        return Err(DataStageError::CompiledManifest(name));
    }
    let total = manifest.files.len();
    let before = manifest.unpinned().count();
    let mut reasons: Vec<(String, String)> = Vec::new();
    if before > 0 && matches!(args.from, PinFrom::Ledger | PinFrom::Both) {
        let path = args.ledger.clone().or(default_ledger).ok_or(DataStageError::NeedLedger)?;
        let ledger = ChecksumLedger::open(&path)?;
        log::info!("pinning from the ledger {}", path.display());
        reasons = pin_from_ledger(&mut manifest, &ledger).unpinned;
    }
    if manifest.unpinned().count() > 0 && matches!(args.from, PinFrom::Server | PinFrom::Both) {
        log::info!("asking the server(s) for the sha256 of {} file(s)", manifest.unpinned().count());
        let downloader = ShardDownloader::new(DownloadOptions::default());
        reasons = pin_from_server(&mut manifest, &downloader).unpinned;
    }
    let after = manifest.unpinned().count();
    for (entry, reason) in
        reasons.iter().filter(|(n, _)| manifest.entry(n).is_some_and(|e| e.sha256.pinned().is_none()))
    {
        log::warn!("{entry}: still unpinned ({reason})");
    }
    log::info!(
        "{name}: pinned {} of {before} unpinned entries ({total} in all; {after} still unpinned)",
        before - after
    );
    let text = format!(
        "# {} — checksums pinned by `nanochat data pin` on {}\n{}",
        if manifest.description.is_empty() { name.as_str() } else { manifest.description.as_str() },
        crate::logging::now_timestamp(),
        manifest.to_toml_string()?
    );
    let target = if args.write { file } else { args.output.clone() };
    match target {
        Some(path) => {
            crate::fsutil::write_atomic(&path, text.as_bytes())
                .map_err(io(format_args!("writing {}", path.display())))?;
            log::info!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
