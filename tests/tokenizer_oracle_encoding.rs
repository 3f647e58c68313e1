//! Encoder exactness: our ids must equal tiktoken's (built from the same ranks, NANOCHAT.md
//! §1.3 "Encoding") and HuggingFace `tokenizers` loading our tokenizer.json, on real text of
//! several scripts; decode(encode(x)) must give back x's bytes.

mod common;

use nanochat::tokenizer::hf_json::save_tokenizer_json;
use nanochat::tokenizer::rank_file::save_rank_file;
use nanochat::tokenizer::{AllowedSpecial, BpeEncoder, BpeTrainer};

fn texts_to_check() -> Vec<String> {
    let sample = common::multilingual_text();
    let mut texts: Vec<String> = sample.split("\n\n").map(String::from).collect();
    texts.push(sample.clone());
    texts.extend(sample.lines().map(String::from));
    // Real text not seen in training: stdlib files past the training budget.
    let stdlib = common::python_stdlib_text(3_000_000);
    texts.extend(stdlib.as_bytes()[2_000_000..].chunks(20_000).map(|c| String::from_utf8_lossy(c).into_owned()));
    texts.push("<|bos|>Hello<|user_start|>what's up?<|user_end|><|assistant_start|>".into());
    texts.push("x".repeat(1000) + &" ".repeat(300) + "\n".repeat(5).as_str());
    texts.push(String::new());
    texts
}

#[test]
fn ids_match_tiktoken_and_hf_tokenizers() {
    let docs = common::corpus_documents(2_000_000);
    let mut trainer = BpeTrainer::new(8_192 - 9).unwrap();
    trainer.count_documents(docs.iter().map(String::as_str)).unwrap();
    let merges = trainer.train(|_| {}).unwrap();
    let enc = BpeEncoder::from_merges(&merges).unwrap();

    let dir = common::temp_dir("oracle_encoding");
    let ranks = dir.join("tok.ranks");
    let hf = dir.join("tokenizer.json");
    save_rank_file(&ranks, enc.mergeable_tokens()).unwrap();
    save_tokenizer_json(&hf, &enc).unwrap();
    let texts = texts_to_check();
    let input = dir.join("texts.jsonl");
    common::write_jsonl(&input, &texts);
    let output = dir.join("ids.jsonl");
    common::run_oracle(
        "encode_reference.py",
        &[ranks.to_str().unwrap(), hf.to_str().unwrap(), input.to_str().unwrap(), output.to_str().unwrap()],
    );
    let rows: Vec<serde_json::Value> =
        std::fs::read_to_string(&output).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), texts.len());

    let ids = |v: &serde_json::Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    let mut total_tokens = 0;
    for (text, row) in texts.iter().zip(&rows) {
        let ours = enc.encode_ordinary(text);
        total_tokens += ours.len();
        assert_eq!(ours, ids(&row["tiktoken"]), "tiktoken differs on {text:?}");
        let ours_special = enc.encode_with_special(text, AllowedSpecial::All).unwrap();
        assert_eq!(ours_special, ids(&row["tiktoken_special"]), "tiktoken (specials) on {text:?}");
        // HF extracts added tokens always, so it matches our special-aware encoding.
        assert_eq!(ours_special, ids(&row["hf"]), "HF tokenizers differs on {text:?}");
        assert_eq!(row["hf_decoded"].as_str().unwrap(), text, "HF decode");
        assert_eq!(enc.decode(&ours).unwrap(), text.as_bytes());
        assert_eq!(enc.decode(&ours_special).unwrap(), text.as_bytes());
    }
    // Batch encoding and BOS helper agree with the single-text path.
    let batch = enc.encode_batch_with_bos(&texts).unwrap();
    let bos = enc.bos_id().unwrap();
    assert_eq!(bos, 8_192 - 9);
    for (t, b) in texts.iter().zip(&batch) {
        assert_eq!(b[0], bos);
        assert_eq!(&b[1..], enc.encode_ordinary(t).as_slice());
    }
    assert!(total_tokens > 100_000, "only {total_tokens} tokens compared");
}
