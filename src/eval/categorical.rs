//! Categorical evaluation of a chat model on a multiple-choice task (NANOCHAT.md §6.3,
//! `run_categorical_eval`): each prompt (`render_for_completion`) in batches padded with `<|bos|>`,
//! one forward pass, and at the last prompt position the argmax over the logits of the answer
//! letters only (§14.19); the task checks the chosen letter. Batches are split over the processes
//! (rank r takes batches r, r+W, …) and the counts summed.
use std::collections::HashMap;

use tch::{Kind, Tensor};

use crate::chat::tasks::{SharedTask, TaskError};
use crate::chat::{ChatRenderer, RenderError};
use crate::dist::{Cluster, DistError, ReduceOp};
use crate::model::Gpt;

#[derive(Debug, thiserror::Error)]
pub enum CategoricalError {
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("{task} example {index}: {source}")]
    Render { task: String, index: usize, source: RenderError },
    #[error("{task} example {index}: {message}")]
    Letters { task: String, index: usize, message: String },
    #[error(transparent)]
    Dist(#[from] DistError),
}

/// Accuracy and counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Accuracy {
    pub passed: u64,
    pub total: u64,
}

impl Accuracy {
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            self.passed as f64 / self.total as f64
        }
    }
}

/// One problem of this process: its response(s) (the chosen letter; each sample's completion) and
/// whether it passed.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProblemOutcome {
    pub index: usize,
    pub responses: Vec<String>,
    pub passed: bool,
}

/// The first `max_problems` (all when None) problems of `task` in batches of `batch_size`: the
/// accuracy over every process, and this process's problems.
pub fn categorical_accuracy(
    model: &Gpt,
    renderer: &ChatRenderer<'_>,
    task: &SharedTask,
    batch_size: usize,
    max_problems: Option<usize>,
    cluster: &Cluster<'_>,
) -> Result<(Accuracy, Vec<ProblemOutcome>), CategoricalError> {
    let bos = renderer.tokens().bos;
    let num = max_problems.map_or(task.len(), |m| m.min(task.len()));
    let batch_size = batch_size.max(1);
    let num_batches = num.div_ceil(batch_size);
    let mut letter_ids: HashMap<String, i64> = HashMap::new();
    let (mut passed, mut total) = (0u64, 0u64);
    let mut outcomes = Vec::new();
    for batch in (cluster.rank()..num_batches).step_by(cluster.world_size()) {
        let (i0, i1) = (batch * batch_size, ((batch + 1) * batch_size).min(num));
        let conversations = (i0..i1).map(|i| task.get(i)).collect::<Result<Vec<_>, _>>()?;
        let prompts = conversations
            .iter()
            .zip(i0..)
            .map(|(c, index)| {
                renderer.render_for_completion(c).map_err(|source| CategoricalError::Render {
                    task: task.name(),
                    index,
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let width = prompts.iter().map(Vec::len).max().unwrap_or(1);
        let mut padded = vec![i64::from(bos); prompts.len() * width];
        for (r, p) in prompts.iter().enumerate() {
            for (j, &id) in p.iter().enumerate() {
                padded[r * width + j] = i64::from(id);
            }
        }
        let device = model.device();
        let ids = Tensor::from_slice(&padded).view([prompts.len() as i64, width as i64]).to_device(device);
        // Only each prompt's last position is scored: the classifier runs on those rows alone.
        let last: Vec<i64> = prompts.iter().map(|p| p.len() as i64 - 1).collect();
        let rows = Tensor::arange(prompts.len() as i64, (Kind::Int64, device));
        let logits = tch::no_grad(|| model.forward_at(&ids, &rows, &Tensor::from_slice(&last).to_device(device)));
        for (r, (conversation, index)) in conversations.iter().zip(i0..).enumerate() {
            let letters: Vec<String> = conversation
                .extra("letters")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .ok_or_else(|| CategoricalError::Letters {
                    task: task.name(),
                    index,
                    message: "the conversation has no answer letters".into(),
                })?;
            let mut ids = Vec::with_capacity(letters.len());
            for letter in &letters {
                if !letter_ids.contains_key(letter) {
                    let encoded = renderer.encoder().encode_ordinary(letter);
                    if encoded.len() != 1 {
                        return Err(CategoricalError::Letters {
                            task: task.name(),
                            index,
                            message: format!("the answer letter {letter:?} is {} tokens, not one", encoded.len()),
                        });
                    }
                    letter_ids.insert(letter.clone(), i64::from(encoded[0]));
                }
                ids.push(letter_ids[letter]);
            }
            let focus = logits.get(r as i64).index_select(0, &Tensor::from_slice(&ids).to_device(device));
            let chosen = focus.argmax(0, false).int64_value(&[]) as usize;
            let correct = task.evaluate(conversation, &letters[chosen])?;
            passed += u64::from(correct);
            total += 1;
            outcomes.push(ProblemOutcome { index, responses: vec![letters[chosen].clone()], passed: correct });
        }
    }
    let sums = cluster.reduce(&[passed as f64, total as f64], ReduceOp::Sum)?;
    Ok((Accuracy { passed: sums[0] as u64, total: sums[1] as u64 }, outcomes))
}
