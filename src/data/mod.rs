//! Pretraining data on disk and on its way to the model (NANOCHAT.md §2): the parquet shards (reading,
//! listing, the train/val split, writing), their documents, and the distributed tokenizing dataloader that
//! turns them into `(B, T+1)` batches on the device.
pub mod batch_source;
pub mod bestfit_loader;
pub mod dataloader;
pub mod documents;
pub mod parquet_rows;
pub mod parquet_shards;
pub mod shard_source;
pub mod shard_writer;

pub use parquet_shards::{
    list_shards, shards_for, split_shards, ParquetShard, RowGroupBatch, RowGroupIter, ShardError, Split,
};
pub use shard_writer::{write_shard, ShardSummary, ShardWriter, ShardWriterOptions};
