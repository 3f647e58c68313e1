//! ARC (`allenai/ai2_arc`, NANOCHAT.md §5.2): ARC-Easy / ARC-Challenge science questions with the
//! dataset's own answer letters (some are "1".."4"), splits train / validation / test. Rendered
//! with `render_mc`; evaluated by letter (categorical).
use serde::Deserialize;

use super::hf_dataset::{ShuffledSplit, SplitLocation};
use super::{letter_matches, render_mc, EvalType, Examples, TaskError};
use crate::chat::conversation::{Conversation, Message, Role};
use crate::paths::Paths;

pub const REPO: &str = "allenai/ai2_arc";

#[derive(Deserialize)]
pub struct ArcChoices {
    pub text: Vec<String>,
    pub label: Vec<String>,
}

#[derive(Deserialize)]
pub struct ArcRow {
    pub question: String,
    pub choices: ArcChoices,
    #[serde(rename = "answerKey")]
    pub answer_key: String,
}

pub struct Arc {
    subset: String,
    split: String,
    rows: ShuffledSplit<ArcRow>,
}

impl Arc {
    pub fn load(paths: &Paths, subset: &str, split: &str) -> Result<Self, TaskError> {
        if !["ARC-Easy", "ARC-Challenge"].contains(&subset) {
            return Err(TaskError::InvalidArgs(format!(
                "ARC subset must be ARC-Easy or ARC-Challenge, not {subset:?}"
            )));
        }
        if !["train", "validation", "test"].contains(&split) {
            return Err(TaskError::InvalidArgs(format!("ARC split must be train|validation|test, not {split:?}")));
        }
        let location = SplitLocation { repo: REPO, dir: subset.into(), split: split.into() };
        Ok(Arc { subset: subset.into(), split: split.into(), rows: ShuffledSplit::load(paths, &location)? })
    }
}

impl Examples for Arc {
    fn name(&self) -> String {
        format!("{}/{}", self.subset, self.split)
    }
    fn num_examples(&self) -> usize {
        self.rows.len()
    }
    fn example(&self, index: usize) -> Result<Conversation, TaskError> {
        let (row, physical) =
            self.rows.row(index).ok_or(TaskError::OutOfRange { task: self.name(), index, len: self.rows.len() })?;
        if !row.choices.label.contains(&row.answer_key) {
            return Err(TaskError::BadRow {
                task: self.name(),
                row: physical,
                message: format!("answer {:?} is not one of the labels {:?}", row.answer_key, row.choices.label),
            });
        }
        let user = render_mc(&row.question, &row.choices.label, &row.choices.text);
        Ok(Conversation::new(vec![
            Message::text(Role::User, user),
            Message::text(Role::Assistant, row.answer_key.clone()),
        ])
        .with_extra("letters", serde_json::json!(row.choices.label)))
    }
    fn eval_type(&self) -> Option<EvalType> {
        Some(EvalType::Categorical)
    }
    fn evaluate(&self, conversation: &Conversation, response: &str) -> Result<bool, TaskError> {
        letter_matches(conversation, response, &self.name())
    }
}
