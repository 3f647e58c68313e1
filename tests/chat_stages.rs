//! mid-train, sft and chat-rl through the binary on the stand-in datasets, from the reference's d2
//! base checkpoint: a run killed mid-way and resumed with --resume ends bit-identical to one never
//! interrupted; 2 processes train like 1 process with twice the accumulation; the report sections;
//! device-batch fitting and the fit carried from stage to stage.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chat_fixtures::chat_base;
use nanochat::checkpoint;
use nanochat::train::batch_fit::SIMULATED_MAX_DEVICE_BATCH;

const MID: &[&str] = &[
    "--preset",
    "d20",
    "--set",
    "mid_train.device_batch_size=2",
    "--set",
    "mid_train.max_seq_len=64",
    "--set",
    "mid_train.total_batch_size=256",
    "--set",
    "mid_train.eval_tokens=256",
];

const SFT: &[&str] = &[
    "--preset",
    "d20",
    "--set",
    "chat_sft.source=base",
    "--set",
    "chat_sft.device_batch_size=2",
    "--set",
    "chat_sft.target_examples_per_step=4",
    "--set",
    "chat_sft.eval_steps=2",
    "--set",
    "chat_sft.eval_metrics_max_problems=8",
];

/// A few short RL steps from the base model (GSM8K answers of a random model are never right: the
/// rewards are 0; tests/chat_rl.rs covers the numbers).
const RL: &[&str] = &[
    "--preset",
    "d20",
    "--set",
    "chat_rl.source=base",
    "--set",
    "chat_rl.device_batch_size=2",
    "--set",
    "chat_rl.num_samples=4",
    "--set",
    "chat_rl.examples_per_step=2",
    "--set",
    "chat_rl.max_new_tokens=8",
    "--set",
    "chat_rl.eval_examples=2",
];

/// The binary on base dir `base`, one thread per process: the d2 model's ops are tiny, and on a
/// shared machine more threads mostly wait for each other (RL's generation runs ~7x faster).
fn nanochat(base: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nanochat"));
    // On the CPU with the d20 preset's values (a CUDA preset refuses to run without CUDA otherwise).
    cmd.args(["--set", "hardware.device=cpu"])
        .args(args)
        .env("NANOCHAT_BASE_DIR", base)
        .env("OMP_NUM_THREADS", "1")
        .env_remove("RANK")
        .env_remove("WORLD_SIZE");
    cmd
}

fn run_ok(base: &Path, args: &[&str]) -> Output {
    let out = nanochat(base, args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn model_sha(dir: &Path, step: u64) -> String {
    nanochat::speedrun::digest::sha256_file(&checkpoint::model_path(dir, step)).unwrap()
}

/// (step, loss, val_bpb, val_loss) of one line of a metrics log.
type MetricsLine = (i64, Option<f64>, Option<f64>, Option<f64>);

fn metrics(dir: &Path) -> Vec<MetricsLine> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let m: serde_json::Value = serde_json::from_str(l).unwrap();
            (m["step"].as_i64().unwrap(), m["loss"].as_f64(), m["val_bpb"].as_f64(), m["val_loss"].as_f64())
        })
        .collect()
}

/// Runs `args` (ending in the stage name), kills it once `meta_{kill_after}` exists, resumes with
/// --resume, and checks the result against an uninterrupted run.
fn kill_and_resume(args: &[&str], out: &str, last_step: u64, kill_after: u64) {
    let straight = chat_base();
    run_ok(straight.dir.path(), args);

    let run = chat_base();
    let mut child = nanochat(run.dir.path(), args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let dir = run.dir.path().join(out);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !checkpoint::meta_path(&dir, kill_after).exists() {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "no checkpoint of step {kill_after}");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = checkpoint::latest_step(&dir).unwrap();
    assert!(killed_at < last_step, "the run was killed before its end (latest checkpoint {killed_at})");

    run_ok(run.dir.path(), &[args, &["--resume"]].concat());
    let straight_dir = straight.dir.path().join(out);
    assert_eq!(model_sha(&dir, last_step), model_sha(&straight_dir, last_step), "resumed after step {killed_at}");
    assert_eq!(metrics(&dir), metrics(&straight_dir), "the metrics log reads as one run");
}

#[test]
fn a_killed_midtraining_resumes_to_the_same_weights() {
    let args = [
        MID,
        &[
            "--set",
            "mid_train.num_iterations=150",
            "--set",
            "mid_train.eval_every=50",
            "--set",
            "mid_train.save_every=2",
        ],
        &["mid-train"],
    ]
    .concat();
    kill_and_resume(&args, "mid_d2", 40, 4);
}

#[test]
fn a_killed_sft_resumes_to_the_same_weights() {
    let args = [
        SFT,
        &[
            "--set",
            "chat_sft.num_iterations=40",
            "--set",
            "chat_sft.eval_every=15",
            "--set",
            "chat_sft.eval_metrics_every=20",
            "--set",
            "chat_sft.save_every=2",
        ],
        &["sft"],
    ]
    .concat();
    kill_and_resume(&args, "sft_d2", 39, 4);
}

#[test]
fn a_killed_chat_rl_resumes_to_the_same_weights() {
    let args = [
        RL,
        &["--set", "chat_rl.num_steps=8", "--set", "chat_rl.eval_every=3", "--set", "chat_rl.save_every=2"],
        &["chat-rl"],
    ]
    .concat();
    kill_and_resume(&args, "rl_d2", 8, 2);
}

fn worst_relative_difference(a: &Path, b: &Path) -> f64 {
    let a = checkpoint::read_tensors(a).unwrap();
    let b = checkpoint::read_tensors(b).unwrap();
    let mut worst = 0.0f64;
    for (name, ta) in &a {
        let tb = &b[name];
        let rel = (ta - tb).abs().max().double_value(&[]) / ta.abs().max().double_value(&[]).max(1e-12);
        worst = worst.max(rel);
    }
    worst
}

#[test]
fn two_processes_train_like_one_with_twice_the_accumulation() {
    for (stage, args, out, last) in [
        (
            "mid-train",
            [
                MID,
                &[
                    "--set",
                    "mid_train.num_iterations=4",
                    "--set",
                    "mid_train.eval_every=2",
                    "--set",
                    "mid_train.save_every=-1",
                ],
            ]
            .concat(),
            "mid_d2",
            4,
        ),
        (
            "sft",
            [
                SFT,
                &[
                    "--set",
                    "chat_sft.num_iterations=5",
                    "--set",
                    "chat_sft.eval_every=2",
                    "--set",
                    "chat_sft.save_every=-1",
                ],
            ]
            .concat(),
            "sft_d2",
            4,
        ),
    ] {
        two_processes_like_one(stage, &args, out, last);
    }
}

#[test]
fn two_processes_run_chat_rl_like_one() {
    let args = [RL, &["--set", "chat_rl.num_steps=3", "--set", "chat_rl.eval_every=2"][..]].concat();
    let (one, two) = two_processes_like_one("chat-rl", &args, "rl_d2", 3);
    // Process r takes questions r, r + 2, ...: the same questions and seeds as one process.
    let lengths = |dir: &Path| -> Vec<f64> {
        std::fs::read_to_string(dir.join("rl_d2/metrics.jsonl"))
            .unwrap()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["sequence_length"].as_f64())
            .collect()
    };
    let (a, b) = (lengths(one.dir.path()), lengths(two.dir.path()));
    assert_eq!(a.len(), 3);
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-9), "{a:?} vs {b:?}");
    let section = std::fs::read_to_string(one.dir.path().join("report/chat-rl.json")).unwrap();
    for key in ["Chat RL", "Final mean reward", "pass@1", "base_d2 step 0"] {
        assert!(section.contains(key), "{key}: {section}");
    }
    assert!(one.dir.path().join("logs/chat-rl.log").exists());
}

/// Runs `stage` on one process and on two, and compares the weights at `last` and the metrics.
fn two_processes_like_one(
    stage: &str,
    args: &[&str],
    out: &str,
    last: u64,
) -> (chat_fixtures::ChatBase, chat_fixtures::ChatBase) {
    let one = chat_base();
    run_ok(one.dir.path(), &[args, &[stage]].concat());
    let two = chat_base();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    run_ok(two.dir.path(), &[args, &[stage, "--nproc-per-node", "2", "--master-port", &port]].concat());
    let worst = worst_relative_difference(
        &checkpoint::model_path(&one.dir.path().join(out), last),
        &checkpoint::model_path(&two.dir.path().join(out), last),
    );
    eprintln!("{stage}: 2 processes vs 1 process x 2 accumulation, largest relative weight difference {worst:e}");
    assert!(worst < 1e-4, "{stage}: {worst:e}");
    let (a, b) = (metrics(&one.dir.path().join(out)), metrics(&two.dir.path().join(out)));
    assert_eq!(a.len(), b.len(), "{stage}");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        for (p, q) in [(x.1, y.1), (x.2, y.2), (x.3, y.3)] {
            assert_eq!(p.is_some(), q.is_some(), "{stage} step {}", x.0);
            if let (Some(p), Some(q)) = (p, q) {
                assert!((p - q).abs() <= 1e-4 * p.abs().max(1.0), "{stage} step {}: {p} vs {q}", x.0);
            }
        }
    }
    (one, two)
}

#[test]
fn the_stages_write_their_report_sections() {
    let base = chat_base();
    let dir = base.dir.path();
    run_ok(
        dir,
        &[MID, &["--set", "mid_train.num_iterations=3", "--set", "mid_train.eval_every=2", "mid-train"]].concat(),
    );
    let section = std::fs::read_to_string(dir.join("report/midtraining.json")).unwrap();
    for key in ["Minimum validation bpb", "Number of iterations", "DDP world size", "Training conversations"] {
        assert!(section.contains(key), "{key}: {section}");
    }
    // SFT from the midtrained model (the default source), by the reference's rule.
    run_ok(
        dir,
        &[&SFT[..2], &["--set", "chat_sft.num_iterations=3", "--set", "chat_sft.eval_steps=1", "sft"]].concat(),
    );
    let section = std::fs::read_to_string(dir.join("report/chat-sft.json")).unwrap();
    for key in ["Training rows", "Validation loss", "mmlu_acc", "arc_easy_acc", "mid_d2 step 3"] {
        assert!(section.contains(key), "{key}: {section}");
    }
    let meta = checkpoint::load_meta(&dir.join("sft_d2"), 2).unwrap();
    assert!(meta.val_loss.is_some() && meta.metrics.is_some());
}

/// Runs `args` with the simulated device-batch limit `limit` (none: unset); returns its log.
fn run_logged(base: &Path, args: &[&str], limit: Option<&str>) -> String {
    let mut cmd = nanochat(base, args);
    cmd.env_remove(SIMULATED_MAX_DEVICE_BATCH);
    if let Some(rows) = limit {
        cmd.env(SIMULATED_MAX_DEVICE_BATCH, rows);
    }
    let out = cmd.output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?}\n{log}");
    log
}

/// (device_batch_size, fitted_device_batch_size) of the last checkpoint in `dir`.
fn recorded_batch(dir: &Path) -> (u32, Option<u32>) {
    let meta = checkpoint::load_meta(dir, checkpoint::latest_step(dir).unwrap()).unwrap();
    (meta.device_batch_size, meta.fitted_device_batch_size)
}

#[test]
fn mid_train_and_sft_fit_their_device_batch_and_carry_the_fit() {
    let mid =
        [MID, &["--set", "mid_train.device_batch_size=4", "--set", "mid_train.num_iterations=2", "mid-train"]].concat();
    let sft = |source: &'static str| {
        let settings = ["--set", "chat_sft.num_iterations=2", "--set", "chat_sft.eval_steps=1", "--set", source, "sft"];
        [SFT, &settings[..]].concat()
    };

    // The base checkpoint as base-train writes it after fitting 2 rows: mid-train (4 configured)
    // starts at 2, then under a limit of 1 row fits 1; 256 tokens a step are 4 micro-batches of 1x64.
    let base = chat_base();
    let dir = base.dir.path();
    let meta_path = checkpoint::meta_path(&dir.join("base_d2"), 0);
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["fitted_device_batch_size"] = 2.into();
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let log = run_logged(dir, &mid, Some("1"));
    assert!(log.contains("mid_train.device_batch_size 4 lowered to 2, the device batch that fitted"), "{log}");
    assert!(log.contains("mid_train.device_batch_size lowered from 2 to 1 to fit"), "{log}");
    assert!(log.contains("4 micro-batch(es) of 1x64"), "{log}");
    assert_eq!(recorded_batch(&dir.join("mid_d2")), (1, Some(1)));

    // SFT from that mid checkpoint, nothing fitted: it starts at mid's 1 row (2 configured), so 4
    // examples a step are 4 micro-batches.
    let log = run_logged(dir, &sft("chat_sft.source=mid"), None);
    assert!(log.contains("chat_sft.device_batch_size 2 lowered to 1"), "{log}");
    assert!(log.contains("4 micro-batch(es) of 1 on each"), "{log}");
    assert_eq!(recorded_batch(&dir.join("sft_d2")), (1, Some(1)));

    // SFT fits on its own: from the reference's base checkpoint (no fit recorded) under a limit of 1.
    let fresh = chat_base();
    let log = run_logged(fresh.dir.path(), &sft("chat_sft.source=base"), Some("1"));
    assert!(log.contains("chat_sft.device_batch_size lowered from 2 to 1 to fit"), "{log}");
    assert_eq!(recorded_batch(&fresh.dir.path().join("sft_d2")), (1, Some(1)));
}

/// 92d63d4's SFT (`chat_sft.recipe_92d63d4`, src/train/sft_92d63d4.rs) from a d2 base model with
/// every 92d63d4 option and its optimizer state (one MuonAdamW step on a fixed batch, saved as base
/// training saves it): the optimizer is warm-started, the best-fit rows train, the validation bpb
/// falls, the schedule follows the progress, and the final checkpoint and report section are written.
#[test]
fn the_92d63d4_sft_trains_from_a_92d63d4_base_model() {
    use nanochat::checkpoint::{CheckpointMeta, LoopState};
    use nanochat::model::{Gpt, GptConfig};
    use nanochat::optim::{OptimizerSettings, Optimizers};
    use tch::{Device, Kind, Tensor};

    let base = chat_base();
    let base_dir = base.paths.checkpoints("base", 2);
    std::fs::remove_dir_all(&base_dir).unwrap();
    tch::manual_seed(7);
    let config = GptConfig::from_depth_and_aspect(2, 64, 128, 2048, 256).with_92d63d4_options("SL".parse().unwrap());
    let mut model = Gpt::new(config, Device::Cpu).unwrap();
    model.init_weights();
    let mut optimizers = Optimizers::new(&model, &OptimizerSettings::reference(), None).unwrap();
    let idx = Tensor::randint(2048, [2, 64], (Kind::Int64, Device::Cpu));
    model.train_loss(&idx, &idx.roll([-1], [1])).backward();
    optimizers.set_schedule(1.0, 0.95, None);
    optimizers.step(None).unwrap();
    model.zero_grad();
    let meta = CheckpointMeta::at(
        1,
        &model,
        &serde_json::json!({"total_batch_size": 1024}),
        2,
        256,
        serde_json::json!([]),
        LoopState::default(),
    );
    checkpoint::save(&base_dir, &model, &optimizers.state_tensors(), &meta, 0).unwrap();

    let args = [
        "--preset",
        "gpt2-smoke",
        "--set",
        "chat_sft.num_iterations=24",
        "--set",
        "chat_sft.eval_every=10",
        "--set",
        "chat_sft.recipe_92d63d4.max_seq_len=128",
        "--set",
        "chat_sft.recipe_92d63d4.eval_tokens=1024",
        "--set",
        "chat_sft.recipe_92d63d4.mmlu_epochs=1",
        "--set",
        "chat_sft.recipe_92d63d4.chatcore_max_cat=4",
        "--set",
        "chat_sft.recipe_92d63d4.chatcore_max_sample=2",
        "--set",
        "chat_eval.max_new_tokens=8",
        "sft",
    ];
    let out = run_ok(base.dir.path(), &args);
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(log.contains("optimizer state from") && log.contains("LRs reset"), "{log}");
    // 1024 tokens a step from the base checkpoint's meta: 4 micro-batches of 2 x 128; 24 batches are 6 steps.
    assert!(log.contains("1024 tokens a step (4 micro-batch(es) of 2x128"), "{log}");
    let sft_dir = base.paths.checkpoints("sft", 2);
    assert_eq!(checkpoint::latest_step(&sft_dir), Some(6));
    // As chat_sft.py's meta: the model_config's sequence_len is the rows' max_seq_len, not the base's 256.
    assert_eq!(checkpoint::load_meta(&sft_dir, 6).unwrap().model_config.sequence_len, 128);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(sft_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let values = |key: &str| -> Vec<f64> { lines.iter().filter_map(|m| m[key].as_f64()).collect() };
    let bpbs = values("val_bpb");
    assert_eq!(bpbs.len(), 2, "validation at step 0 and at the last step (6): {bpbs:?}");
    assert!(bpbs[1] < bpbs[0] * 0.9, "validation bpb should fall: {bpbs:?}");
    let progress = values("progress");
    assert_eq!(progress.len(), 6);
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    // The LR: 1 through the first half of the data, then down towards 0.
    let lrm = values("lrm");
    assert_eq!(lrm[0], 1.0);
    assert!(lrm[5] < 0.5, "{lrm:?}");
    // ChatCORE at the last step (gpt2-smoke: chatcore_every past the end): every task's accuracy and
    // the categorical mean, which a random model puts near 0.
    let chatcore = lines.iter().rfind(|m| m["metrics"].is_object()).expect("a ChatCORE record");
    assert_eq!(chatcore["step"], 6, "{chatcore}");
    for task in ["ARC-Easy", "ARC-Challenge", "MMLU", "GSM8K"] {
        let acc = chatcore["metrics"][task].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&acc), "{task} in {chatcore}");
    }
    let cat = chatcore["metrics"]["chatcore_cat"].as_f64().unwrap();
    assert!((-1.0 / 3.0..=1.0).contains(&cat), "{chatcore}");
    let section = std::fs::read_to_string(base.paths.report().join("chat-sft.json")).unwrap();
    assert!(section.contains("Total batch size") && section.contains("Final validation bpb"), "{section}");
    assert!(section.contains("ChatCORE (categorical)"), "{section}");

    // Optimizer state that does not fit the model (here, another model's) is refused with the way out.
    let other = Gpt::new(GptConfig::from_depth(1, 2048, 64), Device::Cpu).unwrap();
    let mut other_optimizers = Optimizers::new(&other, &OptimizerSettings::reference(), None).unwrap();
    let few = Tensor::randint(2048, [2, 32], (Kind::Int64, Device::Cpu));
    other.train_loss(&few, &few.roll([-1], [1])).backward();
    other_optimizers.set_schedule(1.0, 0.95, None);
    other_optimizers.step(None).unwrap();
    let state: Vec<(String, Tensor)> = other_optimizers.state_tensors();
    Tensor::write_safetensors(&state, checkpoint::optim_path(&base_dir, 1, 0)).unwrap();
    let out = nanochat(base.dir.path(), &args).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("warm-starting the optimizer from") && said.contains("load_optimizer=false"), "{said}");
}
