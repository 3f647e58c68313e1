//! Running a command on several processes: as the launcher (spawn workers) or as a worker (join the
//! process group). Shared by every distributed command.
use anyhow::Context;

use crate::cli::{GlobalOptions, LaunchArgs};
use crate::dist::launcher::{self, LaunchPlan};
use crate::dist::{Backend, DistContext, ProcessGroup};
use crate::hw::cuda_backend;
use crate::hw::device::{self, DeviceChoice};

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
/// A preset that wants CUDA gets it or stops here with the reason (never the CPU instead).
pub fn launch_or_join(global: &GlobalOptions, launch: &LaunchArgs, log_name: &str) -> anyhow::Result<Role> {
    let ctx = DistContext::from_process_env()?;
    let already_worker = ctx.is_distributed() || std::env::var_os("RANK").is_some();
    // The preset's `hardware.device` decides: "cpu" runs on the CPU even where GPUs are visible (the
    // smoke preset), "cuda" on the visible GPUs.
    let config = global.resolve_config()?;
    let choice = DeviceChoice::from_preset(&config.hardware.device);
    if !already_worker {
        // Counting GPUs here creates no CUDA context in the launcher (each rank binds its own device).
        let visible_gpus = match choice {
            DeviceChoice::Cpu => 0,
            _ => cuda_backend::require_devices()
                .map_err(|cause| anyhow::anyhow!("preset `{}` runs on CUDA: {cause}", config.run.name))?,
        };
        let nproc = launch.nproc_per_node.unwrap_or(visible_gpus.max(1));
        if visible_gpus > 0 && nproc > visible_gpus {
            anyhow::bail!(
                "--nproc-per-node {nproc} but {visible_gpus} GPU(s) are visible: one process per GPU \
                 (pass --nproc-per-node {visible_gpus} or less; fewer GPUs mean more gradient accumulation)"
            );
        }
        if nproc * launch.nnodes > 1 {
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
    }
    // Bound to its GPU before the process group starts, so NCCL's communicator lives on the rank's own device.
    let device = device::select(choice, ctx.local_rank)
        .map_err(|cause| anyhow::anyhow!("rank {} of preset `{}` runs on CUDA: {cause}", ctx.rank, config.run.name))?;
    device::share_cores_between_ranks(ctx.local_world_size);
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
