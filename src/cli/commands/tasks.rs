//! `nanochat tasks list|show` (NANOCHAT.md §5.2): the chat task datasets and mixtures.
use anyhow::{bail, Context};

use crate::chat::tasks::catalog::{open_task, CATALOG};
use crate::chat::tasks::hf_dataset::download_hint;
use crate::cli::{GlobalOptions, TasksCommand, TasksShowArgs};

pub fn run(global: &GlobalOptions, command: &TasksCommand) -> anyhow::Result<()> {
    match command {
        TasksCommand::List => {
            let paths = global.paths();
            println!("{:<16} {:<22} {:<11} description", "task", "splits", "data");
            for entry in CATALOG {
                let present = crate::chat::tasks::catalog::data_present(&paths, entry.name);
                println!(
                    "{:<16} {:<22} {:<11} {}",
                    entry.name,
                    entry.splits.join(","),
                    if present { "downloaded" } else { "missing" },
                    entry.description
                );
            }
            println!("\nMissing data: {}", download_hint());
            Ok(())
        }
        TasksCommand::Show(args) => show(global, args),
    }
}

fn show(global: &GlobalOptions, args: &TasksShowArgs) -> anyhow::Result<()> {
    let config = global.resolve_config()?;
    let task =
        open_task(&global.paths(), &args.name, args.split.as_deref(), args.size, &config.mid_train, &config.chat_sft)?;
    let len = task.len();
    let (start, end) = match (&args.index, &args.range) {
        (Some(i), _) => (*i, i + 1),
        (None, Some(range)) => parse_range(range, len)?,
        (None, None) => (0, len.min(1)),
    };
    if start >= len && len > 0 || end > len {
        bail!("{}: examples {start}..{end} asked for, the task has {len} (0..{len})", task.name());
    }
    if !args.json {
        eprintln!("{}: {len} examples", task.name());
    }
    for index in start..end {
        let conversation = task.get(index).with_context(|| format!("{} example {index}", task.name()))?;
        if args.json {
            println!("{}", conversation.to_json());
        } else {
            println!("=== {} #{index} ===\n{conversation}", task.name());
        }
    }
    Ok(())
}

/// `A:B`, `A:` (to the end) or `:B`.
fn parse_range(range: &str, len: usize) -> anyhow::Result<(usize, usize)> {
    let (a, b) = range.split_once(':').with_context(|| format!("--range {range:?} is not A:B"))?;
    let parse = |s: &str, default: usize| -> anyhow::Result<usize> {
        if s.trim().is_empty() {
            Ok(default)
        } else {
            s.trim().parse().with_context(|| format!("--range {range:?}: {s:?} is not a number"))
        }
    };
    let (start, end) = (parse(a, 0)?, parse(b, len)?);
    if end < start {
        bail!("--range {range:?}: the end is before the start");
    }
    Ok((start, end))
}
