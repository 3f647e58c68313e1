//! The engine against the reference's `Engine.generate_batch` on the same d2 weights and prompts
//! (tests/golden/chat/engine.json): greedy, top-k and full-softmax sampling from a seeded generator,
//! several samples per prompt, token for token on CPU.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use chat_fixtures::{golden, golden_dir, golden_encoder};
use nanochat::checkpoint::source::SourceCheckpoint;
use nanochat::engine::chat_engine::{Engine, GenerationSettings, SamplingRng};

#[test]
fn generations_match_the_reference_engine() {
    let fixture = golden("engine.json");
    let encoder = golden_encoder();
    let model = SourceCheckpoint::in_dir(&golden_dir().join("base_d2"), None)
        .unwrap()
        .load_model(tch::Device::Cpu, nanochat::model::Precision::Float32)
        .unwrap();
    let engine = Engine::new(&model, &encoder).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let s = &case["settings"];
        let settings = GenerationSettings {
            num_samples: s["num_samples"].as_u64().unwrap() as usize,
            max_tokens: s["max_tokens"].as_u64().map(|m| m as usize),
            temperature: s["temperature"].as_f64().unwrap(),
            top_k: s["top_k"].as_i64(),
            seed: s["seed"].as_i64().unwrap(),
            rng: SamplingRng::Torch,
        };
        let prompt: Vec<u32> = serde_json::from_value(case["tokens"].clone()).unwrap();
        let (results, masks) = engine.generate_batch(&prompt, &settings);
        let what = format!("{} / {}", case["prompt"], s["name"]);
        assert_eq!(serde_json::json!(results), case["results"], "{what}: tokens");
        assert_eq!(serde_json::json!(masks), case["masks"], "{what}: masks");
    }
}
