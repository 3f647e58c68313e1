//! CustomJSON (NANOCHAT.md §5.2): conversations from a JSONL file, one JSON list of
//! `{role, content}` messages per line (blank lines skipped), at least two, alternating
//! user/assistant from the user, string content. Used for the identity conversations.
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Examples, TaskError};
use crate::chat::conversation::{Content, Conversation, Role};
use crate::paths::Paths;

/// The identity conversations in the chat extras directory (manifests/data/chat_data.toml).
pub const IDENTITY_FILE: &str = "identity_conversations.jsonl";

pub struct CustomJson {
    path: PathBuf,
    conversations: Vec<Conversation>,
}

impl CustomJson {
    pub fn identity(paths: &Paths) -> Result<Self, TaskError> {
        Self::load(&paths.chat_extras().join(IDENTITY_FILE))
    }

    pub fn load(path: &Path) -> Result<Self, TaskError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                TaskError::MissingData {
                    what: "the conversations file".into(),
                    expected: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                    path: path.parent().map(PathBuf::from).unwrap_or_default(),
                    hint: super::hf_dataset::download_hint(),
                }
            } else {
                TaskError::Read { path: path.to_path_buf(), source }
            }
        })?;
        let mut conversations = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let bad = |message: String| TaskError::BadLine { path: path.to_path_buf(), line: i + 1, message };
            let value: Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
            if !value.is_array() {
                return Err(bad("expected a JSON list of messages".into()));
            }
            let conversation = Conversation::from_json(&value).map_err(|e| bad(e.to_string()))?;
            if conversation.messages.len() < 2 {
                return Err(bad(format!(
                    "a conversation needs at least 2 messages, found {}",
                    conversation.messages.len()
                )));
            }
            for (j, m) in conversation.messages.iter().enumerate() {
                let expected = if j % 2 == 0 { Role::User } else { Role::Assistant };
                if m.role != expected {
                    return Err(bad(format!(
                        "message {j} comes from the {} but should come from the {}",
                        m.role.as_str(),
                        expected.as_str()
                    )));
                }
                if !matches!(m.content, Content::Text(_)) {
                    return Err(bad(format!("message {j}: content must be a string")));
                }
            }
            conversations.push(conversation);
        }
        Ok(CustomJson { path: path.to_path_buf(), conversations })
    }
}

impl Examples for CustomJson {
    fn name(&self) -> String {
        format!("CustomJSON({})", self.path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default())
    }
    fn num_examples(&self) -> usize {
        self.conversations.len()
    }
    fn example(&self, index: usize) -> Result<Conversation, TaskError> {
        self.conversations.get(index).cloned().ok_or(TaskError::OutOfRange {
            task: self.name(),
            index,
            len: self.conversations.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_validated_with_their_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let good = r#"[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]"#;
        std::fs::write(&path, format!("{good}\n\n  {good}  \n")).unwrap();
        let task = CustomJson::load(&path).unwrap();
        assert_eq!(task.num_examples(), 2);
        assert_eq!(task.example(1).unwrap().to_json()["messages"][1]["content"], "hello");
        for (line, expect) in [
            (r#"{"messages": []}"#, "expected a JSON list"),
            (r#"[{"role":"user","content":"hi"}]"#, "at least 2 messages"),
            (
                r#"[{"role":"assistant","content":"a"},{"role":"user","content":"b"}]"#,
                "message 0 comes from the assistant",
            ),
            (r#"[{"role":"user","content":"a"},{"role":"assistant","content":[]}]"#, "content must be a string"),
            ("[oops", "not JSON"),
        ] {
            std::fs::write(&path, format!("{good}\n{line}\n")).unwrap();
            let err = CustomJson::load(&path).err().unwrap().to_string();
            assert!(err.contains("c.jsonl:2:") && err.contains(expect), "{err}");
        }
        let err = CustomJson::load(&dir.path().join("none.jsonl")).err().unwrap().to_string();
        assert!(err.contains("nanochat data download"), "{err}");
    }
}
