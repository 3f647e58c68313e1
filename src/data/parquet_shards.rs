//! Reading pretraining shards (NANOCHAT.md §2.1, §2.2): parquet files with a string column `text`,
//! read one row group at a time so memory stays at one row group (1,024 documents). Also the
//! listing of a shard directory — `*.parquet` only, sorted by name, partial and hidden files
//! excluded — and the train/val split: the last listed shard is validation, all others train
//! (§2.1; §1.4: the tokenizer reads the train shards in this order).
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::basic::Type as PhysicalType;
use parquet::column::reader::{get_typed_column_reader, ColumnReader};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::reader::{FileReader, SerializedFileReader};

/// Name of the document column (§2.1: single column `text`).
pub const TEXT_COLUMN: &str = "text";
/// Extension of a complete shard.
pub const SHARD_EXTENSION: &str = "parquet";

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("cannot list shard directory {path}: {source}")]
    List { path: PathBuf, source: std::io::Error },
    #[error("cannot open shard {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} is not a readable parquet shard (truncated or corrupt? delete it and download it again): {message}"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("{path} has no string column `{TEXT_COLUMN}`")]
    NoTextColumn { path: PathBuf },
    #[error("{path}: row group {row_group} has a null or non-UTF-8 `{TEXT_COLUMN}` value at row {row}")]
    BadText { path: PathBuf, row_group: usize, row: usize },
    #[error("{path}: row group {row_group} does not exist (the shard has {count})")]
    NoSuchRowGroup { path: PathBuf, row_group: usize, count: usize },
    #[error("cannot write shard {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("no shards in {path}: at least {needed} needed (one for validation)")]
    TooFewShards { path: PathBuf, needed: usize },
}

/// The `*.parquet` files directly in `dir`, sorted by file name. Files being downloaded or
/// written (`*.partial`, `*.tmp`) and hidden files are not shards.
pub fn list_shards(dir: &Path) -> Result<Vec<PathBuf>, ShardError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ShardError::List { path: dir.to_path_buf(), source })?;
    let mut shards = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ShardError::List { path: dir.to_path_buf(), source })?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let is_shard = !name.starts_with('.')
            && path.extension().is_some_and(|e| e == SHARD_EXTENSION)
            && entry.file_type().is_ok_and(|t| t.is_file() || t.is_symlink());
        if is_shard {
            shards.push(path);
        }
    }
    shards.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(shards)
}

/// Which part of the local shards to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Every shard but the last.
    Train,
    /// The last shard.
    Val,
}

/// Train/val split of the listed shards (§2.1): `(train, val)`; needs at least two shards.
pub fn split_shards(dir: &Path) -> Result<(Vec<PathBuf>, PathBuf), ShardError> {
    let mut shards = list_shards(dir)?;
    if shards.len() < 2 {
        return Err(ShardError::TooFewShards { path: dir.to_path_buf(), needed: 2 });
    }
    let val = shards.pop().ok_or(ShardError::TooFewShards { path: dir.to_path_buf(), needed: 2 })?;
    Ok((shards, val))
}

/// The shards of one split, in reading order.
pub fn shards_for(dir: &Path, split: Split) -> Result<Vec<PathBuf>, ShardError> {
    let (train, val) = split_shards(dir)?;
    Ok(match split {
        Split::Train => train,
        Split::Val => vec![val],
    })
}

/// One open shard.
pub struct ParquetShard {
    path: PathBuf,
    reader: SerializedFileReader<File>,
    text_column: usize,
}

impl ParquetShard {
    pub fn open(path: &Path) -> Result<Self, ShardError> {
        let file = File::open(path).map_err(|source| ShardError::Open { path: path.to_path_buf(), source })?;
        let reader = SerializedFileReader::new(file)
            .map_err(|e| ShardError::Corrupt { path: path.to_path_buf(), message: e.to_string() })?;
        let schema = reader.metadata().file_metadata().schema_descr();
        let text_column = (0..schema.num_columns())
            .find(|&i| {
                let column = schema.column(i);
                column.path().parts() == [TEXT_COLUMN]
                    && column.physical_type() == PhysicalType::BYTE_ARRAY
                    && column.max_rep_level() == 0
            })
            .ok_or_else(|| ShardError::NoTextColumn { path: path.to_path_buf() })?;
        Ok(Self { path: path.to_path_buf(), reader, text_column })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn num_row_groups(&self) -> usize {
        self.reader.num_row_groups()
    }

    pub fn num_documents(&self) -> u64 {
        self.reader.metadata().file_metadata().num_rows().max(0) as u64
    }

    /// The documents of row group `index`, in order.
    pub fn read_row_group(&self, index: usize) -> Result<Vec<String>, ShardError> {
        let corrupt = |e: parquet::errors::ParquetError| ShardError::Corrupt {
            path: self.path.clone(),
            message: format!("row group {index}: {e}"),
        };
        let count = self.num_row_groups();
        if index >= count {
            return Err(ShardError::NoSuchRowGroup { path: self.path.clone(), row_group: index, count });
        }
        let row_group = self.reader.get_row_group(index).map_err(corrupt)?;
        let rows = row_group.metadata().num_rows().max(0) as usize;
        let column = match row_group.get_column_reader(self.text_column).map_err(corrupt)? {
            ColumnReader::ByteArrayColumnReader(reader) => reader,
            _ => return Err(ShardError::NoTextColumn { path: self.path.clone() }),
        };
        let mut column = get_typed_column_reader::<ByteArrayType>(ColumnReader::ByteArrayColumnReader(column));
        let max_def_level =
            self.reader.metadata().file_metadata().schema_descr().column(self.text_column).max_def_level();
        let mut values: Vec<ByteArray> = Vec::with_capacity(rows);
        let mut def_levels: Vec<i16> = Vec::with_capacity(rows);
        let mut records = 0;
        while records < rows {
            let (read, _, _) =
                column.read_records(rows - records, Some(&mut def_levels), None, &mut values).map_err(corrupt)?;
            if read == 0 {
                break;
            }
            records += read;
        }
        if records != rows || (max_def_level > 0 && def_levels.len() != rows) {
            return Err(ShardError::Corrupt {
                path: self.path.clone(),
                message: format!("row group {index}: expected {rows} rows, decoded {records}"),
            });
        }
        if max_def_level > 0 {
            if let Some(row) = def_levels.iter().position(|&level| level < max_def_level) {
                return Err(ShardError::BadText { path: self.path.clone(), row_group: index, row });
            }
        }
        values
            .into_iter()
            .enumerate()
            .map(|(row, value)| {
                String::from_utf8(value.data().to_vec()).map_err(|_| ShardError::BadText {
                    path: self.path.clone(),
                    row_group: index,
                    row,
                })
            })
            .collect()
    }

    /// All row groups in order, one `Vec` of documents each.
    pub fn row_groups(&self) -> impl Iterator<Item = Result<Vec<String>, ShardError>> + '_ {
        (0..self.num_row_groups()).map(|index| self.read_row_group(index))
    }
}

/// A row group's worth of documents and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowGroupBatch {
    pub shard_index: usize,
    pub row_group: usize,
    pub documents: Vec<String>,
}

/// Reads `shards` in order, row group by row group, taking row groups `start, start + step, …`
/// of each shard (§2.2: rank r of W reads row groups r, r+W, r+2W, …; one pass, no looping).
pub struct RowGroupIter {
    shards: Vec<PathBuf>,
    start: usize,
    step: usize,
    shard_index: usize,
    next_row_group: usize,
    current: Option<ParquetShard>,
}

impl RowGroupIter {
    pub fn new(shards: Vec<PathBuf>, start: usize, step: usize) -> Self {
        Self { shards, start, step: step.max(1), shard_index: 0, next_row_group: start, current: None }
    }

    /// Every row group of every shard.
    pub fn all(shards: Vec<PathBuf>) -> Self {
        Self::new(shards, 0, 1)
    }
}

impl Iterator for RowGroupIter {
    type Item = Result<RowGroupBatch, ShardError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let path = self.shards.get(self.shard_index)?;
            let shard = match self.current.take() {
                Some(shard) => shard,
                None => match ParquetShard::open(path) {
                    Ok(shard) => shard,
                    Err(e) => {
                        self.shard_index = self.shards.len();
                        return Some(Err(e));
                    }
                },
            };
            if self.next_row_group >= shard.num_row_groups() {
                self.shard_index += 1;
                self.next_row_group = self.start;
                continue;
            }
            let row_group = self.next_row_group;
            let result = shard.read_row_group(row_group);
            self.next_row_group += self.step;
            let shard_index = self.shard_index;
            self.current = Some(shard);
            return Some(match result {
                Ok(documents) => Ok(RowGroupBatch { shard_index, row_group, documents }),
                Err(e) => {
                    self.shard_index = self.shards.len();
                    Err(e)
                }
            });
        }
    }
}
