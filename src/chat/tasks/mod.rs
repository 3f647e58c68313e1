//! The task datasets of the chat stages (NANOCHAT.md §5.2): each turns rows of a dataset into
//! conversations, in the reference's order (the `datasets` shuffle with seed 42, Appendix A), with
//! the reference's logical slicing (start, stop, step) and answer checking. `TaskMixture` interleaves
//! several tasks with `random.Random(42).shuffle`; listing a task twice oversamples it.
pub mod arc;
pub mod catalog;
pub mod custom_json;
pub mod gsm8k;
pub mod hf_dataset;
pub mod humaneval;
pub mod mixture;
pub mod mmlu;
pub mod smoltalk;
pub mod spelling;

use std::path::PathBuf;
use std::sync::Arc;

use super::conversation::Conversation;

pub use mixture::TaskMixture;

/// How a task is evaluated (§6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalType {
    /// Pick among the answer letters by the model's logits.
    Categorical,
    /// Sample a completion and check it.
    Generative,
}

#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{what} is missing: no {expected} in {path}; {hint}")]
    MissingData { what: String, expected: String, path: PathBuf, hint: String },
    #[error(transparent)]
    Rows(#[from] crate::data::parquet_rows::ParquetRowsError),
    #[error("{task}: row {row}: {message}")]
    BadRow { task: String, row: usize, message: String },
    #[error("{path}:{line}: {message}")]
    BadLine { path: PathBuf, line: usize, message: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{task}: index {index} is out of range (the task has {len} examples)")]
    OutOfRange { task: String, index: usize, len: usize },
    #[error("{task}: example {index} is row {row} of a dataset of {rows} rows: the slice's stop is past its end")]
    PastTheEnd { task: String, index: usize, row: usize, rows: usize },
    #[error("{0}")]
    InvalidArgs(String),
    #[error("{task} cannot evaluate a response here: {reason}")]
    NotEvaluable { task: String, reason: String },
}

/// One task: a list of conversations.
pub trait Task: Send + Sync {
    /// A short name for logs and errors, e.g. `ARC-Easy/train`.
    fn name(&self) -> String;
    /// Number of examples (after slicing).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Example `index` (0 ≤ index < len).
    fn get(&self, index: usize) -> Result<Conversation, TaskError>;
    fn eval_type(&self) -> Option<EvalType> {
        None
    }
    /// Whether `response` answers the conversation's question (the task's `evaluate`).
    fn evaluate(&self, _conversation: &Conversation, _response: &str) -> Result<bool, TaskError> {
        Err(TaskError::NotEvaluable { task: self.name(), reason: "it has no evaluation".into() })
    }
    /// The reward of `response` in RL (§5.5): 1.0 when `evaluate` accepts it, else 0.0 (GSM8K's and
    /// SpellingBee's `reward`).
    fn reward(&self, conversation: &Conversation, response: &str) -> Result<f64, TaskError> {
        Ok(if self.evaluate(conversation, response)? { 1.0 } else { 0.0 })
    }
}

pub type SharedTask = Arc<dyn Task>;

/// A task's examples as the reference indexes them: `len` physical examples, `get(i)` on a physical
/// index. Slicing turns it into a [`Task`].
pub trait Examples: Send + Sync {
    fn name(&self) -> String;
    fn num_examples(&self) -> usize;
    fn example(&self, index: usize) -> Result<Conversation, TaskError>;
    fn eval_type(&self) -> Option<EvalType> {
        None
    }
    fn evaluate(&self, conversation: &Conversation, _response: &str) -> Result<bool, TaskError> {
        let _ = conversation;
        Err(TaskError::NotEvaluable { task: self.name(), reason: "it has no evaluation".into() })
    }
}

/// The reference's logical view `(start, stop, step)` of a task (`Task.__init__`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slice {
    pub start: usize,
    pub stop: Option<usize>,
    pub step: usize,
}

impl Default for Slice {
    fn default() -> Self {
        Slice { start: 0, stop: None, step: 1 }
    }
}

impl Slice {
    pub fn stop(stop: usize) -> Self {
        Slice { stop: Some(stop), ..Slice::default() }
    }

    pub fn validate(&self) -> Result<(), TaskError> {
        if self.step == 0 {
            return Err(TaskError::InvalidArgs("a slice step must be at least 1".into()));
        }
        if let Some(stop) = self.stop {
            if stop < self.start {
                return Err(TaskError::InvalidArgs(format!("slice stop {stop} is before start {}", self.start)));
            }
        }
        Ok(())
    }

    /// `ceil((stop - start) / step)` with `stop` defaulting to the number of examples; like the
    /// reference, a stop past the end does not shorten the view.
    pub fn len(&self, num_examples: usize) -> usize {
        let stop = self.stop.unwrap_or(num_examples);
        stop.saturating_sub(self.start).div_ceil(self.step)
    }
}

/// A task's examples seen through a slice.
pub struct Sliced<E> {
    pub examples: E,
    pub slice: Slice,
}

impl<E: Examples> Sliced<E> {
    pub fn new(examples: E, slice: Slice) -> Result<Self, TaskError> {
        slice.validate()?;
        Ok(Sliced { examples, slice })
    }
}

impl<E: Examples> Task for Sliced<E> {
    fn name(&self) -> String {
        let s = self.slice;
        if s == Slice::default() {
            self.examples.name()
        } else {
            let stop = s.stop.map(|x| x.to_string()).unwrap_or_default();
            let step = if s.step == 1 { String::new() } else { format!(":{}", s.step) };
            format!("{}[{}:{stop}{step}]", self.examples.name(), s.start)
        }
    }
    fn len(&self) -> usize {
        self.slice.len(self.examples.num_examples())
    }
    fn get(&self, index: usize) -> Result<Conversation, TaskError> {
        let len = self.len();
        if index >= len {
            return Err(TaskError::OutOfRange { task: self.name(), index, len });
        }
        let physical = self.slice.start + index * self.slice.step;
        let rows = self.examples.num_examples();
        if physical >= rows {
            return Err(TaskError::PastTheEnd { task: self.name(), index, row: physical, rows });
        }
        self.examples.example(physical)
    }
    fn eval_type(&self) -> Option<EvalType> {
        self.examples.eval_type()
    }
    fn evaluate(&self, conversation: &Conversation, response: &str) -> Result<bool, TaskError> {
        self.examples.evaluate(conversation, response)
    }
}

/// `render_mc` (§5.2): the multiple-choice prompt, each choice followed by `=` and its letter with
/// no space, so the letter is the same token as the answer.
pub fn render_mc(question: &str, letters: &[String], choices: &[String]) -> String {
    let mut query = format!("Multiple Choice question: {question}\n");
    for (letter, choice) in letters.iter().zip(choices) {
        query.push_str(&format!("- {choice}={letter}\n"));
    }
    query.push_str("\nRespond only with the letter of the correct answer.");
    query
}

/// The number after `#### ` (GSM8K's and SpellingBee's answer format, §5.2), commas removed.
pub fn extract_answer(completion: &str) -> Option<String> {
    static ANSWER: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = ANSWER.get_or_init(|| regex::Regex::new(r"#### (\-?[0-9\.\,]+)").expect("valid regex"));
    re.captures(completion).map(|c| c[1].trim().replace(',', ""))
}

/// The text of the last part of the final assistant message (where GSM8K and SpellingBee keep the
/// `#### N` line).
pub fn last_text_part(conversation: &Conversation, task: &str) -> Result<String, TaskError> {
    use super::conversation::{Content, Role};
    let bad = |reason: &str| TaskError::NotEvaluable { task: task.to_string(), reason: reason.to_string() };
    let last = conversation.messages.last().ok_or_else(|| bad("the conversation is empty"))?;
    if last.role != Role::Assistant {
        return Err(bad("the last message must come from the assistant"));
    }
    match &last.content {
        Content::Parts(parts) => parts.last().map(|p| p.text.clone()).ok_or_else(|| bad("the answer has no parts")),
        Content::Text(_) => Err(bad("the answer is expected to be a list of parts")),
    }
}

/// `#### N` answers compared as strings (GSM8K, SpellingBee `evaluate`): no answer on both sides
/// also compares equal, as in the reference.
pub fn answers_match(conversation: &Conversation, response: &str, task: &str) -> Result<bool, TaskError> {
    let reference = extract_answer(&last_text_part(conversation, task)?);
    Ok(extract_answer(response) == reference)
}

/// The assistant's answer letter of a multiple-choice conversation compared with `response`
/// (MMLU/ARC `evaluate`): `response` must be one of the conversation's letters.
pub fn letter_matches(conversation: &Conversation, response: &str, task: &str) -> Result<bool, TaskError> {
    use super::conversation::Content;
    let letters: Vec<String> =
        conversation.extra("letters").and_then(|v| serde_json::from_value(v.clone()).ok()).ok_or_else(|| {
            TaskError::NotEvaluable { task: task.into(), reason: "the conversation has no letters".into() }
        })?;
    if !letters.iter().any(|l| l == response) {
        return Err(TaskError::NotEvaluable {
            task: task.into(),
            reason: format!("the answer {response:?} is not one of the letters {letters:?}"),
        });
    }
    match conversation.messages.last().map(|m| &m.content) {
        Some(Content::Text(answer)) => Ok(answer == response),
        _ => Err(TaskError::NotEvaluable { task: task.into(), reason: "the answer is not a letter".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_extraction_follows_the_regex() {
        assert_eq!(extract_answer("so #### 1,234 done").as_deref(), Some("1234"));
        assert_eq!(extract_answer("#### -3.5").as_deref(), Some("-3.5"));
        assert_eq!(extract_answer("#### 12\n#### 13").as_deref(), Some("12"));
        assert_eq!(extract_answer("####12"), None);
        assert_eq!(extract_answer("#### x"), None);
        assert_eq!(extract_answer("#### .,.").as_deref(), Some(".."));
    }

    #[test]
    fn slices_count_like_the_reference() {
        let s = Slice { start: 5, stop: Some(40), step: 3 };
        assert_eq!(s.len(100), 12);
        assert_eq!(Slice::stop(50).len(10), 50);
        assert_eq!(Slice { start: 20, stop: None, step: 1 }.len(10), 0);
        assert!(Slice { start: 3, stop: Some(2), step: 1 }.validate().is_err());
        assert!(Slice { start: 0, stop: None, step: 0 }.validate().is_err());
    }

    struct Numbers(usize);

    impl Examples for Numbers {
        fn name(&self) -> String {
            "numbers".into()
        }
        fn num_examples(&self) -> usize {
            self.0
        }
        fn example(&self, index: usize) -> Result<Conversation, TaskError> {
            use crate::chat::conversation::{Message, Role};
            Ok(Conversation::new(vec![Message::text(Role::User, index.to_string())]))
        }
    }

    #[test]
    fn a_slice_reads_its_rows_and_says_when_its_stop_is_past_the_end() {
        let task = Sliced::new(Numbers(10), Slice { start: 2, stop: Some(14), step: 3 }).unwrap();
        assert_eq!(task.len(), 4);
        assert_eq!(task.name(), "numbers[2:14:3]");
        assert_eq!(task.get(2).unwrap().to_json()["messages"][0]["content"], "8");
        let err = task.get(3).unwrap_err().to_string();
        assert!(err.contains("row 11 of a dataset of 10 rows"), "{err}");
        assert!(task.get(4).unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn multiple_choice_prompt() {
        let letters = ["A", "B"].map(String::from);
        let choices = ["red", "blue"].map(String::from);
        assert_eq!(
            render_mc("Sky?", &letters, &choices),
            "Multiple Choice question: Sky?\n- red=A\n- blue=B\n\nRespond only with the letter of the correct answer."
        );
    }
}
