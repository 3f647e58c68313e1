//! The mid-train and sft stages, run end to end, against the reference's own `mid_train.py` and
//! `chat_sft.py` on the same d2 weights, tokenizer and stand-in data
//! (tests/golden/chat/train_steps.json, made by make_chat_golden.py): the first batch token for
//! token, every step's raw loss, trained-token counts, validation bpb / loss and the categorical
//! accuracies; SFT's final weights by their norms.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use std::path::Path;

use chat_fixtures::{chat_base, golden};

use nanochat::dist::{Cluster, DistContext};
use nanochat::paths::Paths;
use nanochat::train::{mid, sft, StageOptions};
use serde_json::Value;
use tch::Device;

fn golden_steps() -> Value {
    golden("train_steps.json")
}

fn metrics(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn close(ours: f64, reference: f64, tolerance: f64, what: &str) {
    eprintln!("{what}: ours {ours}, reference {reference}, diff {:.3e}", ours - reference);
    assert!(
        (ours - reference).abs() <= tolerance * reference.abs().max(1.0),
        "{what}: ours {ours}, reference {reference}"
    );
}

fn run_with<T>(
    overrides: &[&str],
    f: impl FnOnce(&nanochat::config::RunConfig, &Paths, &Cluster<'_>) -> T,
) -> (T, tempfile::TempDir) {
    let base = chat_base();
    let (dir, paths) = (base.dir, base.paths);
    let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    let config = nanochat::config::resolve("d20", &overrides, None).unwrap();
    let ctx = DistContext::single();
    let cluster = Cluster { ctx: &ctx, group: None, device: Device::Cpu };
    (f(&config, &paths, &cluster), dir)
}

#[test]
fn midtraining_follows_the_reference() {
    let golden = golden_steps();
    let reference = &golden["mid"];
    // The reference ran with num_iterations=6, which (counting loader batches) makes 5 optimizer
    // steps with lr multipliers [1, 1, 1, 0.83, 0]; ours, 5 steps, has [1, 1, 1, 1, 0]: steps 0-3 see
    // the same updates, so their losses and the evaluations at steps 0 and 2 must agree.
    let (outcome, dir) = run_with(
        &[
            "mid_train.device_batch_size=2",
            "mid_train.max_seq_len=64",
            "mid_train.total_batch_size=128",
            "mid_train.num_iterations=5",
            "mid_train.eval_every=2",
            "mid_train.eval_tokens=128",
            "mid_train.save_every=-1",
        ],
        |config, paths, cluster| mid::run(config, paths, cluster, &StageOptions::default()).unwrap(),
    );
    assert_eq!(outcome.steps, 5);
    let losses: Vec<f64> =
        reference["micro_batch_losses"].as_array().unwrap().iter().map(|l| l[0].as_f64().unwrap()).collect();
    for (s, (ours, theirs)) in outcome.losses.iter().zip(&losses).take(4).enumerate() {
        close(*ours, *theirs, 1e-4, &format!("mid step {s} loss"));
    }
    let log = metrics(&dir.path().join("mid_d2"));
    for eval in reference["evals"].as_array().unwrap().iter().take(2) {
        let step = eval["step"].as_i64().unwrap();
        let ours = log.iter().find(|m| m["step"] == step && m["val_bpb"].is_number()).unwrap();
        close(
            ours["val_bpb"].as_f64().unwrap(),
            eval["val_bpb"].as_f64().unwrap(),
            1e-4,
            &format!("mid val bpb at step {step}"),
        );
        assert!(ours["val_loss"].as_f64().unwrap() > 0.0, "the nats loss sits next to the bpb");
    }
    for (s, m) in reference["muon_momentum"].as_array().unwrap().iter().enumerate() {
        let ours = log.iter().find(|l| l["step"] == s as i64 && l["loss"].is_number()).unwrap();
        assert_eq!(ours["muon_momentum"].as_f64(), m.as_f64(), "momentum warm-up restarts (step {s})");
    }
    assert!(log.iter().any(|l| l["smoothed_loss"].is_number() && l["loss"].is_number()));
    let meta = nanochat::checkpoint::load_meta(&dir.path().join("mid_d2"), 5).unwrap();
    assert_eq!(meta.model_config.n_layer, 2);
}

#[test]
fn sft_follows_the_reference() {
    let golden = golden_steps();
    let reference = &golden["sft"];
    let (outcome, dir) = run_with(
        &[
            "chat_sft.source=\"base\"",
            "chat_sft.device_batch_size=2",
            "chat_sft.target_examples_per_step=2",
            "chat_sft.num_iterations=5",
            "chat_sft.eval_every=100",
            "chat_sft.eval_steps=1",
            "chat_sft.eval_metrics_every=200",
            "chat_sft.eval_metrics_max_problems=4",
            "chat_sft.save_every=-1",
        ],
        |config, paths, cluster| sft::run(config, paths, cluster, &StageOptions::default()).unwrap(),
    );
    assert_eq!(outcome.steps, 4, "the loop breaks at step num_iterations - 1 before its update");
    let losses: Vec<f64> =
        reference["micro_batch_losses"].as_array().unwrap().iter().map(|l| l[0].as_f64().unwrap()).collect();
    assert_eq!(outcome.losses.len(), losses.len());
    for (s, (ours, theirs)) in outcome.losses.iter().zip(&losses).enumerate() {
        close(*ours, *theirs, 1e-4, &format!("sft step {s} loss"));
    }
    let log = metrics(&dir.path().join("sft_d2"));
    let steps: Vec<&Value> = log.iter().filter(|l| l["loss"].is_number()).collect();
    assert!(steps.iter().all(|l| l["smoothed_loss"].is_number()), "raw and smoothed loss side by side");
    for (s, (ours, lrm)) in steps.iter().zip(reference["lrm"].as_array().unwrap()).enumerate() {
        assert_eq!(ours["lrm"].as_f64(), lrm.as_f64(), "lrm at step {s}");
        assert_eq!(ours["trained_tokens"], reference["num_tokens"][s], "trained tokens at step {s}");
    }
    let val: Vec<f64> = log.iter().filter_map(|l| l["val_loss"].as_f64()).collect();
    let reference_val = &reference["evals"]["val_batch_losses"];
    assert_eq!(val.len(), 2);
    close(val[0], reference_val[0]["loss"].as_f64().unwrap(), 1e-5, "sft val loss at step 0");
    close(val[1], reference_val[1]["loss"].as_f64().unwrap(), 1e-4, "sft val loss at the end");
    assert_eq!(outcome.metrics, reference["evals"]["metrics"]);
    let sft_dir = dir.path().join("sft_d2");
    let weights = nanochat::checkpoint::read_tensors(&nanochat::checkpoint::model_path(&sft_dir, 4)).unwrap();
    for (name, norm) in reference["final_param_norms"].as_object().unwrap() {
        let ours = weights[name].to_kind(tch::Kind::Double).norm().double_value(&[]);
        close(ours, norm.as_f64().unwrap(), 1e-5, &format!("final norm of {name}"));
    }
}
