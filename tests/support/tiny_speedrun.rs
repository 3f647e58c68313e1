#![allow(dead_code)] // shared by several test binaries, each using part of it
//! Test support: the smoke speedrun at tiny size, offline. A mirror on 127.0.0.1 serves three
//! shards of real text, the chat datasets and the CORE bundle; `args` holds the `--set` overrides
//! that shrink every stage. Needs `real_text` (`#[path = "support/real_text.rs"] mod real_text;`).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::real_text;

/// The mirror (served while this lives) and the global options of a tiny smoke run.
pub struct TinySpeedrun {
    /// What the mirror serves (the shards at its top).
    pub mirror_dir: PathBuf,
    mirror: nanochat::download::LocalMirror,
    sets: Vec<String>,
}

/// `nanochat <args>` with `base` as its base dir (NANOCHAT_BASE_DIR) and no preset from the environment.
pub fn nanochat_command(base: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nanochat"));
    command.args(args).env("NANOCHAT_BASE_DIR", base).env_remove("NANOCHAT_PRESET");
    command
}

pub fn nanochat(base: &Path, args: &[&str]) -> Output {
    nanochat_command(base, args).output().expect("the nanochat binary starts")
}

/// stdout then stderr, as text.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

impl TinySpeedrun {
    /// Lays out the mirror under `work/mirror` and serves it.
    pub fn new(work: &Path) -> Self {
        let mirror_dir = work.join("mirror");
        let docs = real_text::torch_sources(150);
        for i in 0..3 {
            let opts = nanochat::data::ShardWriterOptions { docs_per_row_group: 25, ..Default::default() };
            let name = nanochat::download::shard_file_name(i);
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
        let zipped = Command::new("python3")
            .args(["-m", "zipfile", "-c"])
            .arg(mirror_dir.join("eval_bundle.zip"))
            .arg("eval_bundle")
            .current_dir(env!("CARGO_MANIFEST_DIR").to_string() + "/manifests/data/core_smoke")
            .status()
            .unwrap();
        assert!(zipped.success());
        let mirror = nanochat::download::LocalMirror::serve(&mirror_dir).unwrap();
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
        ]
        .to_vec();
        TinySpeedrun { mirror_dir, mirror, sets }
    }

    /// More `--set` overrides (`section.key=value`) on top of the tiny ones.
    pub fn with(mut self, assignments: &[&str]) -> Self {
        self.sets.extend(assignments.iter().map(|a| a.to_string()));
        self
    }

    /// `--preset smoke --set ...` followed by `extra` (e.g. `["speedrun"]`).
    pub fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args: Vec<&str> = vec!["--preset", "smoke"];
        for s in &self.sets {
            args.extend(["--set", s.as_str()]);
        }
        args.extend_from_slice(extra);
        args
    }

    /// `nanochat speedrun [extra...]` of this tiny run in `base`.
    pub fn speedrun(&self, base: &Path, extra: &[&str]) -> Command {
        let mut args = self.args(&["speedrun"]);
        args.extend_from_slice(extra);
        nanochat_command(base, &args)
    }
}

/// Copies the files under `from` into `to`, keeping their relative paths.
pub fn copy_tree(from: &Path, to: &Path) {
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

/// The smoke preset's stages in order (what a whole tiny speedrun runs).
pub const SMOKE_STAGES: &[&str] = &[
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
];
