//! HumanEval (`openai/openai_humaneval`, test split, 164 problems, NANOCHAT.md §5.2): the user
//! message is the function's prompt, the assistant's the prompt plus the canonical solution;
//! `entry_point` and `test` travel with the conversation for the code-executing evaluation.
use serde::Deserialize;

use super::hf_dataset::{ShuffledSplit, SplitLocation};
use super::{EvalType, Examples, TaskError};
use crate::chat::conversation::{Conversation, Message, Role};
use crate::paths::Paths;

pub const REPO: &str = "openai/openai_humaneval";

#[derive(Deserialize)]
pub struct HumanEvalRow {
    pub prompt: String,
    pub canonical_solution: String,
    pub test: String,
    pub entry_point: String,
}

pub struct HumanEval {
    rows: ShuffledSplit<HumanEvalRow>,
}

impl HumanEval {
    pub fn load(paths: &Paths) -> Result<Self, TaskError> {
        let location = SplitLocation { repo: REPO, dir: "openai_humaneval".into(), split: "test".into() };
        Ok(HumanEval { rows: ShuffledSplit::load(paths, &location)? })
    }
}

impl Examples for HumanEval {
    fn name(&self) -> String {
        "HumanEval".into()
    }
    fn num_examples(&self) -> usize {
        self.rows.len()
    }
    fn example(&self, index: usize) -> Result<Conversation, TaskError> {
        let (row, _) =
            self.rows.row(index).ok_or(TaskError::OutOfRange { task: self.name(), index, len: self.rows.len() })?;
        let complete = format!("{}\n{}", row.prompt, row.canonical_solution);
        Ok(Conversation::new(vec![
            Message::text(Role::User, row.prompt.clone()),
            Message::text(Role::Assistant, complete),
        ])
        .with_extra("entry_point", row.entry_point.clone().into())
        .with_extra("test", row.test.clone().into()))
    }
    fn eval_type(&self) -> Option<EvalType> {
        Some(EvalType::Generative)
    }
}
