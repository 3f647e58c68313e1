//! `nanochat base-loss` (NANOCHAT.md §6.2): bits per byte of the last base checkpoint on
//! `split_tokens` tokens of the train and val shards, the unigram baseline on the same val tokens,
//! and samples of the reference's prompts (greedy and sampled).
use std::sync::Arc;

use anyhow::Context;
use tch::Tensor;

use super::launch::{launch_or_join, Role};
use crate::checkpoint;
use crate::cli::{GlobalOptions, LaunchArgs};
use crate::data::batch_source::BatchSource;
use crate::data::dataloader::{DistributedLoader, LoaderConfig};
use crate::data::parquet_shards::{shards_for, Split};
use crate::data::shard_source::ParquetDocuments;
use crate::dist::Cluster;
use crate::engine::generate::{generate, SamplingSettings};
use crate::eval::bpb::{batch_totals, BpbTotals};
use crate::eval::unigram::UnigramCounts;
use crate::model::Gpt;
use crate::report::ReportSection;
use crate::tokenizer::artifacts;
use crate::train::base::SAMPLE_PROMPTS;

pub fn run(global: &GlobalOptions, launch: &LaunchArgs) -> anyhow::Result<()> {
    let Role::Worker { ctx, group, device } = launch_or_join(global, launch, "base-loss")? else { return Ok(()) };
    let config = global.resolve_config()?;
    let paths = global.paths();
    if ctx.is_master() {
        crate::logging::tee_to_file(&paths.logs().join("base-loss.log"));
    }
    let dir = paths.checkpoints("base", config.base_train.depth);
    let step = checkpoint::latest_step(&dir)
        .with_context(|| format!("no base checkpoint in {}; run `nanochat base-train` first", dir.display()))?;
    let meta = checkpoint::load_meta(&dir, step)?;
    let model = Gpt::new(meta.model_config, device).map_err(anyhow::Error::msg)?;
    checkpoint::load_weights(&model, &checkpoint::read_tensors(&checkpoint::model_path(&dir, step))?, &dir)?;
    let encoder = Arc::new(artifacts::load(&paths.tokenizer())?);
    let bytes_per_token = artifacts::load_token_bytes(&paths.tokenizer())?;
    let token_bytes =
        Tensor::from_slice(&bytes_per_token.iter().map(|&b| b as i32).collect::<Vec<_>>()).to_device(device);

    let bl = &config.base_loss;
    let seq_len = meta.model_config.sequence_len as usize;
    let per_step = bl.device_batch_size as u64 * seq_len as u64 * ctx.world_size as u64;
    let steps = (bl.split_tokens / per_step).max(1);
    let shards_dir = paths.shards(&config.data.manifest);
    let mut results = Vec::new();
    let mut unigram = UnigramCounts::default();
    for (name, split) in [("train", Split::Train), ("val", Split::Val)] {
        let cfg = LoaderConfig {
            shards: shards_for(&shards_dir, split)?,
            batch_size: bl.device_batch_size as usize,
            seq_len,
            rank: ctx.rank,
            world_size: ctx.world_size,
            device,
        };
        let mut loader = DistributedLoader::new(cfg, Arc::new(ParquetDocuments), encoder.clone(), None)
            .map_err(anyhow::Error::msg)?;
        let mut totals = BpbTotals::default();
        for _ in 0..steps {
            let (x, y) = loader.next_batch().map_err(anyhow::Error::msg)?;
            totals.add(batch_totals(&model, &x, &y, &token_bytes));
            if split == Split::Val {
                unigram.add(&y, &bytes_per_token);
            }
        }
        let totals = totals.summed_over(&Cluster { ctx: &ctx, group: group.as_ref(), device })?;
        log::info!("{name} bpb: {:.4}", totals.bpb());
        results.push((name, totals.bpb()));
    }
    if !ctx.is_master() {
        return Ok(());
    }
    // Rank 0's share of the val tokens (all of them with one process).
    let unigram_bpb = unigram.bpb();
    log::info!("val unigram baseline: {unigram_bpb:.4} bpb");
    let mut samples = String::from("Samples (greedy, then temperature 1.0 with top-k 50):\n\n");
    for (i, prompt) in SAMPLE_PROMPTS.iter().enumerate() {
        let ids = encoder.encode_with_bos(prompt)?;
        for settings in [
            SamplingSettings::greedy(16),
            SamplingSettings { max_tokens: 16, temperature: 1.0, top_k: Some(50), seed: 42 + i as i64 },
        ] {
            let out = generate(&model, &ids, &settings, |_| true);
            let text = format!("{prompt}{}", encoder.decode_lossy(&out)?);
            log::info!("{text}");
            samples += &format!("- `{}`\n", text.replace('\n', "\\n").replace('`', "'"));
        }
    }
    ReportSection::new("Base model loss")
        .value("checkpoint step", step)
        .value("train bpb", results[0].1)
        .value("val bpb", results[1].1)
        .value("val unigram baseline bpb", unigram_bpb)
        .value("tokens per split", steps * per_step)
        .markdown(samples)
        .write(&paths.report())?;
    Ok(())
}
