//! GSM8K (`openai/gsm8k`, subset main or socratic, NANOCHAT.md §5.2): grade-school math with
//! calculator annotations `<<expr=result>>` in the answers. The answer becomes assistant parts: the
//! text between annotations, and per annotation a `python` part (the text before the last `=`)
//! followed by a `python_output` part (after it). Evaluated by the `#### N` answer (generative).
use serde::Deserialize;

use super::hf_dataset::{ShuffledSplit, SplitLocation};
use super::{answers_match, EvalType, Examples, TaskError};
use crate::chat::conversation::{Conversation, Message, Part, PartKind, Role};
use crate::paths::Paths;

pub const REPO: &str = "openai/gsm8k";

#[derive(Deserialize)]
pub struct Gsm8kRow {
    pub question: String,
    pub answer: String,
}

pub struct Gsm8k {
    subset: String,
    split: String,
    rows: ShuffledSplit<Gsm8kRow>,
}

impl Gsm8k {
    pub fn load(paths: &Paths, subset: &str, split: &str) -> Result<Self, TaskError> {
        if !["main", "socratic"].contains(&subset) {
            return Err(TaskError::InvalidArgs(format!("GSM8K subset must be main|socratic, not {subset:?}")));
        }
        if !["train", "test"].contains(&split) {
            return Err(TaskError::InvalidArgs(format!("GSM8K split must be train|test, not {split:?}")));
        }
        let location = SplitLocation { repo: REPO, dir: subset.into(), split: split.into() };
        Ok(Gsm8k { subset: subset.into(), split: split.into(), rows: ShuffledSplit::load(paths, &location)? })
    }
}

/// The answer text split into parts (§5.2): every piece of `re.split(r'(<<[^>]+>>)', answer)`,
/// empty ones included, as the reference keeps them.
pub fn answer_parts(answer: &str) -> Vec<Part> {
    static CALL: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = CALL.get_or_init(|| regex::Regex::new(r"<<[^>]+>>").expect("valid regex"));
    let mut pieces = Vec::new();
    let mut last = 0;
    for m in re.find_iter(answer) {
        pieces.push(&answer[last..m.start()]);
        pieces.push(m.as_str());
        last = m.end();
    }
    pieces.push(&answer[last..]);
    let mut parts = Vec::with_capacity(pieces.len() + pieces.len() / 2);
    for piece in pieces {
        if piece.len() >= 4 && piece.starts_with("<<") && piece.ends_with(">>") {
            let inner = &piece[2..piece.len() - 2];
            let (expr, result) = inner.rsplit_once('=').unwrap_or((inner, ""));
            parts.push(Part::new(PartKind::Python, expr));
            parts.push(Part::new(PartKind::PythonOutput, result));
        } else {
            parts.push(Part::new(PartKind::Text, piece));
        }
    }
    parts
}

impl Examples for Gsm8k {
    fn name(&self) -> String {
        format!("GSM8K/{}/{}", self.subset, self.split)
    }
    fn num_examples(&self) -> usize {
        self.rows.len()
    }
    fn example(&self, index: usize) -> Result<Conversation, TaskError> {
        let (row, _) =
            self.rows.row(index).ok_or(TaskError::OutOfRange { task: self.name(), index, len: self.rows.len() })?;
        Ok(Conversation::new(vec![
            Message::text(Role::User, row.question.clone()),
            Message::parts(Role::Assistant, answer_parts(&row.answer)),
        ]))
    }
    fn eval_type(&self) -> Option<EvalType> {
        Some(EvalType::Generative)
    }
    fn evaluate(&self, conversation: &Conversation, response: &str) -> Result<bool, TaskError> {
        answers_match(conversation, response, &self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calculator_annotations_become_parts() {
        let parts = answer_parts("Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\n#### 10");
        let kinds: Vec<_> = parts.iter().map(|p| (p.kind, p.text.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (PartKind::Text, "Weng earns 12/60 = $"),
                (PartKind::Python, "12/60"),
                (PartKind::PythonOutput, "0.2"),
                (PartKind::Text, "0.2 per minute.\n#### 10"),
            ]
        );
        // Adjacent annotations keep the empty text piece between them; no `=` means no output.
        let parts = answer_parts("<<a=b=c>><<x>>");
        let texts: Vec<_> = parts.iter().map(|p| (p.kind, p.text.as_str())).collect();
        assert_eq!(
            texts,
            [
                (PartKind::Text, ""),
                (PartKind::Python, "a=b"),
                (PartKind::PythonOutput, "c"),
                (PartKind::Text, ""),
                (PartKind::Python, "x"),
                (PartKind::PythonOutput, ""),
                (PartKind::Text, ""),
            ]
        );
    }
}
