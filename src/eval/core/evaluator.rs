//! Evaluating a bundle (NANOCHAT.md §6.1, `evaluate_task` / `evaluate_model`): each task's examples
//! strided over the processes (rank r takes examples r, r+W, …), rendered with their few-shot
//! examples, tokenized, scored in batches of about `batch_tokens` tokens (this rank's examples
//! sorted by length so a batch pads little), the 0/1 correctness vector summed over the processes;
//! accuracy = its mean (in float32, as the reference's tensor mean), centered against the task's
//! random baseline; CORE = the mean of the centered accuracies. Also the results CSV of
//! `base_eval.py`.
use std::path::Path;
use std::time::Instant;

use super::bundle::{CoreBundle, CoreExample, CoreTask};
use super::prompts::{fewshot_indices, render_prompts};
use super::scoring::{gold_of, score_batch, tokenize, ExampleOutcome, TokenizedExample};
use super::CoreError;
use crate::dist::{Cluster, ReduceOp};
use crate::model::Gpt;
use crate::progress::{suspend_bars, Progress, Unit};
use crate::tokenizer::BpeEncoder;

/// Tokens (rows × longest row) per forward pass by default: on CPU, and on a GPU.
pub const CPU_BATCH_TOKENS: usize = 4096;
pub const CUDA_BATCH_TOKENS: usize = 32768;

/// The default batch size in tokens for `device`.
pub fn default_batch_tokens(device: tch::Device) -> usize {
    if device.is_cuda() {
        CUDA_BATCH_TOKENS
    } else {
        CPU_BATCH_TOKENS
    }
}

/// One task's result.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskResult {
    pub label: String,
    pub accuracy: f64,
    pub centered: f64,
    /// Correctness of every example (all processes').
    pub correct: Vec<bool>,
    /// This process's verdicts with the mean losses (None for other processes' examples).
    pub outcomes: Vec<Option<ExampleOutcome>>,
    pub seconds: f64,
}

/// Every task's result and CORE.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreResults {
    pub tasks: Vec<TaskResult>,
    pub core: f64,
}

impl CoreResults {
    /// From the task results: CORE = mean of the centered accuracies.
    pub fn new(tasks: Vec<TaskResult>) -> Self {
        let core = tasks.iter().map(|t| t.centered).sum::<f64>() / tasks.len() as f64;
        CoreResults { tasks, core }
    }

    pub fn examples(&self) -> usize {
        self.tasks.iter().map(|t| t.correct.len()).sum()
    }

    /// The reference's CSV: `Task, Accuracy, Centered` (columns padded to 35, 10, 10), one row per
    /// task, then `CORE`.
    pub fn to_csv(&self) -> String {
        let mut csv = format!("{:<35}, {:<10}, {:<10}\n", "Task", "Accuracy", "Centered");
        for t in &self.tasks {
            csv += &format!("{:<35}, {:<10.6}, {:<10.6}\n", t.label, t.accuracy, t.centered);
        }
        csv += &format!("{:<35}, {:<10}, {:<10.6}\n", "CORE", "", self.core);
        csv
    }

    pub fn write_csv(&self, path: &Path) -> Result<(), CoreError> {
        crate::fsutil::write_atomic(path, self.to_csv().as_bytes())
            .map_err(|source| CoreError::Write { path: path.to_path_buf(), source })
    }
}

/// Evaluates every task of `bundle` on its first `max_per_task` shuffled examples (all when None).
pub fn evaluate_bundle(
    model: &Gpt,
    encoder: &BpeEncoder,
    bundle: &CoreBundle,
    max_per_task: Option<usize>,
    cluster: &Cluster<'_>,
    batch_tokens: usize,
) -> Result<CoreResults, CoreError> {
    let mut results = Vec::with_capacity(bundle.tasks.len());
    for task in &bundle.tasks {
        let examples = bundle.examples(task, max_per_task)?;
        let result = evaluate_task(model, encoder, task, &examples, cluster, batch_tokens)?;
        suspend_bars(|| {
            log::info!(
                "{} ({}-shot, {}, {} examples): accuracy {:.4} | centered {:.4} | {:.2}s",
                task.label,
                task.num_fewshot,
                task.task_type.name(),
                examples.len(),
                result.accuracy,
                result.centered,
                result.seconds
            )
        });
        results.push(result);
    }
    if results.is_empty() {
        return Err(CoreError::Format {
            path: bundle.dir.join(crate::download::eval_bundle::CORE_YAML),
            message: "lists no task".into(),
        });
    }
    Ok(CoreResults::new(results))
}

/// Evaluates one task's `examples` (already shuffled and cropped) over the processes.
pub fn evaluate_task(
    model: &Gpt,
    encoder: &BpeEncoder,
    task: &CoreTask,
    examples: &[CoreExample],
    cluster: &Cluster<'_>,
    batch_tokens: usize,
) -> Result<TaskResult, CoreError> {
    let started = Instant::now();
    let n = examples.len();
    let bos = encoder.bos_id().map_err(|e| CoreError::Task { task: task.label.clone(), message: e.to_string() })?;
    let example_error = |index: usize, message: String| CoreError::Example { task: task.label.clone(), index, message };

    // This process's examples, tokenized with their few-shot prompts.
    let mine: Vec<usize> = (cluster.rank()..n).step_by(cluster.world_size()).collect();
    let mut tokenized: Vec<(usize, TokenizedExample)> = Vec::with_capacity(mine.len());
    for &idx in &mine {
        let shots = fewshot_indices(idx, n, task.num_fewshot).map_err(|e| example_error(idx, e.to_string()))?;
        let fewshot: Vec<&CoreExample> = shots.iter().map(|&i| &examples[i]).collect();
        let prompts = render_prompts(&examples[idx], &task.delimiter, &fewshot);
        let tokens = tokenize(encoder, bos, task.task_type, &prompts).map_err(|e| example_error(idx, e.to_string()))?;
        tokenized.push((idx, tokens));
    }
    // Longest first, so each batch pads to about its own length.
    tokenized.sort_by_key(|(idx, t)| (std::cmp::Reverse(t.rows.iter().map(Vec::len).max().unwrap_or(0)), *idx));

    let mut outcomes: Vec<Option<ExampleOutcome>> = vec![None; n];
    let mut progress = Progress::new(&format!("CORE {}", task.label), mine.len() as u64, Unit::Items);
    let mut next = 0;
    while next < tokenized.len() {
        // Greedy: add examples while rows × widest row stays within the budget (at least one).
        let (mut rows, mut width, mut end) = (0usize, 0usize, next);
        while end < tokenized.len() {
            let t = &tokenized[end].1;
            let w = width.max(t.rows.iter().map(Vec::len).max().unwrap_or(0));
            if end > next && (rows + t.rows.len()) * w > batch_tokens {
                break;
            }
            (rows, width, end) = (rows + t.rows.len(), w, end + 1);
        }
        let batch: Vec<&TokenizedExample> = tokenized[next..end].iter().map(|(_, t)| t).collect();
        let golds: Vec<usize> = tokenized[next..end].iter().map(|(idx, _)| gold_of(&examples[*idx])).collect();
        for ((idx, _), outcome) in
            tokenized[next..end].iter().zip(score_batch(model, bos, task.task_type, &batch, &golds))
        {
            outcomes[*idx] = Some(outcome);
        }
        progress.advance((end - next) as u64);
        next = end;
    }
    progress.finish();

    let local: Vec<f64> = outcomes.iter().map(|o| f64::from(u8::from(o.as_ref().is_some_and(|o| o.correct)))).collect();
    let summed = if local.is_empty() { local } else { cluster.reduce(&local, ReduceOp::Sum)? };
    let correct: Vec<bool> = summed.iter().map(|&c| c > 0.5).collect();
    // The reference averages a float32 tensor: the same rounding keeps the printed digits identical.
    let passed = correct.iter().filter(|&&c| c).count();
    let accuracy = if n == 0 { f64::NAN } else { f64::from(passed as f32 / n as f32) };
    Ok(TaskResult {
        label: task.label.clone(),
        accuracy,
        centered: task.centered(accuracy),
        correct,
        outcomes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(label: &str, accuracy: f64, centered: f64) -> TaskResult {
        TaskResult { label: label.into(), accuracy, centered, correct: vec![], outcomes: vec![], seconds: 0.0 }
    }

    #[test]
    fn csv_matches_the_reference_layout() {
        let results = CoreResults::new(vec![result("hellaswag", 0.5, 1.0 / 3.0), result("lambada_openai", 0.25, 0.25)]);
        assert!((results.core - (1.0 / 3.0 + 0.25) / 2.0).abs() < 1e-12);
        let csv = results.to_csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], format!("{:<35}, Accuracy  , Centered  ", "Task"));
        assert_eq!(lines[1], format!("{:<35}, 0.500000  , 0.333333  ", "hellaswag"));
        assert_eq!(lines[3], format!("{:<35}, {:<10}, 0.291667  ", "CORE", ""));
        assert_eq!(lines.len(), 4);
    }
}
