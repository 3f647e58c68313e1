//! `nanochat generate` and `nanochat chat` end to end on the reference's d2 weights: the greedy
//! continuation equals the reference engine's, a base dir laid out by the Python nanochat
//! (base_checkpoints/dNN/, tokenizer/tokenizer.pkl) works as is, and chat keeps a conversation in a pipe.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use chat_fixtures::{chat_base, golden, golden_dir, nanochat, stdout};
use serde_json::Value;

/// The reference engine's greedy continuation of "The capital of France is" (24 tokens).
fn reference_greedy() -> (Vec<u64>, Vec<u64>) {
    let fixture = golden("engine.json");
    let case = fixture["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["prompt"] == "text" && c["settings"]["name"] == "greedy")
        .unwrap()
        .clone();
    let prompt: Vec<u64> = serde_json::from_value(case["tokens"].clone()).unwrap();
    let full: Vec<u64> = serde_json::from_value(case["results"][0].clone()).unwrap();
    (prompt.clone(), full[prompt.len()..].to_vec())
}

#[test]
fn generate_continues_like_the_reference_from_either_layout() {
    let (prompt, continuation) = reference_greedy();
    let args =
        ["generate", "--source", "base", "-p", "The capital of France is", "-t", "0", "--max-tokens", "24", "--json"];
    let ours = chat_base();
    let line: Value = serde_json::from_str(stdout(&nanochat(ours.dir.path(), &args, None)).trim()).unwrap();
    assert_eq!(line["prompt_ids"], serde_json::json!(prompt));
    assert_eq!(line["ids"], serde_json::json!(continuation));

    // A base dir as the Python nanochat leaves it.
    let reference = tempfile::tempdir().unwrap();
    let ckpt = reference.path().join("base_checkpoints/d2");
    std::fs::create_dir_all(&ckpt).unwrap();
    for f in ["model_000000.pt", "meta_000000.json"] {
        std::fs::copy(golden_dir().join("base_d2").join(f), ckpt.join(f)).unwrap();
    }
    std::fs::create_dir_all(reference.path().join("tokenizer")).unwrap();
    std::fs::copy(golden_dir().join("tokenizer.pkl"), reference.path().join("tokenizer/tokenizer.pkl")).unwrap();
    let line: Value = serde_json::from_str(stdout(&nanochat(reference.path(), &args, None)).trim()).unwrap();
    assert_eq!(line["ids"], serde_json::json!(continuation));

    // Several samples, plain text.
    let out = stdout(&nanochat(
        ours.dir.path(),
        &["generate", "--source", "base", "-p", "Hi", "-t", "1.0", "--num-samples", "3", "--max-tokens", "5"],
        None,
    ));
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.lines().all(|l| l.starts_with("Hi")));
    // No checkpoint of that phase: which stage makes one.
    let out = nanochat(ours.dir.path(), &["generate", "--source", "sft", "-p", "x"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `nanochat sft` first"));
}

#[test]
fn chat_keeps_the_conversation_and_understands_clear_and_quit() {
    let base = chat_base();
    let out =
        stdout(&nanochat(base.dir.path(), &["chat", "--source", "base", "-p", "Hello!", "--max-tokens", "8"], None));
    assert!(out.starts_with("Assistant: "), "{out}");
    assert_eq!(out.lines().count(), 1);
    let out = stdout(&nanochat(
        base.dir.path(),
        &["chat", "--source", "base", "--max-tokens", "6"],
        Some("Hello!\nHow are you?\nclear\nAgain\nquit\nnever read\n"),
    ));
    let replies = out.lines().filter(|l| l.starts_with("Assistant: ")).count();
    assert_eq!(replies, 3, "{out}");
    assert!(out.contains("Conversation cleared."), "{out}");
}
