//! Exactness against the reference trainer: rustbpe (PyPI, NANOCHAT.md §1.3) and our
//! `BpeTrainer` must produce the same mergeable ranks — the same byte string at every rank —
//! on the same real text, at a small and a large vocab size.

mod common;

use nanochat::tokenizer::rank_file::load_rank_file;
use nanochat::tokenizer::BpeTrainer;

fn compare_with_rustbpe(docs: &[String], corpus: &std::path::Path, vocab: u32) {
    let dir = corpus.parent().unwrap();
    let out = dir.join(format!("rustbpe_{vocab}.ranks"));
    let report =
        common::run_oracle("train_rustbpe.py", &[corpus.to_str().unwrap(), &vocab.to_string(), out.to_str().unwrap()]);
    eprintln!("rustbpe vocab {vocab}: {}", report.trim());
    let expected = load_rank_file(&out).unwrap();

    let mut trainer = BpeTrainer::new(vocab).unwrap();
    trainer.count_documents(docs.iter().map(String::as_str)).unwrap();
    let merges = trainer.train(|_| {}).unwrap();
    let ours = merges.token_bytes().unwrap();

    if let Some(i) = (0..ours.len().min(expected.len())).find(|&i| ours[i] != expected[i]) {
        panic!(
            "vocab {vocab}: first difference at rank {i}: ours {:?} rustbpe {:?}",
            String::from_utf8_lossy(&ours[i]),
            String::from_utf8_lossy(&expected[i])
        );
    }
    assert_eq!(ours.len(), expected.len(), "vocab {vocab}: different number of tokens");
    assert_eq!(ours.len(), vocab as usize, "the corpus should allow all merges");
}

#[test]
fn merges_match_rustbpe_at_512_and_20000() {
    let docs = common::corpus_documents(4_000_000);
    let total: usize = docs.iter().map(String::len).sum();
    assert!(total > 3_000_000, "only {total} bytes of corpus text found");
    let dir = common::temp_dir("oracle_training");
    let corpus = dir.join("corpus.jsonl");
    common::write_jsonl(&corpus, &docs);
    compare_with_rustbpe(&docs, &corpus, 512);
    compare_with_rustbpe(&docs, &corpus, 20_000);
}

#[test]
fn merges_match_rustbpe_on_multilingual_text() {
    // Non-Latin scripts dominate: the sample repeated with numbered variations, one doc per line.
    let sample = common::multilingual_text();
    let docs: Vec<String> = (0..300).flat_map(|i| sample.lines().map(move |l| format!("{l} {i}"))).collect();
    let dir = common::temp_dir("oracle_training_multilingual");
    let corpus = dir.join("corpus.jsonl");
    common::write_jsonl(&corpus, &docs);
    compare_with_rustbpe(&docs, &corpus, 1_500);
}
