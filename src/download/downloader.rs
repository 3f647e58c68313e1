//! Everything that fetches one file safely. `ShardDownloader` fetches the files of a data manifest
//! into a directory: each file is written to `<name>.partial`, resumed with HTTP Range after an
//! interruption, retried with exponential backoff and jitter on timeouts, resets, 5xx and bad bytes
//! (4xx fails at once), and renamed to its final name only after its size and sha256 check out, so a
//! partial or unverified file never sits under the final name. The expected sha256 is the manifest's;
//! for an `unpinned` entry the one recorded in the checksum ledger, else the server-announced one,
//! else the first download's hash is recorded (trust on first use). A [`DownloadHandle`] runs a pool
//! of workers in the background in priority order, so the first shards (the ones the tokenizer needs,
//! NANOCHAT.md §1.4 and §10.1) arrive first while the others continue; progress goes to a callback
//! after every chunk. DESIGN.md "Data and artifacts"; NANOCHAT.md §2.1 (download with a pool of
//! workers, 5 attempts, 2^attempt s backoff, temp file + rename).
//!
//! One request follows redirects by hand so that the headers of every hop are seen (HuggingFace
//! announces the LFS sha256 in `x-linked-etag` and the size in `x-linked-size` on the `302` of a
//! `resolve/` URL, not on the CDN's final answer).
use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ureq::http::HeaderMap;

use super::manifest::{ChecksumLedger, ChecksumSource, LedgerError, LedgerRecord, ManifestEntry, Sha256Digest};
use crate::fsutil::PARTIAL_SUFFIX;

const CHUNK_BYTES: usize = 256 * 1024;
/// Redirect hops followed before giving up.
const MAX_REDIRECTS: u32 = 10;
/// Headers that announce a file's sha256 (hex), in order of preference. `x-linked-etag` is the LFS
/// object id on HuggingFace (only accepted when it is 64 hex digits, i.e. a sha256).
const CHECKSUM_HEADERS: [&str; 3] = ["x-checksum-sha256", "x-linked-etag", "x-sha256"];
const SIZE_HEADER: &str = "x-linked-size";

#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Files fetched at the same time (§2.1 uses a pool of 4).
    pub parallelism: usize,
    pub retry: RetryPolicy,
    pub connect_timeout: Duration,
    /// Longest wait for the response or for any single read of the body (a stalled transfer
    /// fails after this and resumes on the next attempt).
    pub read_timeout: Duration,
    /// Re-hash files already under their final name before trusting them.
    pub rehash_existing: bool,
    pub user_agent: String,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            parallelism: 4,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            rehash_existing: true,
            user_agent: format!("nanochat/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// How a file came to be present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileStatus {
    /// It was already there and matched.
    AlreadyPresent,
    /// Fetched now; `resumed_from` is the size of the partial file the first attempt found.
    Downloaded { attempts: u32, resumed_from: u64 },
}

/// Where the accepted sha256 came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumOrigin {
    Manifest,
    Ledger,
    Server,
    /// Nothing to compare with: hashed and recorded (trust on first use).
    FirstDownload,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadedFile {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: Sha256Digest,
    pub checksum_origin: ChecksumOrigin,
    pub status: FileStatus,
}

/// Result of [`ShardDownloader::verify`].
#[derive(Debug, Default)]
pub struct VerifyReport {
    /// On disk and matching.
    pub intact: Vec<String>,
    /// Missing or mismatching, fetched again successfully.
    pub repaired: Vec<String>,
    /// Could not be repaired.
    pub failed: Vec<DownloadError>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.failed.is_empty()
    }
}

struct Expectation {
    sha256: Option<(Sha256Digest, ChecksumOrigin)>,
    size: Option<u64>,
}

/// Parallel, resuming, verifying downloader. Cheap to clone (shared agent, ledger and callback).
#[derive(Clone)]
pub struct ShardDownloader {
    agent: ureq::Agent,
    options: DownloadOptions,
    ledger: Option<Arc<Mutex<ChecksumLedger>>>,
    progress: Option<ProgressCallback>,
}

impl ShardDownloader {
    pub fn new(options: DownloadOptions) -> Self {
        let agent = build_agent(options.connect_timeout, options.read_timeout, &options.user_agent);
        Self { agent, options, ledger: None, progress: None }
    }

    /// Records and checks the sha256 of unpinned files in `ledger`.
    pub fn with_ledger(mut self, ledger: ChecksumLedger) -> Self {
        self.ledger = Some(Arc::new(Mutex::new(ledger)));
        self
    }

    /// Calls `callback` after every chunk with the progress of the current run.
    pub fn with_progress(mut self, callback: impl Fn(&DownloadProgress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(callback));
        self
    }

    pub fn options(&self) -> &DownloadOptions {
        &self.options
    }

    /// The server's announced sha256 and size of `url`, without downloading it.
    pub fn probe(&self, url: &str) -> Result<AnnouncedFile, DownloadError> {
        probe(&self.agent, url)
    }

    /// Downloads one file into `dest_dir`, blocking.
    pub fn download(&self, entry: &ManifestEntry, dest_dir: &Path) -> Result<DownloadedFile, DownloadError> {
        let tracker = ProgressTracker::new(std::slice::from_ref(entry), self.progress.clone());
        self.fetch(entry, dest_dir, 0, &tracker, &AtomicBool::new(false))
    }

    /// Downloads `entries` (in priority order, `parallelism` at a time) and waits for all of them.
    /// Returns every file, or the first error in manifest order after all workers finished.
    pub fn download_all(
        &self,
        entries: &[ManifestEntry],
        dest_dir: &Path,
    ) -> Result<Vec<DownloadedFile>, DownloadError> {
        self.start(entries.to_vec(), dest_dir.to_path_buf()).join().into_iter().collect()
    }

    /// Starts downloading `entries` in the background, first entries first; [`DownloadHandle::join`]
    /// waits for them. Dropping the handle cancels what is left (partials stay).
    pub fn start(&self, entries: Vec<ManifestEntry>, dest_dir: PathBuf) -> DownloadHandle {
        DownloadHandle::spawn(self.clone(), entries, dest_dir)
    }

    /// Re-hashes the files of `entries` in `dest_dir` against their expected sha256 and fetches
    /// again the ones that are missing or do not match.
    pub fn verify(&self, entries: &[ManifestEntry], dest_dir: &Path) -> VerifyReport {
        let mut report = VerifyReport::default();
        let mut to_fetch = Vec::new();
        for entry in entries {
            let path = dest_dir.join(&entry.name);
            if !path.exists() {
                to_fetch.push(entry.clone());
                continue;
            }
            match self.check_existing(entry, &path) {
                Ok(Some(_)) => report.intact.push(entry.name.clone()),
                Ok(None) => {
                    log::warn!("{}: on-disk file does not match its checksum; fetching it again", entry.name);
                    if let Err(e) = fs::remove_file(&path) {
                        report.failed.push(DownloadError::io(&entry.name, "remove", &path, e));
                        continue;
                    }
                    to_fetch.push(entry.clone());
                }
                Err(e) => report.failed.push(e),
            }
        }
        for result in self.start(to_fetch, dest_dir.to_path_buf()).join() {
            match result {
                Ok(file) => report.repaired.push(file.name),
                Err(e) => report.failed.push(e),
            }
        }
        report
    }

    fn expectation(&self, entry: &ManifestEntry) -> Expectation {
        if let Some(digest) = entry.sha256.pinned() {
            return Expectation { sha256: Some((digest.clone(), ChecksumOrigin::Manifest)), size: entry.size };
        }
        let ledger = self.ledger.as_ref().map(|ledger| ledger.lock().unwrap_or_else(PoisonError::into_inner));
        match ledger.and_then(|ledger| ledger.get(&entry.name).cloned()) {
            Some(record) => Expectation {
                sha256: Some((record.sha256, ChecksumOrigin::Ledger)),
                size: entry.size.or(Some(record.size)),
            },
            None => Expectation { sha256: None, size: entry.size },
        }
    }

    /// Checks a file under its final name. `Some` = accepted, `None` = does not match.
    fn check_existing(&self, entry: &ManifestEntry, path: &Path) -> Result<Option<DownloadedFile>, DownloadError> {
        let expectation = self.expectation(entry);
        let size = fs::metadata(path).map_err(|e| DownloadError::io(&entry.name, "stat", path, e))?.len();
        if expectation.size.is_some_and(|expected| expected != size) {
            return Ok(None);
        }
        let accepted = |sha256, checksum_origin| DownloadedFile {
            name: entry.name.clone(),
            path: path.to_path_buf(),
            size,
            sha256,
            checksum_origin,
            status: FileStatus::AlreadyPresent,
        };
        if !self.options.rehash_existing && expectation.size.is_some() {
            if let Some((digest, origin)) = expectation.sha256 {
                return Ok(Some(accepted(digest, origin)));
            }
        }
        let actual = Sha256Digest::of_file(path).map_err(|e| DownloadError::io(&entry.name, "read", path, e))?;
        match expectation.sha256 {
            Some((expected, origin)) if expected == actual => Ok(Some(accepted(actual, origin))),
            Some(_) => Ok(None),
            None => {
                // A file under its final name got there through a verified rename (or the user put
                // it there): record what it is, so it can never change silently from now on.
                self.record_in_ledger(entry, &actual, size, ChecksumSource::FirstDownload)?;
                Ok(Some(accepted(actual, ChecksumOrigin::FirstDownload)))
            }
        }
    }

    fn record_in_ledger(
        &self,
        entry: &ManifestEntry,
        sha256: &Sha256Digest,
        size: u64,
        source: ChecksumSource,
    ) -> Result<(), DownloadError> {
        if entry.sha256.pinned().is_some() {
            return Ok(());
        }
        let Some(ledger) = &self.ledger else { return Ok(()) };
        let mut ledger = ledger.lock().unwrap_or_else(PoisonError::into_inner);
        let record = LedgerRecord { sha256: sha256.clone(), size, url: entry.url.clone(), source };
        ledger
            .record(&entry.name, record)
            .map_err(|e| DownloadError::Ledger { name: entry.name.clone(), source: Arc::new(e) })
    }

    /// The whole life of one file: existing check, attempts with backoff, verification, rename.
    fn fetch(
        &self,
        entry: &ManifestEntry,
        dest_dir: &Path,
        index: usize,
        tracker: &ProgressTracker,
        cancel: &AtomicBool,
    ) -> Result<DownloadedFile, DownloadError> {
        let final_path = dest_dir.join(&entry.name);
        let partial_path = dest_dir.join(format!("{}{PARTIAL_SUFFIX}", entry.name));
        // `name` may be a relative path (a dataset file at its path in the repository).
        let file_dir = final_path.parent().unwrap_or(dest_dir);
        fs::create_dir_all(file_dir).map_err(|e| DownloadError::io(&entry.name, "create directory", file_dir, e))?;
        if final_path.exists() {
            if let Some(file) = self.check_existing(entry, &final_path)? {
                tracker.finish(index, file.size);
                return Ok(file);
            }
            log::warn!("{}: existing file does not match its checksum; downloading it again", entry.name);
            fs::remove_file(&final_path).map_err(|e| DownloadError::io(&entry.name, "remove", &final_path, e))?;
        }
        let resumed_from = fs::metadata(&partial_path).map(|m| m.len()).unwrap_or(0);
        let max_attempts = self.options.retry.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            if cancel.load(Ordering::SeqCst) {
                return Err(DownloadError::Cancelled { name: entry.name.clone() });
            }
            let result =
                self.attempt(entry, &partial_path, index, tracker, cancel).and_then(|(size, digest, origin)| {
                    self.accept(entry, &partial_path, &final_path, size, digest, origin)
                });
            match result {
                Ok((size, sha256, checksum_origin)) => {
                    tracker.finish(index, size);
                    return Ok(DownloadedFile {
                        name: entry.name.clone(),
                        path: final_path,
                        size,
                        sha256,
                        checksum_origin,
                        status: FileStatus::Downloaded { attempts: attempt, resumed_from },
                    });
                }
                Err(error) if error.is_retryable() && attempt < max_attempts => {
                    let delay = self.options.retry.delay_after(attempt);
                    log::warn!("{error}; attempt {attempt}/{max_attempts}, retrying in {:.1}s", delay.as_secs_f64());
                    sleep_unless_cancelled(delay, cancel);
                    attempt += 1;
                }
                Err(error) if error.is_retryable() => {
                    return Err(DownloadError::GaveUp {
                        name: entry.name.clone(),
                        attempts: attempt,
                        last: Box::new(error),
                    })
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One request: appends to the partial file from where it stops, checks the size and hashes
    /// it. A partial file that cannot be right (bad hash, too long, restart forced) is deleted.
    fn attempt(
        &self,
        entry: &ManifestEntry,
        partial: &Path,
        index: usize,
        tracker: &ProgressTracker,
        cancel: &AtomicBool,
    ) -> Result<(u64, Sha256Digest, ChecksumOrigin), DownloadError> {
        let name = entry.name.as_str();
        let expectation = self.expectation(entry);
        let remove_partial = || match fs::remove_file(partial) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DownloadError::io(name, "remove", partial, e)),
            _ => Ok(()),
        };
        let mut offset = fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        if expectation.size.is_some_and(|size| offset > size) {
            remove_partial()?;
            offset = 0;
        }
        tracker.set_done(index, offset);
        let mut announced = AnnouncedFile::default();
        let mut server_size = None;
        if expectation.size != Some(offset) || offset == 0 {
            let response = open(&self.agent, name, &entry.url, offset)?;
            announced = response.announced.clone();
            server_size = announced.size.or(response.total_size);
            if let (Some(expected), Some(server)) = (expectation.size, server_size) {
                if expected != server {
                    return Err(DownloadError::SizeMismatch {
                        name: name.into(),
                        expected,
                        actual: server,
                        context: "but the server announces",
                    });
                }
            }
            if let Some(size) = expectation.size.or(server_size) {
                tracker.update(index, |file, _| file.size = Some(size));
            }
            match response.kind {
                BodyKind::NothingLeft => {
                    if server_size.is_none() && expectation.sha256.is_none() {
                        // Nothing tells whether the partial file is the whole file: start over.
                        remove_partial()?;
                        return Err(DownloadError::Protocol {
                            name: name.into(),
                            url: response.final_url,
                            message: "416 for a resumed download with no size to check the partial file against".into(),
                        });
                    }
                }
                kind => {
                    if kind == BodyKind::Whole && offset > 0 {
                        log::info!("{name}: server ignored the Range request; starting over");
                        remove_partial()?;
                        tracker.set_done(index, 0);
                    }
                    let mut file = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(partial)
                        .map_err(|e| DownloadError::io(name, "open", partial, e))?;
                    // What this transfer adds to the partial file, when a size is known.
                    let start = if kind == BodyKind::Whole { 0 } else { offset };
                    let rest = expectation.size.or(server_size).map(|size| size.saturating_sub(start));
                    let copied = copy_body(
                        name,
                        &response.final_url,
                        response.body,
                        (&mut file, partial, rest),
                        index,
                        tracker,
                        cancel,
                    );
                    file.sync_all().map_err(|e| {
                        let e = crate::fsutil::explain_write_error(e, partial, rest.unwrap_or(0));
                        DownloadError::io(name, "sync", partial, e)
                    })?;
                    copied?;
                }
            }
        }
        let size = fs::metadata(partial).map_err(|e| DownloadError::io(name, "stat", partial, e))?.len();
        if let Some(expected) = expectation.size.or(server_size) {
            if size < expected {
                // Keep the bytes: the next attempt resumes from here.
                return Err(DownloadError::SizeMismatch {
                    name: name.into(),
                    expected,
                    actual: size,
                    context: "but the transfer ended after",
                });
            }
            if size > expected {
                remove_partial()?;
                return Err(DownloadError::SizeMismatch { name: name.into(), expected, actual: size, context: "got" });
            }
        }
        let actual = Sha256Digest::of_file(partial).map_err(|e| DownloadError::io(name, "read", partial, e))?;
        let (expected, origin) = match (expectation.sha256, announced.sha256) {
            (Some((expected, origin)), server) => {
                if let Some(server) = server.filter(|s| *s != expected) {
                    log::warn!("{name}: the server announces sha256 {server}, expected {expected} ({origin:?})");
                }
                (Some(expected), origin)
            }
            (None, Some(server)) => (Some(server), ChecksumOrigin::Server),
            (None, None) => (None, ChecksumOrigin::FirstDownload),
        };
        if let Some(expected) = expected {
            if expected != actual {
                remove_partial()?;
                tracker.set_done(index, 0);
                return Err(DownloadError::ChecksumMismatch {
                    name: name.into(),
                    expected,
                    actual,
                    expected_from: match origin {
                        ChecksumOrigin::Manifest => "manifest",
                        ChecksumOrigin::Ledger => "checksum ledger",
                        _ => "server-announced",
                    },
                });
            }
        }
        Ok((size, actual, origin))
    }

    /// Moves a verified partial file to its final name and records unpinned checksums.
    fn accept(
        &self,
        entry: &ManifestEntry,
        partial: &Path,
        final_path: &Path,
        size: u64,
        sha256: Sha256Digest,
        origin: ChecksumOrigin,
    ) -> Result<(u64, Sha256Digest, ChecksumOrigin), DownloadError> {
        match origin {
            ChecksumOrigin::Server => self.record_in_ledger(entry, &sha256, size, ChecksumSource::ServerHeader)?,
            ChecksumOrigin::FirstDownload => {
                self.record_in_ledger(entry, &sha256, size, ChecksumSource::FirstDownload)?
            }
            ChecksumOrigin::Manifest | ChecksumOrigin::Ledger => {}
        }
        fs::rename(partial, final_path).map_err(|e| DownloadError::io(&entry.name, "rename", partial, e))?;
        if let Some(dir) = final_path.parent() {
            // Make the rename durable; failure to sync a directory is not worth failing over.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok((size, sha256, origin))
    }
}

fn copy_body(
    name: &str,
    url: &str,
    body: ureq::Body,
    (file, path, rest): (&mut File, &Path, Option<u64>),
    index: usize,
    tracker: &ProgressTracker,
    cancel: &AtomicBool,
) -> Result<(), DownloadError> {
    let mut reader = body.into_reader();
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut written = 0u64;
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(DownloadError::Cancelled { name: name.into() });
        }
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DownloadError::Network { name: name.into(), url: url.into(), message: e.to_string() })
            }
        };
        file.write_all(&buffer[..n]).map_err(|e| {
            // Out of space: the whole rest of the file is what it needs (at least this chunk when unknown).
            let needed = rest.unwrap_or(written + n as u64);
            DownloadError::io(name, "write", path, crate::fsutil::explain_write_error(e, path, needed))
        })?;
        written += n as u64;
        tracker.update(index, |file, transferred| {
            file.done += n as u64;
            *transferred += n as u64;
        });
    }
}

fn sleep_unless_cancelled(delay: Duration, cancel: &AtomicBool) {
    let step = Duration::from_millis(50);
    let mut left = delay;
    while !left.is_zero() && !cancel.load(Ordering::SeqCst) {
        let nap = left.min(step);
        std::thread::sleep(nap);
        left -= nap;
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("{name}: HTTP {status} from {url} (not retried: check the URL or revision in the manifest)")]
    HttpClient { name: String, url: String, status: u16 },
    #[error("{name}: HTTP {status} from {url}")]
    HttpServer { name: String, url: String, status: u16 },
    #[error("{name}: network error talking to {url}: {message}")]
    Network { name: String, url: String, message: String },
    #[error(
        "{name}: TLS failure talking to {url}: {message} (not retried: install the CA certificates of your network \
         into the system trust store, or point SSL_CERT_FILE at a bundle that has them)"
    )]
    Tls { name: String, url: String, message: String },
    #[error("{name}: invalid URL {url}: {message}")]
    InvalidUrl { name: String, url: String, message: String },
    #[error("{name}: more than {max} redirects starting at {url}")]
    TooManyRedirects { name: String, url: String, max: u32 },
    #[error("{name}: unexpected response from {url}: {message}")]
    Protocol { name: String, url: String, message: String },
    #[error("{name}: expected {expected} bytes, {context} {actual}")]
    SizeMismatch { name: String, expected: u64, actual: u64, context: &'static str },
    #[error("{name}: sha256 mismatch: expected {expected} ({expected_from}), downloaded bytes hash to {actual}")]
    ChecksumMismatch { name: String, expected: Sha256Digest, actual: Sha256Digest, expected_from: &'static str },
    #[error("{name}: cannot {action} {path}: {source}")]
    Io { name: String, action: &'static str, path: PathBuf, source: Arc<std::io::Error> },
    #[error("{name}: {source}")]
    Ledger { name: String, source: Arc<LedgerError> },
    #[error("{name}: download cancelled (the partial file is kept and resumes next time)")]
    Cancelled { name: String },
    #[error("{name}: gave up after {attempts} attempts; last error: {last}")]
    GaveUp { name: String, attempts: u32, last: Box<DownloadError> },
}

impl DownloadError {
    /// Whether another attempt may succeed (transient network or server trouble, bad bytes).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DownloadError::HttpServer { .. }
                | DownloadError::Network { .. }
                | DownloadError::Protocol { .. }
                | DownloadError::SizeMismatch { .. }
                | DownloadError::ChecksumMismatch { .. }
        )
    }

    /// The failure that ended the download (looks through [`DownloadError::GaveUp`]).
    pub fn root(&self) -> &DownloadError {
        match self {
            DownloadError::GaveUp { last, .. } => last.root(),
            other => other,
        }
    }

    fn io(name: &str, action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        DownloadError::Io { name: name.to_string(), action, path: path.to_path_buf(), source: Arc::new(source) }
    }
}

/// When and how long the downloader waits before trying a file again: exponential backoff with
/// jitter, bounded attempts. Defaults follow NANOCHAT.md §2.1 (5 attempts, delays of 2^attempt
/// seconds); the jitter spreads retries of parallel workers so they do not hit a server in step.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per file, the first one included (§2.1: 5).
    pub max_attempts: u32,
    /// Delay after the first failed attempt; doubles after each further failure (§2.1: 2 s).
    pub initial_delay: Duration,
    /// Upper bound of any single delay.
    pub max_delay: Duration,
    /// Fraction of each delay that is random, in [0, 1]: 0.5 waits between 50 % and 100 % of it.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 5, initial_delay: Duration::from_secs(2), max_delay: Duration::from_secs(60), jitter: 0.5 }
    }
}

impl RetryPolicy {
    /// Delay to wait after attempt number `failed_attempt` (1-based) failed.
    pub fn delay_after(&self, failed_attempt: u32) -> Duration {
        let doublings = failed_attempt.saturating_sub(1).min(30);
        let base = self.initial_delay.saturating_mul(1u32 << doublings).min(self.max_delay);
        let jitter = self.jitter.clamp(0.0, 1.0);
        base.mul_f64(1.0 - jitter * random_unit())
    }
}

/// A uniform number in [0, 1) from the process's hash randomness (no RNG crate needed for jitter).
fn random_unit() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// A snapshot handed to the progress callback after every chunk, so the CLI can draw a bar. Bytes
/// already on disk (complete files, resumed partials) count as done but not as transferred.
#[derive(Clone, Debug, PartialEq)]
pub struct DownloadProgress {
    /// The file whose bytes just moved.
    pub file: String,
    /// Bytes present for all files of the run (downloaded now or already on disk).
    pub bytes_done: u64,
    /// Sum of the sizes known so far (see `sizes_pending`).
    pub bytes_total: u64,
    /// Files whose size is not known yet (unpinned entries not yet contacted).
    pub sizes_pending: usize,
    pub files_done: usize,
    pub files_total: usize,
    /// Bytes transferred over the network in this run.
    pub bytes_transferred: u64,
    pub elapsed: Duration,
}

pub type ProgressCallback = Arc<dyn Fn(&DownloadProgress) + Send + Sync>;

/// One file of a run: bytes on disk, size when known, finished or not.
struct FileCount {
    done: u64,
    size: Option<u64>,
    finished: bool,
}

/// Shared accounting of one run; workers update it, the callback sees snapshots.
struct ProgressTracker {
    names: Vec<String>,
    /// Every file, and the bytes transferred over the network in this run.
    counters: Mutex<(Vec<FileCount>, u64)>,
    started: Instant,
    callback: Option<ProgressCallback>,
}

impl ProgressTracker {
    fn new(entries: &[ManifestEntry], callback: Option<ProgressCallback>) -> Self {
        let files = entries.iter().map(|e| FileCount { done: 0, size: e.size, finished: false }).collect();
        let names = entries.iter().map(|e| e.name.clone()).collect();
        Self { names, counters: Mutex::new((files, 0)), started: Instant::now(), callback }
    }

    /// Applies `f` to file `index` (and the bytes transferred), then shows the callback the run.
    fn update(&self, index: usize, f: impl FnOnce(&mut FileCount, &mut u64)) {
        let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
        let (files, transferred) = &mut *counters;
        f(&mut files[index], transferred);
        let Some(callback) = &self.callback else { return };
        let snapshot = DownloadProgress {
            file: self.names[index].clone(),
            bytes_done: files.iter().map(|f| f.done).sum(),
            bytes_total: files.iter().filter_map(|f| f.size).sum(),
            sizes_pending: files.iter().filter(|f| f.size.is_none()).count(),
            files_done: files.iter().filter(|f| f.finished).count(),
            files_total: files.len(),
            bytes_transferred: *transferred,
            elapsed: self.started.elapsed(),
        };
        drop(counters);
        callback(&snapshot);
    }

    /// The file's bytes on disk are now `bytes` (resumed partial, or reset to 0 after a discard).
    fn set_done(&self, index: usize, bytes: u64) {
        self.update(index, |file, _| file.done = bytes);
    }

    fn finish(&self, index: usize, size: u64) {
        self.update(index, |file, _| *file = FileCount { done: size, size: Some(size), finished: true });
    }
}

type FileResult = Result<DownloadedFile, DownloadError>;

struct Shared {
    entries: Vec<ManifestEntry>,
    /// The first entry no worker has taken yet.
    next: AtomicUsize,
    results: Mutex<Vec<Option<FileResult>>>,
    cancel: AtomicBool,
}

/// Downloads running in the background: a pool of `parallelism` worker threads takes the entries in
/// priority order, so the first files arrive first. Dropping it cancels the files not finished yet
/// (their partial files stay and resume next time) and waits for the workers to stop.
pub struct DownloadHandle {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl DownloadHandle {
    fn spawn(downloader: ShardDownloader, entries: Vec<ManifestEntry>, dest_dir: PathBuf) -> Self {
        let tracker = Arc::new(ProgressTracker::new(&entries, downloader.progress.clone()));
        let results = Mutex::new(entries.iter().map(|_| None).collect());
        let workers = downloader.options.parallelism.max(1).min(entries.len().max(1));
        let shared = Arc::new(Shared { entries, next: AtomicUsize::new(0), results, cancel: AtomicBool::new(false) });
        let workers = (0..workers)
            .map(|_| {
                let (shared, downloader, dest_dir, tracker) =
                    (shared.clone(), downloader.clone(), dest_dir.clone(), tracker.clone());
                std::thread::spawn(move || {
                    while !shared.cancel.load(Ordering::SeqCst) {
                        let index = shared.next.fetch_add(1, Ordering::SeqCst);
                        let Some(entry) = shared.entries.get(index) else { break };
                        let result = downloader.fetch(entry, &dest_dir, index, &tracker, &shared.cancel);
                        if let Err(error) = &result {
                            // Said as it happens (a long download goes on for the other files); the
                            // caller's error lists every failure once more at the end.
                            log::warn!("{error} (the other files continue)");
                        }
                        shared.results.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(result);
                    }
                })
            })
            .collect();
        Self { shared, workers }
    }

    /// Waits for all workers; one result per entry, in manifest order.
    pub fn join(mut self) -> Vec<FileResult> {
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        let mut results = self.shared.results.lock().unwrap_or_else(PoisonError::into_inner);
        let cancelled = |entry: &ManifestEntry| Err(DownloadError::Cancelled { name: entry.name.clone() });
        results
            .iter_mut()
            .zip(&self.shared.entries)
            .map(|(slot, entry)| slot.take().unwrap_or_else(|| cancelled(entry)))
            .collect()
    }
}

impl Drop for DownloadHandle {
    fn drop(&mut self) {
        self.shared.cancel.store(true, Ordering::SeqCst);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// What the server said about the whole file, on any hop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnouncedFile {
    pub sha256: Option<Sha256Digest>,
    pub size: Option<u64>,
}

impl AnnouncedFile {
    fn absorb(&mut self, headers: &HeaderMap) {
        for name in CHECKSUM_HEADERS {
            if self.sha256.is_none() {
                self.sha256 = header(headers, name).and_then(Sha256Digest::parse);
            }
        }
        if self.size.is_none() {
            self.size = header(headers, SIZE_HEADER).and_then(|v| v.trim().parse().ok());
        }
    }
}

/// How the server answered a (possibly ranged) GET.
#[derive(Debug, PartialEq, Eq)]
enum BodyKind {
    /// 200: the whole file from byte 0 (a Range, if sent, was ignored).
    Whole,
    /// 206: the file from the requested offset on.
    FromOffset,
    /// 416: nothing left after the offset; the partial file may already be complete.
    NothingLeft,
}

struct RemoteResponse {
    kind: BodyKind,
    final_url: String,
    announced: AnnouncedFile,
    /// Size of the whole file according to this response (Content-Range total or Content-Length).
    total_size: Option<u64>,
    body: ureq::Body,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Resolves a `Location` header against the URL it came from.
pub(super) fn resolve_location(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{}{rest}", &base[..scheme_end]);
    }
    if location.starts_with('/') {
        return format!("{}{location}", &base[..authority_end]);
    }
    let path = &base[authority_end..];
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir_end = path.rfind('/').map_or(0, |i| i + 1);
    format!("{}{}{location}", &base[..authority_end], &path[..dir_end])
}

/// Parses `Content-Range: bytes START-END/TOTAL` into (START, TOTAL?).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim();
    let (span, total) = rest.split_once('/')?;
    let start = span.split_once('-')?.0.trim().parse().ok()?;
    let total = total.trim().parse().ok();
    Some((start, total))
}

pub(super) fn build_agent(connect_timeout: Duration, read_timeout: Duration, user_agent: &str) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(connect_timeout))
        .timeout_recv_response(Some(read_timeout))
        .timeout_per_read(Some(read_timeout))
        .user_agent(user_agent)
        // The system's trust store (and SSL_CERT_FILE), not only the bundled Mozilla roots:
        // networks that reach registries through an intercepting proxy add their CA there.
        .tls_config(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build())
        .build()
        .into()
}

fn transport_error(name: &str, url: &str, error: ureq::Error) -> DownloadError {
    match error {
        ureq::Error::BadUri(message) => DownloadError::InvalidUrl { name: name.into(), url: url.into(), message },
        ureq::Error::Http(e) => {
            DownloadError::InvalidUrl { name: name.into(), url: url.into(), message: e.to_string() }
        }
        other => {
            let message = other.to_string();
            if message.contains("certificate") {
                // Retrying cannot fix trust: say so at once.
                return DownloadError::Tls { name: name.into(), url: url.into(), message };
            }
            DownloadError::Network { name: name.into(), url: url.into(), message }
        }
    }
}

/// Sends a GET (with `Range: bytes=N-` when `offset` > 0) or a HEAD to `url`, following redirects by
/// hand: the last response (a redirect only when it has no `Location`), its URL and what every hop
/// announced. 408, 429 and 5xx are a retryable [`DownloadError::HttpServer`].
fn follow(
    agent: &ureq::Agent,
    name: &str,
    url: &str,
    head: bool,
    offset: u64,
) -> Result<(ureq::http::Response<ureq::Body>, String, AnnouncedFile), DownloadError> {
    let mut current = url.to_string();
    let mut announced = AnnouncedFile::default();
    for _ in 0..=MAX_REDIRECTS {
        let mut request = if head { agent.head(&current) } else { agent.get(&current) };
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let response = request.call().map_err(|e| transport_error(name, &current, e))?;
        announced.absorb(response.headers());
        let status = response.status().as_u16();
        match (status, header(response.headers(), "location")) {
            (301 | 302 | 303 | 307 | 308, Some(location)) => current = resolve_location(&current, location),
            (408 | 429 | 500..=599, _) => {
                return Err(DownloadError::HttpServer { name: name.into(), url: current, status })
            }
            _ => return Ok((response, current, announced)),
        }
    }
    Err(DownloadError::TooManyRedirects { name: name.into(), url: url.into(), max: MAX_REDIRECTS })
}

/// GETs `url` from byte `offset` (no Range header when 0), following redirects.
fn open(agent: &ureq::Agent, name: &str, url: &str, offset: u64) -> Result<RemoteResponse, DownloadError> {
    let (response, final_url, announced) = follow(agent, name, url, false, offset)?;
    let status = response.status().as_u16();
    let protocol = |message: String| DownloadError::Protocol { name: name.into(), url: final_url.clone(), message };
    let content_range = header(response.headers(), "content-range");
    let (kind, total_size) = match status {
        200 => (BodyKind::Whole, response.body().content_length()),
        206 => {
            let (start, total) = content_range
                .and_then(parse_content_range)
                .ok_or_else(|| protocol("206 without a valid Content-Range".into()))?;
            if start != offset {
                return Err(protocol(format!("asked for bytes from {offset}, got a range starting at {start}")));
            }
            (BodyKind::FromOffset, total.or_else(|| response.body().content_length().map(|n| n + offset)))
        }
        416 if offset > 0 => {
            let total =
                content_range.and_then(|v| v.trim().strip_prefix("bytes */")).and_then(|v| v.trim().parse().ok());
            (BodyKind::NothingLeft, total)
        }
        301 | 302 | 303 | 307 | 308 => return Err(protocol(format!("HTTP {status} without a Location header"))),
        _ => return Err(DownloadError::HttpClient { name: name.into(), url: final_url, status }),
    };
    Ok(RemoteResponse { kind, final_url, announced, total_size, body: response.into_body() })
}

/// Asks the server what it announces about `url` (sha256 and size) without downloading the body:
/// the basis of pinning an unpinned manifest entry (`nanochat data pin`).
fn probe(agent: &ureq::Agent, url: &str) -> Result<AnnouncedFile, DownloadError> {
    let (response, final_url, mut announced) = follow(agent, url, url, true, 0)?;
    let status = response.status().as_u16();
    match status {
        301 | 302 | 303 | 307 | 308 => {}
        200..=299 => {
            announced.size = announced.size.or_else(|| header(response.headers(), "content-length")?.parse().ok())
        }
        _ => return Err(DownloadError::HttpClient { name: url.into(), url: final_url, status }),
    }
    Ok(announced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_bounded_and_jitter_within_range() {
        let policy = RetryPolicy { jitter: 0.0, ..RetryPolicy::default() };
        assert_eq!(policy.delay_after(1), Duration::from_secs(2));
        assert_eq!(policy.delay_after(2), Duration::from_secs(4));
        assert_eq!(policy.delay_after(4), Duration::from_secs(16));
        assert_eq!(policy.delay_after(40), Duration::from_secs(60));
        let jittered = RetryPolicy::default();
        for attempt in 1..6 {
            let delay = jittered.delay_after(attempt);
            let base = policy.delay_after(attempt);
            assert!(delay <= base && delay >= base / 2, "{delay:?} vs {base:?}");
        }
    }

    #[test]
    fn resolves_redirect_locations() {
        let base = "https://huggingface.co/datasets/a/b/resolve/rev/shard_00000.parquet";
        assert_eq!(resolve_location(base, "https://cdn.example/x?sig=1"), "https://cdn.example/x?sig=1");
        assert_eq!(resolve_location(base, "/api/x"), "https://huggingface.co/api/x");
        assert_eq!(resolve_location(base, "//cdn.example/y"), "https://cdn.example/y");
        assert_eq!(
            resolve_location(base, "other.parquet"),
            "https://huggingface.co/datasets/a/b/resolve/rev/other.parquet"
        );
    }

    #[test]
    fn parses_content_range() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
