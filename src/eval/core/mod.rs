//! CORE (NANOCHAT.md §6.1, the DCLM paper's metric; the reference's `core_eval.py` and
//! `base_eval.py`): a base model's in-context accuracy on the tasks of an eval bundle, each
//! centered against its random baseline, averaged.
//!
//! - [`bundle`]: the bundle's `core.yaml` (tasks), `eval_meta_data.csv` (random baselines) and
//!   `eval_data/*.jsonl` (examples), the Random(1337) shuffle and the crop to `max_per_task`;
//! - [`prompts`]: the few-shot draw (Random(1234 + idx).sample) and the whitespace-exact prompts of
//!   the three task types;
//! - [`scoring`]: BOS-prefixed tokens, the answer spans, the batched forward and the per-example
//!   verdict (lowest mean loss, or exact greedy continuation);
//! - [`evaluator`]: every task of a bundle over the processes, the centered accuracies, CORE, and
//!   the results CSV.
pub mod bundle;
pub mod evaluator;
pub mod prompts;
pub mod scoring;

pub use bundle::{CoreBundle, CoreExample, CoreTask, TaskType};
pub use evaluator::{evaluate_bundle, evaluate_task, CoreResults, TaskResult};
pub use scoring::ExampleOutcome;

use std::path::PathBuf;

/// What reading or evaluating a bundle can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("task {task}, example {index}: {message}")]
    Example { task: String, index: usize, message: String },
    #[error("task {task}: {message}")]
    Task { task: String, message: String },
    #[error(transparent)]
    Dist(#[from] crate::dist::DistError),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}
