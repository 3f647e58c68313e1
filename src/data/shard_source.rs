//! The production pieces behind the dataloader's traits: documents from parquet shards and the
//! trained BPE tokenizer.
use std::path::Path;

use super::dataloader::{DocumentEncoder, DocumentSource};
use super::parquet_shards::ParquetShard;
use crate::data::batch_source::BatchError;
use crate::tokenizer::BpeEncoder;

/// Reads row groups straight from the shard files (each read reopens the file: footers are small).
pub struct ParquetDocuments;

impl DocumentSource for ParquetDocuments {
    fn num_row_groups(&self, shard: &Path) -> Result<usize, BatchError> {
        Ok(ParquetShard::open(shard)?.num_row_groups())
    }

    fn read_row_group(&self, shard: &Path, row_group: usize) -> Result<Vec<String>, BatchError> {
        Ok(ParquetShard::open(shard)?.read_row_group(row_group)?)
    }
}

impl DocumentEncoder for BpeEncoder {
    fn encode_with_bos(&self, docs: &[String]) -> Result<Vec<Vec<u32>>, BatchError> {
        Ok(self.encode_batch_with_bos(docs)?)
    }
}
