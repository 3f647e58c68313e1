//! The `chat-eval` stage (NANOCHAT.md §6.3, [A'] `scripts/chat_eval.py`): a chat model (mid, sft or
//! rl) on the six chat tasks, and ChatCORE.
//!
//! 1. Settings: the preset's `[chat_eval]` (temperature, max_new_tokens, num_samples, top_k,
//!    batch_size, max_problems), overridable per run.
//! 2. Model: the phase's checkpoint (largest depth, last step, or `--step`), ours or the reference's.
//! 3. Tasks, in the reference's order: ARC-Easy, ARC-Challenge, MMLU (categorical: the letter with
//!    the highest logit after `<|assistant_start|>`, see `categorical`), GSM8K, HumanEval,
//!    SpellingBee (generative: the engine's greedy `generate_batch`, seed 42, each problem passes if
//!    any sample passes; the task's own check, HumanEval's in the code sandbox). Problems are
//!    strided over the processes and the counts summed.
//! 4. ChatCORE when every task ran: the mean of `(acc − b) / (1 − b)`, b = 0.25 for the
//!    four-choice tasks and 0 for the generative ones.
//! 5. Report section "Chat evaluation {source}": the settings, each task's accuracy, ChatCORE.
use std::path::PathBuf;

use super::categorical::{categorical_accuracy, Accuracy, CategoricalError, ProblemOutcome};
use crate::chat::tasks::arc::Arc as ArcTask;
use crate::chat::tasks::catalog::shared;
use crate::chat::tasks::gsm8k::Gsm8k;
use crate::chat::tasks::humaneval::HumanEval;
use crate::chat::tasks::mmlu::Mmlu;
use crate::chat::tasks::spelling::SpellingBee;
use crate::chat::tasks::{EvalType, SharedTask, Slice, TaskError};
use crate::chat::{ChatRenderer, RenderError};
use crate::config::ChatEvalConfig;
use crate::dist::{Cluster, DistError, ReduceOp};
use crate::engine::chat_engine::{CausalModel, Engine, GenerationSettings, SamplingRng};
use crate::engine::loaded_model::{LoadError, LoadedModel, ModelSpec};
use crate::paths::Paths;
use crate::progress::{Progress, Unit};
use crate::report_section::ReportSection;

/// The tasks and their random-guess baselines (§6.3), in the reference's order.
pub const CHAT_TASKS: &[(&str, f64)] = &[
    ("ARC-Easy", 0.25),
    ("ARC-Challenge", 0.25),
    ("MMLU", 0.25),
    ("GSM8K", 0.0),
    ("HumanEval", 0.0),
    ("SpellingBee", 0.0),
];

/// SpellingBee's evaluation size and split (§6.3).
const SPELLING_BEE_SIZE: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ChatEvalError {
    #[error("unknown chat task {0:?}; tasks: ARC-Easy, ARC-Challenge, MMLU, GSM8K, HumanEval, SpellingBee")]
    UnknownTask(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error(transparent)]
    Categorical(#[from] CategoricalError),
    #[error("{task} problem {index}: {source}")]
    Render { task: String, index: usize, source: RenderError },
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),
    #[error(transparent)]
    Dist(#[from] DistError),
    #[error("writing the report section: {0}")]
    Report(#[from] std::io::Error),
    #[error("writing {path}: {source}")]
    Details { path: PathBuf, source: std::io::Error },
}

/// What to evaluate and how.
#[derive(Clone, Debug)]
pub struct ChatEvalOptions {
    /// mid, sft or rl.
    pub source: String,
    pub step: Option<u64>,
    /// A checkpoint directory instead of the phase's.
    pub checkpoint_dir: Option<PathBuf>,
    /// Task names from [`CHAT_TASKS`], in that order.
    pub tasks: Vec<String>,
    pub settings: ChatEvalConfig,
    /// Each problem's responses and result as JSON lines: this file from rank 0, `<file>.rankN`
    /// from the others.
    pub details: Option<PathBuf>,
}

impl ChatEvalOptions {
    /// `names` as `-a` gives them (`|`-separated; None or empty: all), checked and put in the
    /// reference's order.
    pub fn task_list(names: Option<&str>) -> Result<Vec<String>, ChatEvalError> {
        let Some(names) = names.filter(|n| !n.trim().is_empty()) else {
            return Ok(CHAT_TASKS.iter().map(|(name, _)| name.to_string()).collect());
        };
        let asked: Vec<&str> = names.split('|').map(str::trim).collect();
        if let Some(unknown) = asked.iter().find(|a| !CHAT_TASKS.iter().any(|(name, _)| name == *a)) {
            return Err(ChatEvalError::UnknownTask(unknown.to_string()));
        }
        Ok(CHAT_TASKS.iter().filter(|(name, _)| asked.contains(name)).map(|(name, _)| name.to_string()).collect())
    }
}

/// Each task's accuracy, and ChatCORE when every task ran.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatEvalResults {
    pub tasks: Vec<(String, Accuracy)>,
    pub chatcore: Option<f64>,
}

/// The evaluation split of a task (§6.3).
pub fn open_eval_task(paths: &Paths, name: &str) -> Result<SharedTask, ChatEvalError> {
    let all = Slice::default();
    Ok(match name {
        "ARC-Easy" => shared(ArcTask::load(paths, "ARC-Easy", "test")?, all)?,
        "ARC-Challenge" => shared(ArcTask::load(paths, "ARC-Challenge", "test")?, all)?,
        "MMLU" => shared(Mmlu::load(paths, "all", "test")?, all)?,
        "GSM8K" => shared(Gsm8k::load(paths, "main", "test")?, all)?,
        "HumanEval" => shared(HumanEval::load(paths)?, all)?,
        "SpellingBee" => shared(SpellingBee::load(paths, SPELLING_BEE_SIZE, "test")?, all)?,
        other => return Err(ChatEvalError::UnknownTask(other.to_string())),
    })
}

/// ChatCORE (§6.3) of per-task accuracies over the tasks `over` (late 2025: all six of
/// [`CHAT_TASKS`]; 92d63d4: all but SpellingBee), when every one of them is among the results.
pub fn chatcore(results: &[(String, Accuracy)], over: &[String]) -> Option<f64> {
    let centered: Option<Vec<f64>> = CHAT_TASKS
        .iter()
        .filter(|(name, _)| over.iter().any(|o| o == name))
        .map(|(name, baseline)| {
            let (_, acc) = results.iter().find(|(n, _)| n == name)?;
            Some((acc.fraction() - baseline) / (1.0 - baseline))
        })
        .collect();
    centered.map(|c| c.iter().sum::<f64>() / c.len() as f64)
}

pub fn run(paths: &Paths, cluster: &Cluster<'_>, options: &ChatEvalOptions) -> Result<ChatEvalResults, ChatEvalError> {
    // Model.
    let spec = ModelSpec {
        phase: options.source.clone(),
        step: options.step,
        checkpoint_dir: options.checkpoint_dir.clone(),
        tokenizer: None,
    };
    let loaded = LoadedModel::open(paths, &spec, cluster.device)?;
    log::info!("chat-eval: {} ({} task(s))", loaded.describe(), options.tasks.len());
    let renderer = ChatRenderer::new(&loaded.encoder)?;
    let engine = Engine::new(&loaded.model, &loaded.encoder)?;
    let s = &options.settings;
    let max_problems = usize::try_from(s.max_problems).ok();

    // Tasks.
    let mut details = match &options.details {
        Some(path) => {
            let path = match cluster.rank() {
                0 => path.clone(),
                r => PathBuf::from(format!("{}.rank{r}", path.display())),
            };
            let file =
                std::fs::File::create(&path).map_err(|source| ChatEvalError::Details { path: path.clone(), source })?;
            Some((path, std::io::BufWriter::new(file)))
        }
        None => None,
    };
    // HumanEval runs generated code: without a sandbox it is left out, loudly, and ChatCORE with it.
    let mut tasks = options.tasks.clone();
    let mut not_run = None;
    if tasks.iter().any(|t| t == "HumanEval") {
        if let Err(reason) = crate::chat::tasks::humaneval::sandbox_available() {
            log::warn!("HumanEval is NOT evaluated: {reason}");
            tasks.retain(|t| t != "HumanEval");
            not_run = Some(reason);
        }
    }
    let mut results = Vec::with_capacity(tasks.len());
    for name in &tasks {
        let task = open_eval_task(paths, name)?;
        let (accuracy, outcomes) = match task.eval_type() {
            Some(EvalType::Categorical) => {
                categorical_accuracy(&loaded.model, &renderer, &task, s.batch_size as usize, max_problems, cluster)?
            }
            _ => generative_accuracy(&engine, &renderer, &task, s, max_problems, cluster)?,
        };
        log::info!("{name}: {}/{} = {:.2}%", accuracy.passed, accuracy.total, 100.0 * accuracy.fraction());
        if let Some((path, out)) = details.as_mut() {
            use std::io::Write;
            for outcome in &outcomes {
                let line = serde_json::json!({"task": name, "index": outcome.index, "responses": outcome.responses,
                    "passed": outcome.passed});
                writeln!(out, "{line}").map_err(|source| ChatEvalError::Details { path: path.clone(), source })?;
            }
            out.flush().map_err(|source| ChatEvalError::Details { path: path.clone(), source })?;
        }
        results.push((name.clone(), accuracy));
    }
    // ChatCORE is over the preset's tasks (`chat_eval.tasks`), all of which must have run.
    let chatcore = chatcore(&results, &ChatEvalOptions::task_list(s.tasks.as_deref())?);
    if let Some(score) = chatcore {
        log::info!("ChatCORE: {score:.4}");
    }

    // Report.
    if cluster.is_master() {
        let mut section = ReportSection::new(&format!("Chat evaluation {}", options.source))
            .value("Model", loaded.describe())
            .settings(&serde_json::json!({"source": options.source, "tasks": options.tasks.join("|"),
                "temperature": s.temperature, "max_new_tokens": s.max_new_tokens, "num_samples": s.num_samples,
                "top_k": s.top_k, "batch_size": s.batch_size, "max_problems": s.max_problems}));
        for (name, accuracy) in &results {
            section = section.value(name, accuracy.fraction());
        }
        if let Some(score) = chatcore {
            section = section.value("ChatCORE metric", score);
        }
        if let Some(reason) = &not_run {
            section = section.value("HumanEval not run", reason.clone());
        }
        section.write(&paths.report())?;
    }
    Ok(ChatEvalResults { tasks: results, chatcore })
}

/// The first `max_problems` (all when None) problems of a generative task: the reference's
/// `run_generative_eval`, one problem at a time, rank r taking problems r, r+W, ..., every sample
/// checked. Returns the accuracy over every process, and this process's problems.
pub fn generative_accuracy<M: CausalModel>(
    engine: &Engine<'_, M>,
    renderer: &ChatRenderer<'_>,
    task: &SharedTask,
    s: &ChatEvalConfig,
    max_problems: Option<usize>,
    cluster: &Cluster<'_>,
) -> Result<(Accuracy, Vec<ProblemOutcome>), ChatEvalError> {
    let num = max_problems.map_or(task.len(), |m| m.min(task.len()));
    let settings = GenerationSettings {
        num_samples: s.num_samples.max(1) as usize,
        max_tokens: Some(s.max_new_tokens as usize),
        temperature: s.temperature,
        top_k: (s.top_k > 0).then_some(i64::from(s.top_k)),
        seed: 42,
        rng: SamplingRng::Torch,
    };
    let encoder = engine.encoder();
    let mine: Vec<usize> = (cluster.rank()..num).step_by(cluster.world_size()).collect();
    let mut bar = Progress::new(&task.name(), mine.len() as u64, Unit::Items);
    let mut passed = 0u64;
    let mut outcomes = Vec::with_capacity(mine.len());
    for &index in &mine {
        let conversation = task.get(index)?;
        let prompt = renderer.render_for_completion(&conversation).map_err(|source| ChatEvalError::Render {
            task: task.name(),
            index,
            source,
        })?;
        let (rows, _) = engine.generate_batch(&prompt, &settings);
        let mut responses = Vec::with_capacity(rows.len());
        let mut any = false;
        for row in &rows {
            let completion = encoder.decode_lossy(&row[prompt.len()..])?;
            any |= task.evaluate(&conversation, &completion)?;
            responses.push(completion);
        }
        passed += u64::from(any);
        outcomes.push(ProblemOutcome { index, responses, passed: any });
        bar.advance(1);
    }
    bar.finish();
    let sums = cluster.reduce(&[passed as f64, mine.len() as f64], ReduceOp::Sum)?;
    Ok((Accuracy { passed: sums[0] as u64, total: sums[1] as u64 }, outcomes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(passed: u64, total: u64) -> Accuracy {
        Accuracy { passed, total }
    }

    #[test]
    fn task_lists_follow_the_reference_order() {
        assert_eq!(ChatEvalOptions::task_list(None).unwrap().len(), 6);
        assert_eq!(ChatEvalOptions::task_list(Some("GSM8K|ARC-Easy")).unwrap(), vec!["ARC-Easy", "GSM8K"]);
        let e = ChatEvalOptions::task_list(Some("GSM8K|gsm")).unwrap_err();
        assert!(e.to_string().contains("unknown chat task \"gsm\""), "{e}");
    }

    #[test]
    fn chatcore_centers_each_task_and_needs_all_six() {
        let mut results: Vec<(String, Accuracy)> = vec![
            ("ARC-Easy".into(), acc(50, 100)),
            ("ARC-Challenge".into(), acc(25, 100)),
            ("MMLU".into(), acc(100, 100)),
            ("GSM8K".into(), acc(1, 10)),
            ("HumanEval".into(), acc(0, 10)),
        ];
        let all = ChatEvalOptions::task_list(None).unwrap();
        assert_eq!(chatcore(&results, &all), None);
        // 92d63d4's ChatCORE leaves SpellingBee out: the five are enough.
        let five = ChatEvalOptions::task_list(Some("ARC-Easy|ARC-Challenge|MMLU|GSM8K|HumanEval")).unwrap();
        let expected_five = (1.0 / 3.0 + 0.0 + 1.0 + 0.1 + 0.0) / 5.0;
        assert!((chatcore(&results, &five).unwrap() - expected_five).abs() < 1e-12);
        results.push(("SpellingBee".into(), acc(5, 10)));
        // (1/3 + 0 + 1 + 0.1 + 0 + 0.5) / 6
        let expected = (1.0 / 3.0 + 0.0 + 1.0 + 0.1 + 0.0 + 0.5) / 6.0;
        assert!((chatcore(&results, &all).unwrap() - expected).abs() < 1e-12);
    }
}
