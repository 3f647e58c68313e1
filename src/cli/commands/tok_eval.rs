//! `nanochat tok-eval` (NANOCHAT.md §1.6): runs the stage in src/eval/tokenizer.rs.
use crate::cli::GlobalOptions;
use crate::eval::tokenizer;

pub fn run(global: &GlobalOptions) -> anyhow::Result<()> {
    let config = global.resolve_config()?;
    let paths = global.paths();
    crate::logging::tee_to_file(&paths.logs().join("tok-eval.log"));
    tokenizer::run(&config, &paths)?;
    Ok(())
}
