//! What the dataloader tests feed the loaders instead of parquet files and the BPE tokenizer: shards
//! held in memory, and a byte-level encoder.
#![allow(dead_code)]
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use nanochat::data::batch_source::BatchError;
use nanochat::data::dataloader::{DocumentEncoder, DocumentSource};

pub const BOS: u32 = 0;

/// Shards held in memory: path -> row groups -> documents.
pub struct MemoryShards(pub HashMap<PathBuf, Vec<Vec<String>>>);

impl DocumentSource for MemoryShards {
    fn num_row_groups(&self, shard: &Path) -> Result<usize, BatchError> {
        Ok(self.0.get(shard).ok_or("no such shard")?.len())
    }
    fn read_row_group(&self, shard: &Path, rg: usize) -> Result<Vec<String>, BatchError> {
        Ok(self.0.get(shard).ok_or("no such shard")?[rg].clone())
    }
}

/// Byte-level stand-in for the BPE tokenizer: BOS, then byte + 1.
pub struct Bytes;

impl DocumentEncoder for Bytes {
    fn encode_with_bos(&self, docs: &[String]) -> Result<Vec<Vec<u32>>, BatchError> {
        Ok(docs.iter().map(|d| std::iter::once(BOS).chain(d.bytes().map(|b| b as u32 + 1)).collect()).collect())
    }
}
