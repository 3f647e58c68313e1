//! Chat RL (NANOCHAT.md §5.5) against the reference's own `scripts/chat_rl.py` on the same d2
//! weights, tokenizer and stand-in GSM8K (tests/golden/chat/rl.json, made by make_chat_golden.py
//! --phase rl): the policy-gradient step on fixed rollouts (padding, calculator output, max tokens,
//! empty samples), pass by pass, its gradients and the weights after the update; then the stage for
//! three whole steps with the engine's rollouts: sampling seeds, rollouts token for token, rewards,
//! sequence lengths, losses, the LR schedule, pass@k and the final weights.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chat_fixtures::{chat_base, golden, golden_d2_model, golden_encoder};
use nanochat::chat::tasks::{EvalType, SharedTask, Task, TaskError};
use nanochat::chat::{ChatRenderer, ChatTokens, Conversation};
use nanochat::dist::{Cluster, DistContext};
use nanochat::engine::chat_engine::{Engine, GenerationSettings, SamplingRng};
use nanochat::model::Gpt;
use nanochat::optim::{OptimizerSettings, Optimizers};
use nanochat::train::rl::{self, sampling_seed, RlTasks};
use nanochat::train::rl_loss::{backward_passes, Rollouts};
use nanochat::train::StageOptions;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn close(ours: f64, reference: f64, tolerance: f64, what: &str) {
    eprintln!("{what}: ours {ours}, reference {reference}, diff {:.3e}", ours - reference);
    assert!(
        (ours - reference).abs() <= tolerance * reference.abs().max(1e-3),
        "{what}: ours {ours}, reference {reference}"
    );
}

/// These tests run many tiny ops: one thread each (on a shared machine more threads mostly wait
/// for each other), as the fixture's reductions were made.
fn one_thread() {
    tch::set_num_threads(1);
}

fn json<T: serde::de::DeserializeOwned>(v: &Value) -> T {
    serde_json::from_value(v.clone()).unwrap()
}

/// The fixture's rollouts of each question: its two generate_batch calls and the rewards it was given.
fn fixed_rollouts(loss: &Value) -> Vec<Rollouts> {
    let calls = loss["generations"].as_array().unwrap();
    let examples = loss["examples"].as_array().unwrap();
    assert_eq!(calls.len(), 2 * examples.len(), "two sampling steps per question");
    examples
        .iter()
        .enumerate()
        .map(|(e, example)| {
            let mut r = Rollouts { rewards: json(&example["rewards"]), ..Rollouts::default() };
            for call in &calls[2 * e..2 * e + 2] {
                r.sequences.extend(json::<Vec<Vec<u32>>>(&call["results"]));
                r.masks.extend(json::<Vec<Vec<u8>>>(&call["masks"]));
            }
            assert_eq!(Value::from(r.sequences.clone()), example["sequences"]);
            r
        })
        .collect()
}

/// The reference's optimizers of chat_rl.py: fresh, at init_lr_frac 0.05 of the base LRs (§5.5).
fn fresh_optimizers(model: &Gpt) -> Optimizers {
    let settings = rl::optimizer_settings(&nanochat::config::resolve("d20", &[], None).unwrap().chat_rl);
    assert_eq!(settings, OptimizerSettings { init_lr_frac: 0.05, ..OptimizerSettings::reference() });
    Optimizers::new(model, &settings, None).unwrap()
}

#[test]
fn the_policy_gradient_step_matches_the_reference_on_fixed_rollouts() {
    one_thread();
    let fixture = golden("rl.json");
    let loss = &fixture["loss"];
    let reference = &loss["step"];
    let model = golden_d2_model();
    let pad = ChatTokens::of(&golden_encoder()).unwrap().assistant_end;
    let rollouts = fixed_rollouts(loss);
    let examples = loss["examples"].as_array().unwrap();
    let mut pass_losses = Vec::new();
    for (e, (r, example)) in rollouts.iter().zip(examples).enumerate() {
        let batch = r.collate(pad, Device::Cpu).unwrap();
        assert_eq!(Value::from(Vec::<Vec<i64>>::try_from(&batch.inputs).unwrap()), example["inputs"], "inputs {e}");
        assert_eq!(Value::from(Vec::<Vec<i64>>::try_from(&batch.targets).unwrap()), example["targets"], "targets {e}");
        let advantages: Vec<f64> =
            Vec::<f32>::try_from(&batch.advantages).unwrap().into_iter().map(f64::from).collect();
        assert_eq!(advantages, json::<Vec<f64>>(&example["advantages"]), "advantages {e}");
        pass_losses.extend(backward_passes(&model, &batch, 2, rollouts.len()).unwrap());
    }
    let expected: Vec<f64> = json(&reference["pass_losses"]);
    assert_eq!(pass_losses.len(), expected.len());
    for (i, (ours, theirs)) in pass_losses.iter().zip(&expected).enumerate() {
        close(*ours, *theirs, 1e-6, &format!("loss of pass {i}"));
    }
    assert!(expected.iter().filter(|&&l| l == 0.0).count() == 1, "one pass trains nothing: {expected:?}");
    for (name, p) in model.named_parameters() {
        let norm = p.grad().to_kind(Kind::Double).norm().double_value(&[]);
        close(norm, reference["grad_norms"][&name].as_f64().unwrap(), 1e-6, &format!("gradient norm of {name}"));
        assert!(norm > 0.0, "{name} gets a gradient");
    }
    let mut optimizers = fresh_optimizers(&model);
    optimizers.set_schedule(reference["lrm"].as_f64().unwrap(), 0.95, None);
    optimizers.step(None).unwrap();
    for (name, p) in model.named_parameters() {
        let norm = p.to_kind(Kind::Double).norm().double_value(&[]);
        // Muon's bf16 Newton-Schulz rounds differently on different CPUs' kernels (seen: 1.1e-7 on an
        // AMD EPYC without AVX-512, below 1e-8 elsewhere).
        close(norm, reference["param_norms"][&name].as_f64().unwrap(), 1e-6, &format!("norm of {name} after the step"));
    }
}

#[test]
fn equal_rewards_leave_the_weights_unchanged() {
    one_thread();
    let fixture = golden("rl.json");
    let model = golden_d2_model();
    let before: Vec<Tensor> = model.named_parameters().iter().map(|(_, p)| p.copy()).collect();
    let pad = ChatTokens::of(&golden_encoder()).unwrap().assistant_end;
    let mut rollouts = fixed_rollouts(&fixture["loss"]);
    for (e, r) in rollouts.iter_mut().enumerate() {
        r.rewards = vec![e as f64; r.rewards.len()];
    }
    let mut optimizers = fresh_optimizers(&model);
    for r in &rollouts {
        let losses = backward_passes(&model, &r.collate(pad, Device::Cpu).unwrap(), 2, rollouts.len()).unwrap();
        assert!(losses.iter().all(|&l| l == 0.0), "{losses:?}");
    }
    optimizers.set_schedule(1.0, 0.95, None);
    optimizers.step(None).unwrap();
    for ((name, p), b) in model.named_parameters().iter().zip(&before) {
        assert!(p.equal(b), "{name} moved although every advantage is 0");
    }
}

/// GSM8K train with the fixture's stand-in reward, the parity of the answer's length in characters
/// (a random model never answers correctly; this gives it rewards of both kinds). With
/// `questions_left`, reading a question fails once that many have been read (a run stopped mid-way).
struct ParityReward {
    task: SharedTask,
    questions_left: Option<AtomicUsize>,
}

impl ParityReward {
    fn gsm8k(paths: &nanochat::paths::Paths, questions_left: Option<usize>) -> SharedTask {
        let task = RlTasks::gsm8k(paths).unwrap().train;
        Arc::new(ParityReward { task, questions_left: questions_left.map(AtomicUsize::new) })
    }
}

impl Task for ParityReward {
    fn name(&self) -> String {
        format!("{} (parity reward)", self.task.name())
    }
    fn len(&self) -> usize {
        self.task.len()
    }
    fn get(&self, index: usize) -> Result<Conversation, TaskError> {
        if let Some(left) = &self.questions_left {
            left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .map_err(|_| TaskError::InvalidArgs("stopped".into()))?;
        }
        self.task.get(index)
    }
    fn eval_type(&self) -> Option<EvalType> {
        self.task.eval_type()
    }
    fn evaluate(&self, conversation: &Conversation, response: &str) -> Result<bool, TaskError> {
        self.task.evaluate(conversation, response)
    }
    fn reward(&self, _conversation: &Conversation, response: &str) -> Result<f64, TaskError> {
        Ok((response.chars().count() % 2) as f64)
    }
}

/// Sampling draws from torch's process-wide generator: the tests that sample take turns.
static TORCH_GENERATOR: Mutex<()> = Mutex::new(());

/// This test's turn to sample, on one thread.
fn sampling_turn() -> MutexGuard<'static, ()> {
    let turn = TORCH_GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    one_thread();
    turn
}

/// The fixture's loop run: `chat_rl.py --source=base --device_batch_size=2 --num_samples=4
/// --examples_per_step=50 --max_new_tokens=12 --eval_every=2 --eval_examples=4`.
const LOOP: &[&str] = &[
    "chat_rl.source=\"base\"",
    "chat_rl.device_batch_size=2",
    "chat_rl.num_samples=4",
    "chat_rl.examples_per_step=50",
    "chat_rl.max_new_tokens=12",
    "chat_rl.eval_every=2",
    "chat_rl.eval_examples=4",
    "chat_rl.save_every=2",
];

#[test]
fn seeds_and_rollouts_are_the_references() {
    let _turn = sampling_turn();
    let fixture = golden("rl.json");
    let reference = &fixture["loop"];
    for s in reference["seeds"].as_array().unwrap() {
        let [step, example, sampling_step, seed]: [i64; 4] = json(s);
        assert_eq!(sampling_seed(42, step, example as usize, sampling_step as usize), seed, "{s}");
    }
    // Step 0 starts from the committed weights: every rollout token for token.
    let base = chat_base();
    let train = RlTasks::gsm8k(&base.paths).unwrap().train;
    let model = golden_d2_model();
    let encoder = golden_encoder();
    let renderer = ChatRenderer::new(&encoder).unwrap();
    let engine = Engine::new(&model, &encoder).unwrap();
    let generations = reference["generations"].as_array().unwrap();
    assert_eq!(generations.len(), 100);
    for g in generations {
        let prompt = renderer.render_for_completion(&train.get(g["example_idx"].as_u64().unwrap() as usize).unwrap());
        let prompt = prompt.unwrap();
        assert_eq!(prompt.len() as u64, g["prefix_length"].as_u64().unwrap());
        let settings = GenerationSettings {
            num_samples: 2,
            max_tokens: Some(12),
            temperature: 1.0,
            top_k: Some(50),
            seed: g["seed"].as_i64().unwrap(),
            rng: SamplingRng::Torch,
        };
        let (results, masks) = engine.generate_batch(&prompt, &settings);
        assert_eq!(
            (Value::from(results), Value::from(masks)),
            (g["results"].clone(), g["masks"].clone()),
            "{}",
            g["seed"]
        );
    }
}

#[test]
fn three_steps_follow_the_reference() {
    let _turn = sampling_turn();
    let fixture = golden("rl.json");
    let reference = &fixture["loop"];
    let base = chat_base();
    let overrides: Vec<String> = LOOP.iter().map(|s| s.to_string()).collect();
    let config = nanochat::config::resolve("d20", &overrides, None).unwrap();
    let ctx = DistContext::single();
    let cluster = Cluster { ctx: &ctx, group: None, device: Device::Cpu };
    let tasks =
        RlTasks { train: ParityReward::gsm8k(&base.paths, None), val: RlTasks::gsm8k(&base.paths).unwrap().val };
    let outcome = rl::run_on(&config, &base.paths, &cluster, &StageOptions::default(), &tasks).unwrap();
    assert_eq!(outcome.steps, 3, "150 questions // 50 per step");
    // Step 0 samples every token as the reference (200 samples). After an update the weights differ
    // from the reference's around the 8th-11th digit (Muon's bf16 arithmetic, which depends on the
    // CPU's kernels), enough to flip a sampled token now and then (seen: one of 2,400 at step 2 on one
    // machine, at step 1 on another), after which those rollouts drift apart and their parity rewards
    // become coin flips: 7 of 200 rewards differed by step 2 on an AVX2 CPU, 21 on an AVX512-BF16 one
    // (with 1 at step 1). So the rewards are compared at step 1, within what ten differing samples can
    // change; every later step by its lengths and losses, and the updates themselves by the parameter
    // norms after 2 and 3 of them (below), which a few differing samples barely move.
    let steps = reference["steps"].as_array().unwrap();
    for (s, step) in steps.iter().enumerate() {
        let (reward, length) = (step["mean_reward"].as_f64().unwrap(), step["mean_sequence_length"].as_f64().unwrap());
        let loss: f64 = json::<Vec<f64>>(&step["pass_losses"]).iter().sum();
        eprintln!(
            "step {s}: reward {} / {reward}, length {} / {length}, loss {} / {loss}",
            outcome.rewards[s], outcome.sequence_lengths[s], outcome.losses[s]
        );
        if s == 0 {
            assert_eq!(outcome.rewards[s], reward, "mean reward at step {s}");
            assert_eq!(outcome.sequence_lengths[s], length, "mean sequence length at step {s}");
            close(outcome.losses[s], loss, 1e-5, &format!("loss at step {s}"));
        } else {
            if s == 1 {
                assert!((outcome.rewards[s] - reward).abs() <= 10.0 / 200.0 + 1e-12, "mean reward at step {s}");
            }
            assert!((outcome.sequence_lengths[s] - length).abs() <= 120.0 / 200.0, "mean sequence length at step {s}");
            // One question's two passes, each at most the largest pass loss, on either side.
            let largest = json::<Vec<f64>>(&step["pass_losses"]).iter().fold(0.0f64, |m, l| m.max(l.abs()));
            assert!((outcome.losses[s] - loss).abs() <= 4.0 * largest, "loss at step {s}");
        }
    }
    let passk: Vec<(i64, Vec<f64>)> = reference["passk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["step"].as_i64().unwrap(), vec![p["pass@1"].as_f64().unwrap(), p["pass@2"].as_f64().unwrap()]))
        .collect();
    assert_eq!(outcome.pass_at_k.len(), passk.len());
    for ((step, ours), (ref_step, theirs)) in outcome.pass_at_k.iter().zip(&passk) {
        assert_eq!(step, ref_step);
        // Step 0 exactly; later, within one of the 4 evaluation questions.
        let slack = if *step == 0 { 0.0 } else { 0.25 + 1e-12 };
        for (a, b) in ours.iter().zip(theirs) {
            assert!((a - b).abs() <= slack, "pass@k at step {step}: ours {ours:?}, reference {theirs:?}");
        }
    }
    let dir = base.paths.checkpoints("rl", 2);
    let log: Vec<Value> = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lrm: Vec<f64> = log.iter().filter_map(|l| l["lrm"].as_f64()).collect();
    assert_eq!(lrm, steps.iter().map(|s| s["lrm"].as_f64().unwrap()).collect::<Vec<_>>());
    assert!(log.iter().any(|l| l["metrics"]["pass@2"].is_number() && l["step"] == 2));
    // Checkpoints are labelled with the updates done: 2 (periodic) and 3 (final).
    for (label, tolerance) in [(2usize, 1e-4), (3, 1e-4)] {
        let path = nanochat::checkpoint::model_path(&dir, label as u64);
        let weights = nanochat::checkpoint::read_tensors(&path).unwrap();
        for (name, norm) in steps[label - 1]["param_norms"].as_object().unwrap() {
            let ours = weights[name].to_kind(Kind::Double).norm().double_value(&[]);
            close(ours, norm.as_f64().unwrap(), tolerance, &format!("norm of {name} after {label} updates"));
        }
    }
    let section = std::fs::read_to_string(base.paths.report().join("chat-rl.json")).unwrap();
    for key in ["Chat RL", "Final mean reward", "Number of steps", "pass@2", "base_d2 step 0"] {
        assert!(section.contains(key), "{key}: {section}");
    }
}

#[test]
fn a_stopped_run_resumes_exactly() {
    let _turn = sampling_turn();
    let overrides: Vec<String> = [
        "chat_rl.source=\"base\"",
        "chat_rl.device_batch_size=2",
        "chat_rl.num_samples=4",
        "chat_rl.examples_per_step=4",
        "chat_rl.max_new_tokens=8",
        "chat_rl.num_steps=5",
        "chat_rl.eval_every=3",
        "chat_rl.eval_examples=2",
        "chat_rl.save_every=2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let config = nanochat::config::resolve("d20", &overrides, None).unwrap();
    let ctx = DistContext::single();
    let cluster = Cluster { ctx: &ctx, group: None, device: Device::Cpu };
    let run = |base: &chat_fixtures::ChatBase, train: SharedTask, resume: bool| {
        let val = RlTasks::gsm8k(&base.paths).unwrap().val;
        let options = StageOptions { resume, ..StageOptions::default() };
        rl::run_on(&config, &base.paths, &cluster, &options, &RlTasks { train, val })
    };

    let straight = chat_base();
    let outcome = run(&straight, ParityReward::gsm8k(&straight.paths, None), false).unwrap();
    assert!(outcome.rewards.iter().all(|&r| r > 0.0 && r < 1.0), "rewards of both kinds: {:?}", outcome.rewards);

    // Stopped while reading step 3's questions: the last checkpoint is step 2's.
    let stopped = chat_base();
    let err = run(&stopped, ParityReward::gsm8k(&stopped.paths, Some(3 * 4)), false).unwrap_err();
    assert!(err.to_string().contains("stopped"), "{err}");
    let dir = stopped.paths.checkpoints("rl", 2);
    assert_eq!(nanochat::checkpoint::latest_step(&dir), Some(2));
    let resumed = run(&stopped, ParityReward::gsm8k(&stopped.paths, None), true).unwrap();
    assert_eq!(resumed.steps, 5);
    assert_eq!(resumed.rewards, outcome.rewards[2..], "the resumed steps sample as the uninterrupted run");

    let file =
        |base: &chat_fixtures::ChatBase, name: &str| std::fs::read(base.paths.checkpoints("rl", 2).join(name)).unwrap();
    assert!(
        file(&straight, "model_000005.safetensors") == file(&stopped, "model_000005.safetensors"),
        "bit-identical weights"
    );
    // The log reads as one run (all but the timings).
    let untimed = |base: &chat_fixtures::ChatBase| -> Vec<Value> {
        let text = String::from_utf8(file(base, "metrics.jsonl")).unwrap();
        let mut lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        for line in &mut lines {
            let fields = line.as_object_mut().unwrap();
            fields.remove("dt_s");
            fields.remove("total_training_time");
        }
        lines
    };
    assert_eq!(untimed(&straight), untimed(&stopped));
}

#[test]
fn the_speedrun_runs_chat_rl_only_when_enabled() {
    use nanochat::speedrun::{pipeline, stage_spec, PipelineOptions};
    let paths = nanochat::paths::Paths::new("/base");
    let stages = "run.stages=[\"sft\", \"chat-rl\", \"report\"]".to_string();
    let names = |enabled: bool| -> Vec<String> {
        let sets = [stages.clone(), format!("chat_rl.enabled={enabled}")];
        let config = nanochat::config::resolve("smoke", &sets, None).unwrap();
        pipeline(&config, &paths, &PipelineOptions::default()).unwrap().into_iter().map(|s| s.name).collect()
    };
    assert_eq!(names(true), ["sft", "chat-rl", "report"]);
    assert_eq!(names(false), ["sft", "report"], "RL is optional (§5.5)");
    let config = nanochat::config::resolve("smoke", &[], None).unwrap();
    let options = PipelineOptions { nproc_per_node: Some(2), ..PipelineOptions::default() };
    let spec = stage_spec("chat-rl", &config, &paths, &options).unwrap();
    assert_eq!(spec.args, ["chat-rl", "--nproc-per-node", "2"]);
    assert_eq!(spec.resume_args, ["--resume"]);
    assert!(spec.inputs.contains(&paths.checkpoints("sft", 2)), "{:?}", spec.inputs);
    assert_eq!(spec.outputs, [paths.checkpoints("rl", 2)]);
    assert_eq!(spec.config["chat_rl"]["num_steps"], 4);
}

#[test]
fn bench_rl_reports_both_phases() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .args(["--preset", "smoke", "--set", "chat_rl.max_new_tokens=4", "bench", "rl", "--steps", "1"])
        .args(["--prompt-len", "8"])
        .env("NANOCHAT_BASE_DIR", dir.path())
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("| generation (new tokens) |") && stdout.contains("| training"), "{stdout}");
    let line: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for key in ["generation_samples_per_sec", "generation_tokens_per_sec", "training_samples_per_sec"] {
        assert!(line[key].as_f64().unwrap() > 0.0, "{key}: {line}");
    }
    assert_eq!((line["questions_per_step"].as_u64(), line["num_samples"].as_u64()), (Some(2), Some(8)));
}
