//! `nanochat speedrun`: the preset's stages in order, each in its own process, with records that
//! make re-runs skip finished work (see crate::speedrun).
use anyhow::Context;

use crate::cli::{GlobalOptions, SpeedrunArgs};
use crate::report::{self, RunDescription};
use crate::speedrun::{pipeline, Decision, Orchestrator, PipelineOptions, ProcessRunner, Selection};

pub fn run(global: &GlobalOptions, args: &SpeedrunArgs) -> anyhow::Result<()> {
    let config = global.resolve_config()?;
    let paths = global.paths();
    std::fs::create_dir_all(paths.base())
        .with_context(|| format!("creating the base dir {}", paths.base().display()))?;
    crate::logging::tee_to_file(&paths.logs().join("speedrun.log"));

    let mut stages = pipeline(
        &config,
        &paths,
        &PipelineOptions { allow_mismatch: args.allow_mismatch, nproc_per_node: args.nproc_per_node },
    )?;
    if stages.first().map(|s| s.name.as_str()) != Some("doctor") {
        // The preflight always comes first, before anything expensive.
        let doctor = crate::speedrun::stage_spec(
            "doctor",
            &config,
            &paths,
            &PipelineOptions { allow_mismatch: args.allow_mismatch, nproc_per_node: args.nproc_per_node },
        )?;
        stages.insert(0, doctor);
    }
    let resolved = config.write_beside(&paths.speedrun()).context("writing the resolved configuration")?;

    let mut global_args = vec![
        "--base-dir".to_string(),
        paths.base().display().to_string(),
        "--preset".to_string(),
        resolved.display().to_string(),
    ];
    if global.quiet {
        global_args.push("-q".into());
    }
    global_args.extend(std::iter::repeat_n("-v".to_string(), global.verbose as usize));
    let runner =
        ProcessRunner { executable: std::env::current_exe().context("locating the nanochat binary")?, global_args };
    let mut orchestrator = Orchestrator::new(paths.speedrun(), paths.logs(), &runner);

    let selection = Selection { from: args.from.clone(), only: args.only.clone(), force: args.force };
    let fresh_run = !orchestrator.has_records(&stages) || (args.force && args.from.is_none() && args.only.is_none());
    if fresh_run {
        report::reset(&paths.report())?;
    }
    report::write_run_description(
        &paths.report(),
        &RunDescription {
            preset: global.preset.clone(),
            seed: config.run.seed,
            base_dir: paths.base().display().to_string(),
            config_sha256: crate::speedrun::digest::sha256_bytes(config.to_toml().as_bytes()),
            command: reproduce_command(global, &config),
        },
    )?;

    log::info!(
        "speedrun: preset `{}`, {} stage(s), base dir {}",
        config.run.name,
        stages.len(),
        paths.base().display()
    );
    let outcomes = orchestrator.run(&stages, &selection)?;
    for o in &outcomes {
        let what = match &o.decision {
            Decision::Skip => "skipped (verified)".to_string(),
            Decision::Run { .. } => format!("ran in {:.1} s", o.wall_time_s),
        };
        log::info!("  {:12} {what}", o.stage);
    }
    log::info!("speedrun finished; report: {}", paths.report().join("report.md").display());
    Ok(())
}

/// The command that redoes this run: same preset, seed and overrides.
fn reproduce_command(global: &GlobalOptions, config: &crate::config::RunConfig) -> String {
    let mut parts = vec![
        "nanochat speedrun".to_string(),
        format!("--preset {}", global.preset),
        format!("--seed {}", config.run.seed),
    ];
    parts.extend(global.overrides.iter().map(|o| format!("--set '{o}'")));
    parts.join(" ")
}
