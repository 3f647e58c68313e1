//! 92d63d4's fp8 training matmuls (`nanochat/fp8.py`, src/model/fp8.rs) against the reference's own
//! `_Float8Matmul` run on this CPU (libtorch's `_scaled_mm` has CPU kernels), from
//! tests/golden/fp8_matmul.safetensors made by tests/golden/make_fp8_golden.py: the output and both
//! gradients for an fp32 input, a bf16 input and one with a zero row and values far past e4m3's range.
//! Bit for bit on the CPU model that made the golden; within fp8 rounding elsewhere. And the model:
//! which layers take fp8, and that only training's forward uses it.
#[path = "support/golden_tensors.rs"]
mod golden_tensors;

use golden_tensors::GoldenTensors;
use nanochat::model::{fp8, Gpt, GptConfig};
use tch::{Device, Kind, Tensor};

/// max |a − b| / max |b|.
fn relative(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_kind(Kind::Float);
    (&a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-30)
}

#[test]
fn fp8_matmul_is_the_references_float8_matmul() {
    let golden = GoldenTensors::load("fp8_matmul.safetensors");
    // e4m3 keeps 3 mantissa bits: another CPU's GEMM may round a product differently, not more.
    let tolerance = if golden.made_on_this_cpu() { 0.0 } else { 0.07 };
    for (case, kind) in [("fp32", Kind::Float), ("bf16", Kind::BFloat16), ("wide_range", Kind::Float)] {
        let get = |key: &str| golden.get(&format!("{case}.{key}"));
        let x = get("input").to_kind(kind).set_requires_grad(true);
        let w = golden.get("weight").copy().set_requires_grad(true);
        let y = fp8::linear(&x, &w);
        assert_eq!(y.kind(), kind, "{case}: the output has the input's dtype");
        // d(Σ y·g)/dy = g exactly: the backward sees the golden's output gradient.
        (&y * get("grad_output").to_kind(kind)).sum(Kind::Float).backward();
        for (what, ours, reference) in [
            ("output", y.detach(), get("output")),
            ("grad_input", x.grad(), get("grad_input")),
            ("grad_weight", w.grad(), get("grad_weight")),
        ] {
            let diff = relative(&ours, reference);
            assert!(diff <= tolerance, "{case} {what}: relative difference {diff:e}");
        }
        assert_eq!(w.grad().kind(), Kind::Float, "the master weight's gradient is fp32");
    }
}

#[test]
fn fp8_is_not_the_plain_matmul() {
    // The golden's fp32 case through the plain matmul ends well away from the fp8 output.
    let golden = GoldenTensors::load("fp8_matmul.safetensors");
    let plain = golden.get("fp32.input").matmul(&golden.get("weight").tr());
    let diff = relative(&plain, golden.get("fp32.output"));
    assert!(diff > 1e-3, "fp8 output within {diff:e} of fp32's: the golden does not test quantization");
}

#[test]
fn the_layers_base_train_py_converts() {
    // fp8_module_filter: both sides multiples of 16, the smaller at least 128.
    let cases = [
        ((1536, 1536), true), // d24's attention
        ((1536, 6144), true), // d24's c_fc
        ((128, 512), true),   // d2's c_fc
        ((12, 12), false),    // a value-embedding gate
        ((24, 1), false),     // the smear gate
        ((64, 256), false),   // smaller side under 128
        ((136, 200), false),  // 200 is not a multiple of 16
    ];
    for ((inp, out), expected) in cases {
        assert_eq!(fp8::takes_fp8(inp, out), expected, "Linear({inp}, {out})");
    }
}

#[test]
fn only_training_forward_runs_in_fp8() {
    tch::manual_seed(5);
    let config = GptConfig::from_depth(2, 256, 64).with_92d63d4_options("SL".parse().unwrap());
    let mut model = Gpt::new(config, Device::Cpu).unwrap();
    model.init_weights();
    // Non-zero projections, so the blocks' matmuls matter to the loss.
    tch::no_grad(|| {
        for mut p in model.block_matrices() {
            let _ = p.normal_(0.0, 0.02);
        }
    });
    let idx = Tensor::randint(256, [2, 64], (Kind::Int64, Device::Cpu));
    let targets = idx.roll([-1], [1]);
    let plain_loss = model.train_loss(&idx, &targets).double_value(&[]);
    let plain_logits = model.forward(&idx, None);
    model.fp8_training = true;
    let loss = model.train_loss(&idx, &targets);
    let fp8_loss = loss.double_value(&[]);
    assert!(fp8_loss != plain_loss && (fp8_loss - plain_loss).abs() < 0.05 * plain_loss, "{fp8_loss} vs {plain_loss}");
    loss.backward();
    for p in model.block_matrices() {
        assert!(
            p.grad().defined() && p.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0,
            "every block matrix learns"
        );
    }
    assert!(model.forward(&idx, None).equal(&plain_logits), "evaluation's forward stays in the compute dtype");
}
