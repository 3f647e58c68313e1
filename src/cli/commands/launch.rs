//! Running a command on several processes: as the launcher (spawn workers) or as a worker (join the
//! process group). Shared by every distributed command.
use anyhow::Context;

use crate::cli::{GlobalOptions, LaunchArgs};
use crate::dist::launcher::{self, LaunchPlan};
use crate::dist::{Backend, DistContext, ProcessGroup};

/// What a distributed command runs as.
pub enum Role {
    /// This process launched the workers, which have all finished successfully.
    LaunchedWorkers,
    /// This process is rank `ctx.rank`; `group` is None for a single process.
    Worker { ctx: DistContext, group: Option<ProcessGroup>, device: tch::Device },
}

/// Collective timeout: a rank that hangs longer than this fails, and the launcher stops the run.
pub const COLLECTIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Launches workers when asked for more than one process and not already a worker; otherwise joins.
pub fn launch_or_join(global: &GlobalOptions, launch: &LaunchArgs, log_name: &str) -> anyhow::Result<Role> {
    let ctx = DistContext::from_process_env().map_err(anyhow::Error::msg)?;
    let already_worker = ctx.is_distributed() || std::env::var_os("RANK").is_some();
    // The preset's `hardware.device` decides: "cpu" runs on the CPU even where GPUs are visible (the
    // smoke preset), anything else uses the visible GPUs.
    let on_cpu = global.resolve_config().map(|c| c.runs_on_cpu()).unwrap_or(false);
    let visible_gpus = if on_cpu { 0 } else { tch::Cuda::device_count().max(0) as usize };
    let nproc = launch.nproc_per_node.unwrap_or(visible_gpus.max(1));
    if !already_worker && nproc * launch.nnodes > 1 {
        let plan = LaunchPlan {
            nproc_per_node: nproc,
            nnodes: launch.nnodes,
            node_rank: launch.node_rank,
            master_addr: launch.master_addr.clone(),
            master_port: launch.master_port,
            log_dir: global.paths().logs().join(log_name),
            all_ranks_to_console: launch.all_ranks_output,
        };
        let exe = std::env::current_exe().context("locating the nanochat binary")?;
        let args: Vec<String> = std::env::args().skip(1).collect();
        launcher::launch(&exe, &args, &plan)?;
        return Ok(Role::LaunchedWorkers);
    }
    let device = if visible_gpus > 0 { tch::Device::Cuda(ctx.local_rank % visible_gpus) } else { tch::Device::Cpu };
    let group = if ctx.is_distributed() {
        let backend = if device.is_cuda() { Backend::Nccl } else { Backend::Gloo };
        Some(
            ProcessGroup::new(backend, &ctx.master_addr, ctx.master_port, ctx.rank, ctx.world_size, COLLECTIVE_TIMEOUT)
                .with_context(|| {
                    format!("rank {} joining the process group at {}:{}", ctx.rank, ctx.master_addr, ctx.master_port)
                })?,
        )
    } else {
        None
    };
    Ok(Role::Worker { ctx, group, device })
}
