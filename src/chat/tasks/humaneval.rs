//! HumanEval (`openai/openai_humaneval`, test split, 164 problems, NANOCHAT.md §5.2), the one problem
//! type of both the chat task and `nanochat eval humaneval`: the user
//! message is the function's prompt, the assistant's the prompt plus the canonical solution;
//! `entry_point` and `test` travel with the conversation for the code-executing evaluation: a reply
//! passes when the program of §6.4 (the prompt's imports, the reply's code, the tests, `check`) runs
//! without error in the sandbox (src/sandbox).
use std::sync::{LazyLock, OnceLock};

use serde::Deserialize;

use super::hf_dataset::{ShuffledSplit, SplitLocation};
use super::{EvalType, Examples, TaskError};
use crate::chat::conversation::{Content, Conversation, Message, Role};
use crate::paths::Paths;
use crate::sandbox::{Sandbox, SandboxConfig};

pub const REPO: &str = "openai/openai_humaneval";

/// One problem, as in the package's HumanEval.jsonl.gz and the HF dataset's parquet.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct HumanEvalProblem {
    pub task_id: String,
    pub prompt: String,
    pub canonical_solution: String,
    pub test: String,
    pub entry_point: String,
}

/// The import lines at the top of a prompt (stripped, joined by newlines): reading stops at the
/// first line that is neither an import, blank, nor a comment (§6.4 `extract_imports`).
pub fn extract_imports(prompt: &str) -> String {
    let mut imports = Vec::new();
    for line in prompt.split('\n') {
        let stripped = line.trim();
        if stripped.starts_with("import ") || stripped.starts_with("from ") {
            imports.push(stripped);
        } else if !stripped.is_empty() && !stripped.starts_with('#') {
            break;
        }
    }
    imports.join("\n")
}

static CODE_BLOCK: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"(?s)```(?:python)?\s*\n(.*?)\n```").expect("a valid pattern"));

/// The first fenced code block (```` ```python ```` or ```` ``` ````) of a reply, stripped, else the
/// whole reply stripped (§6.4 `extract_program`).
pub fn extract_program(completion: &str) -> String {
    match CODE_BLOCK.captures(completion).and_then(|c| c.get(1)) {
        Some(code) => code.as_str().trim().to_string(),
        None => completion.trim().to_string(),
    }
}

/// nanochat's chat-evaluation program (§6.4): imports of the prompt, the reply's code, the tests,
/// and the call of `check` on the entry point.
pub fn humaneval_program(prompt: &str, completion: &str, test: &str, entry_point: &str) -> String {
    format!("{}\n\n{}\n\n{test}\ncheck({entry_point})", extract_imports(prompt), extract_program(completion))
}

pub struct HumanEval {
    rows: ShuffledSplit<HumanEvalProblem>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_are_the_leading_import_lines_past_blanks_and_comments() {
        let prompt = "from typing import List\n\n# helper\n  import math\n\ndef f(x: List[int]):\n    import os\n";
        assert_eq!(extract_imports(prompt), "from typing import List\nimport math");
        assert_eq!(extract_imports("\ndef f():\n    pass\n"), "");
        assert_eq!(extract_imports("import re\nx = 1\nimport os\n"), "import re");
        // "importlib" without a space is not an import line: reading stops there.
        assert_eq!(extract_imports("importlib\nimport os\n"), "");
    }

    #[test]
    fn program_is_the_first_fenced_block_or_the_whole_reply() {
        let reply = "Here it is:\n```python\ndef f():\n    return 1\n```\nand\n```\nother()\n```";
        assert_eq!(extract_program(reply), "def f():\n    return 1");
        assert_eq!(extract_program("```\n\n  x = 1  \n```"), "x = 1");
        assert_eq!(extract_program("```py\nx = 1\n```"), "```py\nx = 1\n```", "only python or no language");
        assert_eq!(extract_program("  def f(): pass\n\n"), "def f(): pass");
        assert_eq!(extract_program("```python\nunclosed"), "```python\nunclosed");
        // The block needs a newline before its closing fence.
        assert_eq!(extract_program("```python\nx = 1```"), "```python\nx = 1```");
    }

    #[test]
    fn chat_program_is_imports_code_tests_and_check() {
        let program = humaneval_program(
            "from typing import List\n\ndef f(a: List[int]) -> int:\n",
            "Sure!\n```python\ndef f(a):\n    return sum(a)\n```",
            "def check(candidate):\n    assert candidate([1, 2]) == 3\n",
            "f",
        );
        assert_eq!(
            program,
            "from typing import List\n\ndef f(a):\n    return sum(a)\n\ndef check(candidate):\n    assert candidate([1, 2]) == 3\n\ncheck(f)"
        );
    }
}
