//! `nanochat base-train` (NANOCHAT.md §4): pretrains the GPT on the shards with Muon + AdamW, on one
//! or more processes, with periodic validation bpb, samples and checkpoints; `--resume` continues the
//! last checkpoint exactly.
use std::sync::Arc;

use anyhow::{bail, Context};
use tch::{Device, Tensor};

use super::launch::{launch_or_join, Role};
use crate::cli::{BaseTrainArgs, GlobalOptions};
use crate::config::BaseTrainConfig;
use crate::data::dataloader::{DistributedLoader, LoaderConfig, LoaderPosition};
use crate::data::parquet_shards::{shards_for, Split};
use crate::data::shard_source::ParquetDocuments;
use crate::engine::generate::{generate, SamplingSettings};
use crate::model::{Gpt, GptConfig};
use crate::optim::{OptimizerSettings, Optimizers};
use crate::report::ReportSection;
use crate::tokenizer::{artifacts, BpeEncoder};
use crate::train::base_loop::{BaseLoop, LoopSettings};
use crate::train::batch_fit;
use crate::train::batches::BatchSource;
use crate::train::checkpoint::{self, LoopState};

/// Prompts sampled during training (§4.4, §6.2).
pub const SAMPLE_PROMPTS: [&str; 7] = [
    "The capital of France is",
    "The chemical symbol of gold is",
    "If yesterday was Friday, then tomorrow will be",
    "The opposite of hot is",
    "The planets of the solar system are:",
    "My favorite color is",
    "If 5*x + 3 = 13, then x is",
];

/// Number of optimizer steps: explicit > from target FLOPs > from the tokens:params ratio (§4.4).
pub fn num_iterations(bt: &BaseTrainConfig, num_params: i64, flops_per_token: i64) -> anyhow::Result<i64> {
    let batch = bt.total_batch_size as f64;
    if bt.num_iterations > 0 {
        Ok(bt.num_iterations)
    } else if bt.target_flops > 0.0 {
        Ok((bt.target_flops / (flops_per_token as f64 * batch)).round() as i64)
    } else if bt.target_param_data_ratio > 0.0 {
        Ok((bt.target_param_data_ratio * num_params as f64 / batch).floor() as i64)
    } else {
        bail!("no training horizon: set base_train.num_iterations, target_flops or target_param_data_ratio")
    }
}

/// Micro-batches per step so the total batch in tokens is independent of device batch and world size.
pub fn grad_accum_steps(total_batch: u64, device_batch: u32, seq_len: u32, world: usize) -> anyhow::Result<i64> {
    let per_step = device_batch as u64 * seq_len as u64 * world as u64;
    if per_step == 0 || !total_batch.is_multiple_of(per_step) {
        bail!(
            "total_batch_size {total_batch} is not a multiple of device_batch_size {device_batch} x max_seq_len {seq_len} x {world} process(es) = {per_step}; change base_train.device_batch_size or total_batch_size"
        );
    }
    Ok((total_batch / per_step) as i64)
}

fn peak_flops(device: Device, local_rank: usize, world: usize) -> Option<f64> {
    if !device.is_cuda() {
        return None;
    }
    let inventory = crate::hw::GpuInventory::probe();
    let name = inventory.gpus.get(local_rank).map(|g| g.name.clone())?;
    crate::hw::peak_flops::peak_bf16_flops(&name).map(|f| f * world as f64)
}

pub fn run(global: &GlobalOptions, args: &BaseTrainArgs) -> anyhow::Result<()> {
    let Role::Worker { ctx, group, device } = launch_or_join(global, &args.launch, "base-train")? else {
        return Ok(());
    };
    let config = global.resolve_config()?;
    let paths = global.paths();
    if ctx.is_master() {
        crate::cli::logging::tee_to_file(&paths.logs().join("base-train.log"));
    }
    let bt = &config.base_train;
    let encoder = Arc::new(artifacts::load(&paths.tokenizer())?);
    let token_bytes: Vec<i32> =
        artifacts::load_token_bytes(&paths.tokenizer())?.into_iter().map(|b| b as i32).collect();
    let token_bytes = Tensor::from_slice(&token_bytes).to_device(device);
    let model_config = GptConfig::from_depth(bt.depth as i64, encoder.vocab_size() as i64, bt.max_seq_len as i64);

    // Every rank seeds and initialises identically: no parameter broadcast (§3.4).
    tch::manual_seed(config.run.seed as i64);
    let mut model = Gpt::new(model_config, device).map_err(anyhow::Error::msg)?;
    model.init_weights();
    let checkpoint_dir = paths.checkpoints("base", bt.depth);
    // With several processes: DistAdamW + DistMuon (sharded state, reduce_scatter / all_gather, §4.2-4.3).
    let mut optimizers = Optimizers::new(&model, &optimizer_settings(bt), group.as_ref())?;

    let mut start_step = 0i64;
    let mut loop_state = LoopState::default();
    let mut val_bpb = None;
    let mut resume_positions: Option<Vec<LoaderPosition>> = None;
    if args.resume {
        let step = checkpoint::latest_step(&checkpoint_dir)
            .with_context(|| format!("--resume: no checkpoint in {}", checkpoint_dir.display()))?;
        let meta = checkpoint::load_meta(&checkpoint_dir, step)?;
        anyhow::ensure!(
            meta.model_config == model_config,
            "--resume: the checkpoint's model {:?} differs from the configured {:?}",
            meta.model_config,
            model_config
        );
        checkpoint::load_weights(
            &model,
            &checkpoint::read_tensors(&checkpoint::model_path(&checkpoint_dir, step))?,
            &checkpoint_dir,
        )?;
        let state = checkpoint::read_tensors(&checkpoint::optim_path(&checkpoint_dir, step, ctx.rank))?;
        optimizers.load_state_tensors(&state).map_err(anyhow::Error::msg)?;
        resume_positions = Some(
            serde_json::from_value(meta.dataloader_state_dict.clone())
                .context("--resume: dataloader positions in the checkpoint meta")?,
        );
        (start_step, loop_state, val_bpb) = (step as i64, meta.loop_state, meta.val_bpb);
        log::info!("resuming from step {step} of {}", checkpoint_dir.display());
    } else if let Some(init) = &args.init_from {
        checkpoint::load_weights(&model, &checkpoint::read_tensors(init)?, init)?;
        log::info!("initialised the weights from {}", init.display());
    }

    let num_params = model_config.num_params();
    let flops_per_token = model_config.flops_per_token();
    let iterations = num_iterations(bt, num_params, flops_per_token)?;
    // On a GPU the device batch shrinks until a step fits in memory (more accumulation, same total batch).
    let mut bt = bt.clone();
    if device.is_cuda() {
        let fitted = batch_fit::fit_device_batch(
            bt.device_batch_size,
            |b| batch_fit::trial_step(&model, b, bt.max_seq_len as i64),
            bt.depth as i64,
            bt.max_seq_len as i64,
        )?;
        if fitted != bt.device_batch_size {
            log::warn!("device batch lowered from {} to {fitted} to fit in GPU memory", bt.device_batch_size);
            bt.device_batch_size = fitted;
        }
    }
    let bt = &bt;
    let accum = grad_accum_steps(bt.total_batch_size, bt.device_batch_size, bt.max_seq_len, ctx.world_size)?;
    // Micro-batch m of rank r reads the stream of virtual rank r·A + m of W·A (see BaseLoop::train).
    let streams = ctx.world_size * accum as usize;
    let eval_steps =
        (bt.eval_tokens / (bt.device_batch_size as u64 * bt.max_seq_len as u64 * streams as u64)).max(1) as i64;
    if ctx.is_master() {
        log::info!(
            "model: depth {} (d={}, {} heads), {num_params} parameters, {flops_per_token:e} FLOPs/token",
            bt.depth,
            model_config.n_embd,
            model_config.n_head
        );
        log::info!("{iterations} steps of {} tokens ({accum} micro-batch(es) of {}x{} on each of {} process(es)) = {} tokens, {:.2} tokens/param",
            bt.total_batch_size, bt.device_batch_size, bt.max_seq_len, ctx.world_size, iterations as u64 * bt.total_batch_size, (iterations as f64 * bt.total_batch_size as f64) / num_params as f64);
    }

    let shards_dir = paths.shards(&config.data.manifest);
    let train_shards = shards_for(&shards_dir, Split::Train)
        .with_context(|| format!("(run `nanochat data download --preset {}`)", config.run.name))?;
    let val_shards = shards_for(&shards_dir, Split::Val)?;
    let loader_configs = |shards: Vec<std::path::PathBuf>| -> Vec<LoaderConfig> {
        (0..accum as usize)
            .map(|m| LoaderConfig {
                shards: shards.clone(),
                batch_size: bt.device_batch_size as usize,
                seq_len: bt.max_seq_len as usize,
                rank: ctx.rank * accum as usize + m,
                world_size: streams,
                device,
            })
            .collect()
    };
    let source = Arc::new(ParquetDocuments);
    if let Some(positions) = &resume_positions {
        anyhow::ensure!(
            positions.len() == accum as usize,
            "--resume: the checkpoint has {} data streams per process, this run {accum}; resume with the same world size and batch settings",
            positions.len()
        );
    }
    let mut train: Vec<Box<dyn BatchSource>> = Vec::new();
    for (m, cfg) in loader_configs(train_shards).into_iter().enumerate() {
        let position = resume_positions.as_ref().map(|p| p[m]);
        train.push(Box::new(
            DistributedLoader::new(cfg, source.clone(), encoder.clone(), position).map_err(anyhow::Error::msg)?,
        ));
    }
    let make_val = {
        let (encoder, source, val_configs) = (encoder.clone(), source.clone(), loader_configs(val_shards));
        move || -> Result<Vec<Box<dyn BatchSource>>, crate::train::batches::BatchError> {
            let mut loaders: Vec<Box<dyn BatchSource>> = Vec::new();
            for cfg in &val_configs {
                loaders.push(Box::new(DistributedLoader::new(cfg.clone(), source.clone(), encoder.clone(), None)?));
            }
            Ok(loaders)
        }
    };
    let sampler_encoder = encoder.clone();
    let settings = LoopSettings {
        num_iterations: iterations,
        grad_accum_steps: accum,
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
        peak_flops: peak_flops(device, ctx.local_rank, ctx.world_size),
        checkpoint_dir: checkpoint_dir.clone(),
        user_config: serde_json::to_value(bt)?,
        device_batch_size: bt.device_batch_size,
        max_seq_len: bt.max_seq_len,
    };
    if ctx.is_master() {
        std::fs::create_dir_all(&checkpoint_dir)?;
        config.write_beside(&checkpoint_dir)?;
    }
    let mut base_loop = BaseLoop {
        model: &model,
        optimizers,
        train,
        make_val: Box::new(make_val),
        token_bytes,
        settings,
        sampler: Some(Box::new(move |m: &Gpt| print_samples(m, &sampler_encoder))),
        rank: ctx.rank,
        group: group.as_ref(),
    };
    let started = std::time::Instant::now();
    let outcome = base_loop.run(start_step, loop_state, val_bpb)?;
    if let Some(g) = &group {
        g.barrier()?;
    }
    if ctx.is_master() {
        let tokens = iterations as u64 * bt.total_batch_size;
        let mut section = ReportSection::new("Base model training");
        if let serde_json::Value::Object(map) = serde_json::to_value(bt)? {
            for (k, v) in map {
                section = section.value(&k, v);
            }
        }
        section
            .value("Number of parameters", num_params)
            .value("Number of FLOPs per token", format!("{flops_per_token:e}"))
            .value("Calculated number of iterations", iterations)
            .value("Number of training tokens", tokens)
            .value("Tokens : Params ratio", tokens as f64 / num_params as f64)
            .value("DDP world size", ctx.world_size as i64)
            .value("Minimum validation bpb", outcome.loop_state.min_val_bpb)
            .value("Final validation bpb", outcome.val_bpb.unwrap_or(f64::NAN))
            .value("Total training flops", format!("{:e}", flops_per_token as f64 * tokens as f64))
            .value("Total training time", format!("{:.2}m", outcome.loop_state.total_training_time / 60.0))
            .value("Wall time of this run", format!("{:.2}m", started.elapsed().as_secs_f64() / 60.0))
            .value("Resumed from step", start_step)
            .write(&paths.report())?;
    }
    Ok(())
}

fn optimizer_settings(bt: &BaseTrainConfig) -> OptimizerSettings {
    OptimizerSettings {
        unembedding_lr: bt.unembedding_lr,
        embedding_lr: bt.embedding_lr,
        matrix_lr: bt.matrix_lr,
        weight_decay: bt.weight_decay,
        adam_betas: (bt.adam_beta1, bt.adam_beta2),
        adam_eps: bt.adam_eps,
        muon_momentum: bt.muon_momentum_end,
        muon_ns_steps: bt.muon_ns_steps,
    }
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
