//! Background downloads in priority order: a pool of `parallelism` worker threads takes manifest
//! entries first-come-first-served, so the first shards (the ones the tokenizer needs, NANOCHAT.md
//! §1.4 and §10.1: the speedrun downloads 8 shards, trains the tokenizer while the rest arrive)
//! are fetched first while the others continue. The handle lets a stage wait for just the files it
//! needs, cancel the rest, or join everything.
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::download_error::DownloadError;
use super::download_progress::ProgressTracker;
use super::downloader::{DownloadedFile, ShardDownloader};
use super::manifest::ManifestEntry;

type FileResult = Result<DownloadedFile, DownloadError>;

struct Board {
    queue: VecDeque<usize>,
    results: Vec<Option<FileResult>>,
}

struct Shared {
    entries: Vec<ManifestEntry>,
    board: Mutex<Board>,
    changed: Condvar,
    cancel: AtomicBool,
}

impl Shared {
    fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Downloads running in the background. Dropping it cancels the files not finished yet (their
/// partial files stay and resume next time) and waits for the workers to stop.
pub struct DownloadHandle {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl DownloadHandle {
    pub(crate) fn spawn(downloader: ShardDownloader, entries: Vec<ManifestEntry>, dest_dir: PathBuf) -> Self {
        let tracker = Arc::new(downloader.tracker_for(&entries));
        let count = entries.len();
        let shared = Arc::new(Shared {
            entries,
            board: Mutex::new(Board { queue: (0..count).collect(), results: (0..count).map(|_| None).collect() }),
            changed: Condvar::new(),
            cancel: AtomicBool::new(false),
        });
        let workers = (0..downloader.options().parallelism.max(1).min(count.max(1)))
            .map(|_| {
                let (shared, downloader, dest_dir, tracker) =
                    (shared.clone(), downloader.clone(), dest_dir.clone(), tracker.clone());
                std::thread::spawn(move || worker(&shared, &downloader, &dest_dir, &tracker))
            })
            .collect();
        Self { shared, workers }
    }

    pub fn len(&self) -> usize {
        self.shared.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shared.entries.is_empty()
    }

    /// Blocks until the first `n` entries (in priority order) are finished; returns them, or the
    /// first error among them.
    pub fn wait_for_first(&self, n: usize) -> Result<Vec<DownloadedFile>, DownloadError> {
        let n = n.min(self.len());
        let mut board = self.shared.board();
        while board.results[..n].iter().any(Option::is_none) {
            board = self.shared.changed.wait(board).unwrap_or_else(PoisonError::into_inner);
        }
        board.results[..n].iter().flatten().cloned().collect()
    }

    /// Blocks until the entry called `name` is finished (`None` if it is not part of this run).
    pub fn wait_for(&self, name: &str) -> Option<Result<DownloadedFile, DownloadError>> {
        let index = self.shared.entries.iter().position(|e| e.name == name)?;
        let mut board = self.shared.board();
        loop {
            if let Some(result) = &board.results[index] {
                return Some(result.clone());
            }
            board = self.shared.changed.wait(board).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Number of entries finished (successfully or not).
    pub fn finished(&self) -> usize {
        self.shared.board().results.iter().filter(|r| r.is_some()).count()
    }

    /// Stops taking new files and interrupts the ones in flight (their partial files stay).
    pub fn cancel(&self) {
        self.shared.cancel.store(true, Ordering::SeqCst);
    }

    /// Waits for all workers; one result per entry, in manifest order.
    pub fn join(mut self) -> Vec<Result<DownloadedFile, DownloadError>> {
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
        let mut board = self.shared.board();
        let entries = &self.shared.entries;
        board
            .results
            .iter_mut()
            .zip(entries)
            .map(|(slot, entry)| {
                slot.take().unwrap_or_else(|| Err(DownloadError::Cancelled { name: entry.name.clone() }))
            })
            .collect()
    }
}

impl Drop for DownloadHandle {
    fn drop(&mut self) {
        if self.workers.is_empty() {
            return;
        }
        self.cancel();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn worker(shared: &Shared, downloader: &ShardDownloader, dest_dir: &std::path::Path, tracker: &ProgressTracker) {
    loop {
        if shared.cancel.load(Ordering::SeqCst) {
            break;
        }
        let Some(index) = shared.board().queue.pop_front() else { break };
        let result = downloader.fetch(&shared.entries[index], dest_dir, index, tracker, &shared.cancel);
        if let Err(error) = &result {
            // Said as it happens (a long download goes on for the other files); the caller's error lists
            // every failure once more at the end.
            log::warn!("{error} (the other files continue)");
        }
        shared.board().results[index] = Some(result);
        shared.changed.notify_all();
    }
    // Entries nobody will take any more are reported as cancelled, so waiters wake up.
    let mut board = shared.board();
    if shared.cancel.load(Ordering::SeqCst) {
        while let Some(index) = board.queue.pop_front() {
            board.results[index] = Some(Err(DownloadError::Cancelled { name: shared.entries[index].name.clone() }));
        }
    }
    drop(board);
    shared.changed.notify_all();
}
