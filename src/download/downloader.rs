//! `ShardDownloader`: fetches the files of a data manifest into a directory, safely. Each file is
//! written to `<name>.partial`, resumed with HTTP Range after an interruption, retried with
//! exponential backoff and jitter on timeouts, resets, 5xx and bad bytes (4xx fails at once), and
//! renamed to its final name only after its size and sha256 check out, so a partial or unverified
//! file never sits under the final name. The expected sha256 is the manifest's; for an `unpinned`
//! entry the one recorded in the checksum ledger, else the server-announced one, else the first
//! download's hash is recorded (trust on first use). DESIGN.md "Data and artifacts"; NANOCHAT.md
//! §2.1 (download with a pool of workers, 5 attempts, 2^attempt s backoff, temp file + rename).
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::checksum_ledger::{ChecksumLedger, ChecksumSource, LedgerRecord};
use super::download_error::DownloadError;
use super::download_handle::DownloadHandle;
use super::download_progress::{DownloadProgress, ProgressCallback, ProgressTracker};
use super::manifest::ManifestEntry;
use super::remote_file::{self, AnnouncedFile, BodyKind};
use super::retry_policy::RetryPolicy;
use super::sha256_digest::Sha256Digest;

use crate::fsutil::PARTIAL_SUFFIX;
const CHUNK_BYTES: usize = 256 * 1024;

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
        let agent = remote_file::build_agent(options.connect_timeout, options.read_timeout, &options.user_agent);
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
        remote_file::probe(&self.agent, url)
    }

    /// Downloads one file into `dest_dir`, blocking.
    pub fn download(&self, entry: &ManifestEntry, dest_dir: &Path) -> Result<DownloadedFile, DownloadError> {
        let tracker = ProgressTracker::new(vec![entry.name.clone()], vec![entry.size], self.progress.clone());
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

    /// Starts downloading `entries` in the background, first entries first: wait for the ones a
    /// stage needs now with [`DownloadHandle::wait_for_first`], let the rest continue, and
    /// [`DownloadHandle::join`] later. Dropping the handle cancels what is left (partials stay).
    pub fn start(&self, entries: Vec<ManifestEntry>, dest_dir: PathBuf) -> DownloadHandle {
        DownloadHandle::spawn(self.clone(), entries, dest_dir)
    }

    pub(crate) fn tracker_for(&self, entries: &[ManifestEntry]) -> ProgressTracker {
        ProgressTracker::new(
            entries.iter().map(|e| e.name.clone()).collect(),
            entries.iter().map(|e| e.size).collect(),
            self.progress.clone(),
        )
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

    fn ledger_record(&self, name: &str) -> Option<LedgerRecord> {
        let ledger = self.ledger.as_ref()?;
        let ledger = ledger.lock().unwrap_or_else(PoisonError::into_inner);
        ledger.get(name).cloned()
    }

    fn expectation(&self, entry: &ManifestEntry) -> Expectation {
        if let Some(digest) = entry.sha256.pinned() {
            return Expectation { sha256: Some((digest.clone(), ChecksumOrigin::Manifest)), size: entry.size };
        }
        match self.ledger_record(&entry.name) {
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
    pub(crate) fn fetch(
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
            let response = remote_file::open(&self.agent, name, &entry.url, offset)?;
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
                tracker.set_size(index, size);
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
        tracker.add_transferred(index, n as u64);
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
