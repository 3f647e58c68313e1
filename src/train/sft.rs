//! The `sft` stage (NANOCHAT.md §5.4, [A'] `chat_sft.py`): supervised fine-tuning on a mixture of
//! conversations where only the assistant's tokens are trained (§14.14): batches of whole
//! conversations padded with `<|assistant_end|>`, fresh optimizers at `init_lr_frac` of the base
//! LRs, Muon momentum fixed, the LR multiplier `1 − step/num_iterations`, and the loop breaking at
//! step `num_iterations − 1` before its update.
//!
//! Reads top to bottom like the reference's script: settings; the source model (`chat_sft.source`,
//! `mid` by default: largest depth, last step); the device batch (src/train/batch_fit.rs); the data
//! (one example stream per data stream); optimizers; the loop (validation loss every `eval_every`
//! steps, MMLU and ARC-Easy categorical accuracy every `eval_metrics_every` steps and at the end,
//! the step); checkpoints (periodic for `--resume`, and the final model); the report section
//! "Chat SFT". With `chat_sft.recipe_92d63d4` the stage is 92d63d4's instead (src/train/sft_92d63d4.rs).
use std::sync::Arc;
use std::time::Instant;

use tch::Kind;

use super::batch_fit::{fit_stage_batch, BatchSettings};
use super::metrics::{MetricsLog, SmoothedLoss, StepRecord};
use super::optimizer_step::{optimizer_step, StepSchedule};
use super::{due, prepare_output_dir, stream_positions, StageOptions, TrainError, UNTIMED_STEPS};
use crate::chat::batches::{ExampleBatches, StreamSlot};
use crate::chat::tasks::arc::Arc as ArcTask;
use crate::chat::tasks::catalog::{sft_train_mixture, sft_val_task};
use crate::chat::tasks::mmlu::Mmlu;
use crate::chat::tasks::{SharedTask, Slice, Sliced};
use crate::chat::{ChatRenderer, MAX_CONVERSATION_TOKENS};
use crate::checkpoint::{self, CheckpointMeta, LoopState};
use crate::config::{ChatSftConfig, RunConfig};
use crate::dist::{Cluster, ReduceOp};
use crate::eval::categorical::categorical_accuracy;
use crate::model::Gpt;
use crate::optim::{OptimizerSettings, Optimizers};
use crate::paths::Paths;
use crate::progress::{suspend_bars, Progress, Unit};
use crate::report_section::ReportSection;
use crate::tokenizer::{artifacts, BpeEncoder};

/// The phase of the checkpoints this stage writes (`sft_dNN/`).
pub const PHASE: &str = "sft";

/// Fresh optimizers at `init_lr_frac` of the base LRs; Muon momentum stays at its default (§5.4).
pub fn optimizer_settings(c: &ChatSftConfig) -> OptimizerSettings {
    OptimizerSettings {
        unembedding_lr: c.unembedding_lr,
        embedding_lr: c.embedding_lr,
        matrix_lr: c.matrix_lr,
        weight_decay: c.weight_decay,
        init_lr_frac: c.init_lr_frac,
        ..OptimizerSettings::reference()
    }
}

/// §5.4: `1 − step / num_iterations`.
pub fn lr_multiplier(step: i64, num_iterations: i64) -> f64 {
    1.0 - step as f64 / num_iterations as f64
}

/// Optimizer steps: `num_iterations`, or (training examples // examples per step) × epochs (§5.4).
pub fn num_iterations(c: &ChatSftConfig, train_examples: usize) -> Result<i64, TrainError> {
    if c.num_iterations > 0 {
        return Ok(c.num_iterations);
    }
    if c.num_epochs == 0 || c.target_examples_per_step == 0 {
        return Err(TrainError::Config(
            "chat_sft: set num_iterations, or num_epochs and target_examples_per_step above 0".into(),
        ));
    }
    Ok((train_examples / c.target_examples_per_step as usize) as i64 * c.num_epochs as i64)
}

#[derive(Clone, Debug, PartialEq)]
pub struct SftOutcome {
    pub steps: i64,
    pub val_loss: Option<f64>,
    pub metrics: serde_json::Value,
    pub losses: Vec<f64>,
}

/// Mean loss over `eval_steps` batches of a fresh validation stream per data stream, averaged over
/// every stream of every process (§5.4).
fn validation_loss(
    model: &Gpt,
    val_task: &SharedTask,
    encoder: &Arc<BpeEncoder>,
    slots: &[StreamSlot],
    batch_size: usize,
    eval_steps: u32,
    cluster: &Cluster<'_>,
) -> Result<f64, TrainError> {
    let mut sum = 0.0;
    let mut count = 0.0;
    for &slot in slots {
        let mut val = ExampleBatches::new(val_task.clone(), encoder.clone(), slot, batch_size, cluster.device)?;
        for _ in 0..eval_steps {
            let (x, y) = val.next_batch()?;
            // The mean over the batch's trained targets, from the chunked per-token losses.
            sum += (model.token_losses(&x, &y).sum(Kind::Double) / y.ge(0).sum(Kind::Double)).double_value(&[]);
            count += 1.0;
        }
    }
    let totals = cluster.reduce(&[sum, count], ReduceOp::Sum)?;
    Ok(totals[0] / totals[1].max(1.0))
}

/// The multiple-choice tasks SFT measures (§5.4): MMLU and ARC-Easy, test splits.
struct MetricTasks {
    mmlu: SharedTask,
    arc_easy: SharedTask,
}

impl MetricTasks {
    fn load(paths: &Paths) -> Result<Self, TrainError> {
        Ok(MetricTasks {
            mmlu: Arc::new(Sliced::new(Mmlu::load(paths, "all", "test")?, Slice::default())?),
            arc_easy: Arc::new(Sliced::new(ArcTask::load(paths, "ARC-Easy", "test")?, Slice::default())?),
        })
    }

    /// Categorical accuracy on the first `eval_metrics_max_problems` of each.
    fn evaluate(
        &self,
        model: &Gpt,
        encoder: &BpeEncoder,
        c: &ChatSftConfig,
        cluster: &Cluster<'_>,
    ) -> Result<serde_json::Value, TrainError> {
        let renderer = ChatRenderer::new(encoder)?;
        let batch = c.device_batch_size as usize * 2;
        let max = Some(c.eval_metrics_max_problems as usize);
        let acc = |task: &SharedTask| {
            categorical_accuracy(model, &renderer, task, batch, max, cluster).map(|(a, _)| a.fraction())
        };
        Ok(serde_json::json!({"mmlu_acc": acc(&self.mmlu)?, "arc_easy_acc": acc(&self.arc_easy)?}))
    }
}

pub fn run(
    config: &RunConfig,
    paths: &Paths,
    cluster: &Cluster<'_>,
    options: &StageOptions,
) -> Result<SftOutcome, TrainError> {
    // Settings.
    let c = &config.chat_sft;
    if let Some(recipe) = &c.recipe_92d63d4 {
        return super::sft_92d63d4::run(config, paths, cluster, options, recipe);
    }
    let device = cluster.device;

    // The model, from the source phase's checkpoint; the tokenizer.
    let encoder = Arc::new(artifacts::load(&paths.tokenizer())?);
    let (source, model) = super::open_source_model(paths, &c.source, options, encoder.vocab_size(), device, &c.dtype)?;
    let out_dir = paths.checkpoints(PHASE, model.config.n_layer as u32);

    // The device batch in conversations (at most the source's fit; fitted on a GPU against the
    // longest a conversation renders to), and the accumulation that makes up the examples per step.
    let batch = fit_stage_batch(
        &model,
        cluster,
        &BatchSettings {
            section: "chat_sft",
            device_batch_size: c.device_batch_size,
            row_tokens: MAX_CONVERSATION_TOKENS as i64 - 1,
            row_setting: None,
            carried: source.fitted_device_batch_size,
        },
    )?;
    let b = batch.rows as usize;
    let per_step = b * cluster.world_size();
    if !(c.target_examples_per_step as usize).is_multiple_of(per_step) {
        return Err(TrainError::Config(format!(
            "chat_sft.target_examples_per_step {} is not a multiple of device_batch_size {b} x {} process(es)",
            c.target_examples_per_step,
            cluster.world_size()
        )));
    }
    let accum = c.target_examples_per_step as usize / per_step;
    let streams = cluster.world_size() * accum;

    // Data: micro-batch m of rank r reads stream r·A + m of W·A.
    let train_task = sft_train_mixture(paths, c)?;
    let val_task = sft_val_task(paths)?;
    let metric_tasks = MetricTasks::load(paths)?;
    let slots: Vec<StreamSlot> =
        (0..accum).map(|m| StreamSlot { stream: cluster.rank() * accum + m, streams }).collect();
    let mut train = slots
        .iter()
        .map(|&slot| ExampleBatches::new(train_task.clone(), encoder.clone(), slot, b, device))
        .collect::<Result<Vec<_>, _>>()?;
    let iterations = num_iterations(c, train_task.len())?;
    if iterations < 1 {
        return Err(TrainError::Config(format!(
            "chat_sft: {} training examples make no step of {} examples",
            train_task.len(),
            c.target_examples_per_step
        )));
    }

    // Fresh optimizers (§5.4).
    let mut optimizers = Optimizers::new(&model, &optimizer_settings(c), cluster.group)?;
    let momentum = OptimizerSettings::reference().muon_momentum;

    // Resume.
    let mut start_step = 0i64;
    let mut loop_state = LoopState::default();
    let mut val_loss = None;
    let resumed = checkpoint::resume(options.resume, "SFT", &out_dir, &model, &mut optimizers, cluster.rank())?;
    if let Some(meta) = resumed {
        let positions: Vec<usize> = stream_positions(&meta.dataloader_state_dict["streams"], &out_dir, accum)?;
        for (stream, &next) in train.iter_mut().zip(&positions) {
            stream.restore(next)?;
        }
        (start_step, loop_state, val_loss) = (meta.step as i64, meta.loop_state, meta.val_loss);
    }
    if cluster.is_master() {
        log::info!(
            "SFT of {} (depth {}) from {} step {}: {} examples, {iterations} steps of {} examples ({accum} micro-batch(es) of {b} on each of {} process(es))",
            train_task.name(),
            model.config.n_layer,
            source.dir.display(),
            source.step,
            train_task.len(),
            c.target_examples_per_step,
            cluster.world_size()
        );
    }
    prepare_output_dir(config, &out_dir, cluster)?;

    // The loop.
    let mut metrics_log = MetricsLog::open(&out_dir, start_step, cluster.is_master())?;
    let mut bar = Progress::new("SFT", iterations as u64, Unit::Items);
    bar.set_position(start_step as u64);
    let mut metrics = serde_json::json!({});
    let mut losses = Vec::new();
    let mut last_loss = f64::NAN;
    let mut smooth = SmoothedLoss { ema: loop_state.smooth_train_loss };
    let save = |step: i64,
                state: &LoopState,
                val_loss: Option<f64>,
                metrics: &serde_json::Value,
                train: &[ExampleBatches],
                optimizers: &Optimizers| {
        let positions = serde_json::json!({"streams": train.iter().map(ExampleBatches::position).collect::<Vec<_>>()});
        let max_seq_len = model.config.sequence_len as u32;
        let meta = CheckpointMeta {
            val_loss,
            fitted_device_batch_size: batch.fitted(),
            metrics: Some(metrics.clone()),
            ..CheckpointMeta::at(step, &model, c, batch.rows, max_seq_len, positions, *state)
        };
        checkpoint::save(&out_dir, &model, &optimizers.state_tensors(), &meta, cluster.rank())
    };
    let mut step = start_step;
    while step < iterations {
        let last_step = step == iterations - 1;
        if step > start_step && due(step, c.save_every) && !last_step {
            save(step, &loop_state, val_loss, &metrics, &train, &optimizers)?;
        }
        if last_step || due(step, c.eval_every) {
            let loss = validation_loss(&model, &val_task, &encoder, &slots, b, c.eval_steps, cluster)?;
            suspend_bars(|| log::info!("Step {step:05} | Validation loss: {loss:.6}"));
            val_loss = Some(loss);
            metrics_log.write(&StepRecord {
                step,
                val_loss,
                total_training_time: loop_state.total_training_time,
                ..StepRecord::default()
            })?;
        }
        // ≤ 0 means at the last step only (the reference's -1 would mean every step).
        if last_step || (step > 0 && due(step, c.eval_metrics_every)) {
            metrics = metric_tasks.evaluate(&model, &encoder, c, cluster)?;
            suspend_bars(|| log::info!("Step {step:05} | {metrics}"));
            metrics_log.write(&StepRecord {
                step,
                metrics: Some(metrics.clone()),
                total_training_time: loop_state.total_training_time,
                ..StepRecord::default()
            })?;
        }
        if last_step {
            break;
        }

        let t0 = Instant::now();
        let schedule = StepSchedule {
            lr_multiplier: lr_multiplier(step, iterations),
            muon_momentum: momentum,
            muon_weight_decay: None,
            grad_clip: None,
        };
        let outcome =
            optimizer_step(&model, &mut optimizers, cluster, step, accum, |m| Ok(train[m].next_batch()?), schedule)?;
        let dt = t0.elapsed().as_secs_f64();
        let trained = outcome.trained_tokens;
        if step + 1 > UNTIMED_STEPS {
            loop_state.total_training_time += dt;
        }
        last_loss = outcome.loss;
        losses.push(last_loss);
        let smoothed = smooth.update(step, last_loss);
        loop_state.smooth_train_loss = smooth.ema;
        suspend_bars(|| {
            log::info!(
                "Step {step:05}/{iterations:05} | Training loss: {last_loss:.6}| lrm: {:.6}| num_tokens: {trained}",
                schedule.lr_multiplier
            )
        });
        metrics_log.write(&StepRecord {
            step,
            loss: Some(last_loss),
            smoothed_loss: Some(smoothed),
            lrm: Some(schedule.lr_multiplier),
            trained_tokens: Some(trained),
            dt_s: Some(dt),
            total_training_time: loop_state.total_training_time,
            ..StepRecord::default()
        })?;
        step += 1;
        bar.set_position(step as u64);
    }
    drop(bar);
    save(step, &loop_state, val_loss, &metrics, &train, &optimizers)?;
    log::info!("saved the SFT model (step {step}) to {}", out_dir.display());
    cluster.barrier()?;

    // The report section.
    if cluster.is_master() {
        let mut section = ReportSection::new("Chat SFT")
            .settings(c)
            .value("Source checkpoint", format!("{} step {}", source.dir.display(), source.step))
            .value("Training rows", train_task.len() as u64)
            .value("Number of iterations", iterations)
            .value("Training loss", last_loss)
            .value("Validation loss", val_loss.unwrap_or(f64::NAN));
        if let serde_json::Value::Object(map) = &metrics {
            for (k, v) in map {
                section = section.value(k, v.clone());
            }
        }
        section.write(&paths.report()).map_err(|source| TrainError::Write { path: paths.report(), source })?;
    }
    Ok(SftOutcome { steps: step, val_loss, metrics, losses })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_and_horizon() {
        assert_eq!(lr_multiplier(0, 5), 1.0);
        assert!((lr_multiplier(3, 5) - 0.4).abs() < 1e-12);
        let mut c = crate::config::resolve("d20", &[], None).unwrap().chat_sft;
        assert_eq!(num_iterations(&c, 23_000).unwrap(), 718);
        c.num_epochs = 2;
        assert_eq!(num_iterations(&c, 100).unwrap(), 6);
        c.num_iterations = 9;
        assert_eq!(num_iterations(&c, 100).unwrap(), 9);
    }
}
