//! One optimizer step of any training stage (NANOCHAT.md §4.4, §5.3-5.5): the micro-batches'
//! losses, each divided by the number of micro-batches, backpropagated (gradients add up); optional
//! clipping of this rank's gradient; the stage's LR multiplier and Muon momentum; AdamW then Muon
//! (with several processes the distributed optimisers average the gradients); gradients cleared.
//! The step's loss is the mean over every micro-batch of every process, so the logged value does
//! not depend on how the batch is split (the reference logs rank 0's last micro-batch).
use tch::{Reduction, Tensor};

use super::TrainError;
use crate::dist::{Cluster, ReduceOp};
use crate::model::Gpt;
use crate::optim::{self, Optimizers};

/// What the schedule says for this step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSchedule {
    pub lr_multiplier: f64,
    pub muon_momentum: f64,
    /// Clip this rank's gradient to this L2 norm (§4.4: 1.0 in base training; None in mid/SFT).
    pub grad_clip: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StepOutcome {
    /// The mean of every micro-batch's loss (mean over its trained targets) over all processes.
    pub loss: f64,
    /// This process's micro-batch losses, before the 1/A scaling.
    pub local_losses: Vec<f64>,
    pub grad_norm: Option<f64>,
    /// Targets that were trained (not −1) over the micro-batches of all processes.
    pub trained_tokens: i64,
}

/// Runs step `step` on `accum` micro-batches from `next_batch(m)`.
pub fn optimizer_step(
    model: &Gpt,
    optimizers: &mut Optimizers,
    cluster: &Cluster<'_>,
    step: i64,
    accum: usize,
    mut next_batch: impl FnMut(usize) -> Result<(Tensor, Tensor), TrainError>,
    schedule: StepSchedule,
) -> Result<StepOutcome, TrainError> {
    let mut losses = Vec::with_capacity(accum);
    let mut trained_tokens = 0;
    for m in 0..accum {
        let (x, y) = next_batch(m)?;
        let loss = model.loss(&x, &y, Reduction::Mean);
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            model.zero_grad();
            return Err(TrainError::NonFiniteLoss { step, loss: value });
        }
        losses.push(value);
        trained_tokens += y.ge(0).sum(tch::Kind::Int64).int64_value(&[]);
        (loss / accum as f64).backward();
    }
    let grad_norm = apply_update(model, optimizers, cluster, schedule)?;
    let totals = cluster.reduce(&[losses.iter().sum(), losses.len() as f64, trained_tokens as f64], ReduceOp::Sum)?;
    let loss = totals[0] / totals[1].max(1.0);
    Ok(StepOutcome { loss, local_losses: losses, grad_norm, trained_tokens: totals[2] as i64 })
}

/// The update once a step's gradients are in: optional clipping of this rank's gradient (returns
/// the norm before it), the schedule, AdamW then Muon, gradients cleared.
pub fn apply_update(
    model: &Gpt,
    optimizers: &mut Optimizers,
    cluster: &Cluster<'_>,
    schedule: StepSchedule,
) -> Result<Option<f64>, TrainError> {
    let grad_norm = schedule.grad_clip.map(|max| optim::clip_grad_norm(&model.parameters_in_reference_order(), max));
    optimizers.set_schedule(schedule.lr_multiplier, schedule.muon_momentum);
    optimizers.step(cluster.group)?;
    model.zero_grad();
    Ok(grad_norm)
}
