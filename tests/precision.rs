//! The precision policy (NANOCHAT.md §3.5, §4.3, §14 item 9): with bf16 selected, wte and therefore
//! the residual stream and the matmuls are bf16, logits and the loss fp32, wte's gradient and Adam
//! moments bf16, every other weight and its optimizer state fp32; fp32 everywhere on CPU by default.
//! bf16 runs on CPU too, so its numerics are checked here against fp32 with the same weights.
use std::sync::Mutex;

use nanochat::model::{Gpt, GptConfig, Precision};
use nanochat::optim::{OptimizerSettings, Optimizers};
use tch::{Device, Kind, Reduction, Tensor};

/// The global RNG is shared by the tests of this binary.
static RNG: Mutex<()> = Mutex::new(());

const VOCAB: i64 = 300;
const T: i64 = 32;

/// A d2 model in `precision` with the same (non-zero everywhere) weights whatever the precision.
fn model(precision: Precision) -> Gpt {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(11);
    let reference = Gpt::with_precision(GptConfig::from_depth(2, VOCAB, T), Device::Cpu, Precision::Float32).unwrap();
    tch::no_grad(|| {
        for (name, p) in reference.named_parameters() {
            let std = if name.contains("wte") { 1.0 } else { 0.08 };
            let _ = p.shallow_clone().normal_(0.0, std);
        }
    });
    let model = Gpt::with_precision(reference.config, Device::Cpu, precision).unwrap();
    tch::no_grad(|| {
        for ((_, mut dst), (_, src)) in model.named_parameters().into_iter().zip(reference.named_parameters()) {
            dst.copy_(&src.to_kind(dst.kind()));
        }
    });
    model
}

fn batch() -> (Tensor, Tensor) {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(5);
    let tokens = Tensor::randint(VOCAB, [4, T + 1], (Kind::Int64, Device::Cpu));
    let targets = tokens.narrow(1, 1, T).contiguous();
    let _ = targets.narrow(0, 0, 1).narrow(1, 0, 7).fill_(-1);
    (tokens.narrow(1, 0, T), targets)
}

fn settings() -> OptimizerSettings {
    OptimizerSettings { weight_decay: 0.0, ..OptimizerSettings::reference() }
}

/// One optimizer step on the batch; returns the optimizers (for their state) and the loss.
fn train_step(model: &Gpt) -> (Optimizers, f64) {
    let (x, y) = batch();
    let (x, y) = (x.to_device(model.device()), y.to_device(model.device()));
    let mut optimizers = Optimizers::new(model, &settings(), None).unwrap();
    let loss = model.train_loss(&x, &y);
    loss.backward();
    optimizers.step(None).unwrap();
    (optimizers, loss.double_value(&[]))
}

fn cosine(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Double).flatten(0, -1), b.to_kind(Kind::Double).flatten(0, -1));
    (a.dot(&b) / (a.norm() * b.norm())).double_value(&[])
}

#[test]
fn bf16_puts_each_tensor_in_the_reference_dtype() {
    assert_bf16_policy(&model(Precision::BFloat16));
}

#[test]
#[ignore = "needs a CUDA GPU: `make gpu-check` runs it"]
fn on_cuda_auto_is_bf16_with_the_reference_dtypes_and_a_fused_attention_kernel() {
    assert!(tch::Cuda::is_available(), "no CUDA device visible to libtorch");
    let device = Device::Cuda(0);
    assert_eq!(Precision::auto(device), Precision::BFloat16);
    let cpu = model(Precision::Float32);
    let gpu = Gpt::new(cpu.config, device).unwrap();
    tch::no_grad(|| {
        for ((_, mut dst), (_, src)) in gpu.named_parameters().into_iter().zip(cpu.named_parameters()) {
            dst.copy_(&src.to_device(device).to_kind(dst.kind()));
        }
    });
    assert_bf16_policy(&gpu);
    let d20 = GptConfig::from_depth(20, 65_536, 2048);
    let backend = nanochat::model::gpt::sdpa_backend(&d20, device, Kind::BFloat16);
    assert!(matches!(backend, 1 | 3), "d20 attention uses {}", nanochat::model::gpt::sdpa_backend_name(backend));
}

/// The bf16 policy on `model`'s device: parameters, activations, logits, loss, gradients, optimizer state.
fn assert_bf16_policy(model: &Gpt) {
    let device = model.device();
    for (name, p) in model.named_parameters() {
        let expected = if name == "transformer.wte.weight" { Kind::BFloat16 } else { Kind::Float };
        assert_eq!(p.kind(), expected, "{name}");
    }
    let (x, y) = batch();
    let (x, y) = (x.to_device(device), y.to_device(device));
    tch::no_grad(|| {
        assert_eq!(model.hidden_states(&x).kind(), Kind::BFloat16, "the residual stream");
        assert_eq!(model.forward(&x, None).kind(), Kind::Float, "logits are fp32 (soft-capped in fp32)");
        let mut cache = nanochat::model::KvCache::new(2);
        assert_eq!(model.forward_last(&x, Some(&mut cache)).kind(), Kind::Float);
    });
    let loss = model.train_loss(&x, &y);
    assert_eq!(loss.kind(), Kind::Float);
    loss.backward();
    assert_eq!(model.wte().grad().kind(), Kind::BFloat16, "wte's gradient");
    assert_eq!(model.lm_head().grad().kind(), Kind::Float, "lm_head's gradient");
    model.zero_grad();

    let (optimizers, _) = train_step(model);
    let state = optimizers.state_tensors();
    let kind_of = |prefix: &str| -> Vec<Kind> {
        state.iter().filter(|(n, _)| n.starts_with(prefix)).map(|(_, t)| t.kind()).collect()
    };
    assert_eq!(kind_of("adamw.wte."), [Kind::BFloat16, Kind::BFloat16], "wte's Adam moments (§4.3)");
    assert_eq!(kind_of("adamw.lm_head."), [Kind::Float, Kind::Float]);
    let muon = kind_of("muon.");
    assert_eq!(muon.len(), 12, "one momentum buffer per block matrix");
    assert!(muon.iter().all(|k| *k == Kind::Float), "{muon:?}");
    assert_eq!(model.wte().kind(), Kind::BFloat16, "the step keeps wte in bf16");
}

#[test]
fn fp32_is_the_cpu_default_and_keeps_everything_fp32() {
    assert_eq!(Precision::auto(Device::Cpu), Precision::Float32);
    let default = Gpt::new(GptConfig::from_depth(1, VOCAB, T), Device::Cpu).unwrap();
    assert_eq!(default.precision, Precision::Float32);
    let model = model(Precision::Float32);
    assert!(model.named_parameters().iter().all(|(_, p)| p.kind() == Kind::Float));
    let (x, _) = batch();
    assert_eq!(tch::no_grad(|| model.hidden_states(&x)).kind(), Kind::Float);
    let (optimizers, _) = train_step(&model);
    assert!(optimizers.state_tensors().iter().filter(|(n, _)| n != "adamw.step").all(|(_, t)| t.kind() == Kind::Float));
}

#[test]
fn bf16_forward_and_training_step_match_fp32_within_bf16_tolerance() {
    let (fp32, bf16) = (model(Precision::Float32), model(Precision::BFloat16));
    let (x, y) = batch();
    let (l32, l16) = tch::no_grad(|| (fp32.forward(&x, None), bf16.forward(&x, None)));
    let scale = l32.abs().mean(Kind::Float).double_value(&[]);
    let err = (&l16 - &l32).abs().mean(Kind::Float).double_value(&[]);
    assert!(err < 0.03 * scale, "mean |logits bf16 - fp32| = {err} against mean |logits| = {scale}");
    assert!(cosine(&l16, &l32) > 0.999, "logits cosine {}", cosine(&l16, &l32));
    let loss32 = tch::no_grad(|| fp32.loss(&x, &y, Reduction::Mean)).double_value(&[]);
    let loss16 = tch::no_grad(|| bf16.loss(&x, &y, Reduction::Mean)).double_value(&[]);
    assert!((loss16 - loss32).abs() < 0.01 * loss32, "loss bf16 {loss16} vs fp32 {loss32}");

    let before: Vec<Tensor> = fp32.named_parameters().into_iter().map(|(_, p)| p.copy()).collect();
    let (_, step_loss32) = train_step(&fp32);
    let (_, step_loss16) = train_step(&bf16);
    assert!((step_loss16 - step_loss32).abs() < 0.01 * step_loss32);
    let after32 = fp32.named_parameters();
    let after16 = bf16.named_parameters();
    for ((start, (name, p32)), (_, p16)) in before.iter().zip(after32).zip(after16) {
        let (d32, d16) = (&p32 - start, p16.to_kind(Kind::Float) - start);
        // AdamW's first step is about ±lr per gradient sign, so wte's update mostly agrees even where
        // a tiny gradient's sign differs between the precisions; Muon's updates agree closely.
        let threshold = if name.contains("wte") { 0.9 } else { 0.98 };
        let c = cosine(&d16, &d32);
        assert!(c > threshold, "{name}: the bf16 step's update has cosine {c} with the fp32 one");
    }
}

#[test]
fn the_chunked_training_loss_is_the_full_logits_loss() {
    let model = model(Precision::Float32);
    let (x, y) = batch();
    let full = model.loss(&x, &y, Reduction::Mean);
    full.backward();
    let grads: Vec<Tensor> = model.named_parameters().iter().map(|(_, p)| p.grad().copy()).collect();
    model.zero_grad();
    let chunked = model.train_loss(&x, &y);
    assert!((chunked.double_value(&[]) - full.double_value(&[])).abs() < 1e-6);
    chunked.backward();
    for ((name, p), expected) in model.named_parameters().iter().zip(&grads) {
        let err = (p.grad() - expected).abs().max().double_value(&[]);
        let scale = expected.abs().max().double_value(&[]).max(1e-12);
        assert!(err <= 1e-4 * scale, "{name}: gradient differs by {err} (largest {scale})");
    }
}

#[test]
#[ignore = "needs a CUDA GPU: `make gpu-check` runs it"]
fn on_cuda_the_chunked_bf16_loss_and_its_gradients_match_fp32_full_logits() {
    use nanochat::model::chunked_loss::softcapped_cross_entropy_in_chunks;
    assert!(tch::Cuda::is_available(), "no CUDA device visible to libtorch");
    let device = Device::Cuda(0);
    tch::manual_seed(3);
    let (n, d, vocab) = (96, 64, 300);
    // bf16 hidden states and an fp32 head with 20 padding rows, as the bf16 policy has them.
    let h = Tensor::randn([n, d], (Kind::Float, device)).to_kind(Kind::BFloat16).set_requires_grad(true);
    let w = (Tensor::randn([vocab + 20, d], (Kind::Float, device)) * 0.2).set_requires_grad(true);
    let targets = Tensor::randint(vocab, [n], (Kind::Int64, device));
    let _ = targets.narrow(0, 10, 5).fill_(-1);
    // The same values in fp32 with the full logits.
    let (h32, w32) = (h.detach().to_kind(Kind::Float).set_requires_grad(true), w.detach().set_requires_grad(true));
    let logits = h32.matmul(&w32.narrow(0, 0, vocab).tr());
    let expected =
        ((logits / 15.0).tanh() * 15.0).cross_entropy_loss(&targets, None::<Tensor>, Reduction::Mean, -1, 0.0);
    expected.backward();
    // 7 rows per chunk: 14 chunks, the last one short, each adding to the head's gradient.
    let loss = softcapped_cross_entropy_in_chunks(&h, &w, vocab, &targets, 7);
    loss.backward();
    assert!((loss.double_value(&[]) - expected.double_value(&[])).abs() < 1e-3, "{loss:?} vs {expected:?}");
    for (name, ours, exact) in [("h", h.grad(), h32.grad()), ("lm_head", w.grad(), w32.grad())] {
        assert_eq!(ours.kind(), if name == "h" { Kind::BFloat16 } else { Kind::Float }, "{name}");
        let err = (ours.to_kind(Kind::Float) - &exact).abs().max().double_value(&[]);
        let scale = exact.abs().max().double_value(&[]);
        // bf16 operands: within a few bf16 ulps (2^-8 relative) of the largest entry.
        assert!(err <= 2e-2 * scale, "{name}: gradient differs by {err} (largest {scale})");
    }
    let padding = w.grad().narrow(0, vocab, 20).abs().max().double_value(&[]);
    assert_eq!(padding, 0.0, "the head's padding rows get no gradient");
}

/// A d2 model with every 92d63d4 option (windows "SL") in `precision`, the same non-zero weights
/// whatever the precision: matrices N(0, 0.08), embeddings N(0, 1), scalars 0.5.
fn model_92d63d4(precision: Precision) -> Gpt {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(12);
    let config = GptConfig::from_depth(2, VOCAB, T).with_92d63d4_options("SL".parse().unwrap());
    let reference = Gpt::with_precision(config, Device::Cpu, Precision::Float32).unwrap();
    tch::no_grad(|| {
        for (name, p) in reference.named_parameters() {
            let embedding = name.contains("wte") || name.starts_with("value_embeds");
            let _ = match p.dim() {
                1 => p.shallow_clone().fill_(0.5),
                _ => p.shallow_clone().normal_(0.0, if embedding { 1.0 } else { 0.08 }),
            };
        }
    });
    let model = Gpt::with_precision(config, Device::Cpu, precision).unwrap();
    tch::no_grad(|| {
        for ((_, mut dst), (_, src)) in model.named_parameters().into_iter().zip(reference.named_parameters()) {
            dst.copy_(&src.to_kind(dst.kind()));
        }
    });
    model
}

#[test]
fn the_92d63d4_options_in_bf16_keep_the_embeddings_bf16_and_match_fp32() {
    let (fp32, bf16) = (model_92d63d4(Precision::Float32), model_92d63d4(Precision::BFloat16));
    for (name, p) in bf16.named_parameters() {
        let embedding = name == "transformer.wte.weight" || name.starts_with("value_embeds.");
        assert_eq!(p.kind(), if embedding { Kind::BFloat16 } else { Kind::Float }, "{name}");
    }
    let (x, y) = batch();
    let (l32, l16) = tch::no_grad(|| (fp32.forward(&x, None), bf16.forward(&x, None)));
    assert_eq!((tch::no_grad(|| bf16.hidden_states(&x)).kind(), l16.kind()), (Kind::BFloat16, Kind::Float));
    assert!(cosine(&l16, &l32) > 0.999, "logits cosine {}", cosine(&l16, &l32));
    // Cached decoding in bf16: the prefill, then one position with the cached smear embedding.
    let mut cache = nanochat::model::KvCache::new(2);
    let row = x.narrow(0, 0, 1);
    let prefill = tch::no_grad(|| bf16.forward(&row.narrow(1, 0, T - 1), Some(&mut cache)));
    let last = tch::no_grad(|| bf16.forward(&row.narrow(1, T - 1, 1), Some(&mut cache)));
    assert_eq!((prefill.kind(), last.kind()), (Kind::Float, Kind::Float));
    assert!(cosine(&last, &l32.narrow(0, 0, 1).narrow(1, T - 1, 1)) > 0.999);
    // Every parameter, the options' included, gets a gradient from the chunked training loss.
    let loss = bf16.train_loss(&x, &y);
    loss.backward();
    for (name, p) in bf16.named_parameters() {
        let g = p.grad();
        assert!(g.defined() && g.abs().sum(Kind::Float).double_value(&[]) > 0.0, "{name} has no gradient");
    }
}
