//! `nanochat base-loss` (NANOCHAT.md §6.2): launch or join the processes, then run the stage in
//! src/eval/base_loss.rs.
use super::launch::{launch_or_join, Role};
use crate::cli::{GlobalOptions, LaunchArgs};
use crate::dist::Cluster;
use crate::eval::base_loss;

pub fn run(global: &GlobalOptions, launch: &LaunchArgs) -> anyhow::Result<()> {
    let Role::Worker { ctx, group, device } = launch_or_join(global, launch, "base-loss")? else { return Ok(()) };
    let config = global.resolve_config()?;
    let paths = global.paths();
    if ctx.is_master() {
        crate::logging::tee_to_file(&paths.logs().join("base-loss.log"));
    }
    base_loss::run(&config, &paths, &Cluster { ctx: &ctx, group: group.as_ref(), device })?;
    Ok(())
}
