//! Scoring CORE examples (NANOCHAT.md §6.1): each prompt tokenized on its own with `<|bos|>` in
//! front; the span of the answer in each row (multiple choice: after the tokens all choices share;
//! schema: the tokens all options share at the end; language modeling: the tokens the prompt with
//! the continuation adds to the one without, which must be a strict prefix of it); rows of several
//! examples in one forward pass, right-padded with `<|bos|>` (causal attention: padding never
//! changes a real position). The per-position cross-entropy of the next token over a span gives
//! its mean loss; multiple choice and schema pick the option with the lowest mean loss (the first
//! of equals; an empty span's mean is NaN, never lower than anything, as Python's `min`), language
//! modeling is right when the greedy prediction at every span position is the next token.
use tch::{Device, Kind, Tensor};

use super::bundle::{CoreExample, ExampleError, TaskType};
use crate::model::Gpt;
use crate::tokenizer::BpeEncoder;

/// The rows of one example and the span [start, end) of the answer in each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedExample {
    pub rows: Vec<Vec<u32>>,
    pub starts: Vec<usize>,
    pub ends: Vec<usize>,
}

/// The verdict on one example.
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleOutcome {
    pub correct: bool,
    /// Mean loss over each row's span (multiple choice and schema; NaN for an empty span).
    pub mean_losses: Vec<f64>,
}

/// Tokenizes the prompts of an example of `task_type` (from [`render_prompts`](super::prompts::render_prompts)).
pub fn tokenize(
    encoder: &BpeEncoder,
    bos: u32,
    task_type: TaskType,
    prompts: &[String],
) -> Result<TokenizedExample, ExampleError> {
    let rows: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| {
            let mut ids = Vec::with_capacity(p.len() / 3 + 2);
            ids.push(bos);
            encoder.encode_ordinary_into(p, &mut ids);
            ids
        })
        .collect();
    let ends: Vec<usize> = rows.iter().map(Vec::len).collect();
    match task_type {
        TaskType::MultipleChoice => {
            let start = common_length(&rows, false);
            Ok(TokenizedExample { starts: vec![start; rows.len()], rows, ends })
        }
        TaskType::Schema => {
            let suffix = common_length(&rows, true);
            Ok(TokenizedExample { starts: ends.iter().map(|e| e - suffix).collect(), rows, ends })
        }
        TaskType::LanguageModeling => {
            let [without, with] = <[Vec<u32>; 2]>::try_from(rows).map_err(|_| ExampleError::NotTwoPrompts)?;
            let (start, end) = (without.len(), with.len());
            if start >= end || with[..start] != without[..] {
                return Err(ExampleError::NotAPrefix);
            }
            Ok(TokenizedExample { rows: vec![with], starts: vec![start], ends: vec![end] })
        }
    }
}

/// Length of the prefix (or, `from_end`, the suffix) every row shares.
pub fn common_length(rows: &[Vec<u32>], from_end: bool) -> usize {
    let min_len = rows.iter().map(Vec::len).min().unwrap_or(0);
    let at = |row: &Vec<u32>, i: usize| if from_end { row[row.len() - 1 - i] } else { row[i] };
    (0..min_len).find(|&i| rows.iter().any(|r| at(r, i) != at(&rows[0], i))).unwrap_or(min_len)
}

/// The positions whose next token a row's span [start, end) scores: start−1 .. end−2 (none when
/// the span is empty or starts at 0, as the reference's slice `[start-1:end-1]` then is).
fn span_positions(start: usize, end: usize) -> std::ops::Range<usize> {
    if start == 0 || start >= end {
        0..0
    } else {
        start - 1..end - 1
    }
}

/// Scores `examples` (all of `task_type`, tokenized) in one forward pass; `golds` are the right
/// options (ignored for language modeling).
pub fn score_batch(
    model: &Gpt,
    bos: u32,
    task_type: TaskType,
    examples: &[&TokenizedExample],
    golds: &[usize],
) -> Vec<ExampleOutcome> {
    let rows: Vec<&Vec<u32>> = examples.iter().flat_map(|e| e.rows.iter()).collect();
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(1);
    let mut ids = vec![i64::from(bos); rows.len() * width];
    let (mut at_rows, mut at_positions, mut targets) = (Vec::new(), Vec::new(), Vec::new());
    let mut row_index = 0i64;
    for example in examples {
        for ((row, &start), &end) in example.rows.iter().zip(&example.starts).zip(&example.ends) {
            let offset = row_index as usize * width;
            for (j, &id) in row.iter().enumerate() {
                ids[offset + j] = i64::from(id);
            }
            for p in span_positions(start, end) {
                at_rows.push(row_index);
                at_positions.push(p as i64);
                targets.push(i64::from(row[p + 1]));
            }
            row_index += 1;
        }
    }
    let (losses, predictions) = if targets.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        tch::no_grad(|| {
            let device = model.device();
            let idx = Tensor::from_slice(&ids).view([rows.len() as i64, width as i64]).to_device(device);
            let logits = model.forward_at(
                &idx,
                &Tensor::from_slice(&at_rows).to_device(device),
                &Tensor::from_slice(&at_positions).to_device(device),
            );
            let target = Tensor::from_slice(&targets).to_device(device);
            let losses =
                logits.log_softmax(-1, Kind::Float).gather(1, &target.unsqueeze(1), false).neg().squeeze_dim(1);
            let predictions = logits.argmax(-1, false);
            let losses: Vec<f32> = Vec::try_from(losses.to_device(Device::Cpu)).unwrap_or_default();
            let predictions: Vec<i64> = Vec::try_from(predictions.to_device(Device::Cpu)).unwrap_or_default();
            (losses, predictions)
        })
    };
    // Walk the rows again in the same order, consuming each row's span positions.
    let mut cursor = 0usize;
    examples
        .iter()
        .zip(golds)
        .map(|(example, &gold)| {
            let mut mean_losses = Vec::with_capacity(example.rows.len());
            let mut all_greedy = true;
            for (&start, &end) in example.starts.iter().zip(&example.ends) {
                let n = span_positions(start, end).len();
                let span = cursor..cursor + n;
                cursor += n;
                let sum: f64 = losses[span.clone()].iter().map(|&l| f64::from(l)).sum();
                mean_losses.push(if n == 0 { f64::NAN } else { sum / n as f64 });
                all_greedy &= predictions[span.clone()] == targets[span];
            }
            match task_type {
                TaskType::LanguageModeling => ExampleOutcome { correct: all_greedy, mean_losses },
                _ => ExampleOutcome { correct: python_argmin(&mean_losses) == gold, mean_losses },
            }
        })
        .collect()
}

/// `values.index(min(values))` in Python: the first value strictly below every earlier choice; a NaN
/// first value stays chosen (nothing compares below it).
pub fn python_argmin(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate().skip(1) {
        if v < values[best] {
            best = i;
        }
    }
    best
}

/// The rendered options' right answer (0 for language modeling, which has none).
pub fn gold_of(example: &CoreExample) -> usize {
    match example {
        CoreExample::MultipleChoice { gold, .. } | CoreExample::Schema { gold, .. } => *gold,
        CoreExample::LanguageModeling { .. } => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_prefix_and_suffix() {
        let rows = vec![vec![1, 2, 3, 4], vec![1, 2, 5, 4], vec![1, 2, 3]];
        assert_eq!(common_length(&rows, false), 2);
        assert_eq!(common_length(&rows, true), 0);
        let rows = vec![vec![9, 1, 7, 8], vec![9, 2, 2, 7, 8]];
        assert_eq!(common_length(&rows, true), 2);
        let same = vec![vec![1, 2], vec![1, 2]];
        assert_eq!(common_length(&same, false), 2);
        assert_eq!(common_length(&[vec![1, 2, 3], vec![1, 2]], false), 2, "one row is a prefix of the other");
    }

    #[test]
    fn argmin_follows_python_min_then_index() {
        assert_eq!(python_argmin(&[2.0, 1.0, 1.0]), 1);
        assert_eq!(python_argmin(&[f64::NAN, 0.5]), 0);
        assert_eq!(python_argmin(&[0.7, f64::NAN, 0.5]), 2);
        assert_eq!(python_argmin(&[3.0]), 0);
    }

    #[test]
    fn spans_follow_the_reference_slices() {
        assert_eq!(span_positions(3, 6), 2..5);
        assert_eq!(span_positions(4, 4), 0..0);
        assert_eq!(span_positions(0, 4), 0..0, "[-1:end-1] is empty");
    }
}
