//! `nanochat base-train` (NANOCHAT.md §4): launch or join the processes, then run the stage in
//! src/train/base.rs.
use super::launch::{launch_or_join, Role};
use crate::cli::{BaseTrainArgs, GlobalOptions};
use crate::dist::Cluster;
use crate::train::{base, StageOptions};

pub fn run(global: &GlobalOptions, args: &BaseTrainArgs) -> anyhow::Result<()> {
    let Role::Worker { ctx, group, device } = launch_or_join(global, &args.launch, "base-train")? else {
        return Ok(());
    };
    let config = global.resolve_config()?;
    let paths = global.paths();
    if ctx.is_master() {
        crate::logging::tee_to_file(&paths.logs().join("base-train.log"));
    }
    let cluster = Cluster { ctx: &ctx, group: group.as_ref(), device };
    let options = StageOptions { resume: args.resume, source_dir: args.init_from.clone() };
    base::run(&config, &paths, &cluster, &options)?;
    Ok(())
}
