//! The chat format and the task datasets against golden fixtures made by running the reference
//! (nanochat 10231df) over the stand-in datasets of manifests/data/chat_smoke
//! (tests/golden/chat/make_chat_golden.py): rendered ids and masks, every task's examples, the
//! answer checks, and the mid/SFT mixtures.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use chat_fixtures::{chat_base, golden, golden_encoder as encoder, root};
use std::sync::Arc;

use nanochat::chat::tasks::arc::Arc as ArcTask;
use nanochat::chat::tasks::custom_json::CustomJson;
use nanochat::chat::tasks::gsm8k::Gsm8k;
use nanochat::chat::tasks::humaneval::HumanEval;
use nanochat::chat::tasks::mmlu::Mmlu;
use nanochat::chat::tasks::smoltalk::SmolTalk;
use nanochat::chat::tasks::spelling::{SimpleSpelling, SpellingBee};
use nanochat::chat::tasks::{extract_answer, Examples, SharedTask, Slice, Sliced, TaskMixture};
use nanochat::chat::{ChatRenderer, Conversation};
use nanochat::paths::Paths;
use serde_json::Value;

fn slice_of(args: &Value) -> Slice {
    Slice {
        start: args["start"].as_u64().unwrap_or(0) as usize,
        stop: args["stop"].as_u64().map(|s| s as usize),
        step: args["step"].as_u64().unwrap_or(1) as usize,
    }
}

fn shared<E: Examples + 'static>(examples: E, args: &Value) -> SharedTask {
    Arc::new(Sliced::new(examples, slice_of(args)).unwrap())
}

/// The reference's constructor call `Task(**args)` as ours.
fn open(paths: &Paths, task: &str, args: &Value) -> SharedTask {
    let s = |k: &str| args[k].as_str().unwrap_or_else(|| panic!("{task}: no {k} in {args}"));
    let size = || args["size"].as_u64().unwrap() as usize;
    match task {
        "SmolTalk" => shared(SmolTalk::load(paths, s("split")).unwrap(), args),
        "MMLU" => shared(Mmlu::load(paths, s("subset"), s("split")).unwrap(), args),
        "ARC" => shared(ArcTask::load(paths, s("subset"), s("split")).unwrap(), args),
        "GSM8K" => shared(Gsm8k::load(paths, s("subset"), s("split")).unwrap(), args),
        "HumanEval" => shared(HumanEval::load(paths).unwrap(), args),
        "CustomJSON" => shared(CustomJson::load(&paths.chat_extras().join(s("filepath"))).unwrap(), args),
        "SpellingBee" => shared(SpellingBee::load(paths, size(), s("split")).unwrap(), args),
        "SimpleSpelling" => shared(SimpleSpelling::load(paths, size(), s("split")).unwrap(), args),
        other => panic!("no task {other}"),
    }
}

#[test]
fn rendering_matches_the_reference() {
    let fixture = golden("render.json");
    let enc = encoder();
    let renderer = ChatRenderer::new(&enc).unwrap();
    let max_tokens = fixture["max_tokens"].as_u64().unwrap() as usize;
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let conversation = Conversation::from_json(&case["conversation"]).unwrap();
        let rendered = renderer.render(&conversation, max_tokens).unwrap();
        let ids: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let mask: Vec<u8> = serde_json::from_value(case["mask"].clone()).unwrap();
        assert_eq!(rendered.ids, ids, "{name}: ids");
        assert_eq!(rendered.mask, mask, "{name}: mask");
        match &case["completion_ids"] {
            Value::Null => assert!(renderer.render_for_completion(&conversation).is_err(), "{name}: completion"),
            expected => {
                let expected: Vec<u32> = serde_json::from_value(expected.clone()).unwrap();
                assert_eq!(renderer.render_for_completion(&conversation).unwrap(), expected, "{name}: completion");
            }
        }
    }
}

#[test]
fn every_task_gives_the_reference_examples() {
    let fixture = golden("tasks.json");
    let data = chat_base();
    let mut checked = 0;
    for entry in fixture["tasks"].as_array().unwrap() {
        let (name, args) = (entry["task"].as_str().unwrap(), &entry["args"]);
        let task = open(&data.paths, name, args);
        assert_eq!(task.len() as u64, entry["len"].as_u64().unwrap(), "{name} {args}: len");
        for example in entry["examples"].as_array().unwrap() {
            let index = example["index"].as_u64().unwrap() as usize;
            if index >= task.len() {
                // The reference does not bound-check a slice's logical index (an index past the end reaches
                // the dataset: an IndexError, or for the synthetic tasks an example); ours is an error.
                let err = task.get(index).unwrap_err().to_string();
                assert!(err.contains("out of range"), "{err}");
                continue;
            }
            let ours = task.get(index).unwrap_or_else(|e| panic!("{name} {args} #{index}: {e}"));
            assert_eq!(ours.to_json(), example["conversation"], "{name} {args} #{index}");
            checked += 1;
        }
    }
    assert!(checked > 150, "{checked}");
}

#[test]
fn answer_checks_match_the_reference() {
    let fixture = golden("evaluate.json");
    for case in fixture["extract"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(extract_answer(text).as_deref(), case["answer"].as_str(), "extract_answer({text:?})");
    }
    let data = chat_base();
    for case in fixture["cases"].as_array().unwrap() {
        let task = open(&data.paths, case["task"].as_str().unwrap(), &case["args"]);
        let conversation = task.get(case["index"].as_u64().unwrap() as usize).unwrap();
        let response = case["response"].as_str().unwrap();
        let expected = case["result"].as_bool().unwrap_or_else(|| case["result"].as_i64().unwrap() == 1);
        assert_eq!(task.evaluate(&conversation, response).unwrap(), expected, "{case}");
    }
}

#[test]
fn mixtures_interleave_like_the_reference() {
    let fixture = golden("mixtures.json");
    let data = chat_base();
    for key in ["mid_train", "mid_val", "sft_train"] {
        let entry = &fixture[key];
        let tasks: Vec<SharedTask> = entry["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| open(&data.paths, t["task"].as_str().unwrap(), &t["args"]))
            .collect();
        let mixture = TaskMixture::new(tasks);
        assert_eq!(mixture.num_examples() as u64, entry["len"].as_u64().unwrap(), "{key}");
        let head: Vec<(u32, u32)> = serde_json::from_value(entry["index_map_head"].clone()).unwrap();
        assert_eq!(mixture.index_map()[..head.len()], head[..], "{key}");
        for (i, example) in entry["first_examples"].as_array().unwrap().iter().enumerate() {
            assert_eq!(mixture.example(i).unwrap().to_json(), *example, "{key} #{i}");
        }
    }
    let val = &fixture["sft_val"];
    let task = open(&data.paths, val["task"].as_str().unwrap(), &val["args"]);
    assert_eq!(task.len() as u64, val["len"].as_u64().unwrap());
    for (i, example) in val["first_examples"].as_array().unwrap().iter().enumerate() {
        assert_eq!(task.get(i).unwrap().to_json(), *example, "sft_val #{i}");
    }
}

/// The catalog's mixtures (what the stages use) are the reference's for the reference's sizes.
#[test]
fn stage_mixtures_follow_the_preset() {
    let fixture = golden("mixtures.json");
    let data = chat_base();
    let config = nanochat::config::resolve("d20", &[], None).unwrap();
    let mid = nanochat::chat::tasks::catalog::mid_train_mixture(&data.paths, &config.mid_train).unwrap();
    assert_eq!(mid.len() as u64, fixture["mid_train"]["len"].as_u64().unwrap());
    assert_eq!(mid.get(0).unwrap().to_json(), fixture["mid_train"]["first_examples"][0]);
    let val = nanochat::chat::tasks::catalog::mid_val_mixture(&data.paths, &config.mid_train).unwrap();
    assert_eq!(val.len() as u64, fixture["mid_val"]["len"].as_u64().unwrap());
    assert_eq!(val.get(1).unwrap().to_json(), fixture["mid_val"]["first_examples"][1]);
    let sft = nanochat::chat::tasks::catalog::sft_train_mixture(&data.paths, &config.chat_sft).unwrap();
    assert_eq!(sft.len() as u64, fixture["sft_train"]["len"].as_u64().unwrap());
    assert_eq!(sft.get(2).unwrap().to_json(), fixture["sft_train"]["first_examples"][2]);
}

/// The reference's pickled tokenizer loads as the same encoder as its rank file, and encodes the
/// reference's sample texts to the same ids.
#[test]
fn the_reference_tokenizer_pickle_loads() {
    let golden_dir = root().join("tests/golden/chat");
    let from_pickle = nanochat::tokenizer::artifacts::load_from(&golden_dir.join("tokenizer.pkl")).unwrap();
    let from_ranks = encoder();
    assert_eq!(from_pickle.mergeable_tokens(), from_ranks.mergeable_tokens());
    assert_eq!(from_pickle.vocab_size(), 2048);
    let meta = golden("tokenizer_meta.json");
    for sample in meta["encode"].as_array().unwrap() {
        let ids: Vec<u32> = serde_json::from_value(sample["ids"].clone()).unwrap();
        assert_eq!(from_pickle.encode_ordinary(sample["text"].as_str().unwrap()), ids);
    }
    // A directory laid out like the reference's base_dir/tokenizer/ works too.
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(golden_dir.join("tokenizer.pkl"), dir.path().join("tokenizer.pkl")).unwrap();
    let from_dir = nanochat::tokenizer::artifacts::load_from(dir.path()).unwrap();
    assert_eq!(from_dir.mergeable_tokens(), from_ranks.mergeable_tokens());
    // Something else pickled is a clear error.
    let other = dir.path().join("other.pkl");
    std::fs::write(&other, b"\x80\x04K\x05.").unwrap();
    let err = nanochat::tokenizer::artifacts::load_from(&other).err().unwrap().to_string();
    assert!(err.contains("not a nanochat tokenizer.pkl"), "{err}");
}
