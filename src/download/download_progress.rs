//! Progress of a download run, reported to a callback after every chunk so the CLI can draw a bar
//! with bytes, rate and ETA. Bytes already on disk (complete files, resumed partials) count as
//! done but not towards the transfer rate.
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A snapshot handed to the progress callback.
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

impl DownloadProgress {
    pub fn bytes_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.bytes_transferred as f64 / secs
        } else {
            0.0
        }
    }

    /// Time left at the current rate, once every size is known and bytes are flowing.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.bytes_per_second();
        if self.sizes_pending > 0 || rate <= 0.0 {
            return None;
        }
        Some(Duration::from_secs_f64(self.bytes_total.saturating_sub(self.bytes_done) as f64 / rate))
    }
}

pub type ProgressCallback = Arc<dyn Fn(&DownloadProgress) + Send + Sync>;

struct Counters {
    done: Vec<u64>,
    sizes: Vec<Option<u64>>,
    finished: Vec<bool>,
    transferred: u64,
}

/// Shared accounting of one run; workers update it, the callback sees snapshots.
pub(crate) struct ProgressTracker {
    names: Vec<String>,
    counters: Mutex<Counters>,
    started: Instant,
    callback: Option<ProgressCallback>,
}

impl ProgressTracker {
    pub(crate) fn new(names: Vec<String>, sizes: Vec<Option<u64>>, callback: Option<ProgressCallback>) -> Self {
        let n = names.len();
        Self {
            names,
            counters: Mutex::new(Counters { done: vec![0; n], sizes, finished: vec![false; n], transferred: 0 }),
            started: Instant::now(),
            callback,
        }
    }

    fn update(&self, index: usize, f: impl FnOnce(&mut Counters)) {
        let snapshot = {
            let mut counters = self.counters.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut counters);
            if self.callback.is_none() {
                return;
            }
            DownloadProgress {
                file: self.names.get(index).cloned().unwrap_or_default(),
                bytes_done: counters.done.iter().sum(),
                bytes_total: counters.sizes.iter().flatten().sum(),
                sizes_pending: counters.sizes.iter().filter(|s| s.is_none()).count(),
                files_done: counters.finished.iter().filter(|f| **f).count(),
                files_total: counters.finished.len(),
                bytes_transferred: counters.transferred,
                elapsed: self.started.elapsed(),
            }
        };
        if let Some(callback) = &self.callback {
            callback(&snapshot);
        }
    }

    pub(crate) fn set_size(&self, index: usize, size: u64) {
        self.update(index, |c| {
            if let Some(slot) = c.sizes.get_mut(index) {
                *slot = Some(size);
            }
        });
    }

    /// The file's bytes on disk are now `bytes` (resumed partial, or reset to 0 after a discard).
    pub(crate) fn set_done(&self, index: usize, bytes: u64) {
        self.update(index, |c| {
            if let Some(slot) = c.done.get_mut(index) {
                *slot = bytes;
            }
        });
    }

    pub(crate) fn add_transferred(&self, index: usize, bytes: u64) {
        self.update(index, |c| {
            if let Some(slot) = c.done.get_mut(index) {
                *slot += bytes;
            }
            c.transferred += bytes;
        });
    }

    pub(crate) fn finish(&self, index: usize, size: u64) {
        self.update(index, |c| {
            if let (Some(done), Some(total), Some(finished)) =
                (c.done.get_mut(index), c.sizes.get_mut(index), c.finished.get_mut(index))
            {
                *done = size;
                *total = Some(size);
                *finished = true;
            }
        });
    }
}
