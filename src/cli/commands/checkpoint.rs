//! `nanochat checkpoint convert|export`: moves weights between our safetensors checkpoints and the
//! reference's `.pt` state_dicts (same tensor names, NANOCHAT.md §3.2, §8.1).
use std::path::Path;

use anyhow::Context;

use crate::checkpoint;
use crate::cli::{CheckpointCommand, GlobalOptions};

pub fn run(global: &GlobalOptions, command: &CheckpointCommand) -> anyhow::Result<()> {
    match command {
        CheckpointCommand::Convert { from, to } => convert(from, to),
        CheckpointCommand::Export { phase, step, to } => {
            let config = global.resolve_config()?;
            let dir = global.paths().checkpoints(phase, config.base_train.depth);
            let step = match step {
                Some(s) => *s,
                None => checkpoint::latest_step(&dir).with_context(|| format!("no checkpoint in {}", dir.display()))?,
            };
            convert(&checkpoint::model_path(&dir, step), to)
        }
    }
}

/// Reads weights by the source's extension and writes them by the target's, names sorted.
fn convert(from: &Path, to: &Path) -> anyhow::Result<()> {
    let mut named: Vec<(String, tch::Tensor)> = checkpoint::read_tensors(from)?.into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    checkpoint::write_tensors(to, &named)?;
    log::info!("wrote {} tensors from {} to {}", named.len(), from.display(), to.display());
    Ok(())
}
