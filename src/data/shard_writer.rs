//! Writes FineWeb-style pretraining shards: one parquet file with a single string column `text`,
//! 1,024 documents per row group, zstd level 3, no dictionary, no statistics — the layout of
//! NANOCHAT.md §2.1 (`row_group_size=1024`, `use_dictionary=False`, `compression="zstd"`,
//! `compression_level=3`, `write_statistics=False`). Used for test data and the smoke corpus. The
//! file is written as `<name>.partial` and renamed when complete, and the output depends only on
//! the documents (fixed `created_by`, no timestamps), so the same input gives the same bytes.
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::parquet_shards::{ShardError, TEXT_COLUMN};
use crate::fsutil::PARTIAL_SUFFIX;

/// Documents per row group (§2.1: `row_group_size=1024`).
pub const DOCS_PER_ROW_GROUP: usize = 1024;
/// zstd level (§2.1: `compression_level=3`).
pub const ZSTD_LEVEL: i32 = 3;
/// Recorded in the file footer; fixed so shard bytes do not depend on the writer's version string.
const CREATED_BY: &str = "nanochat shard writer";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardWriterOptions {
    pub docs_per_row_group: usize,
    pub zstd_level: i32,
}

impl Default for ShardWriterOptions {
    fn default() -> Self {
        Self { docs_per_row_group: DOCS_PER_ROW_GROUP, zstd_level: ZSTD_LEVEL }
    }
}

/// What a finished shard holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSummary {
    pub path: PathBuf,
    pub documents: usize,
    pub row_groups: usize,
    /// Unicode scalar values (Python characters) over all documents.
    pub chars: u64,
}

/// Streams documents into a shard, one row group per `docs_per_row_group` documents.
pub struct ShardWriter {
    writer: SerializedFileWriter<File>,
    pending: Vec<String>,
    options: ShardWriterOptions,
    partial_path: PathBuf,
    final_path: PathBuf,
    documents: usize,
    row_groups: usize,
    chars: u64,
}

fn write_error(path: &Path, error: impl std::fmt::Display) -> ShardError {
    ShardError::Write { path: path.to_path_buf(), message: error.to_string() }
}

impl ShardWriter {
    pub fn create(path: &Path, options: ShardWriterOptions) -> Result<Self, ShardError> {
        let schema = parse_message_type(&format!("message schema {{ OPTIONAL BYTE_ARRAY {TEXT_COLUMN} (STRING); }}"))
            .map_err(|e| write_error(path, e))?;
        let level = ZstdLevel::try_new(options.zstd_level).map_err(|e| write_error(path, e))?;
        let properties = WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_compression(Compression::ZSTD(level))
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_max_row_group_row_count(Some(options.docs_per_row_group.max(1)))
            .set_created_by(CREATED_BY.to_string())
            .build();
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("shard.parquet");
        let partial_path = path.with_file_name(format!("{file_name}{PARTIAL_SUFFIX}"));
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| write_error(dir, e))?;
        }
        let file = File::create(&partial_path).map_err(|e| write_error(&partial_path, e))?;
        let writer = SerializedFileWriter::new(file, Arc::new(schema), Arc::new(properties))
            .map_err(|e| write_error(&partial_path, e))?;
        Ok(Self {
            writer,
            pending: Vec::new(),
            options,
            partial_path,
            final_path: path.to_path_buf(),
            documents: 0,
            row_groups: 0,
            chars: 0,
        })
    }

    pub fn write_document(&mut self, text: &str) -> Result<(), ShardError> {
        self.pending.push(text.to_string());
        if self.pending.len() >= self.options.docs_per_row_group.max(1) {
            self.flush_row_group()?;
        }
        Ok(())
    }

    /// Ends the current row group early (the next document starts a new one).
    pub fn flush_row_group(&mut self) -> Result<(), ShardError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let docs = std::mem::take(&mut self.pending);
        let values: Vec<ByteArray> = docs.iter().map(|d| ByteArray::from(d.as_bytes().to_vec())).collect();
        let definition_levels = vec![1i16; values.len()];
        let path = self.partial_path.clone();
        let mut row_group = self.writer.next_row_group().map_err(|e| write_error(&path, e))?;
        let mut column = row_group
            .next_column()
            .map_err(|e| write_error(&path, e))?
            .ok_or_else(|| write_error(&path, "schema has no column"))?;
        column
            .typed::<ByteArrayType>()
            .write_batch(&values, Some(&definition_levels), None)
            .map_err(|e| write_error(&path, e))?;
        column.close().map_err(|e| write_error(&path, e))?;
        row_group.close().map_err(|e| write_error(&path, e))?;
        self.documents += docs.len();
        self.row_groups += 1;
        self.chars += docs.iter().map(|d| d.chars().count() as u64).sum::<u64>();
        Ok(())
    }

    /// Writes the footer, syncs and renames the shard to its final name.
    pub fn finish(mut self) -> Result<ShardSummary, ShardError> {
        self.flush_row_group()?;
        let path = self.partial_path.clone();
        let file = self.writer.into_inner().map_err(|e| write_error(&path, e))?;
        file.sync_all().map_err(|e| write_error(&path, e))?;
        std::fs::rename(&self.partial_path, &self.final_path).map_err(|e| write_error(&self.final_path, e))?;
        Ok(ShardSummary {
            path: self.final_path,
            documents: self.documents,
            row_groups: self.row_groups,
            chars: self.chars,
        })
    }
}

/// Writes `documents` as one shard at `path`.
pub fn write_shard<S: AsRef<str>>(
    path: &Path,
    documents: &[S],
    options: ShardWriterOptions,
) -> Result<ShardSummary, ShardError> {
    let mut writer = ShardWriter::create(path, options)?;
    for document in documents {
        writer.write_document(document.as_ref())?;
    }
    writer.finish()
}
