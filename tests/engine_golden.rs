//! The engine against the reference's `Engine.generate_batch` on the same d2 weights and prompts
//! (tests/golden/chat/engine.json): greedy, top-k and full-softmax sampling from a seeded generator,
//! several samples per prompt, token for token on CPU; and the continuous-batching scheduler against
//! the engine: greedy replies in a batch equal the same prompts alone, seeded sampling reproducible.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use chat_fixtures::{golden, golden_d2_model, golden_encoder};
use nanochat::engine::chat_engine::{Engine, GenerationSettings, SamplingRng};
use nanochat::engine::kv_arena::KvArena;
use nanochat::engine::scheduler::{
    BatchLimits, Finish, NewSequence, PackedModel, Scheduler, SequenceSettings, SequenceSink,
};
use nanochat::serve::request::{Role, Turn};
use nanochat::serve::workers::prompt_tokens;

#[test]
fn generations_match_the_reference_engine() {
    let fixture = golden("engine.json");
    let encoder = golden_encoder();
    let model = golden_d2_model();
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

/// A sequence's output in the batch tests: its tokens and how it ended.
#[derive(Clone, Default)]
struct Collected(std::rc::Rc<std::cell::RefCell<(Vec<u32>, Option<Finish>)>>);

impl SequenceSink for Collected {
    fn token(&mut self, token: u32, _forced: bool) -> bool {
        self.0.borrow_mut().0.push(token);
        true
    }
    fn is_cancelled(&self) -> bool {
        false
    }
    fn finish(&mut self, _generated: usize, finish: Finish) {
        self.0.borrow_mut().1 = Some(finish);
    }
}

/// 200 chat prompts of 10 to about 80 tokens.
fn chat_prompts(engine: &Engine<'_, nanochat::model::Gpt>) -> Vec<Vec<u32>> {
    let words = ["sky", "blue", "why", "robot", "paint", "seven", "plus", "river", "cold", "light", "tell", "me"];
    (0..200)
        .map(|i| {
            let text: Vec<&str> = (0..(i * 7) % 40 + 1).map(|j| words[(i * 5 + j * 3) % words.len()]).collect();
            let turns = vec![Turn { role: Role::User, content: format!("Question {i}: {}?", text.join(" ")) }];
            prompt_tokens(engine, &turns)
        })
        .collect()
}

/// Runs `prompts` through the continuous-batching scheduler: one joins at every step (at most
/// `max_batch` at once, the rest wait for a seat), prompts prefilled `prefill_chunk` tokens a step.
fn run_batched(
    model: &nanochat::model::Gpt,
    encoder: &nanochat::tokenizer::BpeEncoder,
    prompts: &[Vec<u32>],
    settings: impl Fn(usize) -> SequenceSettings,
    limits: BatchLimits,
) -> Vec<Vec<u32>> {
    let arena = KvArena::new(PackedModel::kv_shape(model), 64).unwrap();
    let mut scheduler = Scheduler::new(model, encoder, arena, limits).unwrap();
    let sinks: Vec<Collected> = prompts.iter().map(|_| Collected::default()).collect();
    let mut next = 0;
    let mut most = 0;
    while next < prompts.len() || scheduler.running() > 0 {
        if next < prompts.len() {
            let row = NewSequence {
                prompt: prompts[next].clone(),
                settings: settings(next),
                sink: Box::new(sinks[next].clone()),
            };
            if scheduler.admit(vec![row]).is_ok() {
                next += 1;
            }
        }
        most = most.max(scheduler.running());
        scheduler.step();
    }
    assert_eq!(most, limits.max_batch.min(prompts.len()), "the batch fills up");
    assert_eq!(scheduler.arena().blocks_in_use(), 0, "every sequence gave its KV back");
    sinks
        .into_iter()
        .map(|s| {
            let (tokens, finish) = s.0.borrow().clone();
            assert!(matches!(finish, Some(Finish::Stop | Finish::Length)), "{finish:?}");
            tokens
        })
        .collect()
}

/// Greedy replies decoded 32 at a time, joining and leaving the batch at different steps with chunked
/// prefill in between, equal the same prompts generated alone by the engine, except where the two top
/// logits are within 1e-4 of each other (fp32 sums in another order may break such a tie the other
/// way); every difference is shown to start at such a near-tie.
#[test]
fn batched_greedy_replies_equal_the_same_prompts_alone() {
    let encoder = golden_encoder();
    let model = golden_d2_model();
    let engine = Engine::new(&model, &encoder).unwrap();
    let prompts = chat_prompts(&engine);
    let max_tokens = 24;
    let greedy = |_| SequenceSettings { max_tokens, temperature: 0.0, top_k: None, seed: 0, deadline: None };
    let batched = run_batched(&model, &encoder, &prompts, greedy, BatchLimits { max_batch: 32, prefill_chunk: 48 });
    let mut differences = 0;
    for (prompt, batched) in prompts.iter().zip(&batched) {
        let (rows, _) = engine.generate_batch(prompt, &GenerationSettings::greedy(max_tokens));
        let alone = &rows[0][prompt.len()..];
        if alone == batched.as_slice() {
            continue;
        }
        differences += 1;
        let at = alone.iter().zip(batched).take_while(|(a, b)| a == b).count();
        let context: Vec<i64> = prompt.iter().chain(&alone[..at]).map(|&t| i64::from(t)).collect();
        let logits = tch::no_grad(|| model.forward(&tch::Tensor::from_slice(&context).view([1, -1]), None));
        let (top, ids) = logits.select(1, context.len() as i64 - 1).topk(2, -1, true, true);
        let gap = top.double_value(&[0, 0]) - top.double_value(&[0, 1]);
        let pair = [ids.int64_value(&[0, 0]), ids.int64_value(&[0, 1])];
        eprintln!("prompt of {} tokens: the replies part at token {at}, top-2 logit gap {gap:.2e}", prompt.len());
        assert!(gap < 1e-4, "the batched reply departs at token {at} where the top two logits differ by {gap:e}");
        for reply in [alone, batched.as_slice()] {
            // A reply without a token there ended with <|assistant_end|>, which is not kept.
            if let Some(&token) = reply.get(at) {
                assert!(pair.contains(&i64::from(token)), "token {token} is not one of the near-tied {pair:?}");
            }
        }
    }
    eprintln!("{} of {} batched replies equal the replies alone", prompts.len() - differences, prompts.len());
    assert!(differences <= 5, "{differences} of {} replies differ", prompts.len());
}

/// Sampling with per-sequence seeds: the same schedule gives the same replies; other seeds others.
#[test]
fn seeded_sampling_in_a_batch_is_reproducible() {
    let encoder = golden_encoder();
    let model = golden_d2_model();
    let engine = Engine::new(&model, &encoder).unwrap();
    let prompts = &chat_prompts(&engine)[..24];
    let limits = BatchLimits { max_batch: 8, prefill_chunk: 32 };
    let seeded = |offset: i64| {
        move |i: usize| SequenceSettings {
            max_tokens: 16,
            temperature: 1.0,
            top_k: Some(50),
            seed: offset + i as i64,
            deadline: None,
        }
    };
    let first = run_batched(&model, &encoder, prompts, seeded(0), limits);
    assert_eq!(run_batched(&model, &encoder, prompts, seeded(0), limits), first);
    let other = run_batched(&model, &encoder, prompts, seeded(1000), limits);
    assert!(first.iter().zip(&other).filter(|(a, b)| a != b).count() > 12, "other seeds, other replies");
}
