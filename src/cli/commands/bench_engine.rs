//! `nanochat bench engine`: generation speed of the engine (NANOCHAT.md §7) on a freshly initialised
//! model (seed 42, the reference's init) and a random prompt: time to the first token (prefill and
//! one sample) and greedy decode tokens/s with one row and with `--batch` rows. Prints one JSON line;
//! tests/bench/bench_engine.py puts it next to the reference's Engine on the same weights.
use std::time::Instant;

use crate::cli::chat_args::BenchEngineArgs;
use crate::engine::chat_engine::{Engine, GenerationSettings};
use crate::model::{Gpt, GptConfig};
use crate::tokenizer::{BpeEncoder, SPECIAL_TOKENS};

/// A vocabulary of `size` tokens: the 256 bytes, then distinct two-byte tokens, then the specials.
pub(super) fn synthetic_encoder(size: i64) -> anyhow::Result<BpeEncoder> {
    let mergeable = (size as usize).saturating_sub(SPECIAL_TOKENS.len()).max(256);
    let tokens: Vec<Vec<u8>> =
        (0..=255u8).map(|b| vec![b]).chain((0..=65535u16).map(|p| p.to_be_bytes().to_vec())).take(mergeable).collect();
    Ok(BpeEncoder::new(tokens, &SPECIAL_TOKENS)?)
}

pub fn run(args: &BenchEngineArgs) -> anyhow::Result<()> {
    let device = crate::hw::device::select(args.device, 0)?;
    let encoder = synthetic_encoder(args.vocab)?;
    tch::manual_seed(42);
    let config = GptConfig::from_depth(args.depth, i64::from(encoder.vocab_size()), 2048);
    let mut model = Gpt::new(config, device)?;
    model.init_weights();
    let engine = Engine::new(&model, &encoder)?;
    // A fixed pseudo-random prompt of mergeable tokens.
    let prompt: Vec<u32> = (0..args.prompt_len as u64)
        .map(|i| ((i * 2_654_435_761) % 50_000 % encoder.num_mergeable() as u64) as u32)
        .collect();
    let run = |rows: usize, max_tokens: usize| -> (f64, usize) {
        let settings = GenerationSettings { num_samples: rows, ..GenerationSettings::greedy(max_tokens) };
        let start = Instant::now();
        let columns = engine.generate(&prompt, &settings, |_, _| true);
        if let tch::Device::Cuda(d) = device {
            tch::Cuda::synchronize(d as i64);
        }
        (start.elapsed().as_secs_f64(), columns)
    };
    let _warmup = run(1, 2);
    let (ttft, _) = run(1, 1);
    let (t1, n1) = run(1, args.max_tokens);
    let (tb, nb) = run(args.batch, args.max_tokens);
    println!(
        "{}",
        serde_json::json!({
            "depth": args.depth, "vocab": encoder.vocab_size(), "prompt_len": args.prompt_len,
            "max_tokens": args.max_tokens, "device": format!("{device:?}"), "threads": tch::get_num_threads(),
            "time_to_first_token_ms": ttft * 1e3,
            "batch1_tokens_per_sec": n1 as f64 / (t1 - ttft).max(1e-9),
            "batch": args.batch,
            "batchN_tokens_per_sec": (nb * args.batch) as f64 / (tb - ttft).max(1e-9),
            "columns": [n1, nb],
        })
    );
    Ok(())
}
