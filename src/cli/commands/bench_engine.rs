//! `nanochat bench engine`: generation speed of the engine (NANOCHAT.md §7) on a freshly initialised
//! model (seed 42, the reference's init) and a random prompt: time to the first token (prefill and
//! one sample) and greedy decode tokens/s with one row and with `--batch` rows, then the same decode
//! through the server's continuous-batching scheduler (`--batch` sequences of that prompt in one
//! batch). Prints one JSON line; tests/bench/bench_engine.py puts it next to the reference's Engine on
//! the same weights.
use std::time::Instant;

use crate::cli::chat_args::BenchEngineArgs;
use crate::engine::chat_engine::{Engine, GenerationSettings};
use crate::engine::kv_arena::KvArena;
use crate::engine::scheduler::{
    BatchLimits, Finish, NewSequence, PackedModel, Scheduler, SequenceSettings, SequenceSink,
};
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
    let precision = crate::model::Precision::resolve(&args.dtype, device)?;
    let mut model = Gpt::with_precision(config, device, precision)?;
    model.init_weights();
    crate::engine::loaded_model::store_for_inference(&model);
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
    let scheduled = |rows: usize| -> anyhow::Result<f64> {
        let arena = KvArena::new(model.kv_shape(), 256)?;
        let limits = BatchLimits { max_batch: rows, prefill_chunk: args.prompt_len * rows };
        let mut scheduler = Scheduler::new(&model, &encoder, arena, limits)?;
        let settings =
            SequenceSettings { max_tokens: args.max_tokens, temperature: 0.0, top_k: None, seed: 0, deadline: None };
        let sequences =
            (0..rows).map(|_| NewSequence { prompt: prompt.clone(), settings, sink: Box::new(Discard) }).collect();
        if scheduler.admit(sequences).is_err() {
            anyhow::bail!("{rows} sequences of {} tokens do not fit in the benchmark's KV cache", prompt.len());
        }
        scheduler.step(); // the prefill and the first token, outside the decode timing
        let (start, mut tokens) = (Instant::now(), 0);
        while scheduler.running() > 0 {
            tokens += scheduler.step();
        }
        if let tch::Device::Cuda(d) = device {
            tch::Cuda::synchronize(d as i64);
        }
        Ok(tokens as f64 / start.elapsed().as_secs_f64().max(1e-9))
    };
    let (s1, sb) = (scheduled(1)?, scheduled(args.batch)?);
    println!(
        "{}",
        serde_json::json!({
            "depth": args.depth, "vocab": encoder.vocab_size(), "prompt_len": args.prompt_len,
            "max_tokens": args.max_tokens, "device": format!("{device:?}"), "threads": tch::get_num_threads(),
            "dtype": precision.to_string(),
            "time_to_first_token_ms": ttft * 1e3,
            "batch1_tokens_per_sec": n1 as f64 / (t1 - ttft).max(1e-9),
            "batch": args.batch,
            "batchN_tokens_per_sec": (nb * args.batch) as f64 / (tb - ttft).max(1e-9),
            "columns": [n1, nb],
            "scheduler_batch1_tokens_per_sec": s1,
            "scheduler_batchN_tokens_per_sec": sb,
        })
    );
    Ok(())
}

/// A sink that keeps nothing: only the scheduler's speed is measured.
struct Discard;

impl SequenceSink for Discard {
    fn token(&mut self, _: u32, _: bool) -> bool {
        true
    }
    fn is_cancelled(&self) -> bool {
        false
    }
    fn finish(&mut self, _: usize, _: Finish) {}
}
