//! CORE against the reference's core_eval.py / base_eval.py on the same weights, tokenizer and
//! bundles (tests/golden/core/, made by make_core_golden.py): the shuffle and crop, the few-shot
//! draws, the rendered prompts character for character, the token spans, every example's verdict
//! and mean losses, each task's accuracy and centered accuracy, and CORE; with one example per
//! forward pass (as the reference) and with several.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use std::path::PathBuf;

use chat_fixtures::{golden_encoder, root};
use nanochat::checkpoint::source::SourceCheckpoint;
use nanochat::dist::{Cluster, DistContext};
use nanochat::eval::core::bundle::CoreExample;
use nanochat::eval::core::prompts::{fewshot_indices, render_prompts};
use nanochat::eval::core::scoring::tokenize;
use nanochat::eval::core::{evaluate_task, CoreBundle, CoreResults};
use serde_json::Value;

fn core_dir() -> PathBuf {
    root().join("tests/golden/core")
}

const LOSS_TOLERANCE: f64 = 1e-4;

#[test]
fn core_matches_the_reference_example_for_example() {
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(core_dir().join("core.json")).unwrap()).unwrap();
    let encoder = golden_encoder();
    let bos = encoder.bos_id().unwrap();
    let model = SourceCheckpoint::in_dir(&core_dir().join("model_d2"), None)
        .unwrap()
        .load_model(tch::Device::Cpu, nanochat::model::Precision::Float32)
        .unwrap();
    let ctx = DistContext::single();
    let cluster = Cluster { ctx: &ctx, group: None, device: tch::Device::Cpu };
    let runs = golden["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let (mut examples_seen, mut nan_spans, mut correct_seen) = (0, 0, 0);
    // Largest mean-loss difference from the reference: one example per forward pass, several.
    let mut worst = [0f64; 2];
    for run in runs {
        let bundle = CoreBundle::open(&core_dir().join("bundles").join(run["bundle"].as_str().unwrap())).unwrap();
        let max = run["max_per_task"].as_i64().unwrap();
        let crop = (max > 0).then_some(max as usize);
        let golden_tasks = run["tasks"].as_array().unwrap();
        assert_eq!(bundle.tasks.len(), golden_tasks.len());
        for batch_tokens in [1, 4096] {
            let mut results = Vec::new();
            for (task, want) in bundle.tasks.iter().zip(golden_tasks) {
                let what = format!("{} {} (max {max}, batch {batch_tokens})", run["bundle"], task.label);
                assert_eq!(task.label, want["label"].as_str().unwrap());
                assert_eq!(task.task_type.name(), want["task_type"].as_str().unwrap(), "{what}");
                assert_eq!(task.num_fewshot as u64, want["num_fewshot"].as_u64().unwrap(), "{what}");
                assert_eq!(task.delimiter, want["delimiter"].as_str().unwrap(), "{what}");
                assert_eq!(task.random_baseline, want["random_baseline"].as_f64().unwrap(), "{what}");

                // The shuffle and crop: example i is line want.examples[i].line of the file.
                let examples = bundle.examples(task, crop).unwrap();
                let lines: Vec<String> =
                    std::fs::read_to_string(bundle.data_path(task)).unwrap().lines().map(String::from).collect();
                let wanted = want["examples"].as_array().unwrap();
                assert_eq!(examples.len(), wanted.len(), "{what}");
                for (idx, (example, w)) in examples.iter().zip(wanted).enumerate() {
                    let line = &lines[w["line"].as_u64().unwrap() as usize];
                    let original =
                        CoreExample::from_json(task.task_type, &serde_json::from_str(line).unwrap()).unwrap();
                    assert_eq!(*example, original, "{what} example {idx}: the shuffle");
                    let shots = fewshot_indices(idx, examples.len(), task.num_fewshot).unwrap();
                    assert_eq!(serde_json::json!(shots), w["fewshot"], "{what} example {idx}: few-shot draw");
                    let fewshot: Vec<&CoreExample> = shots.iter().map(|&i| &examples[i]).collect();
                    let prompts = render_prompts(example, &task.delimiter, &fewshot);
                    assert_eq!(serde_json::json!(prompts), w["prompts"], "{what} example {idx}: prompts");
                    let tokens = tokenize(&encoder, bos, task.task_type, &prompts).unwrap();
                    let lengths: Vec<usize> = tokens.rows.iter().map(Vec::len).collect();
                    assert_eq!(serde_json::json!(lengths), w["lengths"], "{what} example {idx}: tokens");
                    assert_eq!(serde_json::json!(tokens.starts), w["starts"], "{what} example {idx}: starts");
                    assert_eq!(serde_json::json!(tokens.ends), w["ends"], "{what} example {idx}: ends");
                }

                // Scoring.
                let result = evaluate_task(&model, &encoder, task, &examples, &cluster, batch_tokens).unwrap();
                for (idx, (outcome, w)) in result.outcomes.iter().zip(wanted).enumerate() {
                    let outcome = outcome.as_ref().unwrap();
                    assert_eq!(outcome.correct, w["correct"].as_bool().unwrap(), "{what} example {idx}: verdict");
                    let want_losses = w["mean_losses"].as_array().unwrap();
                    assert_eq!(outcome.mean_losses.len(), want_losses.len(), "{what} example {idx}");
                    for (ours, theirs) in outcome.mean_losses.iter().zip(want_losses) {
                        match theirs.as_f64() {
                            Some(t) => {
                                assert!((ours - t).abs() < LOSS_TOLERANCE, "{what} example {idx}: {ours} vs {t}");
                                worst[usize::from(batch_tokens > 1)] =
                                    worst[usize::from(batch_tokens > 1)].max((ours - t).abs());
                            }
                            None => {
                                assert!(ours.is_nan(), "{what} example {idx}: an empty span's mean is NaN");
                                nan_spans += 1;
                            }
                        }
                    }
                    examples_seen += 1;
                    correct_seen += usize::from(outcome.correct);
                }
                // Exact up to serde_json's float parsing (not always correctly rounded): 1e-15.
                let (accuracy, centered) = (want["accuracy"].as_f64().unwrap(), want["centered"].as_f64().unwrap());
                assert!((result.accuracy - accuracy).abs() < 1e-15, "{what}: the float32 mean {accuracy}");
                assert!((result.centered - centered).abs() < 1e-15, "{what}: centered {centered}");
                results.push(result);
            }
            let core = CoreResults::new(results).core;
            assert!((core - run["core_metric"].as_f64().unwrap()).abs() < 1e-15, "{} CORE", run["bundle"]);
        }
    }
    eprintln!("largest |mean loss - reference|: {:e} (one example per pass), {:e} (batched)", worst[0], worst[1]);
    // The fixtures exercise what they claim to.
    let recorded: usize =
        runs.iter().flat_map(|r| r["tasks"].as_array().unwrap()).map(|t| t["examples"].as_array().unwrap().len()).sum();
    assert_eq!(examples_seen, 2 * recorded, "every recorded example, at both batch sizes");
    assert!(nan_spans > 0, "a choice whose tokens prefix another's");
    assert!(correct_seen > 0 && correct_seen < examples_seen);
}
