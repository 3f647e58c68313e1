//! HumanEval (`openai/openai_humaneval`, test split, 164 problems, NANOCHAT.md §5.2): the user
//! message is the function's prompt, the assistant's the prompt plus the canonical solution;
//! `entry_point` and `test` travel with the conversation for the code-executing evaluation: a reply
//! passes when the program of §6.4 (the prompt's imports, the reply's code, the tests, `check`) runs
//! without error in the sandbox (src/eval/sandbox).
use std::sync::OnceLock;

use serde::Deserialize;

use super::hf_dataset::{ShuffledSplit, SplitLocation};
use super::{EvalType, Examples, TaskError};
use crate::chat::conversation::{Content, Conversation, Message, Role};
use crate::eval::humaneval::humaneval_program;
use crate::eval::sandbox::{Sandbox, SandboxConfig};
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
    fn evaluate(&self, conversation: &Conversation, response: &str) -> Result<bool, TaskError> {
        let text = |key: &str| conversation.extra(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let prompt = match conversation.messages.first().map(|m| &m.content) {
            Some(Content::Text(text)) => text.as_str(),
            _ => "",
        };
        let program = humaneval_program(prompt, response, &text("test"), &text("entry_point"));
        Ok(sandbox(&self.name())?.run(&program).passed())
    }
}

/// Set to 1 to run generated code without namespace isolation where the sandbox cannot make them
/// (e.g. inside a container whose seccomp profile forbids user namespaces); `chat-eval
/// --allow-unsandboxed` sets it.
pub const ALLOW_UNSANDBOXED_ENV: &str = "NANOCHAT_ALLOW_UNSANDBOXED";

/// Whether generated code can be run here: the sandbox, made on first use (the reference's limits:
/// 5 s, 256 MiB), or why not.
pub fn sandbox_available() -> Result<(), String> {
    shared_sandbox().map(|_| ())
}

fn shared_sandbox() -> Result<&'static Sandbox, String> {
    static SANDBOX: OnceLock<Result<Sandbox, String>> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            let allow = std::env::var(ALLOW_UNSANDBOXED_ENV).is_ok_and(|v| v == "1");
            Sandbox::new(SandboxConfig { allow_unsandboxed: allow, ..SandboxConfig::default() })
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The sandbox every HumanEval evaluation of this process shares.
fn sandbox(task: &str) -> Result<&'static Sandbox, TaskError> {
    shared_sandbox().map_err(|reason| TaskError::NotEvaluable { task: task.to_string(), reason })
}
