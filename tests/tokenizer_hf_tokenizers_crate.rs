//! The `tokenizer.json` we write must load in the Rust `tokenizers` crate (DESIGN.md
//! "Tokenizer") and encode text to our ids — no Python needed for this one.

mod common;

use nanochat::tokenizer::hf_json::save_tokenizer_json;
use nanochat::tokenizer::{AllowedSpecial, BpeEncoder, BpeTrainer};

#[test]
fn tokenizers_crate_encodes_like_us() {
    let docs = common::corpus_documents(1_000_000);
    let mut trainer = BpeTrainer::new(4_096 - 9).unwrap();
    trainer.count_documents(docs.iter().map(String::as_str)).unwrap();
    let enc = BpeEncoder::from_merges(&trainer.train(|_| {}).unwrap()).unwrap();
    let dir = common::temp_dir("hf_tokenizers_crate");
    let path = dir.join("tokenizer.json");
    save_tokenizer_json(&path, &enc).unwrap();
    let mut hf = tokenizers::Tokenizer::from_file(&path).unwrap();
    assert_eq!(hf.get_vocab_size(true), 4_096);
    assert_eq!(hf.token_to_id("<|bos|>"), Some(4_087));

    let mut texts: Vec<String> = common::multilingual_text().lines().map(String::from).collect();
    texts.push(common::multilingual_text());
    texts.push("<|bos|>Hi<|user_start|>2+2?<|user_end|><|assistant_start|>4<|assistant_end|>".into());
    let stdlib = common::python_stdlib_text(1_500_000);
    texts.extend(stdlib.as_bytes()[1_000_000..].chunks(10_000).map(|c| String::from_utf8_lossy(c).into_owned()));
    let mut compared = 0;
    for text in &texts {
        // Added (special) tokens are always extracted by `tokenizers`.
        let ours = enc.encode_with_special(text, AllowedSpecial::All).unwrap();
        let theirs = hf.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(ours, theirs, "differs on {text:?}");
        assert_eq!(hf.decode(&theirs, false).unwrap(), *text);
        compared += ours.len();
    }
    // With special-token extraction off, it matches ordinary encoding.
    hf.set_encode_special_tokens(true);
    for text in &texts {
        let theirs = hf.encode(text.as_str(), false).unwrap().get_ids().to_vec();
        assert_eq!(enc.encode_ordinary(text), theirs, "differs on {text:?}");
    }
    assert!(compared > 50_000, "only {compared} tokens compared");
}
