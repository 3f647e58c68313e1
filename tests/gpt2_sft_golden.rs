//! The gpt2 presets' SFT (92d63d4's chat_sft.py, src/train/sft_92d63d4.rs) against the reference's
//! own: 4 optimizer steps on CPU from the base checkpoint the reference wrote
//! (tests/golden/gpt2_sft/base_d2) over the stand-in mixture, the reference's run recorded by
//! tests/golden/make_gpt2_sft_golden.py in tests/golden/gpt2_sft/sft4.safetensors. Weights and losses
//! must stay within twice the float-noise envelope the script measured between reference runs.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;
#[path = "support/golden_tensors.rs"]
mod golden_tensors;

use chat_fixtures::{chat_base, nanochat, stdout};
use golden_tensors::{max_abs_diff, GoldenTensors};
use nanochat::checkpoint;
use tch::{Device, Kind, Tensor};

#[test]
fn four_sft_steps_from_a_reference_checkpoint_stay_within_the_reference_envelope() {
    let golden = GoldenTensors::load("gpt2_sft/sft4.safetensors");
    let base = chat_base();
    // The reference's 92d63d4 base checkpoint in place of the late-2025 one chat_base() puts there.
    let base_dir = base.paths.checkpoints("base", 2);
    let reference = chat_fixtures::root().join("tests/golden/gpt2_sft/base_d2");
    for f in ["model_000000.pt", "meta_000000.json"] {
        std::fs::copy(reference.join(f), base_dir.join(f)).unwrap();
    }
    let s = golden.meta_json("settings");
    let setting = |k: &str| s[k].to_string();
    let sets = [
        format!("chat_sft.recipe_92d63d4.max_seq_len={}", setting("max_seq_len")),
        format!("chat_sft.device_batch_size={}", setting("device_batch_size")),
        format!("chat_sft.recipe_92d63d4.total_batch_size={}", setting("total_batch_size")),
        format!("chat_sft.num_iterations={}", setting("num_iterations")),
        format!("chat_sft.init_lr_frac={}", setting("init_lr_frac")),
        format!("chat_sft.recipe_92d63d4.warmup_ratio={}", setting("warmup_ratio")),
        format!("chat_sft.recipe_92d63d4.warmdown_ratio={}", setting("warmdown_ratio")),
        format!("chat_sft.recipe_92d63d4.final_lr_frac={}", setting("final_lr_frac")),
        format!("chat_sft.recipe_92d63d4.mmlu_epochs={}", setting("mmlu_epochs")),
        format!("chat_sft.recipe_92d63d4.gsm8k_epochs={}", setting("gsm8k_epochs")),
        "chat_sft.recipe_92d63d4.load_optimizer=false".to_string(),
        "chat_sft.eval_every=-1".to_string(),
        "chat_sft.recipe_92d63d4.eval_tokens=512".to_string(),
        "chat_sft.dtype=float32".to_string(),
    ];
    let lrs = golden.meta_json("lrs");
    let mut args: Vec<String> = vec!["--preset".into(), "gpt2-smoke".into()];
    for set in sets.into_iter().chain(
        ["unembedding_lr", "embedding_lr", "matrix_lr", "weight_decay"]
            .map(|k| format!("chat_sft.{k}={}", lrs[k].as_f64().unwrap())),
    ) {
        args.extend(["--set".into(), set]);
    }
    args.push("sft".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    stdout(&nanochat(base.dir.path(), &args, None));

    let out_dir = base.paths.checkpoints("sft", 2);
    assert_eq!(checkpoint::latest_step(&out_dir), Some(4), "4 optimizer steps, as the reference");
    let ours = checkpoint::read_tensors(&checkpoint::model_path(&out_dir, 4)).unwrap();
    let envelope = golden.meta_json("envelope");
    let widest =
        |k: &str| envelope.as_object().unwrap().values().map(|e| e[k].as_f64().unwrap()).fold(0.0f64, f64::max);
    let stride = golden.meta_json("row_stride").as_i64().unwrap();
    let sampled: Vec<String> = serde_json::from_value(golden.meta_json("row_sampled")).unwrap();
    let mut weights_diff = 0.0f64;
    let mut compared = 0;
    for (name, theirs) in &ours {
        let t = theirs.to_kind(Kind::Float).to_device(Device::Cpu);
        let t = if sampled.iter().any(|p| name.starts_with(p.as_str())) {
            let rows = Tensor::arange_start_step(0, t.size()[0], stride, (Kind::Int64, Device::Cpu));
            t.index_select(0, &rows)
        } else {
            t
        };
        weights_diff = weights_diff.max(max_abs_diff(&t, golden.get(&format!("step4.{name}"))));
        compared += 1;
    }
    assert_eq!(compared, golden.meta_json("parameters").as_u64().unwrap() as usize, "every parameter compared");

    // Our step's loss is the mean of its micro-batch losses (metrics.jsonl).
    let log = std::fs::read_to_string(out_dir.join("metrics.jsonl")).unwrap();
    let ours_losses: Vec<f64> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|v| v["loss"].as_f64())
        .collect();
    let reference_losses = golden.get("losses").mean_dim(1, false, Kind::Double);
    let reference_losses: Vec<f64> = Vec::<f64>::try_from(&reference_losses).unwrap();
    assert_eq!(ours_losses.len(), reference_losses.len(), "{log}");
    let loss_diff = ours_losses.iter().zip(&reference_losses).map(|(a, b)| (a - b).abs()).fold(0.0f64, f64::max);
    eprintln!(
        "after 4 SFT steps: weights differ by {weights_diff:e} (envelope {:e}), losses by {loss_diff:e} (envelope {:e})",
        widest("weights"),
        widest("loss")
    );
    assert!(weights_diff <= 2.0 * widest("weights"), "weights differ by {weights_diff:e}");
    assert!(
        loss_diff <= 2.0 * widest("loss"),
        "losses differ by {loss_diff:e}: ours {ours_losses:?}, reference {reference_losses:?}"
    );
}
