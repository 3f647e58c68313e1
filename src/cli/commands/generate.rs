//! `nanochat generate` and `nanochat chat` (NANOCHAT.md §7): load a checkpoint, then the engine.
use std::io::{BufRead, IsTerminal, Write};

use anyhow::Context;

use crate::cli::chat_args::{ChatArgs, GenerateArgs, ModelArgs};
use crate::cli::GlobalOptions;
use crate::engine::chat_engine::{Engine, GenerationSettings};
use crate::engine::chat_session::ChatSession;
use crate::engine::loaded_model::{inference_device, LoadedModel, ModelSpec};

fn load(global: &GlobalOptions, args: &ModelArgs, default_phase: &str) -> anyhow::Result<LoadedModel> {
    let spec = ModelSpec {
        phase: args.source.clone().unwrap_or_else(|| default_phase.to_string()),
        step: args.step,
        checkpoint_dir: args.checkpoint.clone(),
        tokenizer: args.tokenizer.tokenizer.clone(),
    };
    let loaded = LoadedModel::open(&global.paths(), &spec, inference_device()).context("loading the model")?;
    log::info!("model: {}", loaded.describe());
    Ok(loaded)
}

/// The sampling generator's seed: `--seed`, else the reference's 42 (§7).
fn sampling_seed(global: &GlobalOptions) -> i64 {
    global.seed.map_or(42, |s| s as i64)
}

fn top_k(k: i64) -> Option<i64> {
    (k > 0).then_some(k)
}

pub fn generate(global: &GlobalOptions, args: &GenerateArgs) -> anyhow::Result<()> {
    let loaded = load(global, &args.model, "base")?;
    let engine = Engine::new(&loaded.model, &loaded.encoder)?;
    let prompt = loaded.encoder.encode_with_bos(&args.prompt)?;
    let settings = GenerationSettings {
        num_samples: args.num_samples.max(1),
        max_tokens: Some(args.max_tokens),
        temperature: args.temperature,
        top_k: top_k(args.top_k),
        seed: sampling_seed(global),
    };
    let (rows, _) = engine.generate_batch(&prompt, &settings);
    for row in rows {
        let generated = &row[prompt.len()..];
        let text = loaded.encoder.decode_lossy(generated)?;
        if args.json {
            println!("{}", serde_json::json!({"prompt_ids": prompt, "ids": generated, "text": text}));
        } else {
            println!("{}{text}", args.prompt);
        }
    }
    Ok(())
}

pub fn chat(global: &GlobalOptions, args: &ChatArgs) -> anyhow::Result<()> {
    let loaded = load(global, &args.model, "sft")?;
    let engine = Engine::new(&loaded.model, &loaded.encoder)?;
    let mut settings = GenerationSettings {
        num_samples: 1,
        max_tokens: Some(args.max_tokens),
        temperature: args.temperature,
        top_k: top_k(args.top_k),
        seed: sampling_seed(global),
    };
    let mut session = ChatSession::new(engine, settings);
    let mut out = std::io::stdout();
    let mut answer = |session: &mut ChatSession<'_, _>, message: &str| -> anyhow::Result<()> {
        print!("Assistant: ");
        session.reply(message, |text| {
            print!("{text}");
            let _ = out.flush();
        })?;
        println!();
        Ok(())
    };
    if let Some(prompt) = &args.prompt {
        return answer(&mut session, prompt);
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!("nanochat chat ({}): `clear` starts over, `quit` leaves", loaded.describe());
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("\nUser: ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let message = line.context("reading standard input")?;
        let message = message.trim();
        match message.to_lowercase().as_str() {
            "quit" | "exit" => break,
            "clear" => {
                session.clear();
                println!("Conversation cleared.");
                continue;
            }
            "" => continue,
            _ => {}
        }
        answer(&mut session, message)?;
        settings.seed += 1;
        session.set_settings(settings);
    }
    Ok(())
}
