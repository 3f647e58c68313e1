//! The GPT with every 92d63d4 option on (value embeddings, smear, backout, resid/x0 lambdas, sliding
//! windows, RoPE base 100K, QK scale, uniform init) against the reference's own gpt.py and engine.py
//! on CPU (fp32), using tests/golden/gpt2_tiny.safetensors made by tests/golden/make_gpt2_golden.py
//! from karpathy/nanochat 92d63d4: identical initial weights for the same seed, the same logits and
//! losses for the same weights and tokens, and the reference Engine's tokens from the KV-cached
//! engine. And a base checkpoint the reference's checkpoint_manager wrote (tests/golden/gpt2_sft/,
//! tests/golden/make_gpt2_checkpoint_golden.py) opens as that model with the reference's logits.
#[path = "support/golden_tensors.rs"]
mod golden_tensors;

use golden_tensors::{max_abs_diff, tensor_sha256, GoldenTensors};
use nanochat::checkpoint;
use nanochat::checkpoint::source::SourceCheckpoint;
use nanochat::engine::chat_engine::{Engine, GenerationSettings, SamplingRng};
use nanochat::model::{Gpt, GptConfig, KvCache, Precision};
use nanochat::tokenizer::{BpeEncoder, SPECIAL_TOKENS};
use tch::{Device, Kind, Reduction, Tensor};

/// libtorch's generator is global: tests that seed it and draw from it take turns.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn load_golden() -> GoldenTensors {
    GoldenTensors::load("gpt2_tiny.safetensors")
}

/// The reference's GPTConfig (dimensions and window_pattern) with the options 92d63d4 hard-codes.
fn config(golden: &GoldenTensors) -> GptConfig {
    let c = golden.meta_json("config");
    let n = |k: &str| c[k].as_i64().unwrap();
    GptConfig::new(n("sequence_len"), n("vocab_size"), n("n_layer"), n("n_head"), n("n_kv_head"), n("n_embd"))
        .with_92d63d4_options(c["window_pattern"].as_str().unwrap().parse().unwrap())
}

/// A model holding the golden's dense weights.
fn dense_model(golden: &GoldenTensors) -> Gpt {
    let model = Gpt::new(config(golden), Device::Cpu).unwrap();
    golden.load_into(&model, "dense.");
    model
}

/// The forward's inputs: tokens (B, T), targets (B, T) with the first 5 of row 0 ignored.
fn inputs(golden: &GoldenTensors) -> (Tensor, Tensor) {
    let tokens = golden.get("tokens");
    let t = tokens.size()[1] - 1;
    let y = tokens.narrow(1, 1, t).contiguous();
    let _ = y.narrow(0, 0, 1).narrow(1, 0, 5).fill_(-1);
    (tokens.narrow(1, 0, t), y)
}

#[test]
fn same_seed_gives_the_reference_initial_weights_bit_for_bit() {
    let golden = load_golden();
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::manual_seed(42);
    let mut model = Gpt::new(config(&golden), Device::Cpu).unwrap();
    model.init_weights();
    let expected = golden.meta_json("init_sha256");
    let expected = expected.as_object().unwrap();
    let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, expected.keys().cloned().collect::<Vec<_>>(), "state_dict names");
    for (name, var) in model.named_parameters() {
        assert_eq!(tensor_sha256(&var), expected[&name].as_str().unwrap(), "{name}");
    }
}

#[test]
fn forward_matches_the_reference_logits_and_losses() {
    let golden = load_golden();
    let model = dense_model(&golden);
    let (x, y) = inputs(&golden);
    let logits = tch::no_grad(|| model.forward(&x, None));
    let diff = max_abs_diff(&logits, golden.get("logits"));
    eprintln!("max |logits - reference| = {diff:e}");
    assert!(diff < 1e-4, "max |logits - reference| = {diff:e}");
    let mean = tch::no_grad(|| model.loss(&x, &y, Reduction::Mean));
    let none = tch::no_grad(|| model.loss(&x, &y, Reduction::None));
    let (mean_diff, none_diff) =
        (max_abs_diff(&mean.view([1]), golden.get("loss_mean")), max_abs_diff(&none, golden.get("loss_none")));
    eprintln!("loss: mean differs by {mean_diff:e}, per token by at most {none_diff:e}");
    assert!(mean_diff < 1e-5 && none_diff < 1e-5, "{mean_diff:e} {none_diff:e}");
    // Evaluation's chunked per-token losses and the training loss give the reference's values too.
    assert!(max_abs_diff(&model.token_losses(&x, &y), golden.get("loss_none")) < 1e-5);
    let train = tch::no_grad(|| model.train_loss(&x, &y));
    assert!(max_abs_diff(&train.view([1]), golden.get("loss_mean")) < 1e-5);
}

#[test]
fn the_short_window_masks_the_golden_forward_past_position_128() {
    // The golden's positions run past the short window (128 at sequence_len 256): without windows the
    // first 129 positions keep their logits and the later ones change.
    let golden = load_golden();
    let (x, _) = inputs(&golden);
    let windowed = dense_model(&golden);
    let full = Gpt::new(GptConfig { window_pattern: None, ..config(&golden) }, Device::Cpu).unwrap();
    tch::no_grad(|| {
        for ((_, mut to), (_, from)) in full.named_parameters().into_iter().zip(windowed.named_parameters()) {
            to.copy_(&from);
        }
    });
    let (a, b) = tch::no_grad(|| (windowed.forward(&x, None), full.forward(&x, None)));
    assert_eq!(max_abs_diff(&a.narrow(1, 0, 129), &b.narrow(1, 0, 129)), 0.0);
    assert!(max_abs_diff(&a.narrow(1, 129, 31), &b.narrow(1, 129, 31)) > 1e-2);
}

#[test]
fn cached_decoding_gives_the_same_logits_as_a_full_forward() {
    let golden = load_golden();
    let model = dense_model(&golden);
    let tokens = golden.get("tokens").narrow(0, 1, 1).narrow(1, 0, 150);
    let full = tch::no_grad(|| model.forward(&tokens, None));
    // A prefill of 100 tokens, a chunk of 35 (prefix, causal and window mask, smear from the cached
    // embedding), then one token at a time past the short window.
    let mut cache = KvCache::new(model.config.n_layer as usize);
    let mut pieces = vec![tch::no_grad(|| model.forward(&tokens.narrow(1, 0, 100), Some(&mut cache)))];
    pieces.push(tch::no_grad(|| model.forward(&tokens.narrow(1, 100, 35), Some(&mut cache))));
    for i in 135..150 {
        pieces.push(tch::no_grad(|| model.forward(&tokens.narrow(1, i, 1), Some(&mut cache))));
    }
    assert_eq!(cache.pos(), 150);
    let diff = max_abs_diff(&Tensor::cat(&pieces, 1), &full);
    eprintln!("cached vs uncached logits: max diff {diff:e}");
    assert!(diff < 1e-5, "cached vs uncached logits differ by {diff:e}");
}

#[test]
fn engine_generations_match_the_reference_engine() {
    let golden = load_golden();
    let model = dense_model(&golden);
    // As the golden's engine run: the lm_head rows of ids 256 and up (specials, unused) zeroed.
    tch::no_grad(|| {
        let _ = model.lm_head().narrow(0, 256, model.config.padded_vocab_size() - 256).zero_();
    });
    let encoder = BpeEncoder::new((0..=255u8).map(|b| vec![b]).collect(), &SPECIAL_TOKENS).unwrap();
    let engine = Engine::new(&model, &encoder).unwrap();
    let cases = golden.meta_json("engine");
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 4);
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    for case in cases {
        let s = &case["settings"];
        let settings = GenerationSettings {
            num_samples: s["num_samples"].as_u64().unwrap() as usize,
            max_tokens: s["max_tokens"].as_u64().map(|m| m as usize),
            temperature: s["temperature"].as_f64().unwrap(),
            top_k: s["top_k"].as_i64(),
            seed: s["seed"].as_i64().unwrap_or(42),
            rng: SamplingRng::Torch,
        };
        let prompt: Vec<u32> = serde_json::from_value(case["prompt"].clone()).unwrap();
        let mut rows = vec![Vec::new(); settings.num_samples];
        engine.generate(&prompt, &settings, |column, _| {
            rows.iter_mut().zip(column).for_each(|(row, &token)| row.push(token));
            true
        });
        assert_eq!(serde_json::json!(rows), case["rows"], "{}", case["name"]);
    }
}

#[test]
fn the_server_is_told_which_options_its_packed_forward_lacks() {
    let golden = load_golden();
    let late_2025 = Gpt::new(GptConfig::from_depth(1, 300, 16), Device::Cpu).unwrap();
    assert!(late_2025.options_without_packed_decoding().is_empty());
    let lacking = dense_model(&golden).options_without_packed_decoding();
    assert_eq!(lacking, ["window_pattern", "value_embeds", "smear", "backout", "resid_x0_lambdas", "qk_scale"]);
}

#[test]
fn a_checkpoint_the_reference_wrote_opens_as_its_model_with_its_logits() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/gpt2_sft/base_d2");
    let source = SourceCheckpoint::in_dir(&dir, None).unwrap();
    // Its meta holds only GPTConfig's fields (dimensions, window_pattern): 92d63d4's model, every option on.
    let expected = GptConfig::new(256, 2048, 2, 2, 1, 32).with_92d63d4_options("SSSL".parse().unwrap());
    assert_eq!(source.model_config, expected);
    let path = source.weights_path().unwrap();
    let file = checkpoint::read_tensors(&path).unwrap();
    let kinds = |name: &str| file[name].kind();
    assert_eq!(
        (kinds("transformer.wte.weight"), kinds("value_embeds.1.weight"), kinds("lm_head.weight")),
        (Kind::BFloat16, Kind::BFloat16, Kind::Float),
        "the embeddings in bf16 as 92d63d4 saves them on a GPU"
    );
    let model = source.load_model(Device::Cpu, Precision::Float32).unwrap();
    let golden = GoldenTensors::load("gpt2_sft/forward.safetensors");
    let tokens = golden.get("tokens");
    let t = tokens.size()[1] - 1;
    let (x, y) = (tokens.narrow(1, 0, t), tokens.narrow(1, 1, t));
    let logits = tch::no_grad(|| model.forward(&x, None));
    let columns = Tensor::arange_start_step(0, model.config.vocab_size, 16, (Kind::Int64, Device::Cpu));
    let diff = max_abs_diff(&logits.index_select(2, &columns), golden.get("logits_every_16th"));
    let losses = tch::no_grad(|| model.loss(&x, &y, Reduction::None));
    let loss_diff = max_abs_diff(&losses.view_as(golden.get("loss_none")), golden.get("loss_none"));
    eprintln!("reference checkpoint: logits differ by {diff:e}, losses by {loss_diff:e}");
    assert!(diff < 1e-4 && loss_diff < 1e-5, "logits differ by {diff:e}, losses by {loss_diff:e}");
}
