//! `nanochat bench chat-data`: tokens per second of the chat stages' data paths on this machine —
//! the midtraining token stream (task rows → conversations → rendering → B·T+1 windows, §5.3) and
//! the SFT batches (rendering, padding and masking, §5.4) — with the preset's mixtures, batch shapes
//! and tokenizer, next to what one GPU consumes in the d20 speedrun. Building the mixtures (reading
//! the parquet files) is timed separately.
use std::sync::Arc;
use std::time::Instant;

use super::bench_dataloader::D20_TOKENS_PER_SECOND_PER_GPU;
use crate::chat::batches::{ConversationStream, ExampleBatches, StreamSlot};
use crate::chat::tasks::catalog::{mid_train_mixture, sft_train_mixture};
use crate::cli::chat_args::BenchChatDataArgs;
use crate::cli::GlobalOptions;
use crate::tokenizer::artifacts;

pub fn run(global: &GlobalOptions, args: &BenchChatDataArgs) -> anyhow::Result<()> {
    let config = global.resolve_config()?;
    let paths = global.paths();
    let encoder = Arc::new(artifacts::load(&paths.tokenizer())?);
    let slot = StreamSlot { stream: 0, streams: 1 };
    let cpu = tch::Device::Cpu;

    let (mid, sft) = (&config.mid_train, &config.chat_sft);
    let t0 = Instant::now();
    let mid_task = mid_train_mixture(&paths, mid)?;
    let mid_load = t0.elapsed().as_secs_f64();
    let (b, t) = (mid.device_batch_size as usize, mid.max_seq_len as usize);
    let mut stream = ConversationStream::new(mid_task.clone(), encoder.clone(), slot, b, t, cpu)?;
    let _warmup = stream.next_batch()?;
    let start = Instant::now();
    for _ in 0..args.batches {
        stream.next_batch()?;
    }
    let mid_rate = (args.batches * b * t) as f64 / start.elapsed().as_secs_f64();

    let t0 = Instant::now();
    let sft_task = sft_train_mixture(&paths, sft)?;
    let sft_load = t0.elapsed().as_secs_f64();
    let mut batches = ExampleBatches::new(sft_task.clone(), encoder, slot, sft.device_batch_size as usize, cpu)?;
    let _warmup = batches.next_batch()?;
    let (mut padded, mut supervised) = (0i64, 0i64);
    let start = Instant::now();
    for _ in 0..args.batches {
        let (x, y) = batches.next_batch()?;
        padded += x.numel() as i64;
        supervised += y.ge(0).sum(tch::Kind::Int64).int64_value(&[]);
    }
    let sft_secs = start.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "preset": config.run.name,
            "threads": rayon::current_num_threads(),
            "d20_tokens_per_sec_per_gpu": D20_TOKENS_PER_SECOND_PER_GPU,
            "mid": {
                "conversations": mid_task.len(), "mixture_load_s": mid_load, "batch": b, "seq_len": t,
                "batches": args.batches, "tokens_per_sec": mid_rate,
                "headroom": mid_rate / D20_TOKENS_PER_SECOND_PER_GPU,
            },
            "sft": {
                "examples": sft_task.len(), "mixture_load_s": sft_load, "batch": sft.device_batch_size,
                "batches": args.batches, "padded_tokens_per_sec": padded as f64 / sft_secs,
                "supervised_tokens_per_sec": supervised as f64 / sft_secs,
                "headroom": padded as f64 / sft_secs / D20_TOKENS_PER_SECOND_PER_GPU,
            },
        })
    );
    Ok(())
}
