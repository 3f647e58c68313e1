//! `nanochat bench dataloader`: tokens per second the pretraining dataloader sustains (parquet reading
//! and BPE tokenization in its background thread) on this machine, next to what one GPU consumes in
//! the d20 speedrun. Uses the preset's shards and trained tokenizer.
use std::sync::Arc;
use std::time::Instant;

use crate::cli::{BenchDataloaderArgs, GlobalOptions};
use crate::data::batch_source::BatchSource;
use crate::data::dataloader::{DistributedLoader, LoaderConfig};
use crate::data::parquet_shards::{shards_for, Split};
use crate::data::shard_source::ParquetDocuments;
use crate::tokenizer::artifacts;

/// d20 on 8×H100: 524,288 tokens per step at ~1.05 s per step (NANOCHAT.md §10: 21,400 steps in
/// ~3 h of training), i.e. about 62K tokens/s per GPU.
pub const D20_TOKENS_PER_SECOND_PER_GPU: f64 = 524_288.0 / 1.05 / 8.0;

pub fn run(global: &GlobalOptions, args: &BenchDataloaderArgs) -> anyhow::Result<()> {
    let config = global.resolve_config()?;
    let paths = global.paths();
    let encoder = Arc::new(artifacts::load(&paths.tokenizer())?);
    let shards = shards_for(&paths.shards(&config.data.manifest), Split::Train)?;
    let cfg = LoaderConfig {
        shards,
        batch_size: args.batch,
        seq_len: args.seq_len,
        rank: 0,
        world_size: 1,
        device: tch::Device::Cpu,
    };
    let mut loader =
        DistributedLoader::new(cfg, Arc::new(ParquetDocuments), encoder, None).map_err(anyhow::Error::msg)?;
    let _warmup = loader.next_batch().map_err(anyhow::Error::msg)?; // first row group read and tokenized
    let start = Instant::now();
    for _ in 0..args.batches {
        let _batch = loader.next_batch().map_err(anyhow::Error::msg)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let tokens = (args.batches * args.batch * args.seq_len) as f64;
    println!(
        "{}",
        serde_json::json!({
            "tokens_per_sec": tokens / secs, "batches": args.batches, "batch": args.batch, "seq_len": args.seq_len,
            "threads": rayon::current_num_threads(), "d20_tokens_per_sec_per_gpu": D20_TOKENS_PER_SECOND_PER_GPU,
            "headroom": tokens / secs / D20_TOKENS_PER_SECOND_PER_GPU,
        })
    );
    Ok(())
}
