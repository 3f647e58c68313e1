//! What the chat tests share: the golden fixtures made by running the reference
//! (tests/golden/chat/), and base dirs holding the committed stand-in datasets
//! (manifests/data/chat_smoke) where the stages look for them.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use nanochat::paths::Paths;
use nanochat::tokenizer::{rank_file, BpeEncoder, SPECIAL_TOKENS};
use serde_json::Value;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn golden_dir() -> std::path::PathBuf {
    root().join("tests/golden/chat")
}

pub fn golden(name: &str) -> Value {
    let path = golden_dir().join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The tokenizer the reference trained for the fixtures (vocab 2,048).
pub fn golden_encoder() -> BpeEncoder {
    let tokens = rank_file::load_rank_file(&golden_dir().join("tokenizer.ranks")).unwrap();
    BpeEncoder::new(tokens, &SPECIAL_TOKENS).unwrap()
}

/// The reference's d2 base checkpoint (tests/golden/chat/base_d2), in fp32 on the CPU.
pub fn golden_d2_model() -> nanochat::model::Gpt {
    nanochat::checkpoint::source::SourceCheckpoint::in_dir(&golden_dir().join("base_d2"), None)
        .unwrap()
        .load_model(tch::Device::Cpu, nanochat::model::Precision::Float32)
        .unwrap()
}

/// A base dir whose data/hf and data/chat-data are the stand-ins, with the golden tokenizer in
/// tok/ and the reference's d2 base checkpoint as base_d2/.
pub struct ChatBase {
    pub dir: tempfile::TempDir,
    pub paths: Paths,
}

pub fn chat_base() -> ChatBase {
    let dir = tempfile::tempdir().unwrap();
    let paths = Paths::new(dir.path());
    let data = root().join("manifests/data/chat_smoke");
    std::fs::create_dir_all(paths.data()).unwrap();
    std::os::unix::fs::symlink(&data, paths.data().join("hf")).unwrap();
    std::os::unix::fs::symlink(&data, paths.chat_extras()).unwrap();
    std::fs::create_dir_all(paths.tokenizer()).unwrap();
    std::fs::copy(golden_dir().join("tokenizer.ranks"), paths.tokenizer().join("tokenizer.ranks")).unwrap();
    let meta = golden("tokenizer_meta.json");
    std::fs::write(paths.tokenizer().join("token_bytes.json"), meta["token_bytes"].to_string()).unwrap();
    let base = paths.checkpoints("base", 2);
    std::fs::create_dir_all(&base).unwrap();
    for f in ["model_000000.pt", "meta_000000.json"] {
        std::fs::copy(golden_dir().join("base_d2").join(f), base.join(f)).unwrap();
    }
    ChatBase { dir, paths }
}

/// Runs the binary on base dir `base` with `stdin` as its standard input.
pub fn nanochat(base: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nanochat"))
        // On the CPU even with the d20 preset's values (a CUDA preset refuses to run without CUDA otherwise).
        .args(["--set", "hardware.device=cpu"])
        .args(args)
        .env("NANOCHAT_BASE_DIR", base)
        .env_remove("NANOCHAT_PRESET")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the nanochat binary starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// Standard output of a run that must have succeeded (its output is shown when it did not).
pub fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}
