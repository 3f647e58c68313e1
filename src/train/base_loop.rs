//! The base pretraining loop (NANOCHAT.md §4.4): steps 0..=N; at step s validation bpb when
//! s % eval_every == 0 or last, samples, checkpoints every `save_every` steps and at the end,
//! otherwise gradient accumulation, clipping, the LR/momentum schedules and AdamW then Muon.
//! Metrics go to a JSONL log; progress is a bar on a terminal and log lines otherwise.
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use tch::{Reduction, Tensor};

use super::batches::{BatchError, BatchSource};
use super::checkpoint::{self, CheckpointMeta, LoopState};
use crate::dist::{DistError, ProcessGroup, ReduceOp};
use crate::eval::bpb::{self, BpbTotals};
use crate::model::Gpt;
use crate::optim::{self, schedule, DistOptimError, Optimizers};

/// Smoothing of the logged training loss (§4.4).
pub const LOSS_EMA_BETA: f64 = 0.9;
/// Steps whose time is not counted in the total training time (compilation, warm-up; §4.4).
pub const UNTIMED_STEPS: i64 = 10;

#[derive(Debug, Clone)]
pub struct LoopSettings {
    pub num_iterations: i64,
    pub grad_accum_steps: i64,
    /// Tokens per optimizer step over all ranks.
    pub total_batch_size: i64,
    pub warmup_ratio: f64,
    pub warmdown_ratio: f64,
    pub final_lr_frac: f64,
    pub muon_momentum_start: f64,
    pub muon_momentum_end: f64,
    pub muon_momentum_warmup_steps: u32,
    pub grad_clip: f64,
    pub eval_every: i64,
    /// Validation batches per evaluation from each validation stream (eval_tokens / (B·T·W·A)).
    pub eval_steps: i64,
    pub save_every: i64,
    pub sample_every: i64,
    pub flops_per_token: f64,
    /// Peak FLOP/s of all devices together, for MFU; None on CPU.
    pub peak_flops: Option<f64>,
    pub checkpoint_dir: PathBuf,
    pub user_config: serde_json::Value,
    pub device_batch_size: u32,
    pub max_seq_len: u32,
}

/// One line of the metrics log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StepMetrics {
    pub step: i64,
    pub loss: Option<f64>,
    pub lrm: Option<f64>,
    pub grad_norm: Option<f64>,
    pub dt_s: Option<f64>,
    pub tok_per_sec: Option<f64>,
    pub mfu: Option<f64>,
    pub val_bpb: Option<f64>,
    pub total_training_time: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoopOutcome {
    pub final_step: i64,
    pub val_bpb: Option<f64>,
    pub loop_state: LoopState,
    pub losses: Vec<f64>,
}

/// Builds fresh validation loaders (one per micro-batch stream, like the training loaders).
pub type ValLoaderFactory<'a> = Box<dyn Fn() -> Result<Vec<Box<dyn BatchSource + 'a>>, BatchError> + 'a>;
/// Prints samples from the model.
pub type Sampler<'a> = Box<dyn FnMut(&Gpt) + 'a>;

pub struct BaseLoop<'a> {
    pub model: &'a Gpt,
    /// Single-process AdamW + Muon, or with a process group the distributed pair (which averages
    /// the gradients itself).
    pub optimizers: Optimizers,
    /// One stream per micro-batch of a step (grad_accum_steps of them): micro-batch m of rank r reads
    /// virtual rank r·A + m of W·A, so 1 process × k accumulation and k processes see the same tokens.
    pub train: Vec<Box<dyn BatchSource + 'a>>,
    pub make_val: ValLoaderFactory<'a>,
    pub token_bytes: Tensor,
    pub settings: LoopSettings,
    /// Called with the model at sampling steps (rank 0 only).
    pub sampler: Option<Sampler<'a>>,
    pub rank: usize,
    /// The process group of a multi-process run: gradients are averaged and bpb totals summed.
    pub group: Option<&'a ProcessGroup>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("reading training data: {0}")]
    Data(BatchError),
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("writing the metrics log {path}: {source}")]
    Metrics { path: PathBuf, source: std::io::Error },
    #[error("the loss became {loss} at step {step}; lower the learning rates or check the data")]
    NonFiniteLoss { step: i64, loss: f64 },
    #[error(transparent)]
    Dist(#[from] DistError),
    #[error(transparent)]
    Optimizer(#[from] DistOptimError),
}

impl<'a> BaseLoop<'a> {
    pub fn metrics_path(&self) -> PathBuf {
        self.settings.checkpoint_dir.join("metrics.jsonl")
    }

    /// Runs from `start_step` (0, or the step of the checkpoint resumed from) to the end.
    pub fn run(
        &mut self,
        start_step: i64,
        mut loop_state: LoopState,
        mut val_bpb: Option<f64>,
    ) -> Result<LoopOutcome, LoopError> {
        let s = self.settings.clone();
        let resume_step = start_step;
        let mut metrics = self.open_metrics(start_step)?;
        let mut losses = Vec::new();
        let mut progress = crate::cli::progress::Progress::new(
            "training",
            s.num_iterations.max(0) as u64,
            crate::cli::progress::Unit::Items,
        );
        progress.advance(start_step.max(0) as u64);
        let mut step = start_step;
        loop {
            let last_step = step == s.num_iterations;
            if last_step || (s.eval_every > 0 && step % s.eval_every == 0) {
                let bpb = self.evaluate_bpb()?;
                log::info!("Step {step:05} | Validation bpb: {bpb:.4}");
                loop_state.min_val_bpb = loop_state.min_val_bpb.min(bpb);
                val_bpb = Some(bpb);
                self.write_metrics(
                    &mut metrics,
                    &StepMetrics {
                        step,
                        loss: None,
                        lrm: None,
                        grad_norm: None,
                        dt_s: None,
                        tok_per_sec: None,
                        mfu: None,
                        val_bpb,
                        total_training_time: loop_state.total_training_time,
                    },
                )?;
            }
            if self.rank == 0 && (last_step || (step > 0 && s.sample_every > 0 && step % s.sample_every == 0)) {
                if let Some(sampler) = self.sampler.as_mut() {
                    sampler(self.model);
                }
            }
            let periodic_save = step > 0 && step != resume_step && s.save_every > 0 && step % s.save_every == 0;
            if last_step || periodic_save {
                self.save(step as u64, val_bpb, &loop_state)?;
            }
            if last_step {
                break;
            }

            let t0 = Instant::now();
            let mut train_loss = 0.0;
            for stream in self.train.iter_mut() {
                let (x, y) = stream.next_batch().map_err(LoopError::Data)?;
                let loss = self.model.loss(&x, &y, Reduction::Mean);
                train_loss = loss.double_value(&[]);
                (loss / s.grad_accum_steps as f64).backward();
            }
            if !train_loss.is_finite() {
                return Err(LoopError::NonFiniteLoss { step, loss: train_loss });
            }
            // As the reference (§4.4, §14.11): each rank clips its own gradient; the distributed
            // optimizers average afterwards (so with clipping active, k processes are not exactly
            // 1 process with k× accumulation; the reference's log notes the clip never triggered).
            let grad_norm = (s.grad_clip > 0.0)
                .then(|| optim::clip_grad_norm(&self.model.parameters_in_reference_order(), s.grad_clip));
            let lrm =
                schedule::lr_multiplier(step, s.num_iterations, s.warmup_ratio, s.warmdown_ratio, s.final_lr_frac);
            let momentum =
                schedule::muon_momentum(step, s.muon_momentum_start, s.muon_momentum_end, s.muon_momentum_warmup_steps);
            self.optimizers.set_schedule(lrm, momentum);
            self.optimizers.step(self.group)?;
            self.model.zero_grad();
            let dt = t0.elapsed().as_secs_f64();

            loop_state.smooth_train_loss =
                LOSS_EMA_BETA * loop_state.smooth_train_loss + (1.0 - LOSS_EMA_BETA) * train_loss;
            let debiased = loop_state.smooth_train_loss / (1.0 - LOSS_EMA_BETA.powi(step as i32 + 1));
            if step > UNTIMED_STEPS {
                loop_state.total_training_time += dt;
            }
            let tok_per_sec = s.total_batch_size as f64 / dt;
            let mfu = s.peak_flops.map(|peak| 100.0 * s.flops_per_token * s.total_batch_size as f64 / dt / peak);
            losses.push(train_loss);
            let line = format!(
                "step {step:05}/{:05} ({:.2}%) | loss: {debiased:.6} |{} lrm: {lrm:.2} | dt: {:.2}ms | tok/sec: {:.0} | mfu: {} | total time: {:.2}m",
                s.num_iterations,
                100.0 * step as f64 / s.num_iterations.max(1) as f64,
                grad_norm.map(|g| format!(" grad norm: {g:.4} |")).unwrap_or_default(),
                dt * 1000.0,
                tok_per_sec,
                mfu.map(|m| format!("{m:.2}")).unwrap_or_else(|| "n/a".into()),
                loop_state.total_training_time / 60.0
            );
            crate::cli::progress::suspend_bars(|| log::info!("{line}"));
            progress.advance(1);
            self.write_metrics(
                &mut metrics,
                &StepMetrics {
                    step,
                    loss: Some(debiased),
                    lrm: Some(lrm),
                    grad_norm,
                    dt_s: Some(dt),
                    tok_per_sec: Some(tok_per_sec),
                    mfu,
                    val_bpb: None,
                    total_training_time: loop_state.total_training_time,
                },
            )?;
            step += 1;
        }
        Ok(LoopOutcome { final_step: step, val_bpb, loop_state, losses })
    }

    /// A fresh validation loader each time, so every evaluation sees the same tokens (§14.3).
    pub fn evaluate_bpb(&self) -> Result<f64, LoopError> {
        let mut streams = (self.make_val)().map_err(LoopError::Data)?;
        let mut totals = BpbTotals::default();
        for stream in streams.iter_mut() {
            for _ in 0..self.settings.eval_steps {
                let (x, y) = stream.next_batch().map_err(LoopError::Data)?;
                totals.add(bpb::batch_totals(self.model, &x, &y, &self.token_bytes));
            }
        }
        if let Some(group) = self.group {
            let mut sums = Tensor::from_slice(&[totals.nats, totals.bytes]).to_device(self.model.device());
            group.all_reduce(&mut sums, ReduceOp::Sum)?;
            totals = BpbTotals { nats: sums.double_value(&[0]), bytes: sums.double_value(&[1]) };
        }
        Ok(totals.bpb())
    }

    fn save(&self, step: u64, val_bpb: Option<f64>, loop_state: &LoopState) -> Result<(), LoopError> {
        let s = &self.settings;
        let meta = CheckpointMeta {
            step,
            val_bpb,
            model_config: self.model.config,
            user_config: s.user_config.clone(),
            device_batch_size: s.device_batch_size,
            max_seq_len: s.max_seq_len,
            dataloader_state_dict: serde_json::Value::Array(self.train.iter().map(|t| t.state()).collect()),
            loop_state: *loop_state,
        };
        let state = self.optimizers.state_tensors();
        checkpoint::save(&s.checkpoint_dir, self.model, &state, &meta, self.rank)?;
        log::info!("saved checkpoint of step {step} to {}", s.checkpoint_dir.display());
        Ok(())
    }

    /// Opens the metrics log, dropping lines from steps at or after `start_step` (a resumed run
    /// rewrites them, so the log reads as one uninterrupted run).
    fn open_metrics(&self, start_step: i64) -> Result<Option<std::fs::File>, LoopError> {
        if self.rank != 0 {
            return Ok(None);
        }
        let path = self.metrics_path();
        let err = |source| LoopError::Metrics { path: path.clone(), source };
        std::fs::create_dir_all(&self.settings.checkpoint_dir).map_err(err)?;
        let kept: String = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter(|line| {
                let step = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["step"].as_i64());
                step.is_some_and(|s| s < start_step)
            })
            .map(|l| format!("{l}\n"))
            .collect();
        crate::fsutil::write_atomic(&path, kept.as_bytes()).map_err(err)?;
        std::fs::OpenOptions::new().append(true).open(&path).map(Some).map_err(err)
    }

    fn write_metrics(&self, file: &mut Option<std::fs::File>, m: &StepMetrics) -> Result<(), LoopError> {
        if let Some(f) = file {
            let line = serde_json::to_string(m).unwrap_or_default();
            writeln!(f, "{line}").map_err(|source| LoopError::Metrics { path: self.metrics_path(), source })?;
        }
        Ok(())
    }
}
