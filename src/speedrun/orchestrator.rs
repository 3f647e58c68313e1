//! Runs a preset's stages in order. A stage whose record verifies (same config, same input and
//! output digests, exit 0) is skipped; a stage whose inputs or config changed is redone. A failed
//! stage stops the run with its name and log; finished work is never deleted.
use std::path::PathBuf;
use std::time::Instant;

use super::digest::{sha256_bytes, DigestCache};
use super::record::{StageRecord, RUNNING};
use super::runner::StageRunner;
use super::stage::{StageSpec, UnknownStage};

#[derive(Debug, thiserror::Error)]
pub enum SpeedrunError {
    #[error(transparent)]
    UnknownStage(#[from] UnknownStage),
    #[error("--{flag} {stage}: the preset has no such stage (its stages: {stages})")]
    NotInPipeline { flag: &'static str, stage: String, stages: String },
    #[error("stage `{stage}` failed with exit code {code}; its log: {log}")]
    StageFailed { stage: String, code: i32, log: PathBuf },
    #[error("stage `{stage}`: {context}: {source}")]
    Io { stage: String, context: String, source: std::io::Error },
}

/// Which stages to consider and whether to redo verified ones.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Start at this stage; earlier stages are neither checked nor run.
    pub from: Option<String>,
    /// Consider only this stage.
    pub only: Option<String>,
    /// Run selected stages even when their records verify.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Skip,
    /// `resume`: the stage failed last time with the same configuration and inputs, and it can pick
    /// up where it stopped (its `resume_args` are added to the command line).
    Run {
        reason: String,
        resume: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageOutcome {
    pub stage: String,
    pub decision: Decision,
    pub wall_time_s: f64,
}

pub struct Orchestrator<'a> {
    records_dir: PathBuf,
    logs_dir: PathBuf,
    digests: DigestCache,
    runner: &'a dyn StageRunner,
}

impl<'a> Orchestrator<'a> {
    pub fn new(records_dir: PathBuf, logs_dir: PathBuf, runner: &'a dyn StageRunner) -> Self {
        let digests = DigestCache::load(records_dir.join("digest-cache.json"));
        Orchestrator { records_dir, logs_dir, digests, runner }
    }

    pub fn log_path(&self, stage: &str) -> PathBuf {
        self.logs_dir.join(format!("{stage}.log"))
    }

    /// Whether any stage has left a record (a run in progress or finished).
    pub fn has_records(&self, stages: &[StageSpec]) -> bool {
        stages.iter().any(|s| StageRecord::path(&self.records_dir, &s.name).exists())
    }

    /// The stages `selection` picks, in order.
    pub fn select<'s>(&self, stages: &'s [StageSpec], selection: &Selection) -> Result<&'s [StageSpec], SpeedrunError> {
        let position = |flag: &'static str, name: &str| {
            stages.iter().position(|s| s.name == name).ok_or_else(|| SpeedrunError::NotInPipeline {
                flag,
                stage: name.to_string(),
                stages: stages.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "),
            })
        };
        if let Some(only) = &selection.only {
            let i = position("only", only)?;
            return Ok(&stages[i..=i]);
        }
        match &selection.from {
            Some(from) => Ok(&stages[position("from", from)?..]),
            None => Ok(stages),
        }
    }

    pub fn decide(&mut self, stage: &StageSpec, force: bool) -> Result<Decision, SpeedrunError> {
        let run = |reason: &str| Ok(Decision::Run { reason: reason.to_string(), resume: false });
        if force {
            return run("forced");
        }
        if stage.always_run {
            return run("runs every time");
        }
        let Some(record) = StageRecord::load(&self.records_dir, &stage.name) else {
            return run("no record of an earlier run");
        };
        if record.config_sha256 != config_digest(&stage.config) {
            return run("its configuration changed");
        }
        let inputs = self.digest(stage, &stage.inputs)?;
        if let Some(path) = first_difference(&record.inputs, &inputs) {
            return run(&format!("input changed: {path}"));
        }
        if record.exit_code != 0 {
            let reason = if record.exit_code == RUNNING {
                "the last attempt was interrupted (the speedrun stopped while it ran)".to_string()
            } else {
                format!("the last attempt failed (exit code {})", record.exit_code)
            };
            let resume = !stage.resume_args.is_empty();
            return Ok(Decision::Run { reason: if resume { format!("{reason}; resuming") } else { reason }, resume });
        }
        let outputs = self.digest(stage, &stage.outputs)?;
        if let Some(path) = first_difference(&record.outputs, &outputs) {
            return run(&format!("output changed or missing: {path}"));
        }
        Ok(Decision::Skip)
    }

    /// Runs the selected stages in order, stopping at the first failure.
    pub fn run(&mut self, stages: &[StageSpec], selection: &Selection) -> Result<Vec<StageOutcome>, SpeedrunError> {
        let selected = self.select(stages, selection)?;
        let mut outcomes = Vec::new();
        for (i, stage) in selected.iter().enumerate() {
            let decision = self.decide(stage, selection.force)?;
            let progress = format!("[{}/{}] {}", i + 1, selected.len(), stage.name);
            let wall_time_s = match &decision {
                Decision::Skip => {
                    log::info!("{progress}: done earlier and verified, skipping");
                    0.0
                }
                Decision::Run { reason, resume } => {
                    log::info!("{progress}: running ({reason})");
                    let t = if *resume {
                        let mut resumed = stage.clone();
                        resumed.args.extend(stage.resume_args.iter().cloned());
                        self.execute(&resumed)?
                    } else {
                        self.execute(stage)?
                    };
                    log::info!("{progress}: finished in {t:.1} s");
                    t
                }
            };
            outcomes.push(StageOutcome { stage: stage.name.clone(), decision, wall_time_s });
        }
        let _ = self.digests.save();
        Ok(outcomes)
    }

    fn execute(&mut self, stage: &StageSpec) -> Result<f64, SpeedrunError> {
        let inputs = self.digest(stage, &stage.inputs)?;
        let log = self.log_path(&stage.name);
        let mut record = StageRecord {
            stage: stage.name.clone(),
            config: stage.config.clone(),
            config_sha256: config_digest(&stage.config),
            inputs,
            outputs: Default::default(),
            started: crate::logging::now_timestamp(),
            wall_time_s: 0.0,
            exit_code: RUNNING,
            log: log.clone(),
            nanochat_version: crate::build_info::version_line(),
        };
        // Saved before the stage starts: if this process is killed, the next run finds the attempt
        // unfinished and resumes it where the stage supports that.
        self.save_record(&record)?;
        let clock = Instant::now();
        let code = self.runner.run(stage, &log).map_err(|source| SpeedrunError::Io {
            stage: stage.name.clone(),
            context: "cannot start the stage process".into(),
            source,
        })?;
        record.wall_time_s = clock.elapsed().as_secs_f64();
        record.exit_code = code;
        if code == 0 {
            record.outputs = self.digest(stage, &stage.outputs)?;
        }
        self.save_record(&record)?;
        let _ = self.digests.save();
        if code != 0 {
            return Err(SpeedrunError::StageFailed { stage: stage.name.clone(), code, log });
        }
        Ok(record.wall_time_s)
    }

    fn save_record(&self, record: &StageRecord) -> Result<(), SpeedrunError> {
        record.save(&self.records_dir).map_err(|source| SpeedrunError::Io {
            stage: record.stage.clone(),
            context: format!("cannot write the stage record in {}", self.records_dir.display()),
            source,
        })
    }

    fn digest(
        &mut self,
        stage: &StageSpec,
        paths: &[PathBuf],
    ) -> Result<std::collections::BTreeMap<String, String>, SpeedrunError> {
        self.digests.digest_paths(paths).map_err(|source| SpeedrunError::Io {
            stage: stage.name.clone(),
            context: "cannot hash its files".into(),
            source,
        })
    }
}

pub fn config_digest(config: &serde_json::Value) -> String {
    sha256_bytes(config.to_string().as_bytes())
}

fn first_difference(
    recorded: &std::collections::BTreeMap<String, String>,
    now: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    if let Some((path, _)) = now.iter().find(|(path, digest)| recorded.get(*path) != Some(digest)) {
        return Some(path.clone());
    }
    recorded.keys().find(|path| !now.contains_key(*path)).cloned()
}
