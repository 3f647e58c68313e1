//! SmolTalk (`HuggingFaceTB/smol-smoltalk`, NANOCHAT.md §5.2): general conversations, train ~460K
//! rows, test ~24K. An optional system message, then at least two alternating user/assistant
//! messages with string content; returned as they are.
use serde::Deserialize;
use serde_json::Value;

use super::hf_dataset::{ShuffledSplit, SplitLocation};
use super::{Examples, TaskError};
use crate::chat::conversation::{Content, Conversation, Role};
use crate::paths::Paths;

pub const REPO: &str = "HuggingFaceTB/smol-smoltalk";

#[derive(Deserialize)]
pub struct SmolTalkRow {
    pub messages: Value,
}

pub struct SmolTalk {
    split: String,
    rows: ShuffledSplit<SmolTalkRow>,
}

impl SmolTalk {
    pub fn load(paths: &Paths, split: &str) -> Result<Self, TaskError> {
        if !["train", "test"].contains(&split) {
            return Err(TaskError::InvalidArgs(format!("SmolTalk split must be train|test, not {split:?}")));
        }
        let location = SplitLocation { repo: REPO, dir: "data".into(), split: split.into() };
        Ok(SmolTalk { split: split.into(), rows: ShuffledSplit::load(paths, &location)? })
    }
}

impl Examples for SmolTalk {
    fn name(&self) -> String {
        format!("SmolTalk/{}", self.split)
    }
    fn num_examples(&self) -> usize {
        self.rows.len()
    }
    fn example(&self, index: usize) -> Result<Conversation, TaskError> {
        let (row, physical) =
            self.rows.row(index).ok_or(TaskError::OutOfRange { task: self.name(), index, len: self.rows.len() })?;
        let bad = |message: String| TaskError::BadRow { task: self.name(), row: physical, message };
        let conversation =
            Conversation::from_json(&serde_json::json!({"messages": row.messages})).map_err(|e| bad(e.to_string()))?;
        let messages = &conversation.messages;
        let rest = match messages.first() {
            None => return Err(bad("no messages".into())),
            Some(m) if m.role == Role::System => &messages[1..],
            Some(_) => &messages[..],
        };
        if rest.len() < 2 {
            return Err(bad("SmolTalk conversations have at least 2 messages after the system message".into()));
        }
        for (i, m) in rest.iter().enumerate() {
            let expected = if i % 2 == 0 { Role::User } else { Role::Assistant };
            if m.role != expected {
                return Err(bad(format!(
                    "message {i} comes from the {} instead of the {}",
                    m.role.as_str(),
                    expected.as_str()
                )));
            }
            if !matches!(m.content, Content::Text(_)) {
                return Err(bad(format!("message {i}: content must be a string")));
            }
        }
        Ok(conversation)
    }
}
