//! base-train through the binary on parquet shards of real text: it learns, writes complete
//! checkpoints and its report section; a run killed mid-way and resumed ends bit-identical to an
//! uninterrupted one; same seed gives the same weights; 2 processes train like 1 process with twice
//! the gradient accumulation; CORE during training; device-batch fitting recorded in the checkpoint.
#[path = "support/real_text.rs"]
mod real_text;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nanochat::checkpoint;
use nanochat::data::shard_writer::{write_shard, ShardWriterOptions};
use nanochat::train::batch_fit::SIMULATED_MAX_DEVICE_BATCH;

const TINY: &[&str] = &[
    "--preset",
    "smoke",
    "--set",
    "tok_train.vocab_size=512",
    "--set",
    "base_train.depth=1",
    "--set",
    "base_train.max_seq_len=64",
    "--set",
    "base_train.device_batch_size=4",
    "--set",
    "base_train.total_batch_size=512",
    "--set",
    "base_train.eval_tokens=1024",
    "--set",
    "base_train.sample_every=-1",
];

fn nanochat(base: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nanochat"));
    // On the CPU whatever the preset (a CUDA preset refuses to run without CUDA otherwise).
    cmd.args(["--set", "hardware.device=cpu"]).args(args);
    cmd.env("NANOCHAT_BASE_DIR", base).env_remove("RANK").env_remove("WORLD_SIZE");
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

/// Three shards (2 row groups of 64 documents each) of real text: the Python sources of the torch
/// package that `make setup` installs, in a fixed order.
fn prepare(base: &Path) {
    let docs = real_text::torch_sources(384);
    for i in 0..3 {
        let opts = ShardWriterOptions { docs_per_row_group: 64, ..Default::default() };
        write_shard(&base.join(format!("data/smoke/shard_{i:05}.parquet")), &docs[i * 128..(i + 1) * 128], opts)
            .unwrap();
    }
    run_ok(base, &[TINY, &["tok-train"]].concat());
}

fn with(extra: &[&'static str]) -> Vec<&'static str> {
    [TINY, extra].concat()
}

fn model_sha(base: &Path, step: u64) -> String {
    nanochat::speedrun::digest::sha256_file(&checkpoint::model_path(&base.join("base_d1"), step)).unwrap()
}

fn metrics(base: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(base.join("base_d1/metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn base_train_learns_and_writes_checkpoints_and_report() {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    run_ok(
        dir.path(),
        &with(&[
            "--set",
            "base_train.num_iterations=30",
            "--set",
            "base_train.eval_every=15",
            "--set",
            "base_train.save_every=15",
            "--set",
            "base_train.core_metric_every=20",
            "--set",
            "base_train.core_metric_max_per_task=4",
            "base-train",
        ]),
    );
    let ckpt = dir.path().join("base_d1");
    for f in [
        "model_000015.safetensors",
        "optim_000015_rank0.safetensors",
        "meta_000015.json",
        "model_000030.safetensors",
        "meta_000030.json",
        "config.toml",
    ] {
        assert!(ckpt.join(f).exists(), "{f}");
    }
    let bpbs: Vec<f64> = metrics(dir.path()).iter().filter_map(|m| m["val_bpb"].as_f64()).collect();
    assert_eq!(bpbs.len(), 3, "evaluations at steps 0, 15 and 30");
    assert!(bpbs[2] < bpbs[0] * 0.8, "validation bpb should fall clearly: {bpbs:?}");
    let meta = checkpoint::load_meta(&ckpt, 30).unwrap();
    assert_eq!(meta.model_config.vocab_size, 512);
    assert_eq!(meta.val_bpb, Some(bpbs[2]));
    let section = std::fs::read_to_string(dir.path().join("report/base-model-training.json")).unwrap();
    assert!(section.contains("Final validation bpb") && section.contains("Number of parameters"), "{section}");
    // CORE every core_metric_every steps and at the end, on the smoke stand-in bundle (§6.1).
    let core: Vec<(i64, f64)> =
        metrics(dir.path()).iter().filter_map(|m| Some((m["step"].as_i64()?, m["core_metric"].as_f64()?))).collect();
    assert_eq!(core.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [20, 30], "{core:?}");
    let last_core = metrics(dir.path()).into_iter().rfind(|m| m["core_metric"].is_f64()).unwrap();
    assert!(last_core["metrics"]["smoke_pronouns"].is_f64(), "each task's centered accuracy: {last_core}");
    assert!(section.contains("CORE metric estimate"), "{section}");
    assert!(dir.path().join("eval_bundle/core.yaml").is_file(), "the bundle was fetched for training");

    // base-loss: bpb of the last checkpoint on both splits, below the unigram baseline, with samples.
    run_ok(dir.path(), &with(&["--set", "base_loss.split_tokens=2048", "base-loss"]));
    let loss: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report/base-model-loss.json")).unwrap())
            .unwrap();
    let get = |key: &str| {
        loss["entries"].as_array().unwrap().iter().find(|e| e["key"] == key).unwrap()["value"].as_f64().unwrap()
    };
    assert_eq!(get("checkpoint step"), 30.0);
    assert!(get("val bpb") < get("val unigram baseline bpb"), "{loss}");
    assert!(get("train bpb").is_finite() && get("train bpb") > 0.0);
    assert!(loss.to_string().contains("The capital of France is"), "samples are in the section");
}

#[test]
fn a_killed_run_resumes_to_the_same_weights_as_an_uninterrupted_one() {
    let args = with(&[
        "--set",
        "base_train.num_iterations=120",
        "--set",
        "base_train.eval_every=40",
        "--set",
        "base_train.save_every=5",
        "base-train",
    ]);
    let straight = tempfile::tempdir().unwrap();
    prepare(straight.path());
    run_ok(straight.path(), &args);

    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let mut child = nanochat(dir.path(), &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let ckpt = dir.path().join("base_d1");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ckpt.join("meta_000010.json").exists() {
        assert!(Instant::now() < deadline && child.try_wait().unwrap().is_none(), "no checkpoint of step 10");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = checkpoint::latest_step(&ckpt).unwrap();
    assert!(killed_at < 120, "the run was killed before its end (latest checkpoint {killed_at})");

    run_ok(dir.path(), &[&args[..args.len() - 1], &["base-train", "--resume"]].concat());
    assert_eq!(model_sha(dir.path(), 120), model_sha(straight.path(), 120), "resumed after step {killed_at}");
    let strip = |v: Vec<serde_json::Value>| -> Vec<(Option<f64>, Option<f64>)> {
        v.iter().map(|m| (m["loss"].as_f64(), m["val_bpb"].as_f64())).collect()
    };
    assert_eq!(strip(metrics(dir.path())), strip(metrics(straight.path())), "the metrics log reads as one run");
}

#[test]
fn same_seed_same_weights_and_two_processes_match_one_with_accumulation() {
    // Without clipping: like the reference, each rank clips its own gradient before the distributed
    // optimizers average, which equals clipping the average only when the clip does not trigger.
    let args = with(&[
        "--set",
        "base_train.num_iterations=6",
        "--set",
        "base_train.eval_every=3",
        "--set",
        "base_train.save_every=-1",
        "--set",
        "base_train.grad_clip=0.0",
        "base-train",
    ]);
    let one = tempfile::tempdir().unwrap();
    prepare(one.path());
    run_ok(one.path(), &args);
    let again = tempfile::tempdir().unwrap();
    prepare(again.path());
    run_ok(again.path(), &args);
    assert_eq!(model_sha(one.path(), 6), model_sha(again.path(), 6), "same seed and data: bit-identical on CPU");

    let two = tempfile::tempdir().unwrap();
    prepare(two.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    run_ok(two.path(), &[&args[..], &["--nproc-per-node", "2", "--master-port", &port]].concat());
    let a = checkpoint::read_tensors(&checkpoint::model_path(&one.path().join("base_d1"), 6)).unwrap();
    let b = checkpoint::read_tensors(&checkpoint::model_path(&two.path().join("base_d1"), 6)).unwrap();
    let mut worst = 0.0f64;
    for (name, ta) in &a {
        let tb = &b[name];
        let rel = (ta - tb).abs().max().double_value(&[]) / ta.abs().max().double_value(&[]).max(1e-12);
        worst = worst.max(rel);
    }
    eprintln!("2 processes vs 1 process x 2 accumulation: largest relative weight difference {worst:e}");
    assert!(worst < 1e-4, "{worst:e}");
    let la: Vec<f64> = metrics(one.path()).iter().filter_map(|m| m["val_bpb"].as_f64()).collect();
    let lb: Vec<f64> = metrics(two.path()).iter().filter_map(|m| m["val_bpb"].as_f64()).collect();
    for (x, y) in la.iter().zip(&lb) {
        assert!((x - y).abs() / x < 1e-5, "val bpb {la:?} vs {lb:?}");
    }
}

#[test]
fn base_train_fits_its_device_batch_and_records_the_fit() {
    // 8 rows configured, a simulated limit of 4: the batch halves once, so 512 tokens a step are 2
    // micro-batches of 4x64 (the shards' row groups allow 2 streams), and the checkpoint records
    // the fit that mid-train starts from.
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let args = with(&[
        "--set",
        "base_train.device_batch_size=8",
        "--set",
        "base_train.num_iterations=2",
        "--set",
        "base_train.core_metric_every=-1",
        "base-train",
    ]);
    let out = nanochat(dir.path(), &args).env(SIMULATED_MAX_DEVICE_BATCH, "4").output().unwrap();
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("base_train.device_batch_size lowered from 8 to 4 to fit"), "{log}");
    assert!(log.contains("2 micro-batch(es) of 4x64"), "{log}");
    let meta = checkpoint::load_meta(&dir.path().join("base_d1"), 2).unwrap();
    assert_eq!((meta.device_batch_size, meta.fitted_device_batch_size), (4, Some(4)));
}

#[test]
fn the_92d63d4_recipe_trains_its_model_with_muon_adamw_on_best_fit_batches() {
    // gpt2-smoke's base_train at depth 2 on the test shards: every 92d63d4 model option, the sizing,
    // MuonAdamW and its schedules, one best-fit stream feeding 2 micro-batches a step.
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let args = [
        "--preset",
        "gpt2-smoke",
        "--set",
        "tok_train.vocab_size=512",
        "--set",
        "base_train.device_batch_size=2",
        "--set",
        "base_train.total_batch_size=1024",
        "--set",
        "base_train.num_iterations=24",
        "--set",
        "base_train.eval_every=12",
        "--set",
        "base_train.eval_tokens=1024",
        "--set",
        "base_train.save_every=-1",
        "base-train",
    ];
    let out = run_ok(dir.path(), &args);
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(log.contains("92d63d4 sizing:") && log.contains("total batch 1024 tokens,"), "{log}");
    assert!(log.contains("2 micro-batch(es) of 2x256"), "{log}");
    let ckpt = dir.path().join("base_d2");
    let meta = checkpoint::load_meta(&ckpt, 24).unwrap();
    let c = meta.model_config;
    assert!(c.value_embeds && c.smear && c.backout && c.resid_x0_lambdas, "{c:?}");
    assert_eq!(c.window_pattern.map(|p| p.to_string()), Some("SSSL".to_string()));
    assert_eq!(
        c.window_sizes(),
        [Some(128), Some(256)],
        "short: a quarter of 256 rounded up to 128; the last layer long"
    );
    // One best-fit stream per process: its position is where the last document batch came from.
    let streams = meta.dataloader_state_dict.as_array().unwrap();
    assert_eq!(streams.len(), 1, "{streams:?}");
    assert!(streams[0]["pq_idx"].is_u64() && streams[0]["rg_idx"].is_u64() && streams[0]["epoch"].is_u64());
    let state = checkpoint::read_tensors(&checkpoint::optim_path(&ckpt, 24, 0)).unwrap();
    assert!(state.keys().all(|k| k.starts_with("muon_adamw.")), "{:?}", state.keys());
    let bpbs: Vec<f64> = std::fs::read_to_string(ckpt.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["val_bpb"].as_f64())
        .collect();
    assert_eq!(bpbs.len(), 3, "evaluations at steps 0, 12 and 24");
    // Slower than late 2025's at this size (4 warm-up steps, weight decay, the tiny lm_head init).
    assert!(bpbs[1] < bpbs[0] && bpbs[2] < bpbs[1] && bpbs[2] < bpbs[0] * 0.95, "validation bpb should fall: {bpbs:?}");
    let section = std::fs::read_to_string(dir.path().join("report/base-model-training.json")).unwrap();
    for key in ["Scaling parameters", "Total batch size", "Muon weight decay (scaled)"] {
        assert!(section.contains(key), "{key} in {section}");
    }
    // fp8 matmuls need an sm89+ GPU: on the CPU the recipe's fp8 is refused with the way out.
    let fp8 = [&args[..args.len() - 1], &["--set", "base_train.recipe_92d63d4.fp8=true", "base-train"]].concat();
    let out = nanochat(dir.path(), &fp8).output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("compute capability 8.9") && said.contains("the CPU") && said.contains("fp8=false"),
        "{said}"
    );
}
