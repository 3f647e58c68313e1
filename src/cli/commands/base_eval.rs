//! `nanochat base-eval` (NANOCHAT.md §6.1): launch or join the processes, then run the stage in
//! src/eval/base_eval.rs.
use super::launch::{launch_or_join, Role};
use crate::cli::{BaseEvalArgs, GlobalOptions};
use crate::dist::Cluster;
use crate::eval::base_eval::{self, BaseEvalOptions};

pub fn run(global: &GlobalOptions, args: &BaseEvalArgs) -> anyhow::Result<()> {
    let Role::Worker { ctx, group, device } = launch_or_join(global, &args.launch, "base-eval")? else { return Ok(()) };
    let config = global.resolve_config()?;
    let paths = global.paths();
    if ctx.is_master() {
        crate::logging::tee_to_file(&paths.logs().join("base-eval.log"));
    }
    let cluster = Cluster { ctx: &ctx, group: group.as_ref(), device };
    let options = BaseEvalOptions {
        bundle: args.bundle.clone(),
        max_per_task: args.max_per_task,
        step: args.step,
        source_dir: args.source_dir.clone(),
    };
    base_eval::run(&config, &paths, &cluster, &options)?;
    Ok(())
}
