//! `nanochat bench train`: training throughput of the base model at a given depth on random tokens
//! (forward, backward, clip, AdamW + Muon), on the GPU when there is one. Prints one JSON line;
//! tests/bench/bench_train.py puts it next to the reference's training step (`make bench`). With
//! `--eval`, evaluation's bits-per-byte pass on the same batches instead (its time and peak memory).
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::cli::BenchTrainArgs;
use crate::model::{Gpt, GptConfig, Precision};
use crate::optim::{clip_grad_norm, setup_optimizers, OptimizerSettings};

pub fn run(args: &BenchTrainArgs) -> anyhow::Result<()> {
    let device = crate::hw::device::select(args.device, 0)?;
    tch::manual_seed(42);
    let config = GptConfig::from_depth(args.depth, args.vocab, args.seq_len);
    let precision = Precision::resolve(&args.dtype, device)?;
    let mut model = Gpt::with_precision(config, device, precision).map_err(anyhow::Error::msg)?;
    model.init_weights();
    let (mut adamw, mut muon) = setup_optimizers(&model, &OptimizerSettings::reference());
    let params = model.parameters_in_reference_order();
    // --eval: every token one byte long (the bpb's arithmetic does not depend on the lengths).
    let token_bytes = Tensor::ones([args.vocab], (Kind::Int, device));
    let mut step = |i: usize| {
        let x = Tensor::randint(args.vocab, [args.batch, args.seq_len + 1], (Kind::Int64, device));
        let (inputs, targets) = (x.narrow(1, 0, args.seq_len), x.narrow(1, 1, args.seq_len).contiguous());
        if args.eval {
            let totals = crate::eval::bpb::batch_totals(&model, &inputs, &targets, &token_bytes);
            assert!(totals.nats.is_finite(), "the evaluation's loss is {}", totals.nats);
            return i;
        }
        let loss = if args.full_logits_loss {
            model.loss(&inputs, &targets, tch::Reduction::Mean)
        } else {
            model.train_loss(&inputs, &targets)
        };
        loss.backward();
        clip_grad_norm(&params, 1.0);
        adamw.step();
        muon.step();
        model.zero_grad();
        if let Device::Cuda(d) = device {
            tch::Cuda::synchronize(d as i64);
        }
        i
    };
    for i in 0..args.warmup {
        step(i);
    }
    let start = Instant::now();
    for i in 0..args.steps {
        step(i);
    }
    let secs = start.elapsed().as_secs_f64() / args.steps.max(1) as f64;
    let tokens = (args.batch * args.seq_len) as f64;
    let peak = crate::hw::GpuInventory::probe()
        .gpus
        .first()
        .and_then(|g| crate::hw::peak_flops::peak_bf16_flops(&g.name))
        .filter(|_| device.is_cuda() && !args.eval);
    let mfu = peak.map(|p| 100.0 * config.flops_per_token() as f64 * tokens / secs / p);
    println!(
        "{}",
        serde_json::json!({
            "impl": "nanochat-rs", "device": format!("{device:?}"), "dtype": precision.to_string(),
            "mode": if args.eval { "bpb evaluation" } else { "training" },
            "loss": (!args.eval).then_some(if args.full_logits_loss { "full logits" } else { "chunked" }), "depth": args.depth, "params": config.num_params(),
            "batch": args.batch, "seq_len": args.seq_len, "step_ms": secs * 1e3, "tok_per_sec": tokens / secs,
            "mfu_percent": mfu, "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}

/// High-water mark of this process's resident memory.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}
