//! The `base-train` stage (NANOCHAT.md §4): the GPT pretrained on the shards with Muon + AdamW.
//!
//! Reads top to bottom like the reference's `base_train.py`: settings (the horizon from the
//! tokens:params ratio or FLOPs, the gradient accumulation); the model (seeded init, or `--init-from`
//! weights); optimizers; the data (one shard stream per micro-batch: virtual rank r·A + m of W·A,
//! so k processes and one process with k× accumulation see the same tokens); `--resume`; the loop
//! ([`BaseLoop`]: validation bpb every `eval_every` steps, CORE every `core_metric_every` steps on
//! `core_metric_max_per_task` examples per task, samples, checkpoints, the step with clipping and the
//! warm-down schedule); the report section "Base model training".
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tch::{Device, Tensor};

use super::batch_fit;
use super::metrics::{record_bpb_evaluation, MetricsLog, SmoothedLoss, StepRecord};
use super::optimizer_step::{optimizer_step, StepSchedule};
use super::{
    due, grad_accum_steps, prepare_output_dir, stage_precision, stream_positions, token_bytes_tensor, StageOptions,
    TrainError, UNTIMED_STEPS,
};
use crate::checkpoint::{self, CheckpointMeta, LoopState};
use crate::config::{BaseTrainConfig, RunConfig};
use crate::data::batch_source::{BatchError, BatchSource};
use crate::data::dataloader::{DistributedLoader, LoaderConfig, LoaderPosition};
use crate::data::parquet_shards::{shards_for, Split};
use crate::data::shard_source::ParquetDocuments;
use crate::dist::Cluster;
use crate::download::eval_bundle::ensure_eval_bundle;
use crate::engine::generate::{generate, SamplingSettings};
use crate::eval::base_eval::{bundle_source, examples_per_task};
use crate::eval::base_loss::SAMPLE_PROMPTS;
use crate::eval::bpb::{self, BpbTotals};
use crate::eval::core::evaluator::default_batch_tokens;
use crate::eval::core::{evaluate_bundle, CoreBundle, CoreResults};
use crate::model::{Gpt, GptConfig};
use crate::optim::{schedule, OptimizerSettings, Optimizers};
use crate::paths::Paths;
use crate::progress::{suspend_bars, Progress, Unit};
use crate::report_section::ReportSection;
use crate::tokenizer::{artifacts, BpeEncoder};

/// The phase of the checkpoints this stage writes (`base_dNN/`).
pub const PHASE: &str = "base";

/// Number of optimizer steps: explicit > from target FLOPs > from the tokens:params ratio (§4.4).
pub fn num_iterations(bt: &BaseTrainConfig, num_params: i64, flops_per_token: i64) -> Result<i64, TrainError> {
    let batch = bt.total_batch_size as f64;
    if bt.num_iterations > 0 {
        Ok(bt.num_iterations)
    } else if bt.target_flops > 0.0 {
        Ok((bt.target_flops / (flops_per_token as f64 * batch)).round() as i64)
    } else if bt.target_param_data_ratio > 0.0 {
        Ok((bt.target_param_data_ratio * num_params as f64 / batch).floor() as i64)
    } else {
        Err(TrainError::Config(
            "no training horizon: set base_train.num_iterations, target_flops or target_param_data_ratio".into(),
        ))
    }
}

pub fn optimizer_settings(bt: &BaseTrainConfig) -> OptimizerSettings {
    OptimizerSettings {
        unembedding_lr: bt.unembedding_lr,
        embedding_lr: bt.embedding_lr,
        matrix_lr: bt.matrix_lr,
        weight_decay: bt.weight_decay,
        adam_betas: (bt.adam_beta1, bt.adam_beta2),
        adam_eps: bt.adam_eps,
        muon_momentum: bt.muon_momentum_end,
        muon_ns_steps: bt.muon_ns_steps,
        init_lr_frac: 1.0,
    }
}

fn peak_flops(device: Device, local_rank: usize, world: usize) -> Option<f64> {
    if !device.is_cuda() {
        return None;
    }
    let inventory = crate::hw::GpuInventory::probe();
    let name = inventory.gpus.get(local_rank).map(|g| g.name.clone())?;
    crate::hw::peak_flops::peak_bf16_flops(&name).map(|f| f * world as f64)
}

pub fn run(config: &RunConfig, paths: &Paths, cluster: &Cluster<'_>, options: &StageOptions) -> Result<(), TrainError> {
    // Settings and tokenizer.
    let device = cluster.device;
    let encoder = Arc::new(artifacts::load(&paths.tokenizer())?);
    let token_bytes = token_bytes_tensor(&paths.tokenizer(), device)?;
    let mut bt = config.base_train.clone();
    let model_config = GptConfig::from_depth(bt.depth as i64, encoder.vocab_size() as i64, bt.max_seq_len as i64);

    // The model: every rank seeds and initialises identically, no parameter broadcast (§3.4).
    tch::manual_seed(config.run.seed as i64);
    let precision = stage_precision(&bt.dtype, device)?;
    let mut model = Gpt::with_precision(model_config, device, precision)?;
    log::info!("compute dtype: {precision}");
    super::check_attention_kernel(&model)?;
    model.init_weights();
    let checkpoint_dir = paths.checkpoints(PHASE, bt.depth);

    // Optimizers: with several processes DistAdamW + DistMuon (sharded state, §4.2-4.3).
    let mut optimizers = Optimizers::new(&model, &optimizer_settings(&bt), cluster.group)?;

    let mut start_step = 0i64;
    let mut loop_state = LoopState::default();
    let mut val_bpb = None;
    let mut resume_positions: Option<serde_json::Value> = None;
    let resumed = checkpoint::resume(options.resume, PHASE, &checkpoint_dir, &model, &mut optimizers, cluster.rank())?;
    if let Some(meta) = resumed {
        resume_positions = Some(meta.dataloader_state_dict.clone());
        (start_step, loop_state, val_bpb) = (meta.step as i64, meta.loop_state, meta.val_bpb);
    } else if let Some(init) = &options.source_dir {
        checkpoint::load_weights(&model, &checkpoint::read_tensors(init)?, init)?;
        log::info!("initialised the weights from {}", init.display());
    }

    let num_params = model_config.num_params();
    let flops_per_token = model_config.flops_per_token();
    let iterations = num_iterations(&bt, num_params, flops_per_token)?;
    // On a GPU the device batch shrinks until a step fits in memory on every process (more
    // accumulation, same total batch); the checkpoints record the fit for the later stages.
    let batch = batch_fit::fit_stage_batch(
        &model,
        cluster,
        &batch_fit::BatchSettings {
            section: "base_train",
            device_batch_size: bt.device_batch_size,
            row_tokens: bt.max_seq_len as i64,
            row_setting: Some("base_train.max_seq_len"),
            carried: None,
        },
    )?;
    bt.device_batch_size = batch.rows;
    let bt = &bt;
    let accum = grad_accum_steps(bt.total_batch_size, bt.device_batch_size, bt.max_seq_len, cluster.world_size())?;
    let streams = cluster.world_size() * accum;
    let eval_steps =
        (bt.eval_tokens / (bt.device_batch_size as u64 * bt.max_seq_len as u64 * streams as u64)).max(1) as i64;
    if cluster.is_master() {
        log::info!(
            "model: depth {} (d={}, {} heads), {num_params} parameters, {flops_per_token:e} FLOPs/token",
            bt.depth,
            model_config.n_embd,
            model_config.n_head
        );
        log::info!("{iterations} steps of {} tokens ({accum} micro-batch(es) of {}x{} on each of {} process(es)) = {} tokens, {:.2} tokens/param",
            bt.total_batch_size, bt.device_batch_size, bt.max_seq_len, cluster.world_size(), iterations as u64 * bt.total_batch_size, (iterations as f64 * bt.total_batch_size as f64) / num_params as f64);
    }

    // Data: micro-batch m of rank r reads the shard stream of virtual rank r·A + m of W·A.
    let shards_dir = paths.shards(&config.data.manifest);
    let shards = |split| {
        shards_for(&shards_dir, split).map_err(|source| TrainError::Shards { source, preset: config.run.name.clone() })
    };
    let (train_shards, val_shards) = (shards(Split::Train)?, shards(Split::Val)?);
    let loader_configs = |shards: Vec<PathBuf>| -> Vec<LoaderConfig> {
        (0..accum)
            .map(|m| LoaderConfig {
                shards: shards.clone(),
                batch_size: bt.device_batch_size as usize,
                seq_len: bt.max_seq_len as usize,
                rank: cluster.rank() * accum + m,
                world_size: streams,
                device,
            })
            .collect()
    };
    let source = Arc::new(ParquetDocuments);
    let resume_positions: Option<Vec<LoaderPosition>> =
        resume_positions.map(|stored| stream_positions(&stored, &checkpoint_dir, accum)).transpose()?;
    let mut train: Vec<Box<dyn BatchSource>> = Vec::new();
    for (m, cfg) in loader_configs(train_shards).into_iter().enumerate() {
        let position = resume_positions.as_ref().map(|p| p[m]);
        let loader = DistributedLoader::new(cfg, source.clone(), encoder.clone(), position)?;
        train.push(Box::new(loader));
    }
    let make_val = {
        let (encoder, source, val_configs) = (encoder.clone(), source.clone(), loader_configs(val_shards));
        move || -> Result<Vec<Box<dyn BatchSource>>, BatchError> {
            let mut loaders: Vec<Box<dyn BatchSource>> = Vec::new();
            for cfg in &val_configs {
                loaders.push(Box::new(DistributedLoader::new(cfg.clone(), source.clone(), encoder.clone(), None)?));
            }
            Ok(loaders)
        }
    };
    prepare_output_dir(config, &checkpoint_dir, cluster)?;

    // CORE every core_metric_every steps (§6.1): the bundle is fetched now, so a missing one fails early.
    let core = if bt.core_metric_every > 0 {
        let bundle = CoreBundle::open(&ensure_eval_bundle(paths, &bundle_source(config))?)?;
        let (encoder, max_per_task) = (encoder.clone(), examples_per_task(bt.core_metric_max_per_task));
        let evaluate: CoreEvaluation = Box::new(move |model: &Gpt, cluster: &Cluster<'_>| {
            Ok(evaluate_bundle(model, &encoder, &bundle, max_per_task, cluster, default_batch_tokens(device))?)
        });
        Some(CoreMetric { every: bt.core_metric_every, evaluate })
    } else {
        None
    };

    // The loop.
    let sampler_encoder = encoder.clone();
    let settings = LoopSettings {
        num_iterations: iterations,
        grad_accum_steps: accum as i64,
        total_batch_size: bt.total_batch_size as i64,
        warmup_ratio: bt.warmup_ratio,
        warmdown_ratio: bt.warmdown_ratio,
        final_lr_frac: bt.final_lr_frac,
        muon_momentum_start: bt.muon_momentum_start,
        muon_momentum_end: bt.muon_momentum_end,
        muon_momentum_warmup_steps: bt.muon_momentum_warmup_steps,
        grad_clip: bt.grad_clip,
        eval_every: bt.eval_every,
        eval_steps,
        save_every: bt.save_every,
        sample_every: bt.sample_every,
        flops_per_token: flops_per_token as f64,
        peak_flops: peak_flops(device, cluster.ctx.local_rank, cluster.world_size()),
        checkpoint_dir: checkpoint_dir.clone(),
        user_config: serde_json::to_value(bt).unwrap_or_default(),
        device_batch_size: bt.device_batch_size,
        fitted_device_batch_size: batch.fitted(),
        max_seq_len: bt.max_seq_len,
    };
    let mut base_loop = BaseLoop {
        model: &model,
        optimizers,
        train,
        make_val: Box::new(make_val),
        token_bytes,
        settings,
        sampler: Some(Box::new(move |m: &Gpt| print_samples(m, &sampler_encoder))),
        core,
        cluster,
    };
    let started = Instant::now();
    let outcome = base_loop.run(start_step, loop_state, val_bpb)?;
    cluster.barrier()?;

    // The report section.
    if cluster.is_master() {
        let tokens = iterations as u64 * bt.total_batch_size;
        ReportSection::new("Base model training")
            .settings(bt)
            .value("Number of parameters", num_params)
            .value("Number of FLOPs per token", format!("{flops_per_token:e}"))
            .value("Calculated number of iterations", iterations)
            .value("Number of training tokens", tokens)
            .value("Tokens : Params ratio", tokens as f64 / num_params as f64)
            .value("DDP world size", cluster.world_size() as i64)
            .value("Minimum validation bpb", outcome.loop_state.min_val_bpb)
            .value("Final validation bpb", outcome.val_bpb.unwrap_or(f64::NAN))
            .value("CORE metric estimate", outcome.core_metric)
            .value("Total training flops", format!("{:e}", flops_per_token as f64 * tokens as f64))
            .value("Total training time", format!("{:.2}m", outcome.loop_state.total_training_time / 60.0))
            .value("Wall time of this run", format!("{:.2}m", started.elapsed().as_secs_f64() / 60.0))
            .value("Resumed from step", start_step)
            .write(&paths.report())
            .map_err(|source| TrainError::Write { path: paths.report(), source })?;
    }
    Ok(())
}

/// Greedy 16-token continuations of the sample prompts.
pub fn print_samples(model: &Gpt, encoder: &BpeEncoder) {
    for prompt in SAMPLE_PROMPTS {
        let Ok(ids) = encoder.encode_with_bos(prompt) else { continue };
        let out = generate(model, &ids, &SamplingSettings::greedy(16), |_| true);
        let text = encoder.decode_lossy(&out).unwrap_or_default();
        log::info!("{prompt}{text}");
    }
}

/// What the loop needs besides the model, optimizers and data.
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
    /// The device batch fitting settled on, for the checkpoint meta (None where nothing was fitted).
    pub fitted_device_batch_size: Option<u32>,
    pub max_seq_len: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoopOutcome {
    pub final_step: i64,
    pub val_bpb: Option<f64>,
    pub loop_state: LoopState,
    pub losses: Vec<f64>,
    /// The last CORE evaluation's result (none without `core_metric_every`).
    pub core_metric: Option<f64>,
}

/// Builds fresh validation loaders (one per micro-batch stream, like the training loaders).
pub type ValLoaderFactory<'a> = Box<dyn Fn() -> Result<Vec<Box<dyn BatchSource + 'a>>, BatchError> + 'a>;
/// Prints samples from the model.
pub type Sampler<'a> = Box<dyn FnMut(&Gpt) + 'a>;
/// Evaluates CORE of the model (every process takes part).
pub type CoreEvaluation<'a> = Box<dyn FnMut(&Gpt, &Cluster<'_>) -> Result<CoreResults, TrainError> + 'a>;

/// CORE during training: every `every` steps (not step 0) and at the last step.
pub struct CoreMetric<'a> {
    pub every: i64,
    pub evaluate: CoreEvaluation<'a>,
}

/// The pretraining loop (§4.4): steps 0..=N; at step s validation bpb when s % eval_every == 0 or
/// last, samples, checkpoints every `save_every` steps and at the end, otherwise the step.
pub struct BaseLoop<'a> {
    pub model: &'a Gpt,
    pub optimizers: Optimizers,
    /// One stream per micro-batch of a step (grad_accum_steps of them).
    pub train: Vec<Box<dyn BatchSource + 'a>>,
    pub make_val: ValLoaderFactory<'a>,
    pub token_bytes: Tensor,
    pub settings: LoopSettings,
    /// Called with the model at sampling steps (rank 0 only).
    pub sampler: Option<Sampler<'a>>,
    pub core: Option<CoreMetric<'a>>,
    pub cluster: &'a Cluster<'a>,
}

impl<'a> BaseLoop<'a> {
    /// Runs from `start_step` (0, or the step of the checkpoint resumed from) to the end.
    pub fn run(
        &mut self,
        start_step: i64,
        mut loop_state: LoopState,
        mut val_bpb: Option<f64>,
    ) -> Result<LoopOutcome, TrainError> {
        let s = self.settings.clone();
        let mut metrics = MetricsLog::open(&s.checkpoint_dir, start_step, self.cluster.is_master())?;
        let mut smooth = SmoothedLoss { ema: loop_state.smooth_train_loss };
        let mut losses = Vec::new();
        let mut core_metric = None;
        let mut progress = Progress::new("training", s.num_iterations.max(0) as u64, Unit::Items);
        progress.advance(start_step.max(0) as u64);
        let mut step = start_step;
        loop {
            let last_step = step == s.num_iterations;
            if last_step || due(step, s.eval_every) {
                val_bpb = Some(record_bpb_evaluation(&mut metrics, step, &self.evaluate_bpb()?, &mut loop_state)?);
            }
            if let Some(core) = self.core.as_mut() {
                if last_step || (step > 0 && due(step, core.every)) {
                    let results = (core.evaluate)(self.model, self.cluster)?;
                    suspend_bars(|| log::info!("Step {step:05} | CORE metric: {:.4}", results.core));
                    let centered: serde_json::Map<String, serde_json::Value> =
                        results.tasks.iter().map(|t| (t.label.clone(), t.centered.into())).collect();
                    metrics.write(&StepRecord {
                        step,
                        core_metric: Some(results.core),
                        metrics: Some(serde_json::Value::Object(centered)),
                        total_training_time: loop_state.total_training_time,
                        ..StepRecord::default()
                    })?;
                    core_metric = Some(results.core);
                }
            }
            if self.cluster.is_master() && (last_step || (step > 0 && due(step, s.sample_every))) {
                if let Some(sampler) = self.sampler.as_mut() {
                    sampler(self.model);
                }
            }
            let periodic_save = step > 0 && step != start_step && due(step, s.save_every);
            if last_step || periodic_save {
                self.save(step as u64, val_bpb, &loop_state)?;
            }
            if last_step {
                break;
            }

            let t0 = Instant::now();
            // As the reference (§4.4, §14.11): each rank clips its own gradient; the distributed
            // optimizers average afterwards (so with clipping active, k processes are not exactly
            // 1 process with k× accumulation; the reference's log notes the clip never triggered).
            let schedule = StepSchedule {
                lr_multiplier: schedule::lr_multiplier(
                    step,
                    s.num_iterations,
                    s.warmup_ratio,
                    s.warmdown_ratio,
                    s.final_lr_frac,
                ),
                muon_momentum: schedule::muon_momentum(
                    step,
                    s.muon_momentum_start,
                    s.muon_momentum_end,
                    s.muon_momentum_warmup_steps,
                ),
                grad_clip: (s.grad_clip > 0.0).then_some(s.grad_clip),
            };
            let train = &mut self.train;
            let outcome = optimizer_step(
                self.model,
                &mut self.optimizers,
                self.cluster,
                step,
                s.grad_accum_steps as usize,
                |m| Ok(train[m].next_batch()?),
                schedule,
            )?;
            let dt = t0.elapsed().as_secs_f64();
            let train_loss = outcome.loss;
            let debiased = smooth.update(step, train_loss);
            loop_state.smooth_train_loss = smooth.ema;
            if step > UNTIMED_STEPS {
                loop_state.total_training_time += dt;
            }
            let tok_per_sec = s.total_batch_size as f64 / dt;
            let mfu = s.peak_flops.map(|peak| 100.0 * s.flops_per_token * s.total_batch_size as f64 / dt / peak);
            losses.push(train_loss);
            let line = format!(
                "step {step:05}/{:05} ({:.2}%) | loss: {debiased:.6} |{} lrm: {:.2} | dt: {:.2}ms | tok/sec: {:.0} | mfu: {} | total time: {:.2}m",
                s.num_iterations,
                100.0 * step as f64 / s.num_iterations.max(1) as f64,
                outcome.grad_norm.map(|g| format!(" grad norm: {g:.4} |")).unwrap_or_default(),
                schedule.lr_multiplier,
                dt * 1000.0,
                tok_per_sec,
                mfu.map(|m| format!("{m:.2}")).unwrap_or_else(|| "n/a".into()),
                loop_state.total_training_time / 60.0
            );
            suspend_bars(|| log::info!("{line}"));
            progress.advance(1);
            metrics.write(&StepRecord {
                step,
                loss: Some(train_loss),
                smoothed_loss: Some(debiased),
                lrm: Some(schedule.lr_multiplier),
                grad_norm: outcome.grad_norm,
                dt_s: Some(dt),
                tok_per_sec: Some(tok_per_sec),
                mfu,
                total_training_time: loop_state.total_training_time,
                ..StepRecord::default()
            })?;
            step += 1;
        }
        Ok(LoopOutcome { final_step: step, val_bpb, loop_state, losses, core_metric })
    }

    /// A fresh validation loader each time, so every evaluation sees the same tokens (§14.3).
    pub fn evaluate_bpb(&self) -> Result<BpbTotals, TrainError> {
        let mut streams = (self.make_val)()?;
        let mut totals = BpbTotals::default();
        for stream in streams.iter_mut() {
            for _ in 0..self.settings.eval_steps {
                let (x, y) = stream.next_batch()?;
                totals.add(bpb::batch_totals(self.model, &x, &y, &self.token_bytes));
            }
        }
        Ok(totals.summed_over(self.cluster)?)
    }

    fn save(&self, step: u64, val_bpb: Option<f64>, loop_state: &LoopState) -> Result<(), TrainError> {
        let s = &self.settings;
        let positions = serde_json::Value::Array(self.train.iter().map(|t| t.state()).collect());
        let meta = CheckpointMeta {
            val_bpb,
            fitted_device_batch_size: s.fitted_device_batch_size,
            ..CheckpointMeta::at(
                step as i64,
                self.model,
                &s.user_config,
                s.device_batch_size,
                s.max_seq_len,
                positions,
                *loop_state,
            )
        };
        let state = self.optimizers.state_tensors();
        checkpoint::save(&s.checkpoint_dir, self.model, &state, &meta, self.cluster.rank())?;
        log::info!("saved checkpoint of step {step} to {}", s.checkpoint_dir.display());
        Ok(())
    }
}
