//! The `chat-rl` stage (NANOCHAT.md §5.5, [A'] `chat_rl.py`): reinforcement learning on GSM8K,
//! "GRPO" simplified to on-policy REINFORCE (no KL term, no PPO ratio or clipping, token-level
//! normalisation, advantage = reward − mean). Optional in the speedrun (`chat_rl.enabled`).
//!
//! Reads top to bottom like the reference's script: settings; the source model (`chat_rl.source`,
//! `sft` by default); the tasks (GSM8K main train and test: the reward is the training task's, so
//! any task with a `reward` trains the same way); fresh optimizers at `init_lr_frac`; the loop: pass@k
//! every `eval_every` steps, then for each of this process's questions `num_samples` completions
//! generated `device_batch_size` at a time with the calculator, their rewards and the
//! policy-gradient passes (src/train/rl_loss.rs), then one update with the LR multiplier
//! `1 − step/num_steps`; checkpoints (every `save_every` steps for `--resume`, and the final model);
//! the report section "Chat RL".
//!
//! Sampling seeds: at the reference's base seed (42) the seed of sampling step `s` of question `i` at
//! step `t` is the reference's `hash((t, i, s)) & 0x7FFFFFFF` (CPython's tuple hash); with another base
//! seed `b` it is `hash((b, t, i, s)) & 0x7FFFFFFF`. The draws then come from torch's generator seeded
//! with it, so a CPU run repeats bit for bit, and `--resume` after a kill continues exactly (weights and
//! optimizer state are in the checkpoint; the questions and seeds follow from the step).
//! Checkpoints are labelled with the number of updates done (the reference labels its final one
//! `num_steps − 1`). pass@k samples with the training settings (temperature, top_k,
//! max_new_tokens); the reference fixes 1.0, 50 and 256 there, its defaults.
use std::time::Instant;

use super::metrics::{MetricsLog, StepRecord};
use super::optimizer_step::{apply_update, StepSchedule};
use super::rl_loss::{backward_passes, Rollouts};
use super::sft::lr_multiplier;
use super::{due, prepare_output_dir, StageOptions, TrainError, UNTIMED_STEPS};
use crate::chat::conversation::Conversation;
use crate::chat::tasks::gsm8k::Gsm8k;
use crate::chat::tasks::{SharedTask, Slice, Sliced};
use crate::chat::ChatRenderer;
use crate::checkpoint::{self, CheckpointMeta, LoopState};
use crate::config::{ChatRlConfig, RunConfig};
use crate::dist::{Cluster, ReduceOp};
use crate::engine::chat_engine::{Engine, GenerationSettings, SamplingRng};
use crate::model::Gpt;
use crate::optim::{OptimizerSettings, Optimizers};
use crate::paths::Paths;
use crate::progress::{suspend_bars, Progress, Unit};
use crate::pyrandom::python::cpython_tuple_hash_small_ints;
use crate::report_section::ReportSection;
use crate::tokenizer::artifacts;

/// The phase of the checkpoints this stage writes (`rl_dNN/`).
pub const PHASE: &str = "rl";

/// The base seed at which sampling seeds are exactly the reference's (Appendix A).
pub const REFERENCE_SEED: u64 = 42;

/// Fresh optimizers at `init_lr_frac` of the base LRs; Muon momentum at its default (§5.5).
pub fn optimizer_settings(c: &ChatRlConfig) -> OptimizerSettings {
    OptimizerSettings {
        unembedding_lr: c.unembedding_lr,
        embedding_lr: c.embedding_lr,
        matrix_lr: c.matrix_lr,
        weight_decay: c.weight_decay,
        init_lr_frac: c.init_lr_frac,
        ..OptimizerSettings::reference()
    }
}

/// Optimizer steps: `num_steps`, or (training questions // examples_per_step) × num_epochs (§5.5).
pub fn num_steps(c: &ChatRlConfig, train_examples: usize) -> Result<i64, TrainError> {
    if c.num_steps > 0 {
        return Ok(c.num_steps);
    }
    if c.examples_per_step == 0 {
        return Err(TrainError::Config("chat_rl.examples_per_step must be above 0".into()));
    }
    Ok((train_examples / c.examples_per_step as usize) as i64 * i64::from(c.num_epochs))
}

/// The seed of one `generate_batch` call: sampling step `sampling_step` of question `example` at
/// step `step` (see the module notes).
pub fn sampling_seed(base_seed: u64, step: i64, example: usize, sampling_step: usize) -> i64 {
    let (example, sampling_step) = (example as i64, sampling_step as i64);
    let hash = if base_seed == REFERENCE_SEED {
        cpython_tuple_hash_small_ints(&[step, example, sampling_step])
    } else {
        cpython_tuple_hash_small_ints(&[base_seed as i64, step, example, sampling_step])
    };
    hash & 0x7FFF_FFFF
}

/// What RL trains on and measures: questions whose `reward` scores a sampled answer, and the
/// questions of the pass@k evaluation.
pub struct RlTasks {
    pub train: SharedTask,
    pub val: SharedTask,
}

impl RlTasks {
    /// §5.5: GSM8K main, train and test.
    pub fn gsm8k(paths: &Paths) -> Result<Self, TrainError> {
        Ok(RlTasks {
            train: std::sync::Arc::new(Sliced::new(Gsm8k::load(paths, "main", "train")?, Slice::default())?),
            val: std::sync::Arc::new(Sliced::new(Gsm8k::load(paths, "main", "test")?, Slice::default())?),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RlOutcome {
    pub steps: i64,
    /// Per step: the mean reward, the mean sequence length (prompt + generated), the loss (the sum of
    /// the passes' losses), averaged over processes.
    pub rewards: Vec<f64>,
    pub sequence_lengths: Vec<f64>,
    pub losses: Vec<f64>,
    /// (step, pass@1..pass@device_batch_size) of each evaluation.
    pub pass_at_k: Vec<(i64, Vec<f64>)>,
}

/// Samples completions of one prompt and scores them with the task's reward.
struct Sampler<'a> {
    engine: Engine<'a, Gpt>,
    temperature: f64,
    top_k: Option<i64>,
    max_new_tokens: usize,
    device_batch_size: usize,
}

/// One batch of completions: the engine's sequences (prompt + generated, without the terminal
/// token) and masks, and the generated text.
struct Completions {
    sequences: Vec<Vec<u32>>,
    masks: Vec<Vec<u8>>,
    responses: Vec<String>,
}

impl Sampler<'_> {
    /// `device_batch_size` completions of `prompt` from `seed`.
    fn sample(&self, prompt: &[u32], seed: i64) -> Result<Completions, TrainError> {
        let settings = GenerationSettings {
            num_samples: self.device_batch_size,
            max_tokens: Some(self.max_new_tokens),
            temperature: self.temperature,
            top_k: self.top_k,
            seed,
            rng: SamplingRng::Torch,
        };
        let (sequences, masks) = self.engine.generate_batch(prompt, &settings);
        let responses = sequences
            .iter()
            .map(|s| self.engine.encoder().decode_lossy(&s[prompt.len()..]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Completions { sequences, masks, responses })
    }

    /// One batch of completions per seed, rewarded by `task`.
    fn rollouts(
        &self,
        task: &SharedTask,
        conversation: &Conversation,
        prompt: &[u32],
        seeds: impl Iterator<Item = i64>,
    ) -> Result<Rollouts, TrainError> {
        let mut rollouts = Rollouts::default();
        for seed in seeds {
            let completions = self.sample(prompt, seed)?;
            for response in &completions.responses {
                rollouts.rewards.push(task.reward(conversation, response)?);
            }
            rollouts.sequences.extend(completions.sequences);
            rollouts.masks.extend(completions.masks);
        }
        Ok(rollouts)
    }

    /// pass@k for k = 1..device_batch_size on the first `examples` questions of `task` (§5.5):
    /// question i on process i mod W, `device_batch_size` completions each from the seed `seed` (the
    /// reference's default 42) checked by the task's `evaluate`, counted over every process.
    fn pass_at_k(
        &self,
        task: &SharedTask,
        renderer: &ChatRenderer<'_>,
        examples: usize,
        seed: i64,
        cluster: &Cluster<'_>,
    ) -> Result<Vec<f64>, TrainError> {
        let k_max = self.device_batch_size;
        let mut counts = vec![0.0; k_max + 1];
        for index in (cluster.rank()..examples.min(task.len())).step_by(cluster.world_size()) {
            let conversation = task.get(index)?;
            let completions = self.sample(&renderer.render_for_completion(&conversation)?, seed)?;
            let correct = completions
                .responses
                .iter()
                .map(|r| task.evaluate(&conversation, r))
                .collect::<Result<Vec<bool>, _>>()?;
            for k in 1..=k_max {
                counts[k - 1] += f64::from(u8::from(correct[..k].iter().any(|&c| c)));
            }
            counts[k_max] += 1.0;
        }
        let totals = cluster.reduce(&counts, ReduceOp::Sum)?;
        Ok(totals[..k_max].iter().map(|&c| c / totals[k_max].max(1.0)).collect())
    }
}

pub fn run(
    config: &RunConfig,
    paths: &Paths,
    cluster: &Cluster<'_>,
    options: &StageOptions,
) -> Result<RlOutcome, TrainError> {
    run_on(config, paths, cluster, options, &RlTasks::gsm8k(paths)?)
}

/// The stage on any tasks (GSM8K for `chat-rl`).
pub fn run_on(
    config: &RunConfig,
    paths: &Paths,
    cluster: &Cluster<'_>,
    options: &StageOptions,
    tasks: &RlTasks,
) -> Result<RlOutcome, TrainError> {
    // Settings.
    let c = &config.chat_rl;
    let device = cluster.device;
    let world = cluster.world_size();
    let b = c.device_batch_size as usize;
    if b == 0 || c.num_samples == 0 || !(c.num_samples as usize).is_multiple_of(b) {
        return Err(TrainError::Config(format!(
            "chat_rl.num_samples {} must be a positive multiple of chat_rl.device_batch_size {b} (samples are generated and trained in batches of it)",
            c.num_samples
        )));
    }
    if c.examples_per_step == 0 || !(c.examples_per_step as usize).is_multiple_of(world) {
        return Err(TrainError::Config(format!(
            "chat_rl.examples_per_step {} must be a positive multiple of the {world} process(es)",
            c.examples_per_step
        )));
    }
    let examples_per_rank = c.examples_per_step as usize / world;
    let sampling_steps = c.num_samples as usize / b;
    let base_seed = config.run.seed;

    // The model, from the source phase's checkpoint; the tokenizer.
    let encoder = artifacts::load(&paths.tokenizer())?;
    let (source, model) = super::open_source_model(paths, &c.source, options, encoder.vocab_size(), device, &c.dtype)?;
    let out_dir = paths.checkpoints(PHASE, model.config.n_layer as u32);
    let renderer = ChatRenderer::new(&encoder)?;
    let pad = renderer.tokens().assistant_end;
    let sampler = Sampler {
        engine: Engine::new(&model, &encoder)?,
        temperature: c.temperature,
        top_k: (c.top_k > 0).then_some(i64::from(c.top_k)),
        max_new_tokens: c.max_new_tokens as usize,
        device_batch_size: b,
    };

    // The questions: process r cycles over r, r + W, ... of the training task (§5.5).
    let questions: Vec<usize> = (cluster.rank()..tasks.train.len()).step_by(world).collect();
    let steps = num_steps(c, tasks.train.len())?;
    if questions.is_empty() || steps < 1 {
        return Err(TrainError::Config(format!(
            "chat_rl: {} has {} questions, which make no step of {} questions over {world} process(es)",
            tasks.train.name(),
            tasks.train.len(),
            c.examples_per_step
        )));
    }

    // Fresh optimizers (§5.5).
    let mut optimizers = Optimizers::new(&model, &optimizer_settings(c), cluster.group)?;
    let momentum = OptimizerSettings::reference().muon_momentum;
    let layout = serde_json::json!({"world_size": world, "examples_per_rank": examples_per_rank});

    // Resume.
    let mut start_step = 0i64;
    let mut loop_state = LoopState::default();
    let mut metrics = serde_json::json!({});
    let resumed = checkpoint::resume(options.resume, "RL", &out_dir, &model, &mut optimizers, cluster.rank())?;
    if let Some(meta) = resumed {
        if meta.dataloader_state_dict != layout {
            return Err(TrainError::Resume(format!(
                "the checkpoint in {} was written with {}, this run has {layout}; resume with the same number of processes and chat_rl.examples_per_step",
                out_dir.display(),
                meta.dataloader_state_dict
            )));
        }
        (start_step, loop_state) = (meta.step as i64, meta.loop_state);
        metrics = meta.metrics.unwrap_or(metrics);
    }
    if cluster.is_master() {
        log::info!(
            "RL of {} (depth {}) from {} step {}: {} questions, {steps} steps of {} questions x {} samples ({examples_per_rank} question(s) on each of {world} process(es), batches of {b})",
            tasks.train.name(),
            model.config.n_layer,
            source.dir.display(),
            source.step,
            tasks.train.len(),
            c.examples_per_step,
            c.num_samples
        );
    }
    prepare_output_dir(config, &out_dir, cluster)?;

    // The loop.
    let mut metrics_log = MetricsLog::open(&out_dir, start_step, cluster.is_master())?;
    let mut bar = Progress::new("RL", steps as u64, Unit::Items);
    bar.set_position(start_step as u64);
    let mut outcome = RlOutcome {
        steps: 0,
        rewards: Vec::new(),
        sequence_lengths: Vec::new(),
        losses: Vec::new(),
        pass_at_k: Vec::new(),
    };
    let save = |step: i64, state: &LoopState, metrics: &serde_json::Value, optimizers: &Optimizers| {
        let max_seq_len = model.config.sequence_len as u32;
        let meta = CheckpointMeta {
            metrics: Some(metrics.clone()),
            ..CheckpointMeta::at(step, &model, c, c.device_batch_size, max_seq_len, layout.clone(), *state)
        };
        checkpoint::save(&out_dir, &model, &optimizers.state_tensors(), &meta, cluster.rank())
    };
    let mut step = start_step;
    while step < steps {
        if step > start_step && due(step, c.save_every) {
            save(step, &loop_state, &metrics, &optimizers)?;
        }
        if c.eval_examples > 0 && due(step, c.eval_every) {
            let pass = sampler.pass_at_k(&tasks.val, &renderer, c.eval_examples as usize, base_seed as i64, cluster)?;
            let line: Vec<String> = pass.iter().enumerate().map(|(k, p)| format!("Pass@{}: {p:.4}", k + 1)).collect();
            suspend_bars(|| log::info!("Step {step:05} | {}", line.join(", ")));
            metrics =
                pass.iter().enumerate().map(|(k, &p)| (format!("pass@{}", k + 1), serde_json::json!(p))).collect();
            metrics_log.write(&StepRecord {
                step,
                metrics: Some(metrics.clone()),
                total_training_time: loop_state.total_training_time,
                ..StepRecord::default()
            })?;
            outcome.pass_at_k.push((step, pass));
        }

        // Rollouts of this process's questions and their policy-gradient passes.
        let t0 = Instant::now();
        let (mut reward_sum, mut length_sum, mut loss_sum, mut sequences) = (0.0, 0.0, 0.0, 0usize);
        for e in 0..examples_per_rank {
            let index = questions[(step as usize * examples_per_rank + e) % questions.len()];
            let conversation = tasks.train.get(index)?;
            let prompt = renderer.render_for_completion(&conversation)?;
            let seeds = (0..sampling_steps).map(|s| sampling_seed(base_seed, step, index, s));
            let rollouts = sampler.rollouts(&tasks.train, &conversation, &prompt, seeds)?;
            let batch = rollouts.collate(pad, device)?;
            let losses = backward_passes(&model, &batch, b, examples_per_rank)?;
            if let Some(&loss) = losses.iter().find(|l| !l.is_finite()) {
                model.zero_grad();
                return Err(TrainError::NonFiniteLoss { step, loss });
            }
            loss_sum += losses.iter().sum::<f64>();
            reward_sum += rollouts.mean_reward();
            length_sum += rollouts.sequences.iter().map(Vec::len).sum::<usize>() as f64;
            sequences += rollouts.sequences.len();
        }
        let local = [reward_sum / examples_per_rank as f64, length_sum / sequences as f64, loss_sum];
        let means: Vec<f64> = cluster.reduce(&local, ReduceOp::Sum)?.iter().map(|v| v / world as f64).collect();
        let (reward, sequence_length, loss) = (means[0], means[1], means[2]);
        let schedule = StepSchedule {
            lr_multiplier: lr_multiplier(step, steps),
            muon_momentum: momentum,
            muon_weight_decay: None,
            grad_clip: None,
        };
        apply_update(&model, &mut optimizers, cluster, schedule)?;
        let dt = t0.elapsed().as_secs_f64();
        if step + 1 > UNTIMED_STEPS {
            loop_state.total_training_time += dt;
        }
        suspend_bars(|| {
            log::info!(
                "Step {step:05}/{steps:05} | Average reward: {reward:.4} | Average sequence length: {sequence_length:.2} | loss: {loss:.6} | lrm: {:.6}",
                schedule.lr_multiplier
            )
        });
        metrics_log.write(&StepRecord {
            step,
            loss: Some(loss),
            reward: Some(reward),
            sequence_length: Some(sequence_length),
            lrm: Some(schedule.lr_multiplier),
            dt_s: Some(dt),
            total_training_time: loop_state.total_training_time,
            ..StepRecord::default()
        })?;
        outcome.rewards.push(reward);
        outcome.sequence_lengths.push(sequence_length);
        outcome.losses.push(loss);
        step += 1;
        bar.set_position(step as u64);
    }
    drop(bar);
    save(step, &loop_state, &metrics, &optimizers)?;
    log::info!("saved the RL model (step {step}) to {}", out_dir.display());
    cluster.barrier()?;
    outcome.steps = step;

    // The report section.
    if cluster.is_master() {
        let mut section = ReportSection::new("Chat RL")
            .settings(c)
            .value("Source checkpoint", format!("{} step {}", source.dir.display(), source.step))
            .value("Training questions", tasks.train.len() as u64)
            .value("Number of steps", steps);
        if let (Some(reward), Some(length)) = (outcome.rewards.last(), outcome.sequence_lengths.last()) {
            section = section.value("Final mean reward", *reward).value("Final mean sequence length", *length);
        }
        if let serde_json::Value::Object(map) = &metrics {
            for (k, v) in map {
                section = section.value(k, v.clone());
            }
        }
        section.write(&paths.report()).map_err(|source| TrainError::Write { path: paths.report(), source })?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizon_and_seeds() {
        let mut c = crate::config::resolve("d20", &[], None).unwrap().chat_rl;
        assert_eq!(num_steps(&c, 7_473).unwrap(), 467, "§5.5");
        c.num_epochs = 2;
        assert_eq!(num_steps(&c, 160).unwrap(), 20);
        c.num_steps = 3;
        assert_eq!(num_steps(&c, 160).unwrap(), 3);
        // Printed by CPython 3.11.7: hash((0, 0, 0)) & 0x7FFFFFFF, hash((5, 17, 1)) & ...,
        // hash((466, 7472, 1)) & ..., and with base seed 7 hash((7, 0, 0, 0)) & 0x7FFFFFFF.
        assert_eq!(sampling_seed(42, 0, 0, 0), 360_982_090);
        assert_eq!(sampling_seed(42, 5, 17, 1), 304_586_544);
        assert_eq!(sampling_seed(42, 466, 7472, 1), 722_742_640);
        assert_eq!(sampling_seed(7, 0, 0, 0), 444_483_399, "another base seed, another tuple");
        assert_ne!(sampling_seed(42, 0, 0, 1), sampling_seed(42, 0, 0, 0));
        assert!((0..50).all(|i| (0..=0x7FFF_FFFF).contains(&sampling_seed(42, i, 3, 1))));
    }
}
