//! The checkpoint a stage starts from (NANOCHAT.md §8.1 `load_model`): by default the reference's
//! rule, the largest depth of the source phase (`<phase>_dNN/` under the base dir) and its last step.
//! Reads our checkpoints (`model_XXXXXX.safetensors`) and the reference's (`model_XXXXXX.pt`);
//! of the meta file only `model_config` is needed, and `fitted_device_batch_size` is read when present.
use std::path::{Path, PathBuf};

use tch::Device;

use crate::checkpoint::{self, CheckpointError};
use crate::model::{Gpt, GptConfig, Precision};
use crate::paths::Paths;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "no {phase} checkpoint under {base} (looked for {phase}_d<depth>/meta_*.json); run `nanochat {stage}` first, \
         or pass --base-dir DIR of a run that has one (`make smoke` trains one under target/smoke: then `make chat`)"
    )]
    NoneFound { phase: String, base: PathBuf, stage: String },
    #[error("no complete checkpoint (meta_*.json) in {0}")]
    EmptyDir(PathBuf),
    #[error("{path}: {message}")]
    BadMeta { path: PathBuf, message: String },
    #[error("{dir} has meta_{step:06}.json but no model_{step:06}.safetensors or model_{step:06}.pt")]
    NoWeights { dir: PathBuf, step: u64 },
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("the model of {dir} cannot be built: {source}")]
    Model { dir: PathBuf, source: crate::model::ModelConfigError },
    #[error("the tokenizer has {tokenizer} tokens but the model in {dir} was trained with {model}; use the tokenizer it was trained with")]
    VocabMismatch { dir: PathBuf, tokenizer: i64, model: i64 },
}

/// A checkpoint to load.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceCheckpoint {
    pub dir: PathBuf,
    pub step: u64,
    pub model_config: GptConfig,
    /// The device batch known to fit that the checkpoint records (`fitted_device_batch_size`), the
    /// most a stage starting from it tries (src/train/batch_fit.rs).
    pub fitted_device_batch_size: Option<u32>,
}

/// Where the reference keeps a phase's checkpoints under its base dir (§8.1).
fn reference_dir(phase: &str) -> Option<&'static str> {
    match phase {
        "base" => Some("base_checkpoints"),
        "mid" => Some("mid_checkpoints"),
        "sft" => Some("chatsft_checkpoints"),
        "rl" => Some("chatrl_checkpoints"),
        _ => None,
    }
}

/// The stage that writes a phase's checkpoints (for the error message).
fn stage_of(phase: &str) -> &'static str {
    match phase {
        "base" => "base-train",
        "mid" => "mid-train",
        "sft" => "sft",
        _ => "chat-rl",
    }
}

impl SourceCheckpoint {
    /// The last step of the largest-depth directory of `phase` that has a complete checkpoint: ours
    /// (`<phase>_dNN/`) or the reference's (`base_checkpoints/dNN/`, `mid_checkpoints/`,
    /// `chatsft_checkpoints/`, `chatrl_checkpoints/`), so a base dir the Python nanochat wrote works too.
    pub fn latest(paths: &Paths, phase: &str) -> Result<Self, SourceError> {
        Self::latest_at(paths, phase, None)
    }

    /// Step `step` (default: the last) of the largest-depth directory of `phase`.
    pub fn latest_at(paths: &Paths, phase: &str, step: Option<u64>) -> Result<Self, SourceError> {
        let depth_dirs = |parent: &Path, prefix: &str| -> Vec<(u32, PathBuf)> {
            std::fs::read_dir(parent)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let depth: u32 = e.file_name().to_str()?.strip_prefix(prefix)?.parse().ok()?;
                    checkpoint::latest_step(&e.path()).map(|_| (depth, e.path()))
                })
                .collect()
        };
        let mut candidates = depth_dirs(paths.base(), &format!("{phase}_d"));
        if let Some(reference) = reference_dir(phase) {
            candidates.extend(depth_dirs(&paths.base().join(reference), "d"));
        }
        // The largest depth; ours first among equals (stable sort, max_by_key keeps the last maximum).
        candidates.reverse();
        match candidates.into_iter().max_by_key(|(depth, _)| *depth) {
            Some((_, dir)) => Self::in_dir(&dir, step),
            None => Err(SourceError::NoneFound {
                phase: phase.to_string(),
                base: paths.base().to_path_buf(),
                stage: stage_of(phase).to_string(),
            }),
        }
    }

    /// Step `step` (default: the last) of a checkpoint directory, ours or the reference's.
    pub fn in_dir(dir: &Path, step: Option<u64>) -> Result<Self, SourceError> {
        let step = match step {
            Some(s) => s,
            None => checkpoint::latest_step(dir).ok_or_else(|| SourceError::EmptyDir(dir.to_path_buf()))?,
        };
        let path = checkpoint::meta_path(dir, step);
        let bad = |message: String| SourceError::BadMeta { path: path.clone(), message };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let meta: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let model_config: GptConfig =
            serde_json::from_value(meta["model_config"].clone()).map_err(|e| bad(format!("model_config: {e}")))?;
        let fitted_device_batch_size = meta["fitted_device_batch_size"].as_u64().and_then(|b| u32::try_from(b).ok());
        Ok(SourceCheckpoint { dir: dir.to_path_buf(), step, model_config, fitted_device_batch_size })
    }

    /// The weights file: ours (.safetensors) or the reference's (.pt).
    pub fn weights_path(&self) -> Result<PathBuf, SourceError> {
        let ours = checkpoint::model_path(&self.dir, self.step);
        if ours.is_file() {
            return Ok(ours);
        }
        let reference = self.dir.join(format!("model_{:06}.pt", self.step));
        if reference.is_file() {
            return Ok(reference);
        }
        Err(SourceError::NoWeights { dir: self.dir.clone(), step: self.step })
    }

    /// The checkpoint a chat stage starts from: `source_dir` when given, else the latest of
    /// `phase`; with its model on `device`, checked against the tokenizer's vocabulary.
    pub fn open(
        paths: &Paths,
        phase: &str,
        source_dir: Option<&Path>,
        vocab_size: u32,
        device: Device,
        precision: Precision,
    ) -> Result<(Self, Gpt), SourceError> {
        let source = match source_dir {
            Some(dir) => Self::in_dir(dir, None)?,
            None => Self::latest(paths, phase)?,
        };
        let model = source.load_model(device, precision)?;
        if i64::from(vocab_size) != model.config.vocab_size {
            return Err(SourceError::VocabMismatch {
                dir: source.dir.clone(),
                tokenizer: i64::from(vocab_size),
                model: model.config.vocab_size,
            });
        }
        Ok((source, model))
    }

    /// The model with these weights on `device`, computing in `precision`.
    pub fn load_model(&self, device: Device, precision: Precision) -> Result<Gpt, SourceError> {
        let path = self.weights_path()?;
        let model = Gpt::with_precision(self.model_config, device, precision)
            .map_err(|source| SourceError::Model { dir: self.dir.clone(), source })?;
        checkpoint::load_weights(&model, &checkpoint::read_tensors(&path)?, &path)?;
        Ok(model)
    }
}
