//! Speedrun orchestration: the preset's stages in order, each leaving a verifiable record, with
//! skip/redo/resume and `--from`/`--only`/`--force` (DESIGN.md "What a user does").
pub mod digest;
pub mod orchestrator;
pub mod record;
pub mod runner;
pub mod stage;

pub use orchestrator::{Decision, Orchestrator, Selection, SpeedrunError, StageOutcome};
pub use record::StageRecord;
pub use runner::{ProcessRunner, StageRunner};
pub use stage::{pipeline, stage_spec, PipelineOptions, StageSpec, KNOWN_STAGES};
