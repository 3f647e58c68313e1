//! Data: parquet shards, input documents and the distributed dataloader (NANOCHAT.md §2).
pub mod dataloader;
pub mod documents;
pub mod parquet_shards;
pub mod shard_writer;
