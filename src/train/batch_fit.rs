//! Fitting a training stage's device batch into GPU memory before it trains (base-train, mid-train,
//! SFT): one forward/backward at the device batch; on out-of-memory the batch is halved (gradient
//! accumulation doubles, so the total batch in tokens stays the same) until it fits. If even one row
//! does not fit, the stage fails at once with a setting that would, instead of dying mid-run.
//!
//! Every process fits on its own GPU, then all take the smallest fit (an all-reduce MIN), so each
//! runs the same number of micro-batches. The fit is recorded in the checkpoint meta
//! (`fitted_device_batch_size`), and a stage starting from that checkpoint starts from it when its
//! own device batch is larger: base-train halving 32 to 16 makes mid-train (and SFT after it) start
//! at 16. Chat RL is not fitted: its device batch also sets how samples are drawn (one seed per
//! generated batch, pass@k up to it), so halving it would change what it trains on, and its rows are
//! short rollouts.
use std::panic::{catch_unwind, AssertUnwindSafe};

use tch::{Device, Kind, Tensor};

use crate::dist::{Cluster, DistError, ReduceOp};
use crate::model::Gpt;

/// Test hook: with `NANOCHAT_SIMULATED_MAX_DEVICE_BATCH=N` a trial step of more than N rows reports
/// out-of-memory without running, and fitting runs on CPU too; how the tests exercise fitting, the
/// agreement between processes and the carry to later stages without a GPU.
pub const SIMULATED_MAX_DEVICE_BATCH: &str = "NANOCHAT_SIMULATED_MAX_DEVICE_BATCH";

#[derive(Debug, thiserror::Error)]
pub enum BatchFitError {
    #[error("one row of {row_tokens} tokens does not fit in GPU memory at depth {depth}; {fix}")]
    NothingFits { depth: i64, row_tokens: i64, fix: String },
    #[error("trial step failed: {0}")]
    Other(String),
    #[error("{0}.device_batch_size is 0; set it to at least 1")]
    Zero(&'static str),
    #[error("another process could not fit its device batch (its log says why)")]
    OtherProcess,
    #[error("{SIMULATED_MAX_DEVICE_BATCH}={0:?} is not a number of rows; unset it or give one")]
    BadSimulatedLimit(String),
    #[error("agreeing on the device batch: {0}")]
    Dist(#[from] DistError),
}

/// Whether a trial step failed for lack of memory or for another reason.
pub enum Trial {
    Fits,
    OutOfMemory,
    Failed(String),
}

/// What fitting needs from a stage's settings.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// The stage's config section, for messages ("mid_train").
    pub section: &'static str,
    /// The configured device batch (rows).
    pub device_batch_size: u32,
    /// Tokens in one row of the trial step: the longest row the stage trains on.
    pub row_tokens: i64,
    /// The setting that sets `row_tokens`, suggested when one row does not fit (None: fixed).
    pub row_setting: Option<&'static str>,
    /// The device batch that fitted for the checkpoint the stage starts from, when it recorded one.
    pub carried: Option<u32>,
}

/// The device batch a stage trains with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageBatch {
    pub rows: u32,
    /// Whether `rows` is known to fit (fitted here, or carried from the source checkpoint).
    pub known_to_fit: bool,
}

impl StageBatch {
    /// What the stage's checkpoint meta records as `fitted_device_batch_size`.
    pub fn fitted(&self) -> Option<u32> {
        self.known_to_fit.then_some(self.rows)
    }
}

/// The device batch of a stage: the configured one, lowered to the carried fit; then, on a GPU (or
/// with the [`SIMULATED_MAX_DEVICE_BATCH`] hook), halved until a trial step fits, and the smallest
/// fit over every process. Elsewhere (CPU) nothing is tried.
pub fn fit_stage_batch(model: &Gpt, cluster: &Cluster<'_>, s: &BatchSettings) -> Result<StageBatch, BatchFitError> {
    if s.device_batch_size == 0 {
        return Err(BatchFitError::Zero(s.section));
    }
    let mut rows = s.device_batch_size;
    if let Some(carried) = s.carried.filter(|&c| c < rows) {
        log::info!(
            "{}.device_batch_size {rows} lowered to {carried}, the device batch that fitted for the checkpoint this stage starts from",
            s.section
        );
        rows = carried.max(1);
    }
    let simulated = simulated_max_device_batch()?;
    if !model.device().is_cuda() && simulated.is_none() {
        return Ok(StageBatch { rows, known_to_fit: s.carried.is_some() });
    }
    let local = fit_device_batch(rows, |b| match simulated {
        Some(max) if b > max => Trial::OutOfMemory,
        _ => trial_step(model, b, s.row_tokens),
    });
    // Every process offers its fit (0 when it has none), so none waits on one that stopped.
    let offer = local.as_ref().ok().copied().flatten().unwrap_or(0);
    let agreed = cluster.reduce(&[f64::from(offer)], ReduceOp::Min)?[0] as u32;
    let fitted = local?.ok_or_else(|| nothing_fits(model, s))?;
    if agreed == 0 {
        return Err(BatchFitError::OtherProcess);
    }
    if agreed < fitted {
        log::info!(
            "device batch {agreed}: the largest that fits on every one of the {} processes (this one fits {fitted})",
            cluster.world_size()
        );
    }
    if agreed < rows {
        log::warn!(
            "{}.device_batch_size lowered from {rows} to {agreed} to fit in GPU memory (more gradient accumulation, same total batch)",
            s.section
        );
    }
    Ok(StageBatch { rows: agreed, known_to_fit: true })
}

fn nothing_fits(model: &Gpt, s: &BatchSettings) -> BatchFitError {
    let fix = match s.row_setting {
        Some(setting) => format!("lower {setting} (e.g. --set {setting}={}) or the depth", (s.row_tokens / 2).max(1)),
        None => "train a smaller model (a lower base_train.depth)".to_string(),
    };
    BatchFitError::NothingFits { depth: model.config.n_layer, row_tokens: s.row_tokens, fix }
}

fn simulated_max_device_batch() -> Result<Option<u32>, BatchFitError> {
    match std::env::var(SIMULATED_MAX_DEVICE_BATCH) {
        Err(_) => Ok(None),
        Ok(v) => v.trim().parse().map(Some).map_err(|_| BatchFitError::BadSimulatedLimit(v)),
    }
}

/// The largest batch ≤ `start` (halving) for which `try_batch` fits; None when not even one row does.
pub fn fit_device_batch(start: u32, mut try_batch: impl FnMut(u32) -> Trial) -> Result<Option<u32>, BatchFitError> {
    let mut batch = start.max(1);
    loop {
        match try_batch(batch) {
            Trial::Fits => return Ok(Some(batch)),
            Trial::Failed(message) => return Err(BatchFitError::Other(message)),
            Trial::OutOfMemory if batch > 1 => {
                log::warn!(
                    "device batch {batch} does not fit in GPU memory; trying {} (more gradient accumulation)",
                    batch / 2
                );
                batch /= 2;
            }
            Trial::OutOfMemory => return Ok(None),
        }
    }
}

/// One forward/backward of `batch` × `seq_len` tokens on the model's device; gradients are cleared.
pub fn trial_step(model: &Gpt, batch: u32, seq_len: i64) -> Trial {
    let device: Device = model.device();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let x = Tensor::zeros([batch as i64, seq_len], (Kind::Int64, device));
        model.train_loss(&x, &x).backward();
        if let Device::Cuda(d) = device {
            tch::Cuda::synchronize(d as i64);
        }
    }));
    model.zero_grad();
    match outcome {
        Ok(()) => Trial::Fits,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            if message.contains("out of memory") {
                Trial::OutOfMemory
            } else {
                Trial::Failed(message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::DistContext;

    #[test]
    fn halves_until_it_fits_or_fails_early() {
        let mut tried = Vec::new();
        let fit = fit_device_batch(32, |b| {
            tried.push(b);
            if b > 8 {
                Trial::OutOfMemory
            } else {
                Trial::Fits
            }
        });
        assert_eq!(fit.unwrap(), Some(8));
        assert_eq!(tried, [32, 16, 8]);
        assert_eq!(fit_device_batch(4, |_| Trial::OutOfMemory).unwrap(), None);
        assert!(matches!(fit_device_batch(4, |_| Trial::Failed("boom".into())), Err(BatchFitError::Other(_))));
    }

    #[test]
    fn a_real_trial_step_fits_on_cpu_and_leaves_no_gradient() {
        let model = Gpt::new(crate::model::GptConfig::from_depth(1, 64, 16), Device::Cpu).unwrap();
        assert!(matches!(trial_step(&model, 2, 16), Trial::Fits));
        assert!(model
            .named_parameters()
            .iter()
            .all(|(_, p)| !p.grad().defined() || p.grad().abs().sum(Kind::Float).double_value(&[]) == 0.0));
    }

    #[test]
    fn on_cpu_without_the_hook_the_carried_fit_caps_the_configured_batch() {
        let model = Gpt::new(crate::model::GptConfig::from_depth(1, 64, 16), Device::Cpu).unwrap();
        let ctx = DistContext::single();
        let cluster = Cluster { ctx: &ctx, group: None, device: Device::Cpu };
        let settings = |carried| BatchSettings {
            section: "mid_train",
            device_batch_size: 8,
            row_tokens: 16,
            row_setting: Some("mid_train.max_seq_len"),
            carried,
        };
        let fit = |carried| fit_stage_batch(&model, &cluster, &settings(carried)).unwrap();
        assert_eq!(fit(None), StageBatch { rows: 8, known_to_fit: false });
        assert_eq!(fit(Some(2)), StageBatch { rows: 2, known_to_fit: true });
        assert_eq!(fit(Some(32)), StageBatch { rows: 8, known_to_fit: true }, "a larger fit does not raise it");
        assert_eq!(fit(Some(2)).fitted(), Some(2));
        let err = nothing_fits(&model, &settings(None)).to_string();
        assert!(err.contains("--set mid_train.max_seq_len=8") && err.contains("depth 1"), "{err}");
    }
}
