//! The checkpoint a stage starts from (NANOCHAT.md §8.1 `load_model`): by default the reference's
//! rule, the largest depth of the source phase (`<phase>_dNN/` under the base dir) and its last step.
//! Reads our checkpoints (`model_XXXXXX.safetensors`) and the reference's (`model_XXXXXX.pt`);
//! only `model_config` of the meta file is needed.
use std::path::{Path, PathBuf};

use tch::Device;

use super::checkpoint::{self, CheckpointError};
use crate::model::{Gpt, GptConfig};
use crate::paths::Paths;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "no {phase} checkpoint under {base} (looked for {phase}_d<depth>/meta_*.json); run `nanochat {stage}` first"
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
    /// The last step of the largest-depth `<phase>_dNN` directory that has a complete checkpoint.
    pub fn latest(paths: &Paths, phase: &str) -> Result<Self, SourceError> {
        let prefix = format!("{phase}_d");
        let best = std::fs::read_dir(paths.base())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let depth: u32 = name.strip_prefix(&prefix)?.parse().ok()?;
                checkpoint::latest_step(&e.path()).map(|_| (depth, e.path()))
            })
            .max_by_key(|(depth, _)| *depth);
        match best {
            Some((_, dir)) => Self::in_dir(&dir, None),
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
        Ok(SourceCheckpoint { dir: dir.to_path_buf(), step, model_config })
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
    ) -> Result<(Self, Gpt), SourceError> {
        let source = match source_dir {
            Some(dir) => Self::in_dir(dir, None)?,
            None => Self::latest(paths, phase)?,
        };
        let model = source.load_model(device)?;
        if i64::from(vocab_size) != model.config.vocab_size {
            return Err(SourceError::VocabMismatch {
                dir: source.dir.clone(),
                tokenizer: i64::from(vocab_size),
                model: model.config.vocab_size,
            });
        }
        Ok((source, model))
    }

    /// The model with these weights on `device`.
    pub fn load_model(&self, device: Device) -> Result<Gpt, SourceError> {
        let path = self.weights_path()?;
        let model = Gpt::new(self.model_config, device)
            .map_err(|source| SourceError::Model { dir: self.dir.clone(), source })?;
        checkpoint::load_weights(&model, &checkpoint::read_tensors(&path)?, &path)?;
        Ok(model)
    }
}
