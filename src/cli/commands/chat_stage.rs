//! `nanochat mid-train`, `nanochat sft` and `nanochat chat-rl` (NANOCHAT.md §5.3-5.5): launch or
//! join the processes, then run the stage in src/train/.
use super::launch::{launch_or_join, Role};
use crate::cli::{ChatStageArgs, GlobalOptions};
use crate::dist::Cluster;
use crate::train::{mid, rl, sft, StageOptions};

#[derive(Clone, Copy)]
pub enum ChatStage {
    Mid,
    Sft,
    Rl,
}

pub fn run(global: &GlobalOptions, args: &ChatStageArgs, stage: ChatStage) -> anyhow::Result<()> {
    let name = match stage {
        ChatStage::Mid => "mid-train",
        ChatStage::Sft => "sft",
        ChatStage::Rl => "chat-rl",
    };
    let Role::Worker { ctx, group, device } = launch_or_join(global, &args.launch, name)? else { return Ok(()) };
    let config = global.resolve_config()?;
    let paths = global.paths();
    if ctx.is_master() {
        crate::logging::tee_to_file(&paths.logs().join(format!("{name}.log")));
    }
    let cluster = Cluster { ctx: &ctx, group: group.as_ref(), device };
    let options = StageOptions { resume: args.resume, source_dir: args.source_dir.clone() };
    match stage {
        ChatStage::Mid => {
            mid::run(&config, &paths, &cluster, &options)?;
        }
        ChatStage::Sft => {
            sft::run(&config, &paths, &cluster, &options)?;
        }
        ChatStage::Rl => {
            rl::run(&config, &paths, &cluster, &options)?;
        }
    }
    Ok(())
}
