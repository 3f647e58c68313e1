//! Fitting the device batch into GPU memory before training starts: one forward/backward at the
//! configured device batch; on out-of-memory the batch is halved (gradient accumulation doubles, so
//! the total batch in tokens and the results are unchanged) until it fits. If even one row does not
//! fit, the stage fails at once with a setting that would, instead of dying mid-run.
use std::panic::{catch_unwind, AssertUnwindSafe};

use tch::{Device, Kind, Tensor};

use crate::model::Gpt;

#[derive(Debug, thiserror::Error)]
pub enum BatchFitError {
    #[error("one row of {seq_len} tokens does not fit in GPU memory at depth {depth}; lower base_train.depth or max_seq_len (e.g. --set base_train.max_seq_len={half})")]
    NothingFits { depth: i64, seq_len: i64, half: i64 },
    #[error("trial step failed: {0}")]
    Other(String),
}

/// Whether a trial step failed for lack of memory or for another reason.
pub enum Trial {
    Fits,
    OutOfMemory,
    Failed(String),
}

/// The largest batch ≤ `start` (halving) for which `try_batch` fits.
pub fn fit_device_batch(
    start: u32,
    mut try_batch: impl FnMut(u32) -> Trial,
    depth: i64,
    seq_len: i64,
) -> Result<u32, BatchFitError> {
    let mut batch = start.max(1);
    loop {
        match try_batch(batch) {
            Trial::Fits => return Ok(batch),
            Trial::Failed(message) => return Err(BatchFitError::Other(message)),
            Trial::OutOfMemory if batch > 1 => {
                log::warn!(
                    "device batch {batch} does not fit in GPU memory; trying {} (more gradient accumulation)",
                    batch / 2
                );
                batch /= 2;
            }
            Trial::OutOfMemory => {
                return Err(BatchFitError::NothingFits { depth, seq_len, half: (seq_len / 2).max(1) })
            }
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

    #[test]
    fn halves_until_it_fits_or_fails_early() {
        let mut tried = Vec::new();
        let fit = fit_device_batch(
            32,
            |b| {
                tried.push(b);
                if b > 8 {
                    Trial::OutOfMemory
                } else {
                    Trial::Fits
                }
            },
            20,
            2048,
        );
        assert_eq!(fit.unwrap(), 8);
        assert_eq!(tried, [32, 16, 8]);
        let err = fit_device_batch(4, |_| Trial::OutOfMemory, 20, 2048).unwrap_err();
        assert!(err.to_string().contains("max_seq_len=1024"), "{err}");
        assert!(matches!(
            fit_device_batch(4, |_| Trial::Failed("boom".into()), 20, 2048),
            Err(BatchFitError::Other(_))
        ));
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
}
