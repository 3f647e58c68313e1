//! The `sft` stage as nanochat 92d63d4's `scripts/chat_sft.py` (NANOCHAT.md §12; `chat_sft.recipe_92d63d4`,
//! the `gpt2` presets): supervised fine-tuning straight from the base model on SmolTalk, MMLU and
//! GSM8K, the conversations packed into rows of `max_seq_len` + 1 tokens by best fit and padded
//! where none fits (src/chat/sft_bestfit.rs; only the assistant's tokens are trained), a token batch,
//! the LR schedule over the progress through the data and the run ending when the data is consumed.
//!
//! Reads top to bottom like the reference's script: settings and the source model; the batch and its
//! accumulation; optimizers (`MuonAdamW` at `init_lr_frac` of the stage's LRs, warm-started from the
//! source's optimizer state); the data; the loop (validation bpb every `eval_every` steps and at the
//! end, ChatCORE every `chatcore_every` steps and at the end, the step); the final checkpoint; the
//! report section "Chat SFT". No mid-run checkpoints: the reference has none either.
use std::sync::Arc;
use std::time::Instant;

use super::batch_fit::{fit_stage_batch, BatchSettings};
use super::metrics::{record_bpb_evaluation, MetricsLog, SmoothedLoss, StepRecord};
use super::optimizer_step::{optimizer_step, StepSchedule};
use super::sft::{optimizer_settings, SftOutcome, PHASE};
use super::{due, grad_accum_steps, prepare_output_dir, token_bytes_tensor, StageOptions, TrainError};
use crate::chat::batches::StreamSlot;
use crate::chat::sft_bestfit::{SftBestFit, SftPackConfig, SFT_BUFFER_CONVERSATIONS};
use crate::chat::tasks::catalog::{sft_train_mixture_92d63d4, sft_val_mixture_92d63d4, shared};
use crate::chat::tasks::{SharedTask, Slice};
use crate::chat::ChatRenderer;
use crate::checkpoint::{self, CheckpointMeta, LoopState};
use crate::config::{RunConfig, SftRecipe92d63d4};
use crate::dist::{Cluster, ReduceOp};
use crate::engine::chat_engine::Engine;
use crate::eval::bpb::{self, BpbTotals};
use crate::eval::categorical::categorical_accuracy;
use crate::eval::chat_eval::{self, generative_accuracy, open_eval_task};
use crate::model::Gpt;
use crate::optim::{schedule, Optimizers};
use crate::paths::Paths;
use crate::progress::{suspend_bars, Progress, Unit};
use crate::report_section::ReportSection;
use crate::tokenizer::{artifacts, BpeEncoder};

/// `get_lr_multiplier(progress)`: linear warm-up over `warmup_ratio` of the data, constant, then
/// linear to `final_lr_frac` over the last `warmdown_ratio`.
pub fn lr_multiplier(progress: f64, r: &SftRecipe92d63d4) -> f64 {
    if progress < r.warmup_ratio {
        (progress + 1e-8) / r.warmup_ratio
    } else if progress <= 1.0 - r.warmdown_ratio {
        1.0
    } else {
        let decay = (progress - (1.0 - r.warmdown_ratio)) / r.warmdown_ratio;
        (1.0 - decay) * 1.0 + decay * r.final_lr_frac
    }
}

/// The token batch base training used, which chat_sft.py inherits: the meta's `total_batch_size`
/// (92d63d4's base_train.py writes the resolved batch there; its `user_config` holds the argument,
/// -1 when automatic), else the `user_config`'s when positive (ours record the resolved batch there).
fn inherited_total_batch_size(dir: &std::path::Path, step: u64) -> Result<u64, TrainError> {
    let path = checkpoint::meta_path(dir, step);
    let meta: serde_json::Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .ok_or_else(|| TrainError::Config(format!("cannot read the source checkpoint's meta {}", path.display())))?;
    let inherited = [&meta["total_batch_size"], &meta["user_config"]["total_batch_size"]]
        .into_iter()
        .find_map(|v| v.as_u64().filter(|&n| n > 0));
    inherited.ok_or_else(|| {
        TrainError::Config(format!(
            "the source checkpoint {} records no total_batch_size; set chat_sft.recipe_92d63d4.total_batch_size",
            dir.display()
        ))
    })
}

/// chat_sft.py's ChatCORE tasks, and its categorical ones.
const CHATCORE_TASKS: [&str; 5] = ["ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K", "HumanEval"];
const CATEGORICAL_TASKS: [&str; 3] = ["ARC-Easy", "ARC-Challenge", "MMLU"];

/// chat_sft.py's ChatCORE during training: each task's accuracy (categorical ones on at most
/// `chatcore_max_cat` problems in batches of the device batch, generative ones on at most
/// `chatcore_max_sample`, sampled with the `chat_eval` settings), and ChatCORE over the five
/// (`chatcore`) and over the categorical three (`chatcore_cat`). HumanEval runs generated code:
/// without the sandbox it is left out, and `chatcore` with it.
fn chatcore(
    model: &Gpt,
    encoder: &BpeEncoder,
    paths: &Paths,
    config: &RunConfig,
    r: &SftRecipe92d63d4,
    cluster: &Cluster<'_>,
) -> Result<serde_json::Value, TrainError> {
    let renderer = ChatRenderer::new(encoder)?;
    let engine = Engine::new(model, encoder)?;
    let limit = |max: i64| usize::try_from(max).ok();
    let mut results = Vec::new();
    for name in CHATCORE_TASKS {
        if name == "HumanEval" {
            if let Err(reason) = crate::chat::tasks::humaneval::sandbox_available() {
                log::warn!("ChatCORE: HumanEval is NOT evaluated: {reason}");
                continue;
            }
        }
        let task = open_eval_task(paths, name)?;
        let accuracy = match CATEGORICAL_TASKS.contains(&name) {
            true => {
                let batch = config.chat_sft.device_batch_size as usize;
                categorical_accuracy(model, &renderer, &task, batch, limit(r.chatcore_max_cat), cluster)?.0
            }
            false => {
                let max = limit(r.chatcore_max_sample);
                generative_accuracy(&engine, &renderer, &task, &config.chat_eval, max, cluster)?.0
            }
        };
        results.push((name.to_string(), accuracy));
    }
    let names = |tasks: &[&str]| tasks.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    let mut metrics: serde_json::Map<String, serde_json::Value> =
        results.iter().map(|(name, acc)| (name.clone(), acc.fraction().into())).collect();
    metrics.insert("chatcore".into(), chat_eval::chatcore(&results, &names(&CHATCORE_TASKS)).into());
    metrics.insert("chatcore_cat".into(), chat_eval::chatcore(&results, &names(&CATEGORICAL_TASKS)).into());
    Ok(serde_json::Value::Object(metrics))
}

/// The packer over `task` for this process: rank r of W, as the reference's generator.
fn packer(
    task: SharedTask,
    encoder: &Arc<BpeEncoder>,
    batch: (usize, usize),
    num_iterations: Option<u64>,
    cluster: &Cluster<'_>,
) -> Result<SftBestFit, TrainError> {
    let config = SftPackConfig {
        batch_size: batch.0,
        seq_len: batch.1,
        buffer_size: SFT_BUFFER_CONVERSATIONS,
        num_iterations,
        slot: StreamSlot { stream: cluster.rank(), streams: cluster.world_size() },
        device: cluster.device,
    };
    Ok(SftBestFit::from_task(task, encoder.clone(), config)?)
}

pub fn run(
    config: &RunConfig,
    paths: &Paths,
    cluster: &Cluster<'_>,
    options: &StageOptions,
    r: &SftRecipe92d63d4,
) -> Result<SftOutcome, TrainError> {
    // Settings and the source model.
    let c = &config.chat_sft;
    let device = cluster.device;
    let encoder = Arc::new(artifacts::load(&paths.tokenizer())?);
    let token_bytes = token_bytes_tensor(&paths.tokenizer(), device)?;
    let (source, model) = super::open_source_model(paths, &c.source, options, encoder.vocab_size(), device, &c.dtype)?;
    let out_dir = paths.checkpoints(PHASE, model.config.n_layer as u32);
    if options.resume {
        log::info!("--resume: the 92d63d4 SFT writes no mid-run checkpoints (as the reference); starting at step 0");
    }

    // The batch: rows of max_seq_len tokens, the step's tokens inherited from base training unless set.
    let batch = fit_stage_batch(
        &model,
        cluster,
        &BatchSettings {
            section: "chat_sft",
            device_batch_size: c.device_batch_size,
            row_tokens: r.max_seq_len as i64,
            row_setting: Some("chat_sft.recipe_92d63d4.max_seq_len"),
            carried: source.fitted_device_batch_size,
        },
    )?;
    let total_batch_size = match r.total_batch_size {
        0 => inherited_total_batch_size(&source.dir, source.step)?,
        n => n,
    };
    let (b, t) = (batch.rows as usize, r.max_seq_len as usize);
    let accum = grad_accum_steps(total_batch_size, batch.rows, r.max_seq_len, cluster.world_size())?;

    // Optimizers: MuonAdamW at init_lr_frac of the stage's LRs, weight decay as set (0: base training
    // decayed it to 0), the moments warm-started from the source's state where it has one for this rank.
    let mut optimizers = Optimizers::new(&model, &optimizer_settings(c), cluster.group)?;
    let source_state = checkpoint::optim_path(&source.dir, source.step, cluster.rank());
    if r.load_optimizer && source_state.is_file() {
        optimizers
            .load_state_tensors(&checkpoint::read_tensors(&source_state)?)
            .map_err(|source| TrainError::WarmStart { path: source_state.clone(), source })?;
        log::info!("optimizer state from {} (moments only, LRs reset)", source_state.display());
    } else if r.load_optimizer {
        log::warn!("no optimizer state at {}: starting with fresh moments", source_state.display());
    }

    // Data.
    let train_task =
        shared(sft_train_mixture_92d63d4(paths, r.mmlu_epochs as usize, r.gsm8k_epochs as usize)?, Slice::default())?;
    let val_task = shared(sft_val_mixture_92d63d4(paths)?, Slice::default())?;
    let num_iterations = (c.num_iterations > 0).then_some(c.num_iterations as u64);
    let mut train = packer(train_task.clone(), &encoder, (b, t), num_iterations, cluster)?;
    let eval_steps = (r.eval_tokens / (b as u64 * t as u64 * cluster.world_size() as u64)).max(1);
    let evaluate_bpb = || -> Result<BpbTotals, TrainError> {
        let mut val = packer(val_task.clone(), &encoder, (b, t), None, cluster)?;
        let mut totals = BpbTotals::default();
        for _ in 0..eval_steps {
            let v = val.next_batch()?;
            totals.add(bpb::batch_totals(&model, &v.inputs, &v.targets, &token_bytes));
        }
        Ok(totals.summed_over(cluster)?)
    };
    if cluster.is_master() {
        log::info!(
            "SFT (92d63d4) of {} conversations from {} step {}: {total_batch_size} tokens a step ({accum} micro-batch(es) of {b}x{t} on each of {} process(es))",
            train_task.len(),
            source.dir.display(),
            source.step,
            cluster.world_size()
        );
    }
    prepare_output_dir(config, &out_dir, cluster)?;

    // The loop. The batch after the ones a step trains on is fetched before the step, as the
    // reference's prefetch: its progress sets the step's LR, and the step after the one that reaches
    // the end of the data is the last (evaluated and saved, not trained).
    let mut metrics_log = MetricsLog::open(&out_dir, 0, cluster.is_master())?;
    let mut loop_state = LoopState::default();
    let mut smooth = SmoothedLoss::default();
    let mut losses = Vec::new();
    let mut val_bpb = None;
    let mut chatcore_metrics = serde_json::Value::Null;
    let mut next = train.next_batch()?;
    let mut last_step = next.last_step;
    let mut progress = 0.0f64;
    let mut bar = Progress::new("SFT (% of the data)", 100, Unit::Items);
    let mut step = 0i64;
    loop {
        last_step = cluster.reduce(&[f64::from(u8::from(last_step))], ReduceOp::Max)?[0] > 0.0;
        if last_step || due(step, c.eval_every) {
            val_bpb = Some(record_bpb_evaluation(&mut metrics_log, step, &evaluate_bpb()?, &mut loop_state)?);
        }
        if r.chatcore_every > 0 && (last_step || (step > 0 && due(step, r.chatcore_every))) {
            chatcore_metrics = chatcore(&model, &encoder, paths, config, r, cluster)?;
            suspend_bars(|| log::info!("Step {step:05} | ChatCORE: {chatcore_metrics}"));
            metrics_log.write(&StepRecord {
                step,
                metrics: Some(chatcore_metrics.clone()),
                total_training_time: loop_state.total_training_time,
                ..StepRecord::default()
            })?;
        }
        if last_step {
            break;
        }

        let t0 = Instant::now();
        let mut micro_batches = Vec::with_capacity(accum);
        for _ in 0..accum {
            let following = train.next_batch()?;
            progress = progress.max(following.progress);
            last_step |= following.last_step;
            let current = std::mem::replace(&mut next, following);
            micro_batches.push(Some((current.inputs, current.targets)));
        }
        let schedule = StepSchedule {
            lr_multiplier: lr_multiplier(progress, r),
            muon_momentum: schedule::muon_momentum(step, 0.85, 0.95, 300),
            muon_weight_decay: None,
            grad_clip: None,
        };
        let outcome = optimizer_step(
            &model,
            &mut optimizers,
            cluster,
            step,
            accum,
            |m| Ok(micro_batches[m].take().expect("each micro-batch is used once")),
            schedule,
        )?;
        let dt = t0.elapsed().as_secs_f64();
        if step > super::UNTIMED_STEPS {
            loop_state.total_training_time += dt;
        }
        losses.push(outcome.loss);
        let smoothed = smooth.update(step, outcome.loss);
        loop_state.smooth_train_loss = smooth.ema;
        suspend_bars(|| {
            log::info!(
                "step {step:05} ({:.2}%) | loss: {smoothed:.6} | lrm: {:.2} | dt: {:.2}ms | tok/sec: {:.0} | total time: {:.2}m",
                100.0 * progress,
                schedule.lr_multiplier,
                dt * 1000.0,
                total_batch_size as f64 / dt,
                loop_state.total_training_time / 60.0
            )
        });
        metrics_log.write(&StepRecord {
            step,
            loss: Some(outcome.loss),
            smoothed_loss: Some(smoothed),
            lrm: Some(schedule.lr_multiplier),
            muon_momentum: Some(schedule.muon_momentum),
            trained_tokens: Some(outcome.trained_tokens),
            progress: Some(progress),
            dt_s: Some(dt),
            total_training_time: loop_state.total_training_time,
            ..StepRecord::default()
        })?;
        step += 1;
        bar.set_position((100.0 * progress).min(100.0) as u64);
    }
    drop(bar);

    // The final checkpoint (every process writes its optimizer shard).
    // As chat_sft.py's meta: the model_config's sequence_len is the SFT rows' max_seq_len (the
    // windows and rotary tables of the stages that load it follow it).
    let mut model_config = model.config;
    model_config.sequence_len = i64::from(r.max_seq_len);
    let meta = CheckpointMeta {
        val_bpb,
        model_config,
        fitted_device_batch_size: batch.fitted(),
        metrics: (!chatcore_metrics.is_null()).then(|| chatcore_metrics.clone()),
        ..CheckpointMeta::at(
            step,
            &model,
            c,
            batch.rows,
            r.max_seq_len,
            serde_json::to_value(train.state()).unwrap_or_default(),
            loop_state,
        )
    };
    checkpoint::save(&out_dir, &model, &optimizers.state_tensors(), &meta, cluster.rank())?;
    log::info!("saved the SFT model (step {step}) to {}", out_dir.display());
    cluster.barrier()?;

    // The report section.
    if cluster.is_master() {
        ReportSection::new("Chat SFT")
            .settings(c)
            .value("Source checkpoint", format!("{} step {}", source.dir.display(), source.step))
            .value("Training rows", train_task.len() as u64)
            .value("Number of iterations", step)
            .value("Total batch size", total_batch_size)
            .value("Minimum validation bpb", loop_state.min_val_bpb)
            .value("Final validation bpb", val_bpb.unwrap_or(f64::NAN))
            .value("ChatCORE", chatcore_metrics["chatcore"].as_f64())
            .value("ChatCORE (categorical)", chatcore_metrics["chatcore_cat"].as_f64())
            .write(&paths.report())
            .map_err(|source| TrainError::Write { path: paths.report(), source })?;
    }
    let metrics = serde_json::json!({ "val_bpb": val_bpb, "chatcore": chatcore_metrics });
    Ok(SftOutcome { steps: step, val_loss: None, metrics, losses })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_is_inherited_from_the_reference_meta_or_ours() {
        let dir = tempfile::tempdir().unwrap();
        let write =
            |meta: serde_json::Value| std::fs::write(checkpoint::meta_path(dir.path(), 5), meta.to_string()).unwrap();
        // 92d63d4's base_train.py: the resolved batch beside an automatic (-1) argument.
        write(serde_json::json!({"total_batch_size": 524_288, "user_config": {"total_batch_size": -1}}));
        assert_eq!(inherited_total_batch_size(dir.path(), 5).unwrap(), 524_288);
        write(serde_json::json!({"user_config": {"total_batch_size": 4096}}));
        assert_eq!(inherited_total_batch_size(dir.path(), 5).unwrap(), 4096);
        write(serde_json::json!({"user_config": {"total_batch_size": -1}}));
        assert!(inherited_total_batch_size(dir.path(), 5).unwrap_err().to_string().contains("total_batch_size"));
    }

    #[test]
    fn the_lr_follows_the_progress_through_the_data() {
        // chat_sft.py's defaults: no warm-up, the second half warming down to 0.
        let r = SftRecipe92d63d4 {
            max_seq_len: 2048,
            total_batch_size: 0,
            mmlu_epochs: 3,
            gsm8k_epochs: 4,
            warmup_ratio: 0.0,
            warmdown_ratio: 0.5,
            final_lr_frac: 0.0,
            eval_tokens: 1,
            load_optimizer: true,
            chatcore_every: -1,
            chatcore_max_cat: -1,
            chatcore_max_sample: 24,
        };
        assert_eq!(lr_multiplier(0.0, &r), 1.0);
        assert_eq!(lr_multiplier(0.5, &r), 1.0);
        assert!((lr_multiplier(0.75, &r) - 0.5).abs() < 1e-12);
        assert_eq!(lr_multiplier(1.0, &r), 0.0);
        let warm = SftRecipe92d63d4 { warmup_ratio: 0.1, final_lr_frac: 0.2, ..r };
        assert!((lr_multiplier(0.05, &warm) - (0.05 + 1e-8) / 0.1).abs() < 1e-15);
        assert!((lr_multiplier(1.0, &warm) - 0.2).abs() < 1e-12);
    }
}
