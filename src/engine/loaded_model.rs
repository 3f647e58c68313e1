//! A model and its tokenizer ready for inference: a checkpoint of a phase (largest depth, last step
//! or `--step`), ours or the reference's, or a checkpoint directory given directly; the base dir's
//! tokenizer (`tok/`, or the reference's `tokenizer/tokenizer.pkl`) unless one is given; in the device's
//! default precision (fp32 on CPU, bf16 on CUDA) or the one asked for.
use std::path::PathBuf;

use tch::Device;

use crate::checkpoint::source::{SourceCheckpoint, SourceError};
use crate::model::{Gpt, Precision};
use crate::paths::Paths;
use crate::tokenizer::{artifacts, BpeEncoder};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
}

/// Which checkpoint and tokenizer to load.
#[derive(Clone, Debug, Default)]
pub struct ModelSpec {
    /// base, mid, sft or rl.
    pub phase: String,
    pub step: Option<u64>,
    /// A checkpoint directory instead of the phase's.
    pub checkpoint_dir: Option<PathBuf>,
    /// A tokenizer file or directory instead of the base dir's.
    pub tokenizer: Option<PathBuf>,
}

pub struct LoadedModel {
    pub model: Gpt,
    pub encoder: BpeEncoder,
    pub source: SourceCheckpoint,
}

/// The base dir's tokenizer: ours (`tok/`) or the reference's (`tokenizer/`).
fn default_tokenizer(paths: &Paths) -> PathBuf {
    let ours = paths.tokenizer();
    let reference = paths.base().join("tokenizer");
    if !ours.exists() && reference.join("tokenizer.pkl").exists() {
        reference
    } else {
        ours
    }
}

impl LoadedModel {
    /// In the device's default precision ([`Precision::auto`]).
    pub fn open(paths: &Paths, spec: &ModelSpec, device: Device) -> Result<Self, LoadError> {
        Self::open_with(paths, spec, device, Precision::auto(device))
    }

    /// In `precision`. For bf16 every weight is stored in bf16, not only the embedding as in training
    /// (inference keeps no fp32 master copies): the same products as casting each weight per matmul,
    /// half the memory and half the bandwidth of the lm_head GEMV that bounds decoding.
    pub fn open_with(paths: &Paths, spec: &ModelSpec, device: Device, precision: Precision) -> Result<Self, LoadError> {
        let source = match &spec.checkpoint_dir {
            Some(dir) => SourceCheckpoint::in_dir(dir, spec.step)?,
            None => SourceCheckpoint::latest_at(paths, &spec.phase, spec.step)?,
        };
        let tokenizer = spec.tokenizer.clone().unwrap_or_else(|| default_tokenizer(paths));
        let encoder = artifacts::load_from(&tokenizer)?;
        let model = source.load_model(device, precision)?;
        store_for_inference(&model);
        if i64::from(encoder.vocab_size()) != model.config.vocab_size {
            return Err(SourceError::VocabMismatch {
                dir: source.dir.clone(),
                tokenizer: i64::from(encoder.vocab_size()),
                model: model.config.vocab_size,
            }
            .into());
        }
        Ok(LoadedModel { model, encoder, source })
    }

    pub fn describe(&self) -> String {
        format!("{} step {}", self.source.dir.display(), self.source.step)
    }
}

/// Stores every weight of `model` in its compute dtype (a no-op in fp32): for bf16 inference, which
/// keeps no fp32 master copies.
pub fn store_for_inference(model: &Gpt) {
    let kind = model.precision.compute_kind();
    tch::no_grad(|| {
        for (_, mut weight) in model.named_parameters() {
            if weight.kind() != kind {
                weight.set_data(&weight.to_kind(kind));
            }
        }
    });
}
