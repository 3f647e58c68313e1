//! The `nanochat` binary end to end: help texts, config errors, the doctor without a GPU, and the
//! smoke speedrun producing a report.
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

#[test]
fn smoke_speedrun_renders_a_report_and_reruns_resume() {
    let dir = tempfile::tempdir().unwrap();
    let out = nanochat(dir.path(), &["--preset", "smoke", "speedrun"]);
    assert!(out.status.success(), "{}", text(&out));
    let report = std::fs::read_to_string(dir.path().join("report/report.md")).unwrap();
    assert!(report.starts_with("# nanochat training report"));
    assert!(report.contains("## Hardware check") && report.contains("- result: pass"), "{report}");
    assert!(report.contains("| Metric | BASE | MID | SFT | RL |"));
    assert!(report.contains("- Reproduce: `nanochat speedrun --preset smoke --seed 42`"), "{report}");
    for stage in ["doctor", "report"] {
        assert!(dir.path().join(format!("speedrun/{stage}.json")).exists());
        assert!(dir.path().join(format!("logs/{stage}.log")).exists());
    }
    let log = std::fs::read_to_string(dir.path().join("logs/doctor.log")).unwrap();
    assert!(log.contains("preflight passed"), "the stage's console output is in its log: {log}");
    let config = std::fs::read_to_string(dir.path().join("speedrun/config.toml")).unwrap();
    assert!(config.contains("name = \"smoke\""));

    // A second run keeps the report's start time (it resumes, it does not reset).
    let started = std::fs::read_to_string(dir.path().join("report/started.json")).unwrap();
    let out = nanochat(dir.path(), &["--preset", "smoke", "speedrun"]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(dir.path().join("report/started.json")).unwrap(), started);
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
    let out = nanochat(dir.path(), &["--preset", "d20", "speedrun", "--allow-mismatch"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn unknown_stage_in_a_preset_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let text_d = nanochat::config::preset_text("smoke")
        .unwrap()
        .replace("stages = [\"doctor\", \"report\"]", "stages = [\"doctor\", \"tok-trian\"]");
    let preset = dir.path().join("custom.toml");
    std::fs::write(&preset, text_d).unwrap();
    let out = nanochat(dir.path(), &["--preset", preset.to_str().unwrap(), "speedrun"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown stage `tok-trian`"), "{}", text(&out));
}
