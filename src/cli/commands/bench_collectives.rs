//! `nanochat bench collectives`: all-reduce bandwidth, as nccl-tests reports it (algorithm bandwidth
//! = bytes / time; bus bandwidth = algbw · 2(n−1)/n).
use std::time::Instant;

use tch::{Kind, Tensor};

use super::launch::{launch_or_join, Role};
use crate::cli::{CollectivesArgs, GlobalOptions};
use crate::dist::ReduceOp;

pub fn run(global: &GlobalOptions, args: &CollectivesArgs) -> anyhow::Result<()> {
    let Role::Worker { ctx, group, device } = launch_or_join(global, &args.launch, "bench-collectives")? else {
        return Ok(());
    };
    let Some(group) = group else {
        anyhow::bail!("bench collectives needs at least 2 processes: pass --nproc-per-node 2 (or more)");
    };
    if ctx.is_master() {
        println!("all-reduce (sum, fp32) over {} processes on {:?} ({:?})", ctx.world_size, device, group.backend);
        println!("{:>10} {:>12} {:>14} {:>14}", "size", "time (ms)", "algbw (GB/s)", "busbw (GB/s)");
    }
    let n = ctx.world_size as f64;
    let mut mib = 1;
    while mib <= args.max_mib.max(1) {
        let numel = (mib << 20) / 4;
        let mut t = Tensor::ones([numel as i64], (Kind::Float, device));
        for _ in 0..2 {
            group.all_reduce(&mut t, ReduceOp::Sum)?;
        }
        group.barrier()?;
        let start = Instant::now();
        for _ in 0..args.iters.max(1) {
            group.all_reduce(&mut t, ReduceOp::Sum)?;
        }
        if let tch::Device::Cuda(index) = device {
            tch::Cuda::synchronize(index as i64);
        }
        let secs = start.elapsed().as_secs_f64() / args.iters.max(1) as f64;
        let algbw = (mib << 20) as f64 / secs / 1e9;
        if ctx.is_master() {
            println!("{:>7} MiB {:>12.3} {:>14.2} {:>14.2}", mib, secs * 1e3, algbw, algbw * 2.0 * (n - 1.0) / n);
        }
        mib *= 2;
    }
    group.barrier()?;
    Ok(())
}
