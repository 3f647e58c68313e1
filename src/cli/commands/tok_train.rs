//! `nanochat tok-train` (NANOCHAT.md §1.4): runs the stage in src/train/tokenizer.rs.
use crate::cli::{GlobalOptions, TokTrainArgs};
use crate::train::tokenizer;

pub fn run(global: &GlobalOptions, args: &TokTrainArgs) -> anyhow::Result<()> {
    let config = global.resolve_config()?;
    let paths = global.paths();
    crate::logging::tee_to_file(&paths.logs().join("tok-train.log"));
    tokenizer::run(&config, &paths, args.input.as_deref())?;
    Ok(())
}
