//! `nanochat bench rl`: the speed of the two phases of a chat RL step (NANOCHAT.md §5.5) at the
//! preset's size, on a freshly initialised model (seed 42) and a fixed pseudo-random prompt: the
//! rollouts (`examples_per_step` questions × `num_samples` completions, `device_batch_size` at a
//! time, by the engine) and the training (the policy-gradient passes of src/train/rl_loss.rs and the
//! update), in samples/s and tokens/s. Rewards alternate 1, 0 so every pass has a gradient.
use std::time::Instant;

use super::bench_engine::synthetic_encoder;
use crate::chat::ChatTokens;
use crate::cli::chat_args::BenchRlArgs;
use crate::cli::GlobalOptions;
use crate::dist::{Cluster, DistContext};
use crate::engine::chat_engine::{Engine, GenerationSettings, SamplingRng};
use crate::model::{Gpt, GptConfig};
use crate::optim::{OptimizerSettings, Optimizers};
use crate::train::optimizer_step::{apply_update, StepSchedule};
use crate::train::rl::{optimizer_settings, sampling_seed};
use crate::train::rl_loss::{backward_passes, Rollouts};

/// Time and work of one phase over the timed steps.
#[derive(Default)]
struct Phase {
    seconds: f64,
    samples: usize,
    tokens: usize,
}

impl Phase {
    fn rates(&self) -> (f64, f64) {
        let s = self.seconds.max(1e-9);
        (self.samples as f64 / s, self.tokens as f64 / s)
    }
}

fn synchronize(device: tch::Device) {
    if let tch::Device::Cuda(d) = device {
        tch::Cuda::synchronize(d as i64);
    }
}

pub fn run(global: &GlobalOptions, args: &BenchRlArgs) -> anyhow::Result<()> {
    let config = global.resolve_config()?;
    let c = &config.chat_rl;
    let b = c.device_batch_size as usize;
    anyhow::ensure!(
        b > 0 && c.num_samples > 0 && (c.num_samples as usize).is_multiple_of(b),
        "chat_rl.num_samples {} must be a positive multiple of chat_rl.device_batch_size {b}",
        c.num_samples
    );
    let device = crate::hw::device::select(crate::hw::device::DeviceChoice::Auto, 0)?;
    let encoder = synthetic_encoder(i64::from(config.tok_train.vocab_size))?;
    tch::manual_seed(42);
    let model_config = GptConfig::from_depth(
        i64::from(config.base_train.depth),
        i64::from(encoder.vocab_size()),
        i64::from(config.base_train.max_seq_len),
    );
    let mut model = Gpt::new(model_config, device)?;
    model.init_weights();
    let engine = Engine::new(&model, &encoder)?;
    let tokens = ChatTokens::of(&encoder)?;
    let ctx = DistContext::single();
    let cluster = Cluster { ctx: &ctx, group: None, device };
    let mut optimizers = Optimizers::new(&model, &optimizer_settings(c), None)?;
    let prompt: Vec<u32> = std::iter::once(tokens.bos)
        .chain((1..args.prompt_len as u64).map(|i| ((i * 2_654_435_761) % encoder.num_mergeable() as u64) as u32))
        .chain(std::iter::once(tokens.assistant_start))
        .collect();
    let questions = c.examples_per_step as usize;
    let (mut generation, mut training) = (Phase::default(), Phase::default());
    for step in 0..=args.steps {
        let timed = step > 0;
        for question in 0..questions {
            let start = Instant::now();
            let mut rollouts = Rollouts::default();
            for s in 0..c.num_samples as usize / b {
                let settings = GenerationSettings {
                    num_samples: b,
                    max_tokens: Some(c.max_new_tokens as usize),
                    temperature: c.temperature,
                    top_k: (c.top_k > 0).then_some(i64::from(c.top_k)),
                    seed: sampling_seed(config.run.seed, step as i64, question, s),
                    rng: SamplingRng::Torch,
                };
                let (sequences, masks) = engine.generate_batch(&prompt, &settings);
                rollouts.sequences.extend(sequences);
                rollouts.masks.extend(masks);
            }
            synchronize(device);
            rollouts.rewards = (0..rollouts.sequences.len()).map(|i| ((i + 1) % 2) as f64).collect();
            if timed {
                generation.seconds += start.elapsed().as_secs_f64();
                generation.samples += rollouts.sequences.len();
                generation.tokens += rollouts.sequences.iter().map(|s| s.len() - prompt.len()).sum::<usize>();
            }
            let start = Instant::now();
            let batch = rollouts.collate(tokens.assistant_end, device)?;
            backward_passes(&model, &batch, b, questions)?;
            synchronize(device);
            if timed {
                training.seconds += start.elapsed().as_secs_f64();
                training.samples += rollouts.sequences.len();
                training.tokens += batch.inputs.numel();
            }
        }
        let start = Instant::now();
        let schedule = StepSchedule {
            lr_multiplier: 1.0,
            muon_momentum: OptimizerSettings::reference().muon_momentum,
            muon_weight_decay: None,
            grad_clip: None,
        };
        apply_update(&model, &mut optimizers, &cluster, schedule)?;
        synchronize(device);
        if timed {
            training.seconds += start.elapsed().as_secs_f64();
        }
    }
    let (gen_samples, gen_tokens) = generation.rates();
    let (train_samples, train_tokens) = training.rates();
    println!(
        "chat RL at preset {}: depth {}, vocab {}, prompt {} tokens, {questions} questions x {} samples per step \
         (batches of {b}), up to {} new tokens; {:?}, {} threads, {} timed steps",
        config.run.name,
        config.base_train.depth,
        encoder.vocab_size(),
        prompt.len(),
        c.num_samples,
        c.max_new_tokens,
        device,
        tch::get_num_threads(),
        args.steps
    );
    println!("| phase | samples/s | tokens/s | seconds |");
    println!("|---|---|---|---|");
    println!("| generation (new tokens) | {gen_samples:.1} | {gen_tokens:.1} | {:.2} |", generation.seconds);
    println!(
        "| training (padded positions, update included) | {train_samples:.1} | {train_tokens:.1} | {:.2} |",
        training.seconds
    );
    println!(
        "{}",
        serde_json::json!({
            "preset": config.run.name, "device": format!("{device:?}"), "threads": tch::get_num_threads(),
            "steps": args.steps, "questions_per_step": questions, "num_samples": c.num_samples,
            "generation_samples_per_sec": gen_samples, "generation_tokens_per_sec": gen_tokens,
            "training_samples_per_sec": train_samples, "training_tokens_per_sec": train_tokens,
        })
    );
    Ok(())
}
