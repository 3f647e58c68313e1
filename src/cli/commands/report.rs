//! `nanochat report generate|reset`.
use anyhow::Context;

use crate::cli::{GlobalOptions, ReportCommand};
use crate::report::{self, Environment};

pub fn run(global: &GlobalOptions, command: &ReportCommand) -> anyhow::Result<()> {
    let paths = global.paths();
    crate::logging::tee_to_file(&paths.logs().join("report.log"));
    match command {
        ReportCommand::Reset => {
            report::reset(&paths.report())?;
            log::info!("started a new report in {}", paths.report().display());
        }
        ReportCommand::Generate { gpu_hour_cost } => {
            let config = global.resolve_config()?;
            let cost = gpu_hour_cost.unwrap_or(config.report.gpu_hour_cost_usd);
            config.write_beside(&paths.report()).context("writing the resolved configuration")?;
            let path = report::generate(&paths.report(), &Environment::probe(), cost)?;
            log::info!("report written to {}", path.display());
        }
    }
    Ok(())
}
