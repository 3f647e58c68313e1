//! Base training's sizing and schedules of nanochat 92d63d4 against the reference's own code: the
//! table tests/golden/gpt2_schedule.json was written by tests/golden/make_gpt2_schedule_golden.py,
//! which executes base_train.py's lines at d12, d24 and d32 (param/data ratio 8, the speedrun's, and
//! 12, the default) with its argparse defaults, vocab 32,768 and sequence 2048. Integers must be
//! equal; floats within 4 ulp (the same IEEE operations in the same order, and libm's pow and cos
//! that may differ by an ulp between C libraries).
use nanochat::model::config::{DIM_PER_LAYER, TARGET_HEAD_DIM, WINDOW_PATTERN_92D63D4};
use nanochat::model::GptConfig;
use nanochat::optim::schedule_92d63d4::{muon_weight_decay, LrSchedule, Sizing, SizingSettings, DEPTH_REF};
use serde_json::Value;

const GOLDEN: &str = include_str!("golden/gpt2_schedule.json");

fn close(ours: f64, reference: f64, what: &str) {
    let tolerance = 4.0 * f64::EPSILON * reference.abs();
    assert!((ours - reference).abs() <= tolerance, "{what}: {ours} vs the reference's {reference}");
}

fn config(golden: &Value, depth: i64) -> GptConfig {
    let d = &golden["defaults"];
    assert_eq!((d["aspect_ratio"].as_i64(), d["head_dim"].as_i64()), (Some(DIM_PER_LAYER), Some(TARGET_HEAD_DIM)));
    assert_eq!(d["window_pattern"].as_str(), Some(WINDOW_PATTERN_92D63D4));
    let vocab = golden["vocab_size"].as_i64().unwrap();
    GptConfig::from_depth_and_aspect(depth, DIM_PER_LAYER, TARGET_HEAD_DIM, vocab, d["max_seq_len"].as_i64().unwrap())
        .with_92d63d4_options(WINDOW_PATTERN_92D63D4.parse().unwrap())
}

#[test]
fn sizing_and_schedules_equal_the_references_at_d12_d24_d32() {
    let golden: Value = serde_json::from_str(GOLDEN).unwrap();
    let d = &golden["defaults"];
    let f = |v: &Value| v.as_f64().unwrap();
    let schedule = LrSchedule::reference();
    assert_eq!(schedule.warmup_steps, d["warmup_steps"].as_i64().unwrap());
    assert_eq!((schedule.warmdown_ratio, schedule.final_lr_frac), (f(&d["warmdown_ratio"]), f(&d["final_lr_frac"])));
    let cases = golden["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 6);
    for case in cases {
        let depth = case["depth"].as_i64().unwrap();
        let ratio = f(&case["target_param_data_ratio"]);
        let name = format!("d{depth} ratio {ratio}");
        let settings = SizingSettings {
            target_param_data_ratio: ratio,
            total_batch_size: None,
            num_iterations: None,
            weight_decay: f(&d["weight_decay"]),
        };
        let model = config(&golden, depth);
        assert_eq!(model.n_embd, case["n_embd"].as_i64().unwrap(), "{name}");
        let s = Sizing::new(&model, &config(&golden, DEPTH_REF), &settings).unwrap();
        let int = |key: &str| case[key].as_i64().unwrap();
        assert_eq!(s.scaling_params, int("num_scaling_params"), "{name}");
        assert_eq!(s.target_tokens, int("target_tokens"), "{name}");
        assert_eq!(s.total_batch_size, int("total_batch_size"), "{name}");
        assert_eq!(s.num_iterations, int("num_iterations"), "{name}");
        close(s.d_ref, f(&case["d_ref"]), &format!("{name} D_REF"));
        close(s.batch_lr_scale, f(&case["batch_lr_scale"]), &format!("{name} LR scale"));
        close(s.weight_decay, f(&case["weight_decay_scaled"]), &format!("{name} weight decay"));
        let n = s.num_iterations;
        let steps = case["steps"].as_array().unwrap();
        for (k, step) in steps.iter().enumerate() {
            let it = step.as_i64().unwrap();
            let at = |key: &str| f(&case[key][k]);
            close(schedule.lr_multiplier(it, n), at("lr_multiplier"), &format!("{name} LR multiplier at {it}"));
            close(schedule.muon_momentum(it, n), at("muon_momentum"), &format!("{name} momentum at {it}"));
            let wd = muon_weight_decay(s.weight_decay, it, n);
            close(wd, at("weight_decay"), &format!("{name} weight decay at {it}"));
        }
    }
}
