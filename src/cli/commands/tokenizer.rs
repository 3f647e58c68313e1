//! `nanochat tokenizer encode|decode|render` (NANOCHAT.md §1, §5.1).
use std::io::{BufReader, IsTerminal, Read, Write};

use anyhow::Context;

use crate::chat::render_file::{render_lines, Output, RenderForm};
use crate::chat::ChatRenderer;
use crate::cli::{GlobalOptions, TokenizerCommand, TokenizerSource};
use crate::tokenizer::{artifacts, AllowedSpecial, BpeEncoder};

fn load(global: &GlobalOptions, source: &TokenizerSource) -> anyhow::Result<BpeEncoder> {
    let path = source.tokenizer.clone().unwrap_or_else(|| global.paths().tokenizer());
    artifacts::load_from(&path).with_context(|| format!("loading the tokenizer from {}", path.display()))
}

fn stdin_text() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
    Ok(text)
}

pub fn run(global: &GlobalOptions, command: &TokenizerCommand) -> anyhow::Result<()> {
    match command {
        TokenizerCommand::Encode { text, bos, special, source } => {
            let encoder = load(global, source)?;
            let text = match text {
                Some(t) => t.clone(),
                None => stdin_text()?,
            };
            let mut ids = if *bos { vec![encoder.bos_id()?] } else { Vec::new() };
            if *special {
                ids.extend(encoder.encode_with_special(&text, AllowedSpecial::All)?);
            } else {
                ids.extend(encoder.encode_ordinary(&text));
            }
            println!("{}", serde_json::to_string(&ids)?);
        }
        TokenizerCommand::Decode { ids, source } => {
            let encoder = load(global, source)?;
            let ids = if ids.is_empty() { parse_ids(&stdin_text()?)? } else { ids.clone() };
            let text = encoder.decode_lossy(&ids)?;
            print!("{text}");
            if std::io::stdout().is_terminal() {
                println!();
            }
        }
        TokenizerCommand::Render { input, for_completion, view, max_tokens, source } => {
            let encoder = load(global, source)?;
            let renderer = ChatRenderer::new(&encoder)?;
            let form = if *for_completion { RenderForm::Completion } else { RenderForm::Training };
            let output = if *view { Output::View { color: std::io::stdout().is_terminal() } } else { Output::Json };
            let stdout = std::io::stdout().lock();
            let count = if input.as_os_str() == "-" {
                render_lines(std::io::stdin().lock(), "<stdin>", &renderer, form, *max_tokens, output, stdout)?
            } else {
                let file = std::fs::File::open(input).with_context(|| format!("opening {}", input.display()))?;
                let name = input.display().to_string();
                render_lines(BufReader::new(file), &name, &renderer, form, *max_tokens, output, stdout)?
            };
            std::io::stdout().flush()?;
            log::debug!("rendered {count} conversation(s)");
        }
    }
    Ok(())
}

/// Ids from a JSON list or whitespace/comma-separated numbers.
fn parse_ids(text: &str) -> anyhow::Result<Vec<u32>> {
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed).context("standard input is not a JSON list of token ids");
    }
    trimmed
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().with_context(|| format!("{s:?} is not a token id")))
        .collect()
}
