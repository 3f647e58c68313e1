//! Chat RL (NANOCHAT.md §5.5) against the reference's own `scripts/chat_rl.py` on the same d2
//! weights, tokenizer and stand-in GSM8K (tests/golden/chat/rl.json, made by make_chat_golden.py
//! --phase rl): the policy-gradient step on fixed rollouts (padding, calculator output, max tokens,
//! empty samples), pass by pass, its gradients and the weights after the update.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use chat_fixtures::{golden, golden_dir, golden_encoder};
use nanochat::chat::ChatTokens;
use nanochat::model::Gpt;
use nanochat::optim::{OptimizerSettings, Optimizers};
use nanochat::train::rl_loss::{backward_passes, Rollouts};
use nanochat::train::source::SourceCheckpoint;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

fn close(ours: f64, reference: f64, tolerance: f64, what: &str) {
    eprintln!("{what}: ours {ours}, reference {reference}, diff {:.3e}", ours - reference);
    assert!(
        (ours - reference).abs() <= tolerance * reference.abs().max(1e-3),
        "{what}: ours {ours}, reference {reference}"
    );
}

fn base_model() -> Gpt {
    SourceCheckpoint::in_dir(&golden_dir().join("base_d2"), None).unwrap().load_model(Device::Cpu).unwrap()
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
    let settings = OptimizerSettings { init_lr_frac: 0.05, ..OptimizerSettings::reference() };
    Optimizers::new(model, &settings, None).unwrap()
}

#[test]
fn the_policy_gradient_step_matches_the_reference_on_fixed_rollouts() {
    let fixture = golden("rl.json");
    let loss = &fixture["loss"];
    let reference = &loss["step"];
    let model = base_model();
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
    optimizers.set_schedule(reference["lrm"].as_f64().unwrap(), 0.95);
    optimizers.step(None).unwrap();
    for (name, p) in model.named_parameters() {
        let norm = p.to_kind(Kind::Double).norm().double_value(&[]);
        close(norm, reference["param_norms"][&name].as_f64().unwrap(), 1e-8, &format!("norm of {name} after the step"));
    }
}

#[test]
fn equal_rewards_leave_the_weights_unchanged() {
    let fixture = golden("rl.json");
    let model = base_model();
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
    optimizers.set_schedule(1.0, 0.95);
    optimizers.step(None).unwrap();
    for ((name, p), b) in model.named_parameters().iter().zip(&before) {
        assert!(p.equal(b), "{name} moved although every advantage is 0");
    }
}
