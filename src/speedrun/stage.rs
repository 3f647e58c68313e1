//! The stages the orchestrator can run, each described by what it reads, what it writes and the
//! command line that runs it (`nanochat <stage> ...`). Stages are added here as they are built.
use std::path::PathBuf;

use serde_json::Value;

use crate::config::RunConfig;
use crate::paths::Paths;

/// One stage as the orchestrator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    pub name: String,
    /// Arguments after the global options: the subcommand and its flags.
    pub args: Vec<String>,
    pub inputs: Vec<PathBuf>,
    pub outputs: Vec<PathBuf>,
    /// The part of the resolved configuration this stage depends on.
    pub config: Value,
    /// Stages that must look at the present every time (the hardware check, the report).
    pub always_run: bool,
}

/// Options of `nanochat speedrun` that change how stages are invoked.
#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    pub allow_mismatch: bool,
}

/// Every stage this build knows, in pipeline order.
pub const KNOWN_STAGES: &[&str] = &["doctor", "report"];

#[derive(Debug, thiserror::Error)]
#[error("unknown stage `{name}`; stages in this build: {}", KNOWN_STAGES.join(", "))]
pub struct UnknownStage {
    pub name: String,
}

fn section(config: &RunConfig, key: &str) -> Value {
    serde_json::to_value(config).ok().and_then(|v| v.get(key).cloned()).unwrap_or(Value::Null)
}

pub fn stage_spec(
    name: &str,
    config: &RunConfig,
    paths: &Paths,
    options: &PipelineOptions,
) -> Result<StageSpec, UnknownStage> {
    let report_dir = paths.report();
    let spec = match name {
        "doctor" => StageSpec {
            name: name.into(),
            args: std::iter::once("doctor".to_string())
                .chain(options.allow_mismatch.then(|| "--allow-mismatch".to_string()))
                .collect(),
            inputs: vec![],
            outputs: vec![report_dir.join("hardware-check.json")],
            config: section(config, "hardware"),
            always_run: true,
        },
        "report" => StageSpec {
            name: name.into(),
            args: vec!["report".into(), "generate".into()],
            inputs: vec![],
            outputs: vec![report_dir.join("report.md")],
            config: section(config, "report"),
            always_run: true,
        },
        other => return Err(UnknownStage { name: other.to_string() }),
    };
    Ok(spec)
}

/// The stages of a preset, in its order.
pub fn pipeline(config: &RunConfig, paths: &Paths, options: &PipelineOptions) -> Result<Vec<StageSpec>, UnknownStage> {
    config.run.stages.iter().map(|name| stage_spec(name, config, paths, options)).collect()
}
