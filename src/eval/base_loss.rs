//! The `base-loss` stage (NANOCHAT.md §6.2, the reference's `base_loss.py`): bits per byte of the last
//! base checkpoint on `split_tokens` tokens of the train and val shards, the unigram baseline on the
//! same val tokens, and samples of the reference's prompts (greedy and sampled); then, on rank 0, the
//! report section "Base model loss".
use std::path::PathBuf;
use std::sync::Arc;

use tch::Tensor;

use crate::config::RunConfig;
use crate::data::batch_source::{BatchError, BatchSource};
use crate::data::dataloader::{DistributedLoader, LoaderConfig};
use crate::data::parquet_shards::{shards_for, ShardError, Split};
use crate::data::shard_source::ParquetDocuments;
use crate::dist::{Cluster, DistError};
use crate::engine::generate::{generate, SamplingSettings};
use crate::engine::loaded_model::{LoadError, LoadedModel, ModelSpec};
use crate::eval::bpb::{batch_totals, BpbTotals};
use crate::eval::unigram::UnigramCounts;
use crate::paths::Paths;
use crate::report_section::ReportSection;
use crate::tokenizer::{artifacts, TokenizerError};

/// Prompts sampled during training and by base-loss (§4.4, §6.2).
pub const SAMPLE_PROMPTS: [&str; 7] = [
    "The capital of France is",
    "The chemical symbol of gold is",
    "If yesterday was Friday, then tomorrow will be",
    "The opposite of hot is",
    "The planets of the solar system are:",
    "My favorite color is",
    "If 5*x + 3 = 13, then x is",
];

/// Why `base-loss` stopped.
#[derive(Debug, thiserror::Error)]
pub enum BaseLossError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Shards(#[from] ShardError),
    #[error("reading the shards: {0}")]
    Data(#[from] BatchError),
    #[error(transparent)]
    Dist(#[from] DistError),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

pub fn run(config: &RunConfig, paths: &Paths, cluster: &Cluster<'_>) -> Result<(), BaseLossError> {
    // The model: the last step of the preset's base depth, and its tokenizer.
    let spec = ModelSpec {
        phase: "base".into(),
        checkpoint_dir: Some(paths.checkpoints("base", config.base_train.depth)),
        ..ModelSpec::default()
    };
    let LoadedModel { model, encoder, source } = LoadedModel::open(paths, &spec, cluster.device)?;
    let encoder = Arc::new(encoder);
    let bytes_per_token = artifacts::load_token_bytes(&paths.tokenizer())?;
    let token_bytes =
        Tensor::from_slice(&bytes_per_token.iter().map(|&b| b as i32).collect::<Vec<_>>()).to_device(cluster.device);

    // Bits per byte of each split, over the same number of batches on every process.
    let bl = &config.base_loss;
    let seq_len = model.config.sequence_len as usize;
    let per_step = bl.device_batch_size as u64 * seq_len as u64 * cluster.ctx.world_size as u64;
    let steps = (bl.split_tokens / per_step).max(1);
    let shards_dir = paths.shards(&config.data.manifest);
    let mut results = Vec::new();
    let mut unigram = UnigramCounts::default();
    for (name, split) in [("train", Split::Train), ("val", Split::Val)] {
        let cfg = LoaderConfig {
            shards: shards_for(&shards_dir, split)?,
            batch_size: bl.device_batch_size as usize,
            seq_len,
            rank: cluster.ctx.rank,
            world_size: cluster.ctx.world_size,
            device: cluster.device,
        };
        let mut loader = DistributedLoader::new(cfg, Arc::new(ParquetDocuments), encoder.clone(), None)?;
        let mut totals = BpbTotals::default();
        for _ in 0..steps {
            let (x, y) = loader.next_batch()?;
            totals.add(batch_totals(&model, &x, &y, &token_bytes));
            if split == Split::Val {
                unigram.add(&y, &bytes_per_token);
            }
        }
        let totals = totals.summed_over(cluster)?;
        log::info!("{name} bpb: {:.4}", totals.bpb());
        results.push((name, totals.bpb()));
    }
    if !cluster.is_master() {
        return Ok(());
    }
    // Rank 0's share of the val tokens (all of them with one process).
    let unigram_bpb = unigram.bpb();
    log::info!("val unigram baseline: {unigram_bpb:.4} bpb");

    // Samples.
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

    // The report section.
    ReportSection::new("Base model loss")
        .value("checkpoint step", source.step)
        .value("train bpb", results[0].1)
        .value("val bpb", results[1].1)
        .value("val unigram baseline bpb", unigram_bpb)
        .value("tokens per split", steps * per_step)
        .markdown(samples)
        .write(&paths.report())
        .map_err(|source| BaseLossError::Write { path: paths.report(), source })?;
    Ok(())
}
