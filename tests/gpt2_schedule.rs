//! Base training's sizing and schedules of nanochat 92d63d4 against the reference's own code: the
//! table tests/golden/gpt2_schedule.json was written by tests/golden/make_gpt2_schedule_golden.py,
//! which executes base_train.py's lines at d12, d24 and d32 (param/data ratio 8, the speedrun's, and
//! 12, the default) with its argparse defaults, vocab 32,768 and sequence 2048. Integers must be
//! equal; floats within 4 ulp: the same IEEE operations in the same order, but serde_json's float
//! parsing (not correctly rounded) and libm's pow and cos (between C libraries) may be an ulp off.
use nanochat::model::config::{DIM_PER_LAYER, TARGET_HEAD_DIM, WINDOW_PATTERN_92D63D4};
use nanochat::model::GptConfig;
use nanochat::optim::muon_adamw::{adamw_specs, muon_spec, MuonAdamWSettings};
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
        // setup_optimizer's groups with base_train.py's scaled LRs and weight decay.
        let defaults = MuonAdamWSettings::reference();
        let lr = |key: &str| f(&d[key]);
        assert_eq!(
            (
                defaults.unembedding_lr,
                defaults.embedding_lr,
                defaults.matrix_lr,
                defaults.scalar_lr,
                defaults.weight_decay
            ),
            (lr("unembedding_lr"), lr("embedding_lr"), lr("matrix_lr"), lr("scalar_lr"), lr("weight_decay"))
        );
        let scaled = defaults.scaled(s.batch_lr_scale, s.weight_decay);
        let groups = case["groups"].as_array().unwrap();
        let (adamw, muon) = groups.split_at(6);
        for (spec, group) in adamw_specs(model.n_embd, &scaled).iter().zip(adamw) {
            assert_eq!(group["kind"].as_str(), Some("adamw"));
            let betas = [spec.betas.0, spec.betas.1];
            let theirs = [f(&group["betas"][0]), f(&group["betas"][1])];
            assert_eq!(
                (betas, spec.eps, spec.weight_decay),
                (theirs, f(&group["eps"]), f(&group["weight_decay"])),
                "{name} {}",
                spec.name
            );
            close(spec.lr, f(&group["lr"]), &format!("{name} {} LR", spec.name));
        }
        // One Muon group per shape of the block matrices.
        let m = muon_spec(&scaled);
        // c_q, c_k, c_v, attn c_proj (d×d with one KV head per query head), mlp c_fc (4d×d), mlp c_proj
        // (d×4d) in every layer, a value-embedding gate (n_kv_head×12) in every other; shapes ascending.
        let (dim, layers) = (model.n_embd, model.n_layer);
        let ve_layers = (0..layers).filter(|&l| model.has_value_embed(l)).count() as i64;
        let mut expected = vec![
            (vec![model.n_kv_head, 12], ve_layers),
            (vec![dim, dim], 4 * layers),
            (vec![dim, 4 * dim], layers),
            (vec![4 * dim, dim], layers),
        ];
        expected.sort();
        let shapes: Vec<(Vec<i64>, i64)> = muon
            .iter()
            .map(|g| {
                (serde_json::from_value(g["shapes"][0].clone()).unwrap(), g["shapes"].as_array().unwrap().len() as i64)
            })
            .collect();
        assert_eq!(shapes, expected, "{name}");
        for group in muon {
            assert_eq!(group["kind"].as_str(), Some("muon"));
            assert_eq!(
                (m.momentum, m.ns_steps as i64, m.beta2),
                (f(&group["momentum"]), group["ns_steps"].as_i64().unwrap(), f(&group["beta2"]))
            );
            close(m.lr, f(&group["lr"]), &format!("{name} Muon LR"));
            close(m.weight_decay, f(&group["weight_decay"]), &format!("{name} Muon weight decay"));
        }
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
