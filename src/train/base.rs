//! The `base-train` stage (NANOCHAT.md §4): the GPT pretrained on the shards with Muon + AdamW, as
//! late 2025's `base_train.py` (10231df) or, with `base_train.recipe_92d63d4`, as 92d63d4's (§12).
//!
//! Reads top to bottom like the reference's `base_train.py`: settings and the model (seeded init, or
//! `--init-from` weights); the horizon (from the tokens:params ratio or FLOPs; at 92d63d4 also the
//! auto batch size and the scaled LRs and weight decay); optimizers; `--resume`; the gradient
//! accumulation; the data (late 2025: one shard stream per micro-batch, virtual rank r·A + m of W·A,
//! so k processes and one process with k× accumulation see the same tokens; 92d63d4: one best-fit
//! stream per process, as the reference); the loop ([`BaseLoop`]: validation bpb every `eval_every`
//! steps, CORE every `core_metric_every` steps on `core_metric_max_per_task` examples per task,
//! samples, checkpoints, the step with the recipe's schedules); the report section "Base model
//! training".
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
use crate::config::{BaseTrainConfig, Recipe92d63d4, RunConfig};
use crate::data::batch_source::{BatchError, BatchSource};
use crate::data::bestfit_loader::{BestFitLoader, BestFitState};
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
use crate::optim::schedule_92d63d4::{self, LrSchedule, Sizing, SizingSettings};
use crate::optim::{schedule, MuonAdamWSettings, OptimizerSettings, Optimizers};
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

/// The model 92d63d4's base_train.py builds at `depth` (`build_model_meta`): every option on.
pub fn model_config_92d63d4(
    depth: i64,
    r: &Recipe92d63d4,
    vocab_size: i64,
    sequence_len: i64,
) -> Result<GptConfig, TrainError> {
    let pattern = r.window_pattern.parse()?;
    let dims =
        GptConfig::from_depth_and_aspect(depth, r.aspect_ratio.into(), r.head_dim.into(), vocab_size, sequence_len);
    Ok(dims.with_92d63d4_options(pattern))
}

/// 92d63d4's horizon, batch size and scaled weight decay (base_train.py's steps 1-4); the horizon
/// precedence is late 2025's: num_iterations > target_flops > target_param_data_ratio.
fn sizing_92d63d4(bt: &BaseTrainConfig, model: &GptConfig, d12: &GptConfig) -> Result<Sizing, TrainError> {
    let settings = SizingSettings {
        target_param_data_ratio: bt.target_param_data_ratio,
        total_batch_size: (bt.total_batch_size > 0).then_some(bt.total_batch_size as i64),
        num_iterations: (bt.num_iterations > 0).then_some(bt.num_iterations),
        weight_decay: bt.weight_decay,
    };
    let mut sizing = Sizing::new(model, d12, &settings)?;
    if bt.num_iterations <= 0 && bt.target_flops > 0.0 {
        let tokens_per_step = model.flops_per_token() as f64 * sizing.total_batch_size as f64;
        sizing.num_iterations = (bt.target_flops / tokens_per_step).round_ties_even() as i64;
    }
    Ok(sizing)
}

/// fp8 matmuls need a GPU of compute capability 8.9 or newer (Ada, Hopper): elsewhere a clear error.
fn check_fp8(device: Device, local_rank: usize) -> Result<(), TrainError> {
    let gpu = device.is_cuda().then(|| crate::hw::GpuInventory::probe().gpus.into_iter().nth(local_rank)).flatten();
    match gpu {
        Some(gpu) if gpu.compute_capability >= (8, 9) => Ok(()),
        found => Err(TrainError::Config(format!(
            "base_train.recipe_92d63d4.fp8 needs a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper); this \
             run is on {}; use `--set base_train.recipe_92d63d4.fp8=false`",
            match found {
                Some(gpu) => format!("{} ({}.{})", gpu.name, gpu.compute_capability.0, gpu.compute_capability.1),
                None if device.is_cuda() => format!("{device:?} (no GPU found at this rank's index)"),
                None => "the CPU".to_string(),
            }
        ))),
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
    let (depth, vocab_size, seq_len) = (bt.depth as i64, encoder.vocab_size() as i64, bt.max_seq_len as i64);
    let model_config = match &bt.recipe_92d63d4 {
        None => GptConfig::from_depth(depth, vocab_size, seq_len),
        Some(r) => model_config_92d63d4(depth, r, vocab_size, seq_len)?,
    };

    // The model: every rank seeds and initialises identically, no parameter broadcast (§3.4).
    tch::manual_seed(config.run.seed as i64);
    let precision = stage_precision(&bt.dtype, device)?;
    let mut model = Gpt::with_precision(model_config, device, precision)?;
    log::info!("compute dtype: {precision}");
    super::check_attention_kernel(&model)?;
    model.init_weights();
    if bt.recipe_92d63d4.as_ref().is_some_and(|r| r.fp8) {
        check_fp8(device, cluster.ctx.local_rank)?;
        model.fp8_training = true;
        log::info!("fp8 training matmuls in the blocks (tensorwise scaling)");
    }
    let checkpoint_dir = paths.checkpoints(PHASE, bt.depth);

    // The horizon; at 92d63d4 also the batch size, the LR scale and Muon's weight decay.
    let num_params = model_config.num_params();
    let flops_per_token = model_config.flops_per_token();
    let sizing = match &bt.recipe_92d63d4 {
        Some(r) => Some(sizing_92d63d4(&bt, &model_config, &model_config_92d63d4(12, r, vocab_size, seq_len)?)?),
        None => None,
    };
    let iterations = match &sizing {
        Some(sizing) => {
            bt.total_batch_size = sizing.total_batch_size as u64;
            sizing.num_iterations
        }
        None => num_iterations(&bt, num_params, flops_per_token)?,
    };

    // Optimizers: late 2025's pair (with several processes DistAdamW + DistMuon, sharded state,
    // §4.2-4.3), or 92d63d4's MuonAdamW with the batch-scaled LRs.
    let mut optimizers = match (&bt.recipe_92d63d4, &sizing) {
        (Some(r), Some(sizing)) => {
            let settings = MuonAdamWSettings {
                unembedding_lr: bt.unembedding_lr,
                embedding_lr: bt.embedding_lr,
                matrix_lr: bt.matrix_lr,
                scalar_lr: r.scalar_lr,
                weight_decay: bt.weight_decay,
            };
            Optimizers::muon_adamw(&model, &settings.scaled(sizing.batch_lr_scale, sizing.weight_decay))?
        }
        _ => Optimizers::new(&model, &optimizer_settings(&bt), cluster.group)?,
    };

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
    // Data streams per process: one per micro-batch (late 2025), or one (92d63d4).
    let rank_streams = if bt.recipe_92d63d4.is_some() { 1 } else { accum };
    let streams = cluster.world_size() * rank_streams;
    let eval_steps =
        (bt.eval_tokens / (bt.device_batch_size as u64 * bt.max_seq_len as u64 * streams as u64)).max(1) as i64;
    if cluster.is_master() {
        log::info!(
            "model: depth {} (d={}, {} heads), {num_params} parameters, {flops_per_token:e} FLOPs/token",
            bt.depth,
            model_config.n_embd,
            model_config.n_head
        );
        if let Some(s) = &sizing {
            log::info!(
                "92d63d4 sizing: {} scaling parameters, total batch {} tokens{}, LR scale {:.4}, Muon weight decay {:.6}",
                s.scaling_params,
                s.total_batch_size,
                if config.base_train.total_batch_size == 0 { " (auto)" } else { "" },
                s.batch_lr_scale,
                s.weight_decay
            );
        }
        log::info!("{iterations} steps of {} tokens ({accum} micro-batch(es) of {}x{} on each of {} process(es)) = {} tokens, {:.2} tokens/param",
            bt.total_batch_size, bt.device_batch_size, bt.max_seq_len, cluster.world_size(), iterations as u64 * bt.total_batch_size, (iterations as f64 * bt.total_batch_size as f64) / num_params as f64);
    }

    // Data: stream m of rank r reads the shard stream of virtual rank r·S + m of W·S.
    let shards_dir = paths.shards(&config.data.manifest);
    let shards = |split| {
        shards_for(&shards_dir, split).map_err(|source| TrainError::Shards { source, preset: config.run.name.clone() })
    };
    let (train_shards, val_shards) = (shards(Split::Train)?, shards(Split::Val)?);
    let loader_configs = |shards: Vec<PathBuf>| -> Vec<LoaderConfig> {
        (0..rank_streams)
            .map(|m| LoaderConfig {
                shards: shards.clone(),
                batch_size: bt.device_batch_size as usize,
                seq_len: bt.max_seq_len as usize,
                rank: cluster.rank() * rank_streams + m,
                world_size: streams,
                device,
            })
            .collect()
    };
    let source = Arc::new(ParquetDocuments);
    let best_fit = bt.recipe_92d63d4.is_some();
    // `--resume`: each stream's stored position, in its loader's form.
    let (mut flat_positions, mut best_fit_states) = (None, None);
    if let Some(stored) = &resume_positions {
        match best_fit {
            false => flat_positions = Some(stream_positions::<LoaderPosition>(stored, &checkpoint_dir, rank_streams)?),
            true => best_fit_states = Some(stream_positions::<BestFitState>(stored, &checkpoint_dir, rank_streams)?),
        }
    }
    let mut train: Vec<Box<dyn BatchSource>> = Vec::new();
    for (m, cfg) in loader_configs(train_shards).into_iter().enumerate() {
        let (source, encoder) = (source.clone(), encoder.clone());
        train.push(match best_fit {
            false => Box::new(DistributedLoader::new(cfg, source, encoder, flat_positions.as_ref().map(|p| p[m]))?),
            true => Box::new(BestFitLoader::new(cfg, source, encoder, best_fit_states.as_ref().map(|s| s[m]))?),
        });
    }
    let make_val = {
        let (encoder, source, val_configs) = (encoder.clone(), source.clone(), loader_configs(val_shards));
        move || -> Result<Vec<Box<dyn BatchSource>>, BatchError> {
            let mut loaders: Vec<Box<dyn BatchSource>> = Vec::new();
            for cfg in &val_configs {
                let (cfg, source, encoder) = (cfg.clone(), source.clone(), encoder.clone());
                loaders.push(match best_fit {
                    false => Box::new(DistributedLoader::new(cfg, source, encoder, None)?),
                    true => Box::new(BestFitLoader::new(cfg, source, encoder, None)?),
                });
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
        schedule: match (&bt.recipe_92d63d4, &sizing) {
            (Some(r), Some(sizing)) => BaseSchedule::Recipe92d63d4 {
                lr: LrSchedule {
                    warmup_steps: r.warmup_steps.into(),
                    warmdown_ratio: bt.warmdown_ratio,
                    final_lr_frac: bt.final_lr_frac,
                },
                weight_decay: sizing.weight_decay,
            },
            _ => BaseSchedule::Late2025 {
                warmup_ratio: bt.warmup_ratio,
                warmdown_ratio: bt.warmdown_ratio,
                final_lr_frac: bt.final_lr_frac,
                muon_momentum_start: bt.muon_momentum_start,
                muon_momentum_end: bt.muon_momentum_end,
                muon_momentum_warmup_steps: bt.muon_momentum_warmup_steps,
            },
        },
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
        let mut section = ReportSection::new("Base model training")
            .settings(bt)
            .value("Number of parameters", num_params)
            .value("Number of FLOPs per token", format!("{flops_per_token:e}"))
            .value("Calculated number of iterations", iterations)
            .value("Number of training tokens", tokens)
            .value("Tokens : Params ratio", tokens as f64 / num_params as f64);
        if let Some(sizing) = &sizing {
            section = section
                .value("Scaling parameters", sizing.scaling_params)
                .value("Tokens : Scaling params ratio", tokens as f64 / sizing.scaling_params as f64)
                .value("Total batch size", sizing.total_batch_size)
                .value("LR scale for the batch size", sizing.batch_lr_scale)
                .value("Muon weight decay (scaled)", sizing.weight_decay);
        }
        section
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
    pub schedule: BaseSchedule,
    /// Clip each process's gradient to this norm (≤ 0: no clipping).
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

/// The LR multiplier, Muon momentum and Muon weight decay of each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BaseSchedule {
    /// 10231df (§4.4): warm-up and warm-down by ratio, momentum 0.85 → 0.95 over the first steps.
    Late2025 {
        warmup_ratio: f64,
        warmdown_ratio: f64,
        final_lr_frac: f64,
        muon_momentum_start: f64,
        muon_momentum_end: f64,
        muon_momentum_warmup_steps: u32,
    },
    /// 92d63d4 (§12): warm-up in steps, momentum up to 0.97 and down to 0.90 in the warm-down,
    /// Muon's (scaled) weight decay decayed to 0 along half a cosine.
    Recipe92d63d4 { lr: LrSchedule, weight_decay: f64 },
}

impl BaseSchedule {
    pub fn at(&self, step: i64, num_iterations: i64, grad_clip: f64) -> StepSchedule {
        let grad_clip = (grad_clip > 0.0).then_some(grad_clip);
        match *self {
            BaseSchedule::Late2025 {
                warmup_ratio,
                warmdown_ratio,
                final_lr_frac,
                muon_momentum_start,
                muon_momentum_end,
                muon_momentum_warmup_steps,
            } => StepSchedule {
                lr_multiplier: schedule::lr_multiplier(
                    step,
                    num_iterations,
                    warmup_ratio,
                    warmdown_ratio,
                    final_lr_frac,
                ),
                muon_momentum: schedule::muon_momentum(
                    step,
                    muon_momentum_start,
                    muon_momentum_end,
                    muon_momentum_warmup_steps,
                ),
                muon_weight_decay: None,
                grad_clip,
            },
            BaseSchedule::Recipe92d63d4 { lr, weight_decay } => StepSchedule {
                lr_multiplier: lr.lr_multiplier(step, num_iterations),
                muon_momentum: lr.muon_momentum(step, num_iterations),
                muon_weight_decay: Some(schedule_92d63d4::muon_weight_decay(weight_decay, step, num_iterations)),
                grad_clip,
            },
        }
    }
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
    /// The data streams: one per micro-batch of a step (late 2025), or one for them all (92d63d4).
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
            let schedule = s.schedule.at(step, s.num_iterations, s.grad_clip);
            // With fewer streams than micro-batches (92d63d4: one), a stream gives several in a row.
            let train = &mut self.train;
            let streams = train.len();
            let outcome = optimizer_step(
                self.model,
                &mut self.optimizers,
                self.cluster,
                step,
                s.grad_accum_steps as usize,
                |m| Ok(train[m % streams].next_batch()?),
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
