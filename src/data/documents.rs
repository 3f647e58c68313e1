//! Documents for tokenizer training from a user-given `--input`: a parquet shard (column `text`),
//! a `.jsonl` file (each line a JSON string or an object with a "text" field), a plain text file
//! (documents separated by blank lines), or a directory of such files (sorted by path).
use std::path::{Path, PathBuf};

use super::parquet_shards::{ParquetShard, RowGroupIter, SHARD_EXTENSION};

#[derive(Debug, thiserror::Error)]
pub enum DocumentsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}, line {line}: not a JSON string or an object with a \"text\" string")]
    Jsonl { path: PathBuf, line: usize },
    #[error("no .txt, .jsonl or .parquet files under {0}")]
    Empty(PathBuf),
    #[error(transparent)]
    Shard(#[from] super::parquet_shards::ShardError),
}

/// Batches of documents (a row group, a file), read lazily.
pub type DocumentBatches = Box<dyn Iterator<Item = Result<Vec<String>, DocumentsError>>>;

/// The input files under `path` in reading order.
pub fn input_files(path: &Path) -> Result<Vec<PathBuf>, DocumentsError> {
    let read_err = |source| DocumentsError::Read { path: path.to_path_buf(), source };
    if !path.is_dir() {
        std::fs::metadata(path).map_err(read_err)?;
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(read_err)? {
            let p = entry.map_err(read_err)?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "txt" || e == "jsonl" || e == SHARD_EXTENSION) {
                files.push(p);
            }
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(DocumentsError::Empty(path.to_path_buf()));
    }
    Ok(files)
}

/// Every document of one file.
pub fn read_file(path: &Path) -> Result<Vec<String>, DocumentsError> {
    let read_err = |source| DocumentsError::Read { path: path.to_path_buf(), source };
    match path.extension().and_then(|e| e.to_str()) {
        Some(SHARD_EXTENSION) => {
            let shard = ParquetShard::open(path)?;
            let mut docs = Vec::new();
            for group in shard.row_groups() {
                docs.extend(group?);
            }
            Ok(docs)
        }
        Some("jsonl") => {
            let text = std::fs::read_to_string(path).map_err(read_err)?;
            let mut docs = Vec::new();
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let value: serde_json::Value = serde_json::from_str(line)
                    .map_err(|_| DocumentsError::Jsonl { path: path.to_path_buf(), line: i + 1 })?;
                let doc = value.as_str().or_else(|| value.get("text")?.as_str());
                docs.push(doc.ok_or(DocumentsError::Jsonl { path: path.to_path_buf(), line: i + 1 })?.to_string());
            }
            Ok(docs)
        }
        _ => {
            let text = std::fs::read_to_string(path).map_err(read_err)?;
            Ok(text.split("\n\n").map(str::trim).filter(|d| !d.is_empty()).map(String::from).collect())
        }
    }
}

/// Documents of parquet shards in order, one row group at a time (what tok-train reads by default).
pub fn shard_documents(shards: Vec<PathBuf>) -> impl Iterator<Item = Result<Vec<String>, DocumentsError>> {
    RowGroupIter::all(shards).map(|batch| Ok(batch?.documents))
}

/// Documents of input files in order, one file at a time.
pub fn file_documents(files: Vec<PathBuf>) -> impl Iterator<Item = Result<Vec<String>, DocumentsError>> {
    files.into_iter().map(|f| read_file(&f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_jsonl_inputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "first para\nstill first\n\n\nsecond\n").unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "\"one\"\n{\"text\": \"two\", \"id\": 3}\n\n").unwrap();
        std::fs::write(dir.path().join("ignored.md"), "x").unwrap();
        let files = input_files(dir.path()).unwrap();
        assert_eq!(
            files.iter().map(|f| f.file_name().unwrap().to_str().unwrap()).collect::<Vec<_>>(),
            ["a.jsonl", "b.txt"]
        );
        let docs: Vec<String> = file_documents(files).flat_map(|d| d.unwrap()).collect();
        assert_eq!(docs, ["one", "two", "first para\nstill first", "second"]);
        std::fs::write(dir.path().join("bad.jsonl"), "{\"id\": 1}\n").unwrap();
        let err = read_file(&dir.path().join("bad.jsonl")).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(matches!(input_files(&dir.path().join("nope")), Err(DocumentsError::Read { .. })));
    }
}
