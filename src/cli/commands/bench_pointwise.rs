//! `nanochat bench pointwise`: the model's fused pointwise autograd functions (relu², rotary) against
//! the same expressions op by op, forward + backward at one depth's activation shapes, on the GPU when
//! there is one. Prints a table, then one JSON line.
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::cli::BenchPointwiseArgs;
use crate::model::fused_ops::{self, unfused};
use crate::model::{rotary, GptConfig, Precision};

pub fn run(args: &BenchPointwiseArgs) -> anyhow::Result<()> {
    let device = crate::hw::device::select(args.device, 0)?;
    let kind = Precision::resolve(&args.dtype, device)?.compute_kind();
    let config = GptConfig::from_depth(args.depth, 65_536, args.seq_len);
    let (b, t, h, hd) = (args.batch, args.seq_len, config.n_head, config.head_dim());
    tch::manual_seed(0);
    let (cos, sin) = rotary::precompute(t, hd, device);
    // (name, input shape: the MLP's hidden layer / the query heads, fused, op by op)
    type Op<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;
    let cases: [(&str, Vec<i64>, Op, Op); 2] = [
        ("relu²", vec![b, t, 4 * config.n_embd], Box::new(fused_ops::relu_square), Box::new(unfused::relu_square)),
        (
            "rotary",
            vec![b, t, h, hd],
            Box::new(|x| fused_ops::rotary(x, &cos, &sin)),
            Box::new(|x| unfused::rotary(x, &cos, &sin)),
        ),
    ];
    println!(
        "Pointwise forward + backward, depth {} ({} heads of {}), batch {b} x {t}, {kind:?} on {device:?}, \
         mean of {} calls\n",
        args.depth, h, hd, args.iters
    );
    println!("| op | shape | fused (ms) | op by op (ms) | op by op / fused |");
    println!("|---|---|---|---|---|");
    let mut results = Vec::new();
    for (name, shape, fused, reference) in &cases {
        let x = Tensor::randn(shape.as_slice(), (Kind::Float, device)).to_kind(kind);
        let up = Tensor::randn(shape.as_slice(), (Kind::Float, device)).to_kind(kind);
        let fused_ms = time_forward_backward(fused.as_ref(), &x, &up, args.iters, device);
        let reference_ms = time_forward_backward(reference.as_ref(), &x, &up, args.iters, device);
        println!("| {name} | {shape:?} | {fused_ms:.3} | {reference_ms:.3} | {:.2}x |", reference_ms / fused_ms);
        results.push(serde_json::json!({"op": name, "shape": shape, "fused_ms": fused_ms, "unfused_ms": reference_ms}));
    }
    println!(
        "\n{}",
        serde_json::json!({"device": format!("{device:?}"), "dtype": format!("{kind:?}"), "results": results})
    );
    Ok(())
}

/// Mean milliseconds of y = f(x) and the backward of sum(y·up) to x, after two warm-up calls. The
/// product with `up` (the same for both implementations) gives the backward a dense upstream gradient.
fn time_forward_backward(f: &dyn Fn(&Tensor) -> Tensor, x: &Tensor, up: &Tensor, iters: usize, device: Device) -> f64 {
    let call = || {
        let x = x.detach().set_requires_grad(true);
        (f(&x) * up).sum(Kind::Float).backward();
        if let Device::Cuda(d) = device {
            tch::Cuda::synchronize(d as i64);
        }
    };
    call();
    call();
    let start = Instant::now();
    for _ in 0..iters {
        call();
    }
    start.elapsed().as_secs_f64() * 1e3 / iters.max(1) as f64
}
