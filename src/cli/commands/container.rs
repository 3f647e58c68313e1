//! `nanochat container run`: starts the image through the Docker engine (src/container) and exits
//! with the container's exit code.
use std::path::PathBuf;

use anyhow::{bail, Context};

use crate::cli::{ContainerRunArgs, GlobalOptions, DEFAULT_PRESET};
use crate::container::{run_container, CacheVolume, ContainerSpec, RunOptions};

pub fn run(global: &GlobalOptions, args: &ContainerRunArgs) -> anyhow::Result<()> {
    refuse_launcher_run_options(global)?;
    let cache = match CacheVolume::parse(&args.volume) {
        // The engine needs an absolute path and creates a missing one as root; make it ours first.
        CacheVolume::HostDir(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating the cache directory {}", dir.display()))?;
            CacheVolume::HostDir(dir.canonicalize().with_context(|| format!("resolving {}", dir.display()))?)
        }
        named => named,
    };
    let options = RunOptions {
        spec: ContainerSpec {
            image: args.image.clone(),
            image_id: String::new(),
            args: args.args.clone(),
            gpus: args.gpus.clone(),
            cache,
            shm_size: args.shm_size,
            env: args.env.clone(),
            ca_certs: match &args.ca_certs {
                Some(file) => Some(file.canonicalize().with_context(|| format!("--ca-certs {}", file.display()))?),
                None => None,
            },
        },
        report_out: (args.report_out != "-").then(|| PathBuf::from(&args.report_out)),
        keep: args.keep,
        stop_timeout_s: args.stop_timeout,
        name: args.name.clone(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = runtime.block_on(run_container(options))?;
    if let Some(report) = &outcome.report {
        eprintln!("report: {}", report.display());
    }
    if args.keep {
        eprintln!("container kept: {}", outcome.container_id);
    }
    if outcome.exit_code != 0 {
        // Our exit code is the container's, like `docker run`; the stage has already said why.
        drop(runtime);
        std::process::exit(i32::try_from(outcome.exit_code).unwrap_or(1));
    }
    Ok(())
}

/// --preset/--set/--seed before `container` would configure this launcher, which runs no stage; silently
/// dropping them would run the container with other settings than asked for.
fn refuse_launcher_run_options(global: &GlobalOptions) -> anyhow::Result<()> {
    let mut given = Vec::new();
    if global.preset != DEFAULT_PRESET {
        given.push(format!("--preset {} (or NANOCHAT_PRESET)", global.preset));
    }
    given.extend(global.overrides.iter().map(|o| format!("--set {o}")));
    if let Some(seed) = global.seed {
        given.push(format!("--seed {seed}"));
    }
    if !given.is_empty() {
        bail!(
            "{} would apply to this launcher, not to the stage in the container: put run options after the \
             command, e.g. `nanochat container run speedrun --preset smoke --set base_train.depth=4`",
            given.join(", ")
        );
    }
    Ok(())
}
