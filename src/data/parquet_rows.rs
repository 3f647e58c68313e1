//! Rows of HuggingFace dataset parquet files (the task datasets of NANOCHAT.md §5.2) as typed
//! records: each row's nested fields (lists, structs) become JSON, then the caller's serde type.
//! A split stored in several files (`train-00000-of-00002.parquet`, ...) is read in file-name order,
//! as the `datasets` library concatenates them.
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::progress::Unit;

#[derive(Debug, thiserror::Error)]
pub enum ParquetRowsError {
    #[error("cannot open {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error(
        "{path} is not a readable parquet file (truncated or corrupt? delete it and download it again): {message}"
    )]
    Corrupt { path: PathBuf, message: String },
    #[error("{path}: row {row} does not have the expected fields: {message}")]
    BadRow { path: PathBuf, row: usize, message: String },
}

/// Files of this many rows or more show a progress bar while they are read (the big splits: SmolTalk
/// train has ~460K rows); it is updated every `PROGRESS_STEP` rows.
const PROGRESS_MIN_ROWS: u64 = 50_000;
const PROGRESS_STEP: usize = 4096;

/// The parquet files of one split in `dir`: `<split>-*.parquet`, sorted by name.
pub fn split_files(dir: &Path, split: &str) -> std::io::Result<Vec<PathBuf>> {
    let prefix = format!("{split}-");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".parquet") && !n.starts_with('.'))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Every row of `files`, in order, converted to `T`; `label` names them on the progress bar.
pub fn read_rows<T: DeserializeOwned>(files: &[PathBuf], label: &str) -> Result<Vec<T>, ParquetRowsError> {
    let mut readers = Vec::with_capacity(files.len());
    for path in files {
        let file = File::open(path).map_err(|source| ParquetRowsError::Open { path: path.clone(), source })?;
        let reader = SerializedFileReader::new(file)
            .map_err(|e| ParquetRowsError::Corrupt { path: path.clone(), message: e.to_string() })?;
        readers.push((path, reader));
    }
    let total: u64 = readers.iter().map(|(_, r)| r.metadata().file_metadata().num_rows().max(0) as u64).sum();
    let mut progress = (total >= PROGRESS_MIN_ROWS).then(|| crate::progress::Progress::new(label, total, Unit::Items));
    let mut rows = Vec::with_capacity(total as usize);
    for (path, reader) in readers {
        let corrupt =
            |e: parquet::errors::ParquetError| ParquetRowsError::Corrupt { path: path.clone(), message: e.to_string() };
        for (i, row) in reader.into_iter().enumerate() {
            if i % PROGRESS_STEP == 0 {
                if let Some(p) = progress.as_mut() {
                    p.set_position(rows.len() as u64);
                }
            }
            let row = row.map_err(corrupt)?;
            let value = Value::Object(row.get_column_iter().map(|(k, f)| (k.clone(), field_to_json(f))).collect());
            let typed = serde_json::from_value(value).map_err(|e| ParquetRowsError::BadRow {
                path: path.clone(),
                row: i,
                message: e.to_string(),
            })?;
            rows.push(typed);
        }
    }
    Ok(rows)
}

/// The JSON form of one parquet value (what the `datasets` library returns for it).
fn field_to_json(field: &Field) -> Value {
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => (*n).into(),
        Field::Short(n) => (*n).into(),
        Field::Int(n) => (*n).into(),
        Field::Long(n) => (*n).into(),
        Field::UByte(n) => (*n).into(),
        Field::UShort(n) => (*n).into(),
        Field::UInt(n) => (*n).into(),
        Field::ULong(n) => (*n).into(),
        Field::Float(x) => serde_json::Number::from_f64(f64::from(*x)).map_or(Value::Null, Value::Number),
        Field::Double(x) => serde_json::Number::from_f64(*x).map_or(Value::Null, Value::Number),
        Field::Str(s) => Value::String(s.clone()),
        Field::Group(row) => {
            Value::Object(row.get_column_iter().map(|(k, f)| (k.clone(), field_to_json(f))).collect::<Map<_, _>>())
        }
        Field::ListInternal(list) => Value::Array(list.elements().iter().map(field_to_json).collect()),
        // Types no task dataset uses (dates, decimals, binary, maps) keep their display form.
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_files_are_sorted_and_a_damaged_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["train-00001-of-00002.parquet", "train-00000-of-00002.parquet", "test-00000-of-00001.parquet"] {
            std::fs::write(dir.path().join(name), b"not parquet").unwrap();
        }
        std::fs::write(dir.path().join(".train-00002-of-00002.parquet"), b"hidden").unwrap();
        let files = split_files(dir.path(), "train").unwrap();
        let names: Vec<_> = files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]);
        let err = read_rows::<serde_json::Value>(&files, "test").unwrap_err().to_string();
        assert!(err.contains("train-00000-of-00002.parquet is not a readable parquet file"), "{err}");
        assert!(err.contains("download it again"), "{err}");
    }
}
