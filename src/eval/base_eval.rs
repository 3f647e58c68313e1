//! The `base-eval` stage (NANOCHAT.md §6.1, the reference's `base_eval.py`): CORE of a base model.
//!
//! Reads top to bottom like the reference's script: the model (the last step of the largest-depth
//! base checkpoint, ours or the reference's, or `--step`, or `--source-dir`) and its tokenizer; the
//! bundle (`--bundle DIR`, else `<base>/eval_bundle/`, downloaded and unpacked on first use, the
//! smoke preset's from its stand-in); every task over the processes on its first `max_per_task`
//! shuffled examples (src/eval/core/); then, on rank 0, `base_eval/base_model_XXXXXX.csv` and the
//! report section "Base model evaluation" (`Model`, `CORE metric`, then each task's centered
//! accuracy), whose `CORE metric` fills the summary table's CORE cell.
use std::path::PathBuf;
use std::time::Instant;

use crate::config::RunConfig;
use crate::dist::Cluster;
use crate::download::bundled_manifests::SMOKE_MANIFEST_NAME;
use crate::download::eval_bundle::{ensure_eval_bundle, BundleSource, EvalBundleError};
use crate::engine::loaded_model::{LoadError, LoadedModel, ModelSpec};
use crate::eval::core::evaluator::default_batch_tokens;
use crate::eval::core::{evaluate_bundle, CoreBundle, CoreError, CoreResults};
use crate::paths::Paths;
use crate::report_section::ReportSection;

/// Why `base-eval` stopped.
#[derive(Debug, thiserror::Error)]
pub enum BaseEvalError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Bundle(#[from] EvalBundleError),
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// The report section this stage writes (its `CORE metric` feeds the summary table).
pub const SECTION: &str = "Base model evaluation";

/// What `nanochat base-eval` takes besides the preset.
#[derive(Clone, Debug, Default)]
pub struct BaseEvalOptions {
    /// Evaluate this bundle directory (same layout as eval_bundle/) instead of the base dir's.
    pub bundle: Option<PathBuf>,
    /// Examples per task (≤ 0: all); default `base_eval.max_per_task`.
    pub max_per_task: Option<i64>,
    /// The checkpoint step (default: the last).
    pub step: Option<u64>,
    /// A checkpoint directory instead of the largest-depth base one.
    pub source_dir: Option<PathBuf>,
}

/// Where a preset's bundle comes from: the smoke corpus's runs use the stand-in, the others the
/// manifest's URL (or `data.mirror_url`).
pub fn bundle_source(config: &RunConfig) -> BundleSource {
    if config.data.manifest == SMOKE_MANIFEST_NAME {
        BundleSource::SmokeStandIn
    } else {
        BundleSource::Manifest { mirror_url: config.data.mirror_url.clone() }
    }
}

/// The crop of `max_per_task` as the reference applies it: only a positive count crops.
pub fn examples_per_task(max_per_task: i64) -> Option<usize> {
    (max_per_task > 0).then_some(max_per_task as usize)
}

pub fn run(
    config: &RunConfig,
    paths: &Paths,
    cluster: &Cluster<'_>,
    options: &BaseEvalOptions,
) -> Result<CoreResults, BaseEvalError> {
    // The model and its tokenizer (tok/, or the reference's tokenizer/ in a base dir it wrote).
    let spec = ModelSpec {
        phase: "base".into(),
        step: options.step,
        checkpoint_dir: options.source_dir.clone(),
        tokenizer: None,
    };
    let LoadedModel { model, encoder, source } = LoadedModel::open(paths, &spec, cluster.device)?;
    let model_name = format!("base_model (step {})", source.step);
    log::info!("evaluating {model_name} of {}", source.dir.display());

    // The bundle.
    let bundle_dir = match &options.bundle {
        Some(dir) => dir.clone(),
        None => ensure_eval_bundle(paths, &bundle_source(config))?,
    };
    let bundle = CoreBundle::open(&bundle_dir)?;
    let max_per_task = examples_per_task(options.max_per_task.unwrap_or(config.base_eval.max_per_task));
    log::info!(
        "{} task(s) of {}, {} examples per task",
        bundle.tasks.len(),
        bundle_dir.display(),
        max_per_task.map_or("all".to_string(), |m| format!("at most {m}"))
    );

    // Every task.
    let started = Instant::now();
    let results =
        evaluate_bundle(&model, &encoder, &bundle, max_per_task, cluster, default_batch_tokens(cluster.device))?;
    let seconds = started.elapsed().as_secs_f64();
    log::info!(
        "CORE metric: {:.4} ({} examples in {seconds:.2}s, {:.1} examples/s)",
        results.core,
        results.examples(),
        results.examples() as f64 / seconds.max(1e-9)
    );

    // The CSV and the report section.
    if cluster.is_master() {
        let csv_path = paths.base_eval().join(format!("base_model_{:06}.csv", source.step));
        std::fs::create_dir_all(paths.base_eval())
            .map_err(|source| BaseEvalError::Write { path: paths.base_eval(), source })?;
        results.write_csv(&csv_path)?;
        log::info!("Model: {model_name} ({})\n{}", csv_path.display(), results.to_csv());
        let mut section = ReportSection::new(SECTION).value("Model", model_name).value("CORE metric", results.core);
        for task in &results.tasks {
            section = section.value(&task.label, task.centered);
        }
        section.write(&paths.report()).map_err(|source| BaseEvalError::Write { path: paths.report(), source })?;
    }
    Ok(results)
}
