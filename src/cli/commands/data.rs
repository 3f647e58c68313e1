//! `nanochat data download | verify | pin`: parses, then runs the data stage in src/train/download.rs.
use std::path::Path;

use crate::cli::{DataCommand, GlobalOptions, PinSource};
use crate::paths::Paths;
use crate::train::download::{self, DownloadRequest, PinFrom, PinRequest};

pub fn run(global: &GlobalOptions, command: &DataCommand) -> anyhow::Result<()> {
    let config = global.resolve_config()?;
    let paths = global.paths();
    match command {
        DataCommand::Download(args) => {
            crate::logging::tee_to_file(&paths.logs().join("data-download.log"));
            let request = DownloadRequest {
                chat_only: args.chat,
                first: args.first,
                background_rest: args.background_rest.then(|| child_global_args(global, &paths)),
                wait: args.wait,
                background_child: args.background_child,
                attempts: args.attempts,
            };
            download::download(&config, &paths, &request)?
        }
        DataCommand::Verify(args) => {
            crate::logging::tee_to_file(&paths.logs().join("data-download.log"));
            download::verify(&config, &paths, args.attempts, args.chat)?
        }
        DataCommand::Pin(args) => {
            let from = match args.from {
                PinSource::Server => PinFrom::Server,
                PinSource::Ledger => PinFrom::Ledger,
                PinSource::Both => PinFrom::Both,
            };
            let request = PinRequest {
                manifest: args.manifest.clone(),
                from,
                ledger: args.ledger.clone(),
                write: args.write,
                output: args.output.clone(),
            };
            download::pin(&config, &paths, &request)?
        }
    }
    Ok(())
}

/// The global options of this process, for the background process.
fn child_global_args(global: &GlobalOptions, paths: &Paths) -> Vec<String> {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()).display().to_string();
    let preset =
        if Path::new(&global.preset).is_file() { absolute(Path::new(&global.preset)) } else { global.preset.clone() };
    let mut args = vec!["--base-dir".to_string(), absolute(paths.base()), "--preset".into(), preset];
    for assignment in &global.overrides {
        args.extend(["--set".to_string(), assignment.clone()]);
    }
    if let Some(seed) = global.seed {
        args.extend(["--seed".to_string(), seed.to_string()]);
    }
    if global.quiet {
        args.push("--quiet".into());
    }
    args.extend((0..global.verbose).map(|_| "--verbose".to_string()));
    args
}
