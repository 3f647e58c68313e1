//! `nanochat bench tokenizer train|encode`: our BPE training (wall time, peak RSS) and encode
//! throughput on a JSONL corpus, one JSON line each; tests/bench/bench_compare.py runs them next to
//! rustbpe and tiktoken on the same corpus and prints the comparison (`make bench`).
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

use super::bench_train::peak_rss_mib;
use crate::cli::BenchTokenizerCommand;
use crate::tokenizer::rank_file::{load_rank_file, save_rank_file};
use crate::tokenizer::{BpeEncoder, BpeTrainer, SPECIAL_TOKENS};

pub fn run(command: &BenchTokenizerCommand) -> anyhow::Result<()> {
    match command {
        BenchTokenizerCommand::Train { corpus, vocab, out } => train(corpus, *vocab, out),
        BenchTokenizerCommand::Encode { ranks, corpus, max_mb } => encode(ranks, corpus, *max_mb),
    }
    .map_err(anyhow::Error::msg)
}

fn jsonl_documents(path: &Path) -> Result<impl Iterator<Item = String>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(std::io::BufReader::with_capacity(1 << 20, file)
        .lines()
        .map_while(|l| l.ok())
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<String>(&l).ok()))
}

fn train(corpus: &Path, vocab: u32, out: &Path) -> Result<(), String> {
    let t0 = Instant::now();
    let mut trainer = BpeTrainer::new(vocab).map_err(|e| e.to_string())?;
    trainer.count_documents(jsonl_documents(corpus)?).map_err(|e| e.to_string())?;
    let count_s = t0.elapsed().as_secs_f64();
    let merges = trainer.train(|_| {}).map_err(|e| e.to_string())?;
    let seconds = t0.elapsed().as_secs_f64();
    let tokens = merges.token_bytes().map_err(|e| e.to_string())?;
    save_rank_file(out, &tokens).map_err(|e| e.to_string())?;
    println!(
        "{{\"seconds\": {seconds:.3}, \"count_seconds\": {count_s:.3}, \"merge_seconds\": {:.3}, \"peak_rss_mib\": {:.1}, \"vocab\": {}, \"threads\": {}}}",
        seconds - count_s,
        peak_rss_mib(),
        tokens.len(),
        rayon::current_num_threads()
    );
    Ok(())
}

fn encode(ranks: &Path, corpus: &Path, max_mb: f64) -> Result<(), String> {
    let tokens = load_rank_file(ranks).map_err(|e| e.to_string())?;
    let enc = BpeEncoder::new(tokens, &SPECIAL_TOKENS).map_err(|e| e.to_string())?;
    let mut docs = Vec::new();
    let mut bytes = 0usize;
    for d in jsonl_documents(corpus)? {
        if bytes as f64 >= max_mb * 1e6 {
            break;
        }
        bytes += d.len();
        docs.push(d);
    }
    let mb = bytes as f64 / 1e6;
    // Warm-up, then one timed pass per mode (best of 3).
    let _ = enc.encode_ordinary(&docs[0]);
    let mut single = f64::MAX;
    let mut tokens = 0usize;
    for _ in 0..3 {
        let t0 = Instant::now();
        tokens = docs.iter().map(|d| enc.encode_ordinary(d).len()).sum();
        single = single.min(t0.elapsed().as_secs_f64());
    }
    let mut batch = f64::MAX;
    for _ in 0..3 {
        let t0 = Instant::now();
        let out = enc.encode_batch(&docs);
        batch = batch.min(t0.elapsed().as_secs_f64());
        assert_eq!(out.iter().map(Vec::len).sum::<usize>(), tokens);
    }
    println!(
        "{{\"mb\": {mb:.2}, \"tokens\": {tokens}, \"mb_per_s_1_thread\": {:.2}, \"mb_per_s_all_threads\": {:.2}, \"threads\": {}}}",
        mb / single,
        mb / batch,
        rayon::current_num_threads()
    );
    Ok(())
}
