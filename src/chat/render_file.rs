//! Rendering a JSONL file of conversations (`nanochat tokenizer render`): each line
//! `{"messages": [...]}` or a bare list of messages (the CustomJSON form) becomes
//! `{"ids": [...], "mask": [...]}` (training form, §5.1) or `{"ids": [...]}` (the prompt for a
//! completion), or a readable view that marks the supervised tokens. Errors name the line.
use std::io::{BufRead, Write};

use serde_json::Value;

use super::conversation::Conversation;
use super::render::{ChatRenderer, Rendered};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenderForm {
    /// ids and loss mask of the whole conversation (`render_conversation`).
    Training,
    /// the prompt ids for the assistant's reply (`render_for_completion`).
    Completion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    /// Tokens separated by `|`; supervised ones in green (color) or inside `[[ ]]` (plain).
    View {
        color: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RenderFileError {
    #[error("{source_name}:{line}: {message}")]
    Line { source_name: String, line: usize, message: String },
    #[error("reading {source_name}: {error}")]
    Read { source_name: String, error: std::io::Error },
    #[error("writing the output: {0}")]
    Write(std::io::Error),
}

/// Renders every non-blank line of `input`; returns the number of conversations.
pub fn render_lines(
    input: impl BufRead,
    source_name: &str,
    renderer: &ChatRenderer<'_>,
    form: RenderForm,
    max_tokens: usize,
    output: Output,
    mut out: impl Write,
) -> Result<usize, RenderFileError> {
    let mut count = 0;
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|error| RenderFileError::Read { source_name: source_name.to_string(), error })?;
        if line.trim().is_empty() {
            continue;
        }
        let fail =
            |message: String| RenderFileError::Line { source_name: source_name.to_string(), line: i + 1, message };
        let value: Value = serde_json::from_str(&line).map_err(|e| fail(format!("not JSON: {e}")))?;
        let conversation = Conversation::from_json(&value).map_err(|e| fail(e.to_string()))?;
        let rendered = match form {
            RenderForm::Training => renderer.render(&conversation, max_tokens),
            RenderForm::Completion => {
                renderer.render_for_completion(&conversation).map(|ids| Rendered { mask: vec![0; ids.len()], ids })
            }
        }
        .map_err(|e| fail(e.to_string()))?;
        let text = match output {
            Output::Json => match form {
                RenderForm::Training => serde_json::json!({"ids": rendered.ids, "mask": rendered.mask}).to_string(),
                RenderForm::Completion => serde_json::json!({"ids": rendered.ids}).to_string(),
            },
            Output::View { color } => view(renderer, &rendered, color),
        };
        writeln!(out, "{text}").map_err(RenderFileError::Write)?;
        count += 1;
    }
    Ok(count)
}

/// The tokens of a rendered conversation separated by `|`, supervised tokens (mask 1) marked.
pub fn view(renderer: &ChatRenderer<'_>, rendered: &Rendered, color: bool) -> String {
    const GREEN: &str = "\x1b[32m";
    const DIM: &str = "\x1b[2m";
    const RESET: &str = "\x1b[0m";
    let piece =
        |id: u32| renderer.encoder().decode_lossy(&[id]).unwrap_or_else(|_| format!("<{id}>")).replace('\n', "\\n");
    // Runs of tokens with the same mask value.
    let mut runs: Vec<(u8, Vec<String>)> = Vec::new();
    for (&id, &m) in rendered.ids.iter().zip(&rendered.mask) {
        match runs.last_mut() {
            Some((mask, pieces)) if *mask == m => pieces.push(piece(id)),
            _ => runs.push((m, vec![piece(id)])),
        }
    }
    let runs: Vec<String> = runs
        .into_iter()
        .map(|(m, pieces)| {
            let joined = pieces.join("|");
            match (color, m) {
                (true, 1) => format!("{GREEN}{joined}{RESET}"),
                (true, _) => format!("{DIM}{joined}{RESET}"),
                (false, 1) => format!("[[{joined}]]"),
                (false, _) => joined,
            }
        })
        .collect();
    runs.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::{BpeEncoder, SPECIAL_TOKENS};

    fn encoder() -> BpeEncoder {
        BpeEncoder::new((0..=255u8).map(|b| vec![b]).collect(), &SPECIAL_TOKENS).unwrap()
    }

    #[test]
    fn json_lines_and_errors_with_line_numbers() {
        let enc = encoder();
        let r = ChatRenderer::new(&enc).unwrap();
        let input =
            "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\"}]}\n\n\
                     [{\"role\":\"user\",\"content\":\"c\"},{\"role\":\"assistant\",\"content\":\"d\"}]\n";
        let mut out = Vec::new();
        let n = render_lines(input.as_bytes(), "in", &r, RenderForm::Training, 2048, Output::Json, &mut out).unwrap();
        assert_eq!(n, 2);
        let lines: Vec<Value> =
            String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines[0]["ids"], serde_json::json!([256, 257, 97, 258, 259, 98, 260]));
        assert_eq!(lines[0]["mask"], serde_json::json!([0, 0, 0, 0, 0, 1, 1]));
        let mut out = Vec::new();
        render_lines(input.as_bytes(), "in", &r, RenderForm::Completion, 2048, Output::Json, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap().lines().next().unwrap(), "{\"ids\":[256,257,97,258,259]}");

        let bad = "[{\"role\":\"user\",\"content\":\"c\"},{\"role\":\"assistant\",\"content\":\"d\"}]\n\
                   [{\"role\":\"user\",\"content\":\"c\"},{\"role\":\"user\",\"content\":\"d\"}]\n";
        let err = render_lines(bad.as_bytes(), "conv.jsonl", &r, RenderForm::Training, 2048, Output::Json, Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("conv.jsonl:2: message 1 comes from the user"), "{err}");
    }

    #[test]
    fn the_view_marks_supervised_tokens() {
        let enc = encoder();
        let r = ChatRenderer::new(&enc).unwrap();
        let rendered = Rendered { ids: vec![256, 97, 98, 260], mask: vec![0, 1, 1, 0] };
        assert_eq!(view(&r, &rendered, false), "<|bos|>|[[a|b]]|<|assistant_end|>");
        assert!(view(&r, &rendered, true).contains("\x1b[32ma|b\x1b[0m"));
    }
}
