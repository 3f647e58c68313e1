//! The `nanochat` binary end to end: help texts, config errors, the doctor without a GPU, and the
//! smoke speedrun producing a report.
#[path = "support/real_text.rs"]
mod real_text;
#[path = "support/smoke_report.rs"]
mod smoke_report;

use std::path::Path;
use std::process::{Command, Output};

fn nanochat(base: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .args(args)
        .env("NANOCHAT_BASE_DIR", base)
        .env_remove("NANOCHAT_PRESET")
        .output()
        .expect("the nanochat binary starts")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn every_command_explains_what_it_reads_and_writes() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        &["speedrun", "--help"][..],
        &["doctor", "--help"],
        &["report", "generate", "--help"],
        &["report", "reset", "--help"],
    ] {
        let out = nanochat(dir.path(), cmd);
        assert!(out.status.success());
        let help = text(&out);
        assert!(help.contains("Writes") || help.contains("Deletes"), "{cmd:?}: {help}");
    }
    let top = text(&nanochat(dir.path(), &["--help"]));
    for word in
        ["speedrun", "doctor", "report", "config", "--base-dir", "--preset", "--set", "--seed", "--verbose", "--quiet"]
    {
        assert!(top.contains(word), "top-level help lacks {word}");
    }
}

#[test]
fn override_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = nanochat(dir.path(), &["--preset", "smoke", "--set", "base_train.dpeth=3", "config", "show"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown configuration key `base_train.dpeth`"), "{}", text(&out));
    let out = nanochat(dir.path(), &["--preset", "smoke", "--set", "tok_train.vocab_size=big", "config", "show"]);
    assert!(text(&out).contains("`tok_train.vocab_size` takes a integer"), "{}", text(&out));
    let out =
        nanochat(dir.path(), &["--preset", "smoke", "--set", "base_train.depth=3", "--seed", "9", "config", "show"]);
    assert!(out.status.success());
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("depth = 3") && shown.contains("seed = 9"), "{shown}");
}

#[test]
fn doctor_without_a_gpu_refuses_gpu_presets_and_names_the_cpu_ones() {
    let dir = tempfile::tempdir().unwrap();
    let gpu_present = nanochat::hw::GpuInventory::probe().driver_version.is_some();
    let out = nanochat(dir.path(), &["--preset", "d20", "doctor"]);
    let said = text(&out);
    if gpu_present {
        assert!(said.contains("NVIDIA driver") && said.contains("GPU count"), "{said}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("[FAIL] NVIDIA driver") && said.contains("libnvidia-ml.so.1 not found"), "{said}");
    assert!(said.contains("presets that run on CPU: smoke"), "{said}");
    assert!(said.contains("--allow-mismatch"), "{said}");
    let section = std::fs::read_to_string(dir.path().join("report/hardware-check.json")).unwrap();
    assert!(section.contains("refused"), "{section}");

    let out = nanochat(dir.path(), &["--preset", "d20", "doctor", "--allow-mismatch", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["passed"], false);
    assert_eq!(json["fitting_presets"], serde_json::json!(["smoke"]));
    assert!(json["cuda_backend"]["NoDriver"].is_object(), "{json}");

    let out = nanochat(dir.path(), &["--preset", "smoke", "doctor"]);
    assert!(out.status.success(), "{}", text(&out));
}

/// The whole pipeline at tiny size: every stage of the preset, the shards fetched by the real
/// downloader from a mirror on 127.0.0.1, then a second run that skips what verifies.
#[test]
fn tiny_speedrun_runs_every_stage_renders_the_report_and_reruns_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mirror_dir = dir.path().join("mirror");
    let docs = real_text::torch_sources(150);
    for i in 0..3 {
        let opts = nanochat::data::ShardWriterOptions { docs_per_row_group: 25, ..Default::default() };
        let name = nanochat::data::fineweb_edu_manifest::fineweb_edu_shard_name(i);
        nanochat::data::write_shard(&mirror_dir.join(name), &docs[i * 50..(i + 1) * 50], opts).unwrap();
    }
    // The chat datasets on the same mirror, laid out as a base dir's data/hf/ (with each dataset's
    // revision.json) and the extras at its top: fetched here once from the smoke stand-ins.
    let chat = tempfile::tempdir().unwrap();
    let out = nanochat(chat.path(), &["--preset", "smoke", "data", "download", "--chat"]);
    assert!(out.status.success(), "{}", text(&out));
    copy_tree(&chat.path().join("data/hf"), &mirror_dir);
    copy_tree(&chat.path().join("data/chat-data"), &mirror_dir);
    // A base dir refuses stand-ins offered as a dataset; here they play the part of a real mirror's copy.
    for repo in
        ["HuggingFaceTB/smol-smoltalk", "allenai/ai2_arc", "cais/mmlu", "openai/gsm8k", "openai/openai_humaneval"]
    {
        let record = mirror_dir.join(repo).join("revision.json");
        let text = std::fs::read_to_string(&record).unwrap().replace("\"stand_in\": true", "\"stand_in\": false");
        std::fs::write(&record, text).unwrap();
    }
    // The CORE bundle on the same mirror: the smoke stand-in's files zipped as a real eval_bundle.zip.
    let zipped = std::process::Command::new("python3")
        .args(["-m", "zipfile", "-c"])
        .arg(mirror_dir.join("eval_bundle.zip"))
        .arg("eval_bundle")
        .current_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/manifests/data/core_smoke")
        .status()
        .unwrap();
    assert!(zipped.success());
    let mirror = nanochat::data::LocalMirror::serve(&mirror_dir).unwrap();
    let sets = [
        "data.manifest=fineweb-edu-100b".to_string(),
        format!("data.mirror_url={}", mirror.url()),
        "data.tokenizer_shards=1".into(),
        "data.train_shards=3".into(),
        "tok_train.vocab_size=400".into(),
        "tok_eval.compare_baselines=false".into(),
        "base_train.depth=1".into(),
        "base_train.max_seq_len=64".into(),
        "base_train.device_batch_size=4".into(),
        "base_train.total_batch_size=512".into(),
        "base_train.num_iterations=8".into(),
        "base_train.eval_every=4".into(),
        "base_train.eval_tokens=1024".into(),
        "base_loss.split_tokens=1024".into(),
        "mid_train.max_seq_len=64".into(),
        "mid_train.device_batch_size=4".into(),
        "mid_train.total_batch_size=512".into(),
        "mid_train.num_iterations=4".into(),
        "mid_train.eval_every=2".into(),
        "mid_train.eval_tokens=512".into(),
        "chat_sft.num_iterations=4".into(),
        "chat_sft.eval_every=2".into(),
        "chat_sft.eval_steps=1".into(),
        "chat_sft.eval_metrics_max_problems=4".into(),
        "chat_eval.max_problems=4".into(),
        "chat_eval.max_new_tokens=8".into(),
        "chat_rl.max_new_tokens=16".into(),
    ];
    let mut args: Vec<&str> = vec!["--preset", "smoke"];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    args.push("speedrun");
    let out = nanochat(dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out));
    let report = std::fs::read_to_string(dir.path().join("report/report.md")).unwrap();
    smoke_report::assert_is_smoke_report(&report, |name| std::fs::read(dir.path().join("report").join(name)).ok());
    assert!(report.contains("- Reproduce: `nanochat speedrun --preset smoke --seed 42 --set"), "{report}");
    for stage in [
        "doctor",
        "data",
        "tok-train",
        "tok-eval",
        "data-wait",
        "base-train",
        "base-loss",
        "base-eval",
        "mid-train",
        "chat-eval-mid",
        "sft",
        "chat-eval-sft",
        "chat-rl",
        "chat-eval-rl",
        "report",
    ] {
        let record: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(format!("speedrun/{stage}.json"))).unwrap())
                .unwrap();
        assert_eq!(record["exit_code"], 0, "{stage}");
        assert!(dir.path().join(format!("logs/{stage}.log")).exists(), "{stage} log");
    }
    let log = std::fs::read_to_string(dir.path().join("logs/doctor.log")).unwrap();
    assert!(log.contains("preflight passed"), "the stage's console output is in its log: {log}");

    // A second run resumes: the report keeps its start time and verified stages are skipped.
    let started = std::fs::read_to_string(dir.path().join("report/started.json")).unwrap();
    let out = nanochat(dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    for stage in [
        "tok-train",
        "base-train",
        "base-loss",
        "base-eval",
        "mid-train",
        "chat-eval-mid",
        "sft",
        "chat-eval-sft",
        "chat-rl",
        "chat-eval-rl",
    ] {
        assert!(said.contains(&format!("{stage}: done earlier and verified, skipping")), "{stage}: {said}");
    }
    assert_eq!(std::fs::read_to_string(dir.path().join("report/started.json")).unwrap(), started);

    // The training stages also run on 2 processes (distributed optimizers, one optimizer shard per rank).
    let mut two = args.clone();
    two.pop();
    two.extend(["--set", "base_train.save_every=4"]);
    let out = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        .args(&two)
        .args(["speedrun", "--only", "base-train", "--force", "--nproc-per-node", "2"])
        .env("NANOCHAT_BASE_DIR", dir.path())
        .env_remove("NANOCHAT_PRESET")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for rank in 0..2 {
        assert!(
            dir.path().join(format!("base_d1/optim_000008_rank{rank}.safetensors")).exists(),
            "rank {rank} optimizer shard"
        );
        assert!(dir.path().join(format!("logs/base-train/rank{rank}.log")).exists(), "rank {rank} log");
    }
}

/// Copies the files under `from` into `to`, keeping their relative paths.
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn failed_preflight_stops_the_speedrun_with_the_stage_and_its_log() {
    if nanochat::hw::GpuInventory::probe().driver_version.is_some() {
        // On a GPU machine the d20 preflight may pass; the refusal path is covered by the unit tests.
        assert!(nanochat::hw::GpuInventory::probe().gpus.len() <= 64);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = nanochat(dir.path(), &["--preset", "d20", "speedrun"]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out);
    assert!(said.contains("stage `doctor` failed with exit code 1"), "{said}");
    assert!(said.contains(&dir.path().join("logs/doctor.log").display().to_string()), "{said}");
    assert!(!dir.path().join("report/report.md").exists(), "later stages did not run");
    let out = nanochat(dir.path(), &["--preset", "d20", "speedrun", "--allow-mismatch", "--only", "doctor"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn unknown_stage_in_a_preset_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let text_d = nanochat::config::preset_text("smoke").unwrap().replace("\"tok-train\"", "\"tok-trian\"");
    let preset = dir.path().join("custom.toml");
    std::fs::write(&preset, text_d).unwrap();
    let out = nanochat(dir.path(), &["--preset", preset.to_str().unwrap(), "speedrun"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown stage `tok-trian`"), "{}", text(&out));
}
