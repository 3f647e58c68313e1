//! One optimizer step of any training stage (NANOCHAT.md §4.4, §5.3-5.5): the micro-batches'
//! losses, each divided by the number of micro-batches, backpropagated (gradients add up); optional
//! clipping of this rank's gradient; the stage's LR multiplier and Muon momentum; AdamW then Muon
//! (with several processes the distributed optimisers average the gradients); gradients cleared.
//! The step's loss is the mean over every micro-batch of every process, so the logged value does
//! not depend on how the batch is split (the reference logs rank 0's last micro-batch).
use tch::{Device, Kind, Tensor};

use super::TrainError;
use crate::dist::{Cluster, ReduceOp};
use crate::model::Gpt;
use crate::optim::{self, Optimizers};

/// What the schedule says for this step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSchedule {
    pub lr_multiplier: f64,
    pub muon_momentum: f64,
    /// Muon's weight decay of this step (92d63d4's cosine decay); None keeps the configured one.
    pub muon_weight_decay: Option<f64>,
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

/// Runs step `step` on `accum` micro-batches from `next_batch(m)`. The host waits for the device
/// once per step, after the update is queued: the losses, the trained-token count and the gradient
/// norm come back in one copy (a non-finite loss is then an error, and the stage stops before its
/// next checkpoint).
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
    let mut trained_tokens = Tensor::zeros([], (Kind::Int64, cluster.device));
    for m in 0..accum {
        let (x, y) = next_batch(m)?;
        let loss = model.train_loss(&x, &y);
        losses.push(loss.detach().to_kind(Kind::Double));
        trained_tokens += y.ge(0).sum(Kind::Int64);
        (loss / accum as f64).backward();
    }
    let grad_norm = queue_update(model, optimizers, cluster, schedule)?;
    // [Σ loss, micro-batches, trained tokens] over every process, then this process's own values.
    let local = Tensor::stack(&losses, 0);
    let mut totals = Tensor::stack(
        &[
            local.sum(Kind::Double),
            Tensor::from(accum as f64).to_device(cluster.device),
            trained_tokens.to_kind(Kind::Double),
        ],
        0,
    );
    cluster.all_reduce(&mut totals, ReduceOp::Sum)?;
    let mut parts = vec![totals, local];
    parts.extend(grad_norm.map(|g| g.to_kind(Kind::Double).view([1])));
    let host = Vec::<f64>::try_from(Tensor::cat(&parts, 0).to_device(Device::Cpu))?;
    let local_losses = host[3..3 + accum].to_vec();
    if let Some(bad) = local_losses.iter().copied().find(|l| !l.is_finite()) {
        return Err(TrainError::NonFiniteLoss { step, loss: bad });
    }
    Ok(StepOutcome {
        loss: host[0] / host[1].max(1.0),
        local_losses,
        grad_norm: host.get(3 + accum).copied(),
        trained_tokens: host[2] as i64,
    })
}

/// The update once a step's gradients are in: optional clipping of this rank's gradient (returns
/// the norm before it), the schedule, AdamW then Muon, gradients cleared.
pub fn apply_update(
    model: &Gpt,
    optimizers: &mut Optimizers,
    cluster: &Cluster<'_>,
    schedule: StepSchedule,
) -> Result<Option<f64>, TrainError> {
    Ok(queue_update(model, optimizers, cluster, schedule)?.map(|norm| norm.double_value(&[])))
}

/// [`apply_update`] without waiting for the device: the gradient norm stays a device scalar.
fn queue_update(
    model: &Gpt,
    optimizers: &mut Optimizers,
    cluster: &Cluster<'_>,
    schedule: StepSchedule,
) -> Result<Option<Tensor>, TrainError> {
    let grad_norm =
        schedule.grad_clip.map(|max| optim::clip_grad_norm_queued(&model.parameters_in_reference_order(), max));
    optimizers.set_schedule(schedule.lr_multiplier, schedule.muon_momentum, schedule.muon_weight_decay);
    optimizers.step(cluster.group)?;
    model.zero_grad();
    Ok(grad_norm)
}
