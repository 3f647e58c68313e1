//! Training: the stages, one file each that reads top to bottom like the reference's script
//! (settings, data, model and optimizers, the loop, the checkpoint, the report section), and the
//! pieces they share: the optimizer step, the device batch fit, the metrics log (NANOCHAT.md §4,
//! §5). Checkpoints and the source checkpoint a stage starts from are [`crate::checkpoint`].
pub mod base;
pub mod batch_fit;
pub mod download;
pub mod metrics;
pub mod mid;
pub mod optimizer_step;
pub mod rl;
pub mod rl_loss;
pub mod sft;
pub mod sft_92d63d4;
pub mod tokenizer;

use std::path::PathBuf;

use tch::Tensor;

use crate::chat::batches::ChatBatchError;
use crate::chat::tasks::TaskError;
use crate::checkpoint::{self, source};
use crate::dist::DistError;
use crate::optim::DistOptimError;
use crate::tokenizer::{artifacts, TokenizerError};

/// Steps whose time is not counted in the total training time (compilation, warm-up; §4.4).
pub const UNTIMED_STEPS: i64 = 10;

/// What a training stage can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting, or a combination of settings, that cannot work; the message names them.
    #[error("{0}")]
    Config(String),
    #[error("writing the stage's config.toml: {0}")]
    WriteConfig(#[from] crate::config::ConfigError),
    #[error("{source} (run `nanochat data download --preset {preset}`)")]
    Shards { source: crate::data::parquet_shards::ShardError, preset: String },
    #[error("reading the step's losses back from the device: {0}")]
    ReadBack(#[from] tch::TchError),
    #[error("categorical evaluation: {0}")]
    Categorical(#[from] crate::eval::categorical::CategoricalError),
    #[error(transparent)]
    ChatEval(#[from] crate::eval::chat_eval::ChatEvalError),
    #[error("RL rollouts: {0}")]
    Rollouts(String),
    #[error(
        "attention on {device} in {dtype} would use SDPA's {kernel} kernel; use a GPU with flash or cuDNN \
         attention (Ampere or newer) and dtype=bfloat16"
    )]
    AttentionKernel { device: String, dtype: String, kernel: String },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelConfigError),
    #[error("base_train sizing: {0}")]
    Sizing(#[from] crate::optim::schedule_92d63d4::SizingError),
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Batches(#[from] ChatBatchError),
    #[error(transparent)]
    Render(#[from] crate::chat::render::RenderError),
    #[error("reading training data: {0}")]
    Data(#[from] crate::data::batch_source::BatchError),
    #[error("the loss became {loss} at step {step}; lower the learning rates or check the data")]
    NonFiniteLoss { step: i64, loss: f64 },
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    #[error(transparent)]
    Optimizer(#[from] DistOptimError),
    #[error(transparent)]
    Dist(#[from] DistError),
    #[error(transparent)]
    BatchFit(#[from] batch_fit::BatchFitError),
    #[error(transparent)]
    Load(#[from] crate::engine::loaded_model::LoadError),
    #[error(transparent)]
    Core(#[from] crate::eval::core::CoreError),
    #[error(transparent)]
    EvalBundle(#[from] crate::download::eval_bundle::EvalBundleError),
    #[error("--resume: {0}")]
    Resume(String),
    #[error(
        "warm-starting the optimizer from {path}: {source} (the source run's optimizer state does not fit this \
         one; use `--set chat_sft.recipe_92d63d4.load_optimizer=false`)"
    )]
    WarmStart { path: PathBuf, source: DistOptimError },
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// What every training stage takes besides its config.
#[derive(Clone, Debug, Default)]
pub struct StageOptions {
    /// Continue this stage's last checkpoint exactly.
    pub resume: bool,
    /// Start from this checkpoint directory instead of the reference's rule (base-train: a weights
    /// file to initialise from, `--init-from`).
    pub source_dir: Option<PathBuf>,
}

/// Micro-batches per step so the batch in tokens does not depend on device batch or world size.
pub fn grad_accum_steps(total_batch: u64, device_batch: u32, seq_len: u32, world: usize) -> Result<usize, TrainError> {
    let per_step = device_batch as u64 * seq_len as u64 * world as u64;
    if per_step == 0 || !total_batch.is_multiple_of(per_step) {
        return Err(TrainError::Config(format!(
            "total_batch_size {total_batch} is not a multiple of device_batch_size {device_batch} x max_seq_len {seq_len} x {world} process(es) = {per_step}; change the stage's device_batch_size or total_batch_size"
        )));
    }
    Ok((total_batch / per_step) as usize)
}

/// Bytes per token id as an int tensor on `device` (for bits per byte).
pub fn token_bytes_tensor(tokenizer_dir: &std::path::Path, device: tch::Device) -> Result<Tensor, TrainError> {
    let bytes: Vec<i32> = artifacts::load_token_bytes(tokenizer_dir)?.into_iter().map(|b| b as i32).collect();
    Ok(Tensor::from_slice(&bytes).to_device(device))
}

/// `--resume`: the data positions a checkpoint stored, one per micro-batch stream of this process.
pub fn stream_positions<T: serde::de::DeserializeOwned>(
    stored: &serde_json::Value,
    dir: &std::path::Path,
    accum: usize,
) -> Result<Vec<T>, TrainError> {
    let positions: Vec<T> = serde_json::from_value(stored.clone()).map_err(|e| {
        TrainError::Resume(format!("the data positions in the checkpoint meta of {}: {e}", dir.display()))
    })?;
    if positions.len() != accum {
        return Err(TrainError::Resume(format!(
            "the checkpoint has {} data streams per process, this run {accum}; resume with the same world size and batch settings",
            positions.len()
        )));
    }
    Ok(positions)
}

/// Creates a stage's output directory and writes the resolved configuration into it (rank 0).
pub fn prepare_output_dir(
    config: &crate::config::RunConfig,
    dir: &std::path::Path,
    cluster: &crate::dist::Cluster<'_>,
) -> Result<(), TrainError> {
    if cluster.is_master() {
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Write { path: dir.to_path_buf(), source })?;
        config.write_beside(dir)?;
    }
    Ok(())
}

/// A stage's `dtype` setting on this device (`auto`: bf16 on a GPU, fp32 on CPU).
pub fn stage_precision(setting: &str, device: tch::Device) -> Result<crate::model::Precision, TrainError> {
    crate::model::Precision::resolve(setting, device)
        .map_err(|e| TrainError::Config(format!("{e} (the stage's `dtype` setting)")))
}

/// The model a chat stage starts from ([`source::SourceCheckpoint::open`]) in the stage's `dtype`,
/// with its attention kernel checked.
pub fn open_source_model(
    paths: &crate::paths::Paths,
    phase: &str,
    options: &StageOptions,
    vocab_size: u32,
    device: tch::Device,
    dtype: &str,
) -> Result<(source::SourceCheckpoint, crate::model::Gpt), TrainError> {
    let precision = stage_precision(dtype, device)?;
    let opened =
        source::SourceCheckpoint::open(paths, phase, options.source_dir.as_deref(), vocab_size, device, precision)?;
    check_attention_kernel(&opened.1)?;
    Ok(opened)
}

/// On CUDA, the attention kernel SDPA will use for `model`: a fused one (flash, memory-efficient or
/// cuDNN) or an error, since the unfused math kernel would hold (B, H, T, T) scores and train several
/// times slower. On CPU there is nothing to check.
pub fn check_attention_kernel(model: &crate::model::Gpt) -> Result<(), TrainError> {
    let device = model.device();
    if !device.is_cuda() {
        return Ok(());
    }
    let backend = crate::model::gpt::sdpa_backend(&model.config, device, model.precision.compute_kind());
    let name = crate::model::gpt::sdpa_backend_name(backend);
    if backend <= 0 {
        return Err(TrainError::AttentionKernel {
            device: format!("{device:?}"),
            dtype: model.precision.to_string(),
            kernel: name.to_string(),
        });
    }
    log::info!("attention kernel: {name}");
    Ok(())
}

/// Whether a periodic action with period `every` (≤ 0: never) is due at `step`.
pub fn due(step: i64, every: i64) -> bool {
    every > 0 && step % every == 0
}
