//! MMLU (`cais/mmlu`, NANOCHAT.md §5.2): four-choice questions, subset `all` (splits test 14,042 /
//! validation / dev) or `auxiliary_train` (split train, ~100K rows whose fields sit inside a `train`
//! struct). Rendered with `render_mc`; the answer is the letter; evaluated by letter (categorical).
use serde::Deserialize;

use super::hf_dataset::{ShuffledSplit, SplitLocation};
use super::{letter_matches, render_mc, EvalType, Examples, TaskError};
use crate::chat::conversation::{Conversation, Message, Role};
use crate::paths::Paths;

pub const REPO: &str = "cais/mmlu";
/// The answer letters, in answer-index order.
pub const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

#[derive(Deserialize, Clone)]
pub struct MmluQuestion {
    pub question: String,
    pub subject: String,
    pub choices: Vec<String>,
    pub answer: i64,
}

/// A row of either subset: `auxiliary_train` wraps the question in a `train` field.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum MmluRow {
    Wrapped { train: MmluQuestion },
    Plain(MmluQuestion),
}

impl MmluRow {
    fn question(&self) -> &MmluQuestion {
        match self {
            MmluRow::Wrapped { train } => train,
            MmluRow::Plain(q) => q,
        }
    }
}

pub struct Mmlu {
    subset: String,
    split: String,
    rows: ShuffledSplit<MmluRow>,
}

impl Mmlu {
    pub fn load(paths: &Paths, subset: &str, split: &str) -> Result<Self, TaskError> {
        if !["all", "auxiliary_train"].contains(&subset) {
            return Err(TaskError::InvalidArgs(format!("MMLU subset must be all|auxiliary_train, not {subset:?}")));
        }
        if !["train", "validation", "dev", "test"].contains(&split) {
            return Err(TaskError::InvalidArgs(format!("MMLU split must be train|validation|dev|test, not {split:?}")));
        }
        if subset == "auxiliary_train" && split != "train" {
            return Err(TaskError::InvalidArgs("MMLU auxiliary_train has only the split train".into()));
        }
        let location = SplitLocation { repo: REPO, dir: subset.into(), split: split.into() };
        Ok(Mmlu { subset: subset.into(), split: split.into(), rows: ShuffledSplit::load(paths, &location)? })
    }
}

impl Examples for Mmlu {
    fn name(&self) -> String {
        format!("MMLU/{}/{}", self.subset, self.split)
    }
    fn num_examples(&self) -> usize {
        self.rows.len()
    }
    fn example(&self, index: usize) -> Result<Conversation, TaskError> {
        let (row, physical) =
            self.rows.row(index).ok_or(TaskError::OutOfRange { task: self.name(), index, len: self.rows.len() })?;
        let q = row.question();
        let bad = |message: String| TaskError::BadRow { task: self.name(), row: physical, message };
        if q.choices.len() != 4 {
            return Err(bad(format!("MMLU questions have 4 choices, this one {}", q.choices.len())));
        }
        let answer = usize::try_from(q.answer)
            .ok()
            .and_then(|a| LETTERS.get(a))
            .ok_or_else(|| bad(format!("answer index {} is not 0..3", q.answer)))?;
        let letters: Vec<String> = LETTERS.iter().map(|l| l.to_string()).collect();
        let user = render_mc(&q.question, &letters, &q.choices);
        Ok(Conversation::new(vec![Message::text(Role::User, user), Message::text(Role::Assistant, *answer)])
            .with_extra("subject", q.subject.clone().into())
            .with_extra("letters", serde_json::json!(LETTERS)))
    }
    fn eval_type(&self) -> Option<EvalType> {
        Some(EvalType::Categorical)
    }
    fn evaluate(&self, conversation: &Conversation, response: &str) -> Result<bool, TaskError> {
        letter_matches(conversation, response, &self.name())
    }
}
