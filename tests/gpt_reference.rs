//! The GPT against the reference's gpt.py on CPU (fp32), using tests/golden/gpt_tiny.safetensors made
//! by tests/golden/make_gpt_golden.py from karpathy/nanochat 10231df: identical initial weights for
//! the same seed, and the same logits and losses for the same weights and tokens.
#[path = "support/golden_tensors.rs"]
mod golden_tensors;

use golden_tensors::{max_abs_diff, tensor_sha256, GoldenTensors};
use nanochat::model::{Gpt, GptConfig, KvCache};
use tch::{Device, Kind, Reduction, Tensor};

/// libtorch's generator is global: tests that seed it and draw from it take turns.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn load_golden() -> GoldenTensors {
    GoldenTensors::load("gpt_tiny.safetensors")
}

fn config(golden: &GoldenTensors) -> GptConfig {
    serde_json::from_value(golden.meta_json("config")).unwrap()
}

#[test]
fn same_seed_gives_the_reference_initial_weights_bit_for_bit() {
    let golden = load_golden();
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(42);
    let mut model = Gpt::new(config(&golden), Device::Cpu).unwrap();
    model.init_weights();
    let expected = golden.meta_json("init_sha256");
    let expected = expected.as_object().unwrap();
    let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, expected.keys().cloned().collect::<Vec<_>>(), "state_dict names and order");
    for (name, var) in model.named_parameters() {
        assert_eq!(tensor_sha256(&var), expected[&name].as_str().unwrap(), "{name}");
    }
}

#[test]
fn forward_matches_the_reference_logits_and_losses() {
    let golden = load_golden();
    let model = Gpt::new(config(&golden), Device::Cpu).unwrap();
    golden.load_into(&model, "dense.");
    let tokens = golden.get("tokens");
    let t = tokens.size()[1] - 1;
    let x = tokens.narrow(1, 0, t);
    let y = tokens.narrow(1, 1, t).contiguous();
    let _ = y.narrow(0, 0, 1).narrow(1, 0, 5).fill_(-1);
    let logits = tch::no_grad(|| model.forward(&x, None));
    let diff = max_abs_diff(&logits, golden.get("logits"));
    eprintln!("max |logits - reference| = {diff:e}");
    assert!(diff < 1e-4, "max |logits - reference| = {diff:e}");
    let mean = tch::no_grad(|| model.loss(&x, &y, Reduction::Mean));
    let none = tch::no_grad(|| model.loss(&x, &y, Reduction::None));
    assert!(max_abs_diff(&mean.view([1]), golden.get("loss_mean")) < 1e-5);
    assert!(max_abs_diff(&none, golden.get("loss_none")) < 1e-5);
    // Evaluation's chunked per-token losses and the training loss give the reference's values too.
    assert!(max_abs_diff(&model.token_losses(&x, &y), golden.get("loss_none")) < 1e-5);
    let train = tch::no_grad(|| model.train_loss(&x, &y));
    assert!(max_abs_diff(&train.view([1]), golden.get("loss_mean")) < 1e-5);
}

#[test]
fn cached_decoding_gives_the_same_logits_as_a_full_forward() {
    let golden = load_golden();
    let model = Gpt::new(config(&golden), Device::Cpu).unwrap();
    golden.load_into(&model, "dense.");
    let tokens = golden.get("tokens").narrow(0, 0, 1).narrow(1, 0, 20);
    let full = tch::no_grad(|| model.forward(&tokens, None));
    let mut cache = KvCache::new(config(&golden).n_layer as usize);
    // A prefill of 12 tokens, a chunk of 3 (prefix + causal mask), then one token at a time.
    let mut pieces = vec![tch::no_grad(|| model.forward(&tokens.narrow(1, 0, 12), Some(&mut cache)))];
    pieces.push(tch::no_grad(|| model.forward(&tokens.narrow(1, 12, 3), Some(&mut cache))));
    for i in 15..20 {
        pieces.push(tch::no_grad(|| model.forward(&tokens.narrow(1, i, 1), Some(&mut cache))));
    }
    assert_eq!(cache.pos(), 20);
    let cached = Tensor::cat(&pieces, 1);
    let diff = max_abs_diff(&cached, &full);
    assert!(diff < 1e-5, "cached vs uncached logits differ by {diff:e}");
    // Generation's last-position logits are the full forward's last row.
    let mut cache = KvCache::new(config(&golden).n_layer as usize);
    let last = tch::no_grad(|| model.forward_last(&tokens, Some(&mut cache)));
    assert_eq!(last.size(), [1, 1, full.size()[2]]);
    let diff = max_abs_diff(&last, &full.narrow(1, 19, 1));
    assert!(diff < 1e-5, "last-position logits differ by {diff:e}");
}

#[test]
fn initial_loss_is_ln_vocab_because_lm_head_starts_at_zero() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(0);
    let config = GptConfig::from_depth(1, 500, 16);
    let mut model = Gpt::new(config, Device::Cpu).unwrap();
    model.init_weights();
    let x = Tensor::randint(500, [2, 16], (Kind::Int64, Device::Cpu));
    let loss = model.loss(&x, &x, Reduction::Mean).double_value(&[]);
    assert!((loss - (500f64).ln()).abs() < 1e-5, "{loss}");
}

#[test]
fn optimizer_steps_follow_the_reference_loss_curve() {
    let golden = load_golden();
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(42);
    let mut model = Gpt::new(config(&golden), Device::Cpu).unwrap();
    model.init_weights();
    let (mut adamw, mut muon) =
        nanochat::optim::setup_optimizers(&model, &nanochat::optim::OptimizerSettings::reference());
    let batches = golden.get("train_batches");
    let expected: Vec<f32> = Vec::try_from(golden.get("train_losses")).unwrap();
    let t = batches.size()[2] - 1;
    let mut losses = Vec::new();
    for (step, _) in expected.iter().enumerate() {
        muon.momentum = nanochat::optim::schedule::muon_momentum(step as i64, 0.85, 0.95, 300);
        let batch = batches.get(step as i64);
        let loss = model.loss(&batch.narrow(1, 0, t), &batch.narrow(1, 1, t).contiguous(), Reduction::Mean);
        losses.push(loss.double_value(&[]) as f32);
        loss.backward();
        nanochat::optim::clip_grad_norm(&model.parameters_in_reference_order(), 1.0);
        adamw.step();
        muon.step();
        model.zero_grad();
    }
    eprintln!("ours      {losses:?}\nreference {expected:?}");
    for (ours, reference) in losses.iter().zip(&expected) {
        assert!((ours - reference).abs() < 2e-3, "loss curves diverge: {losses:?} vs {expected:?}");
    }
}

/// Gives `p` the gradient `g` (a leaf parameter's .grad) by backpropagating sum(p * g).
fn set_grad(p: &Tensor, g: &Tensor) {
    let mut grad = p.grad();
    if grad.defined() {
        let _ = grad.zero_();
    }
    (p * g).sum(Kind::Float).backward();
}

#[test]
fn adamw_step_matches_torch_fused_adamw() {
    let golden = load_golden();
    let p = golden.get("adam_p0").copy().set_requires_grad(true);
    let group =
        nanochat::optim::AdamGroup { name: "p".into(), params: vec![p.shallow_clone()], initial_lr: 0.01, lr: 0.01 };
    let mut opt = nanochat::optim::AdamW::new(vec![group], (0.8, 0.95), 1e-10, 0.1);
    let grads = golden.get("adam_grads");
    for i in 0..grads.size()[0] {
        set_grad(&p, &grads.get(i));
        opt.step();
    }
    let diff = max_abs_diff(&p, golden.get("adam_out"));
    // The same fused kernel as the reference's `fused=True`: bit-identical, not merely close.
    assert_eq!(diff, 0.0, "AdamW after 3 steps: max |ours - torch| = {diff:e}");
}

#[test]
fn newton_schulz_matches_the_reference_in_bf16() {
    let golden = load_golden();
    let ours = nanochat::optim::muon::newton_schulz(golden.get("ns_in"), 5).to_kind(Kind::Float);
    let reference = golden.get("ns_out");
    // Outputs are bf16 (8 bits of mantissa): agree to bf16 resolution, almost all bit for bit.
    let diff = max_abs_diff(&ours, reference);
    let differing = (&ours - reference).abs().gt(0.0).sum(Kind::Int64).int64_value(&[]);
    eprintln!("Newton-Schulz: max diff {diff:e}, {differing} of {} entries differ", reference.numel());
    assert!(diff < 2e-2, "{diff:e}");
    assert!((differing as f64) < 0.01 * reference.numel() as f64, "{differing}");
}

#[test]
fn muon_steps_match_the_reference() {
    let golden = load_golden();
    let p = golden.get("muon_p0").copy().set_requires_grad(true);
    let mut opt = nanochat::optim::Muon::new(vec![p.shallow_clone()], 0.02, 0.95, 5);
    let grads = golden.get("muon_grads");
    for i in 0..grads.size()[0] {
        set_grad(&p, &grads.get(i));
        opt.step();
    }
    let diff = max_abs_diff(&p, golden.get("muon_out"));
    eprintln!("Muon after 3 steps: max |ours - reference| = {diff:e}");
    assert!(diff < 1e-3, "{diff:e}");
}
