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

/// Every row of `files`, in order, converted to `T`.
pub fn read_rows<T: DeserializeOwned>(files: &[PathBuf]) -> Result<Vec<T>, ParquetRowsError> {
    let mut rows = Vec::new();
    for path in files {
        let file = File::open(path).map_err(|source| ParquetRowsError::Open { path: path.clone(), source })?;
        let corrupt =
            |e: parquet::errors::ParquetError| ParquetRowsError::Corrupt { path: path.clone(), message: e.to_string() };
        let reader = SerializedFileReader::new(file).map_err(corrupt)?;
        rows.reserve(reader.metadata().file_metadata().num_rows().max(0) as usize);
        for (i, row) in reader.into_iter().enumerate() {
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
