//! The `mid-train` stage (NANOCHAT.md §5.3, [A'] `10231df` with the LR fix of `b8076dd`): the base
//! model trained on one epoch of a conversation mixture in the chat format, every token trained
//! (the loss mask is ignored, §14.13), with fresh optimizers and the Muon momentum warm-up again.
//!
//! Reads top to bottom like the reference's `mid_train.py`: settings; the source model (the base
//! checkpoint of the largest depth, last step); the device batch (src/train/batch_fit.rs);
//! optimizers; the data (one token stream per data stream, §5.3 loader); the loop (validation bpb
//! every `eval_every` steps, the step, the schedule: LR multiplier 1 until `warmdown_start` of the
//! data, then linear to 0); checkpoints (periodic for `--resume`, and the final one when the data
//! wraps); the report section "Midtraining".
use std::sync::Arc;
use std::time::Instant;

use super::batch_fit::{fit_stage_batch, BatchSettings};
use super::metrics::{record_bpb_evaluation, MetricsLog, SmoothedLoss, StepRecord};
use super::optimizer_step::{optimizer_step, StepSchedule};
use super::{
    due, grad_accum_steps, prepare_output_dir, stream_positions, token_bytes_tensor, StageOptions, TrainError,
    UNTIMED_STEPS,
};
use crate::chat::batches::{ConversationStream, StreamBatch, StreamPosition, StreamSlot};
use crate::chat::tasks::catalog::{mid_train_mixture, mid_val_mixture};
use crate::checkpoint::{self, CheckpointMeta, LoopState};
use crate::config::{MidTrainConfig, RunConfig};
use crate::dist::{Cluster, ReduceOp};
use crate::eval::bpb::{batch_totals, BpbTotals};
use crate::model::Gpt;
use crate::optim::{schedule::muon_momentum, OptimizerSettings, Optimizers};
use crate::paths::Paths;
use crate::progress::{suspend_bars, Progress, Unit};
use crate::report_section::ReportSection;
use crate::tokenizer::artifacts;

/// The phase name of the checkpoints this stage writes (`mid_dNN/`) and reads from (`base_dNN/`).
pub const PHASE: &str = "mid";
pub const SOURCE_PHASE: &str = "base";

/// Fresh optimizers with the stage's LRs (`setup_optimizers` then × init_lr_frac, §5.3).
pub fn optimizer_settings(c: &MidTrainConfig) -> OptimizerSettings {
    OptimizerSettings {
        unembedding_lr: c.unembedding_lr,
        embedding_lr: c.embedding_lr,
        matrix_lr: c.matrix_lr,
        weight_decay: c.weight_decay,
        init_lr_frac: c.init_lr_frac,
        ..OptimizerSettings::reference()
    }
}

/// §5.3 (with `b8076dd`): 1 while `progress < warmdown_start`, then linearly down to 0 at the end.
pub fn lr_multiplier(progress: f64, warmdown_start: f64) -> f64 {
    if progress < warmdown_start {
        1.0
    } else {
        1.0 - (progress - warmdown_start) / (1.0 - warmdown_start)
    }
}

/// What a finished run reports.
#[derive(Clone, Debug, PartialEq)]
pub struct MidOutcome {
    pub steps: i64,
    pub min_val_bpb: f64,
    pub val_bpb: Option<f64>,
    pub losses: Vec<f64>,
}

pub fn run(
    config: &RunConfig,
    paths: &Paths,
    cluster: &Cluster<'_>,
    options: &StageOptions,
) -> Result<MidOutcome, TrainError> {
    // Settings.
    let c = &config.mid_train;
    let device = cluster.device;

    // The model, from the base checkpoint; the tokenizer.
    let encoder = Arc::new(artifacts::load(&paths.tokenizer())?);
    let (source, model) =
        super::open_source_model(paths, SOURCE_PHASE, options, encoder.vocab_size(), device, &c.dtype)?;
    let token_bytes = token_bytes_tensor(&paths.tokenizer(), device)?;
    let out_dir = paths.checkpoints(PHASE, model.config.n_layer as u32);

    // The device batch (at most the base's fit; fitted on a GPU), and the accumulation that makes
    // up the total batch with it.
    let batch = fit_stage_batch(
        &model,
        cluster,
        &BatchSettings {
            section: "mid_train",
            device_batch_size: c.device_batch_size,
            row_tokens: c.max_seq_len as i64,
            row_setting: Some("mid_train.max_seq_len"),
            carried: source.fitted_device_batch_size,
        },
    )?;
    let (b, t) = (batch.rows as usize, c.max_seq_len as usize);
    let accum = grad_accum_steps(c.total_batch_size, batch.rows, c.max_seq_len, cluster.world_size())?;
    let streams = cluster.world_size() * accum;

    // Fresh optimizers (§5.3).
    let mut optimizers = Optimizers::new(&model, &optimizer_settings(c), cluster.group)?;

    // Data: micro-batch m of rank r reads stream r·A + m of W·A.
    let train_task = mid_train_mixture(paths, c)?;
    let val_task = mid_val_mixture(paths, c)?;
    let slot = |m: usize| StreamSlot { stream: cluster.rank() * accum + m, streams };
    let mut train = (0..accum)
        .map(|m| ConversationStream::new(train_task.clone(), encoder.clone(), slot(m), b, t, device))
        .collect::<Result<Vec<_>, _>>()?;
    let eval_steps = (c.eval_tokens / (b * t * streams) as u64).max(1);
    let evaluate = |model: &Gpt| -> Result<BpbTotals, TrainError> {
        let mut totals = BpbTotals::default();
        for m in 0..accum {
            let mut val = ConversationStream::new(val_task.clone(), encoder.clone(), slot(m), b, t, device)?;
            for _ in 0..eval_steps {
                let batch = val.next_batch()?;
                totals.add(batch_totals(model, &batch.inputs, &batch.targets, &token_bytes));
            }
        }
        Ok(totals.summed_over(cluster)?)
    };

    // Resume.
    let mut start_step = 0i64;
    let mut loop_state = LoopState::default();
    let mut progress = 0.0;
    let mut val_bpb = None;
    let resumed = checkpoint::resume(options.resume, "midtraining", &out_dir, &model, &mut optimizers, cluster.rank())?;
    if let Some(meta) = resumed {
        let data = &meta.dataloader_state_dict;
        let positions: Vec<StreamPosition> = stream_positions(&data["streams"], &out_dir, accum)?;
        for (stream, position) in train.iter_mut().zip(&positions) {
            stream.restore(position)?;
        }
        progress = data["progress"].as_f64().unwrap_or(0.0);
        (start_step, loop_state, val_bpb) = (meta.step as i64, meta.loop_state, meta.val_bpb);
    }
    if cluster.is_master() {
        log::info!(
            "midtraining {} (depth {}) from {} step {}: {} conversations, {accum} micro-batch(es) of {b}x{t} on each of {} process(es)",
            train_task.name(),
            model.config.n_layer,
            source.dir.display(),
            source.step,
            train_task.len(),
            cluster.world_size()
        );
    }
    prepare_output_dir(config, &out_dir, cluster)?;

    // The loop.
    let mut metrics = MetricsLog::open(&out_dir, start_step, cluster.is_master())?;
    let mut smooth = SmoothedLoss { ema: loop_state.smooth_train_loss };
    let (total, unit_scale) = if c.num_iterations > 0 { (c.num_iterations as u64, 1.0) } else { (1000, 1000.0) };
    let mut bar = Progress::new("midtraining", total, Unit::Items);
    let mut losses = Vec::new();
    let save = |step: i64,
                val_bpb: Option<f64>,
                state: &LoopState,
                progress: f64,
                train: &[ConversationStream],
                optimizers: &Optimizers| {
        let streams: Vec<StreamPosition> = train.iter().map(ConversationStream::position).collect();
        let positions = serde_json::json!({"streams": streams, "progress": progress});
        let meta = CheckpointMeta {
            val_bpb,
            fitted_device_batch_size: batch.fitted(),
            ..CheckpointMeta::at(step, &model, c, batch.rows, c.max_seq_len, positions, *state)
        };
        checkpoint::save(&out_dir, &model, &optimizers.state_tensors(), &meta, cluster.rank())
    };
    let mut step = start_step;
    loop {
        if step > start_step && due(step, c.save_every) {
            save(step, val_bpb, &loop_state, progress, &train, &optimizers)?;
        }
        // This step's batches; the epoch ends when a stream's cursor wraps (§5.3 last_step).
        let batches = train.iter_mut().map(|s| s.next_batch()).collect::<Result<Vec<StreamBatch>, _>>()?;
        let wrapped = batches.iter().any(|x| x.wrapped);
        let stream_progress = batches.iter().map(|x| x.progress).fold(0.0, f64::max);
        let reduced = cluster.reduce(&[f64::from(u8::from(wrapped)), stream_progress], ReduceOp::Max)?;
        let last_step = reduced[0] > 0.0 || (c.num_iterations > 0 && step >= c.num_iterations);
        progress =
            if c.num_iterations > 0 { (step + 1) as f64 / c.num_iterations as f64 } else { progress.max(reduced[1]) };

        if c.eval_every > 0 && (last_step || step % c.eval_every == 0) {
            val_bpb = Some(record_bpb_evaluation(&mut metrics, step, &evaluate(&model)?, &mut loop_state)?);
        }
        if last_step {
            save(step, val_bpb, &loop_state, progress, &train, &optimizers)?;
            log::info!("saved the midtrained model (step {step}) to {}", out_dir.display());
            break;
        }

        let t0 = Instant::now();
        let schedule = StepSchedule {
            lr_multiplier: lr_multiplier(progress, c.warmdown_start),
            muon_momentum: muon_momentum(
                step,
                c.muon_momentum_start,
                c.muon_momentum_end,
                c.muon_momentum_warmup_steps,
            ),
            muon_weight_decay: None,
            grad_clip: None,
        };
        let outcome = optimizer_step(
            &model,
            &mut optimizers,
            cluster,
            step,
            accum,
            |m| Ok((batches[m].inputs.shallow_clone(), batches[m].targets.shallow_clone())),
            schedule,
        )?;
        let dt = t0.elapsed().as_secs_f64();
        // The reference counts and prints steps from 1 here (its debiasing uses that count too).
        let done = step + 1;
        let smoothed = smooth.update(done, outcome.loss);
        loop_state.smooth_train_loss = smooth.ema;
        if done > UNTIMED_STEPS {
            loop_state.total_training_time += dt;
        }
        losses.push(outcome.loss);
        let tok_per_sec = c.total_batch_size as f64 / dt;
        suspend_bars(|| {
            log::info!(
                "step {done:05} ({:.2}%) | loss: {smoothed:.6} | lrm: {:.2} | dt: {:.2}ms | tok/sec: {tok_per_sec:.0} | total time: {:.2}m",
                100.0 * progress,
                schedule.lr_multiplier,
                dt * 1000.0,
                loop_state.total_training_time / 60.0
            )
        });
        bar.set_position(((progress * unit_scale) as u64).min(total));
        metrics.write(&StepRecord {
            step,
            loss: Some(outcome.loss),
            smoothed_loss: Some(smoothed),
            lrm: Some(schedule.lr_multiplier),
            muon_momentum: Some(schedule.muon_momentum),
            progress: Some(progress),
            dt_s: Some(dt),
            tok_per_sec: Some(tok_per_sec),
            total_training_time: loop_state.total_training_time,
            ..StepRecord::default()
        })?;
        step = done;
    }
    drop(bar);
    cluster.barrier()?;

    // The report section.
    if cluster.is_master() {
        ReportSection::new("Midtraining")
            .settings(c)
            .value("Source checkpoint", format!("{} step {}", source.dir.display(), source.step))
            .value("Training conversations", train_task.len() as u64)
            .value("Number of iterations", step)
            .value("DDP world size", cluster.world_size() as i64)
            .value("Minimum validation bpb", loop_state.min_val_bpb)
            .write(&paths.report())
            .map_err(|source| TrainError::Write { path: paths.report(), source })?;
    }
    Ok(MidOutcome { steps: step, min_val_bpb: loop_state.min_val_bpb, val_bpb, losses })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_is_flat_then_decays_to_zero() {
        assert_eq!(lr_multiplier(0.0, 0.8), 1.0);
        assert_eq!(lr_multiplier(0.79, 0.8), 1.0);
        assert!((lr_multiplier(0.9, 0.8) - 0.5).abs() < 1e-12);
        assert!(lr_multiplier(1.0, 0.8).abs() < 1e-12);
    }
}
