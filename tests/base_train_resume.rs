//! A base-training run interrupted after a checkpoint and resumed from it ends with bit-identical
//! weights, optimizer state and metrics to a run that was never interrupted (CPU), with late 2025's
//! model, optimizers and schedule, and with 92d63d4's (every model option, `MuonAdamW`, its schedule).
use std::collections::HashMap;
use std::path::Path;

use nanochat::checkpoint::{self, LoopState};
use nanochat::data::batch_source::{BatchError, BatchSource};
use nanochat::dist::{Cluster, DistContext};
use nanochat::model::{Gpt, GptConfig};
use nanochat::optim::schedule_92d63d4::LrSchedule;
use nanochat::optim::{OptimizerSettings, Optimizers};
use nanochat::train::base::{BaseLoop, BaseSchedule, LoopOutcome, LoopSettings};
use nanochat::train::TrainError;
use tch::{Device, Kind, Tensor};

const VOCAB: i64 = 96;
const B: i64 = 2;
const T: i64 = 16;

/// Deterministic pseudo-text: batch i is a fixed function of i. Fails on purpose at `fail_at`.
struct Synthetic {
    next: i64,
    fail_at: Option<i64>,
}

impl BatchSource for Synthetic {
    fn next_batch(&mut self) -> Result<(Tensor, Tensor), BatchError> {
        if Some(self.next) == self.fail_at {
            return Err("simulated crash".into());
        }
        let i = self.next;
        self.next += 1;
        let ids = Tensor::arange(B * T + 1, (Kind::Int64, Device::Cpu)) * (i % 7 + 3) + i * 11;
        let ids = ids.remainder(VOCAB - 2) + 2;
        Ok((ids.narrow(0, 0, B * T).view([B, T]), ids.narrow(0, 1, B * T).view([B, T])))
    }
    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "next": self.next })
    }
}

/// What a resumed run restores: optimizer state, loop state, last val bpb, data position.
type Resume<'a> = (&'a HashMap<String, Tensor>, LoopState, Option<f64>, i64);

fn settings(dir: &Path, model: &Gpt) -> LoopSettings {
    let schedule = match model.config.has_92d63d4_parameters() {
        true => BaseSchedule::Recipe92d63d4 {
            lr: LrSchedule { warmup_steps: 2, warmdown_ratio: 0.5, final_lr_frac: 0.05 },
            weight_decay: 0.2,
        },
        false => BaseSchedule::Late2025 {
            warmup_ratio: 0.0,
            warmdown_ratio: 0.5,
            final_lr_frac: 0.0,
            muon_momentum_start: 0.85,
            muon_momentum_end: 0.95,
            muon_momentum_warmup_steps: 300,
        },
    };
    LoopSettings {
        num_iterations: 8,
        grad_accum_steps: 2,
        total_batch_size: 2 * B * T,
        schedule,
        grad_clip: 1.0,
        eval_every: 3,
        eval_steps: 2,
        save_every: 4,
        sample_every: -1,
        flops_per_token: 1.0,
        peak_flops: None,
        checkpoint_dir: dir.to_path_buf(),
        user_config: serde_json::json!({}),
        device_batch_size: B as u32,
        fitted_device_batch_size: None,
        max_seq_len: T as u32,
    }
}

/// libtorch's generator is global: models are initialised one at a time.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A d1 model of late 2025, or (`gpt2`) a d2 model with every 92d63d4 option.
fn fresh_model(gpt2: bool) -> Gpt {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(42);
    let config = match gpt2 {
        false => GptConfig::from_depth(1, VOCAB, T),
        true => GptConfig::from_depth(2, VOCAB, T).with_92d63d4_options("SL".parse().unwrap()),
    };
    let mut model = Gpt::new(config, Device::Cpu).unwrap();
    model.init_weights();
    model
}

fn token_bytes() -> Tensor {
    Tensor::ones([VOCAB], (Kind::Int, Device::Cpu))
}

fn run(
    model: &Gpt,
    dir: &Path,
    start: i64,
    fail_at: Option<i64>,
    resume: Option<Resume>,
) -> Result<LoopOutcome, TrainError> {
    let mut optimizers = Optimizers::new(model, &OptimizerSettings::reference(), None).unwrap();
    let (loop_state, val_bpb, next) = match resume {
        Some((state, loop_state, val_bpb, next)) => {
            optimizers.load_state_tensors(state).unwrap();
            (loop_state, val_bpb, next)
        }
        None => (LoopState::default(), None, 0),
    };
    let ctx = DistContext::single();
    let cluster = Cluster { ctx: &ctx, group: None, device: Device::Cpu };
    let mut lp = BaseLoop {
        model,
        optimizers,
        train: vec![Box::new(Synthetic { next, fail_at }), Box::new(Synthetic { next: next + 500, fail_at: None })],
        make_val: Box::new(|| Ok(vec![Box::new(Synthetic { next: 1000, fail_at: None }) as Box<dyn BatchSource>])),
        token_bytes: token_bytes(),
        settings: settings(dir, model),
        sampler: None,
        core: None,
        cluster: &cluster,
    };
    lp.run(start, loop_state, val_bpb)
}

fn weights(model: &Gpt) -> Vec<(String, Tensor)> {
    model.named_parameters().into_iter().map(|(n, t)| (n, t.detach().copy())).collect()
}

#[test]
fn resumed_run_is_bit_identical_to_an_uninterrupted_one() {
    resumed_run_is_bit_identical(false);
}

#[test]
fn resumed_92d63d4_run_is_bit_identical_to_an_uninterrupted_one() {
    resumed_run_is_bit_identical(true);
}

fn resumed_run_is_bit_identical(gpt2: bool) {
    let straight_dir = tempfile::tempdir().unwrap();
    let model = fresh_model(gpt2);
    let straight = run(&model, straight_dir.path(), 0, None, None).unwrap();
    let straight_weights = weights(&model);
    assert_eq!(straight.final_step, 8);
    assert!(straight.losses.iter().all(|l| l.is_finite()));

    // The second run dies while reading data for step 6 (batch 6 of stream 0), after the checkpoint of step 4.
    let dir = tempfile::tempdir().unwrap();
    let crashed = fresh_model(gpt2);
    let err = run(&crashed, dir.path(), 0, Some(6), None).unwrap_err();
    assert!(matches!(err, TrainError::Data(_)), "{err}");
    assert_eq!(checkpoint::latest_step(dir.path()), Some(4));

    let resumed = fresh_model(gpt2);
    let meta = checkpoint::load_meta(dir.path(), 4).unwrap();
    checkpoint::load_weights(
        &resumed,
        &checkpoint::read_tensors(&checkpoint::model_path(dir.path(), 4)).unwrap(),
        dir.path(),
    )
    .unwrap();
    let state = checkpoint::read_tensors(&checkpoint::optim_path(dir.path(), 4, 0)).unwrap();
    let next = meta.dataloader_state_dict[0]["next"].as_i64().unwrap();
    assert_eq!(next, 4, "4 steps consumed 4 batches of the first micro-batch stream");
    assert_eq!(meta.dataloader_state_dict[1]["next"].as_i64().unwrap(), 504);
    let outcome = run(&resumed, dir.path(), 4, None, Some((&state, meta.loop_state, meta.val_bpb, next))).unwrap();

    assert_eq!(outcome.losses, straight.losses[4..].to_vec(), "same losses after the resume point");
    assert_eq!(outcome.loop_state.smooth_train_loss.to_bits(), straight.loop_state.smooth_train_loss.to_bits());
    assert_eq!(outcome.val_bpb.map(f64::to_bits), straight.val_bpb.map(f64::to_bits));
    for ((name, a), (_, b)) in straight_weights.iter().zip(weights(&resumed)) {
        assert!(a.equal(&b), "{name} differs after resuming");
    }
    let final_straight = checkpoint::read_tensors(&checkpoint::optim_path(straight_dir.path(), 8, 0)).unwrap();
    let final_resumed = checkpoint::read_tensors(&checkpoint::optim_path(dir.path(), 8, 0)).unwrap();
    assert_eq!(final_straight.len(), final_resumed.len());
    let muon_adamw_state = final_straight.keys().any(|k| k.starts_with("muon_adamw."));
    assert_eq!(muon_adamw_state, gpt2, "92d63d4's model trains with MuonAdamW, late 2025's with the pair");
    for (name, t) in &final_straight {
        assert!(t.equal(&final_resumed[name]), "optimizer state {name} differs");
    }
    // The metrics log reads as one run: one line per step and per evaluation, no duplicates.
    let strip_time = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for k in ["dt_s", "tok_per_sec", "mfu", "total_training_time"] {
                    v[k] = serde_json::Value::Null;
                }
                v
            })
            .collect()
    };
    assert_eq!(strip_time(dir.path()), strip_time(straight_dir.path()));
}

#[test]
fn checkpoint_files_are_complete_and_strictly_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let model = fresh_model(false);
    run(&model, dir.path(), 0, None, None).unwrap();
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    for expected in [
        "model_000004.safetensors",
        "optim_000004_rank0.safetensors",
        "meta_000004.json",
        "model_000008.safetensors",
        "meta_000008.json",
        "metrics.jsonl",
    ] {
        assert!(names.contains(&expected.to_string()), "{expected} missing from {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains(".tmp")), "no temporary file left: {names:?}");
    let meta = checkpoint::load_meta(dir.path(), 8).unwrap();
    assert_eq!(meta.step, 8);
    assert_eq!(meta.model_config.n_layer, 1);
    assert!(meta.loop_state.min_val_bpb.is_finite());

    let mut weights = checkpoint::read_tensors(&checkpoint::model_path(dir.path(), 8)).unwrap();
    weights.remove("lm_head.weight");
    let err = checkpoint::load_weights(&fresh_model(false), &weights, dir.path()).unwrap_err();
    assert!(err.to_string().contains("missing tensor `lm_head.weight`"), "{err}");
    let other = Gpt::new(GptConfig::from_depth(2, VOCAB, T), Device::Cpu).unwrap();
    let all = checkpoint::read_tensors(&checkpoint::model_path(dir.path(), 8)).unwrap();
    assert!(
        checkpoint::load_weights(&other, &all, dir.path()).is_err(),
        "a depth-2 model does not take depth-1 weights"
    );
}
