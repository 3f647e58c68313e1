//! One split of a HuggingFace dataset, read from the downloaded parquet files and put in the
//! reference's order: `load_dataset(repo, config, split=split).shuffle(seed=42)`, i.e. the rows
//! permuted by `numpy.random.default_rng(42).permutation(n)` (NANOCHAT.md §5.2, Appendix A).
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use super::TaskError;
use crate::data::parquet_rows::{read_rows, split_files};
use crate::paths::Paths;
use crate::pyrandom::numpy::numpy_permutation;

/// The seed of every task dataset's shuffle (§5.2).
pub const DATASET_SHUFFLE_SEED: u64 = 42;

/// What to run when a dataset is missing (the data layer's one line).
pub fn download_hint() -> String {
    crate::download::chat_data_hint()
}

/// Where a split lives: `repo` (e.g. "allenai/ai2_arc"), the directory inside it (e.g. "ARC-Easy")
/// and the split name (files `<split>-*.parquet`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitLocation {
    pub repo: &'static str,
    pub dir: String,
    pub split: String,
}

impl SplitLocation {
    pub fn directory(&self, paths: &Paths) -> PathBuf {
        paths.hf_dataset(self.repo).join(&self.dir)
    }

    pub fn describe(&self) -> String {
        format!("{}/{} split {}", self.repo, self.dir, self.split)
    }
}

/// The rows of one split, in shuffled order.
pub struct ShuffledSplit<T> {
    rows: Vec<T>,
    order: Vec<usize>,
}

impl<T: DeserializeOwned> ShuffledSplit<T> {
    pub fn load(paths: &Paths, location: &SplitLocation) -> Result<Self, TaskError> {
        let dir = location.directory(paths);
        let files = split_files(&dir, &location.split).unwrap_or_default();
        if files.is_empty() {
            return Err(missing(location, &dir));
        }
        let rows: Vec<T> = read_rows(&files, &format!("reading {}", location.describe()))?;
        let order = numpy_permutation(DATASET_SHUFFLE_SEED, rows.len());
        Ok(ShuffledSplit { rows, order })
    }
}

impl<T> ShuffledSplit<T> {
    /// From rows already in file order (tests).
    pub fn from_rows(rows: Vec<T>) -> Self {
        let order = numpy_permutation(DATASET_SHUFFLE_SEED, rows.len());
        ShuffledSplit { rows, order }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Row `index` of the shuffled split, and its position in the files (for error messages).
    pub fn row(&self, index: usize) -> Option<(&T, usize)> {
        let physical = *self.order.get(index)?;
        Some((&self.rows[physical], physical))
    }
}

fn missing(location: &SplitLocation, dir: &Path) -> TaskError {
    TaskError::MissingData {
        what: location.describe(),
        expected: format!("{}-*.parquet", location.split),
        path: dir.to_path_buf(),
        hint: download_hint(),
    }
}
