//! `nanochat bench train`: training throughput of the base model at a given depth on random tokens
//! (forward, backward, clip, AdamW + Muon), on the GPU when there is one. Prints one JSON line;
//! tests/bench/bench_train.py puts it next to the reference's training step (`make bench`). With
//! `--eval`, evaluation's bits-per-byte pass on the same batches instead (its time and peak memory).
//! With `--profile`, one more step's operators counted by phase ([`crate::op_count`]).
use std::collections::BTreeMap;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::cli::BenchTrainArgs;
use crate::model::{Gpt, GptConfig, Precision};
use crate::op_count::{Counts, OpCounter};
use crate::optim::{clip_grad_norm_queued, setup_optimizers, OptimizerSettings};

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
    // One training step; with a counter, each part's operators are counted in its phase.
    let mut step = |counter: Option<&OpCounter>| {
        let phase = |p: Phase| {
            if let Some(c) = counter {
                c.phase(p as usize)
            }
        };
        phase(Phase::Data);
        let x = Tensor::randint(args.vocab, [args.batch, args.seq_len + 1], (Kind::Int64, device));
        let (inputs, targets) = (x.narrow(1, 0, args.seq_len), x.narrow(1, 1, args.seq_len).contiguous());
        if args.eval {
            let totals = crate::eval::bpb::batch_totals(&model, &inputs, &targets, &token_bytes);
            assert!(totals.nats.is_finite(), "the evaluation's loss is {}", totals.nats);
            return;
        }
        let loss = if args.full_logits_loss {
            model.loss(&inputs, &targets, tch::Reduction::Mean)
        } else {
            phase(Phase::BlocksForward);
            let hidden = model.hidden_states(&inputs);
            phase(Phase::Loss);
            model.train_loss_from_hidden(&hidden, &targets)
        };
        phase(Phase::Backward);
        loss.backward();
        phase(Phase::Optimizer);
        let _ = clip_grad_norm_queued(&params, 1.0);
        adamw.step();
        muon.step();
        model.zero_grad();
        phase(Phase::Data);
        if let Device::Cuda(d) = device {
            tch::Cuda::synchronize(d as i64);
        }
    };
    for _ in 0..args.warmup {
        step(None);
    }
    let start = Instant::now();
    for _ in 0..args.steps {
        step(None);
    }
    let secs = start.elapsed().as_secs_f64() / args.steps.max(1) as f64;
    let tokens = (args.batch * args.seq_len) as f64;
    let peak = crate::hw::GpuInventory::probe()
        .gpus
        .first()
        .and_then(|g| crate::hw::peak_flops::peak_bf16_flops(&g.name))
        .filter(|_| device.is_cuda() && !args.eval);
    let mfu = peak.map(|p| 100.0 * config.flops_per_token() as f64 * tokens / secs / p);
    let profile = match args.profile {
        true => {
            let counter = OpCounter::start()?;
            step(Some(&counter));
            let counts = counter.finish()?;
            eprint!("{}", profile_table(&counts, device));
            Some(Phase::ALL.map(|p| (p.name(), counts[p as usize])).into_iter().collect::<BTreeMap<_, _>>())
        }
        false => None,
    };
    println!(
        "{}",
        serde_json::json!({
            "impl": "nanochat-rs", "device": format!("{device:?}"), "dtype": precision.to_string(),
            "mode": if args.eval { "bpb evaluation" } else { "training" },
            "loss": (!args.eval).then_some(if args.full_logits_loss { "full logits" } else { "chunked" }), "depth": args.depth, "params": config.num_params(),
            "batch": args.batch, "seq_len": args.seq_len, "step_ms": secs * 1e3, "tok_per_sec": tokens / secs,
            "mfu_percent": mfu, "peak_rss_mib": peak_rss_mib(), "profile": profile,
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

/// The parts of a step `--profile` counts separately. One process runs no collectives: the
/// distributed optimizers' are in `bench collectives`.
#[derive(Clone, Copy)]
enum Phase {
    Data,
    BlocksForward,
    Loss,
    Backward,
    Optimizer,
}

impl Phase {
    const ALL: [Phase; 5] = [Phase::BlocksForward, Phase::Loss, Phase::Backward, Phase::Optimizer, Phase::Data];

    fn name(self) -> &'static str {
        match self {
            Phase::Data => "batch and sync",
            Phase::BlocksForward => "blocks forward",
            Phase::Loss => "loss (head, soft-cap, cross-entropy, its backward)",
            Phase::Backward => "blocks backward",
            Phase::Optimizer => "optimizer (clip, AdamW, Muon)",
        }
    }
}

fn profile_table(counts: &[Counts], device: Device) -> String {
    let mut out = format!(
        "operators of one step on {device:?} (kernels: leaf operators that are not views or allocations)\n\
         | phase | ATen ops | kernels | host syncs |\n|---|---:|---:|---:|\n"
    );
    let mut total = Counts::default();
    for p in Phase::ALL {
        let c = counts[p as usize];
        out += &format!("| {} | {} | {} | {} |\n", p.name(), c.ops, c.kernels, c.host_syncs);
        total = Counts {
            ops: total.ops + c.ops,
            leaves: total.leaves + c.leaves,
            kernels: total.kernels + c.kernels,
            host_syncs: total.host_syncs + c.host_syncs,
        };
    }
    out + &format!("| total | {} | {} | {} |\n", total.ops, total.kernels, total.host_syncs)
}
