//! `nanochat tokenizer` and `nanochat tasks` end to end: the binary's output equals the reference's
//! (the golden fixtures), errors name the line and say what to run.
#[path = "support/chat_fixtures.rs"]
mod chat_fixtures;

use chat_fixtures::{chat_base, golden, golden_dir, nanochat, stdout};
use serde_json::Value;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn render_writes_the_reference_ids_and_masks() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = golden("render.json");
    let cases = fixture["cases"].as_array().unwrap();
    let input: String = cases.iter().map(|c| format!("{}\n", c["conversation"])).collect();
    let file = dir.path().join("conversations.jsonl");
    std::fs::write(&file, &input).unwrap();
    let tokenizer = golden_dir().join("tokenizer.ranks");
    let tok = tokenizer.to_str().unwrap();

    let out = stdout(&nanochat(dir.path(), &["tokenizer", "render", file.to_str().unwrap(), "--tokenizer", tok], None));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), cases.len());
    for (line, case) in lines.iter().zip(cases) {
        assert_eq!(line["ids"], case["ids"], "{}", case["name"]);
        assert_eq!(line["mask"], case["mask"], "{}", case["name"]);
    }
    // The prompt form, from standard input; the reference's tokenizer.pkl gives the same ids.
    let completable: Vec<&Value> = cases.iter().filter(|c| !c["completion_ids"].is_null()).collect();
    let input: String = completable.iter().map(|c| format!("{}\n", c["conversation"])).collect();
    let pkl = golden_dir().join("tokenizer.pkl");
    let out = stdout(&nanochat(
        dir.path(),
        &["tokenizer", "render", "-", "--for-completion", "--tokenizer", pkl.to_str().unwrap()],
        Some(&input),
    ));
    for (line, case) in json_lines(&out).iter().zip(&completable) {
        assert_eq!(line["ids"], case["completion_ids"], "{}", case["name"]);
        assert!(line.get("mask").is_none());
    }
    // The readable view marks the supervised tokens (no terminal here: brackets, no colour codes).
    let one = r#"{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"Hello"}]}"#;
    let out = stdout(&nanochat(dir.path(), &["tokenizer", "render", "-", "--view", "--tokenizer", tok], Some(one)));
    assert!(out.starts_with("<|bos|>|<|user_start|>|"), "{out}");
    assert!(out.trim_end().ends_with("<|assistant_end|>]]"), "{out}");
    assert!(out.contains("<|assistant_start|>|[["), "{out}");
    assert!(!out.contains('\x1b'));

    // A conversation breaking the rules: one line naming the file and line, exit code non-zero.
    let bad = format!("{one}\n{}\n", r#"[{"role":"user","content":"a"},{"role":"user","content":"b"}]"#);
    std::fs::write(&file, bad).unwrap();
    let out = nanochat(dir.path(), &["tokenizer", "render", file.to_str().unwrap(), "--tokenizer", tok], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("conversations.jsonl:2: message 1 comes from the user"), "{err}");
    // No tokenizer anywhere: says how to get one.
    let out = nanochat(dir.path(), &["tokenizer", "encode", "hi"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nanochat tok-train"));
}

#[test]
fn encode_and_decode_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let tok = golden_dir().join("tokenizer.ranks");
    let tok = tok.to_str().unwrap();
    let meta = golden("tokenizer_meta.json");
    let sample = &meta["encode"][0];
    let out = stdout(&nanochat(
        dir.path(),
        &["tokenizer", "encode", sample["text"].as_str().unwrap(), "--tokenizer", tok],
        None,
    ));
    let ids: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids, sample["ids"]);
    let out = stdout(&nanochat(dir.path(), &["tokenizer", "encode", "--bos", "--tokenizer", tok], Some("<|bos|>x")));
    let ids: Vec<u32> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(ids[0], 2039, "--bos prepends <|bos|> (id = 2,039 mergeable tokens + 0)");
    assert!(ids.len() > 2, "special-token text stays ordinary text without --special");
    let out = stdout(&nanochat(dir.path(), &["tokenizer", "encode", "--special", "--tokenizer", tok], Some("<|bos|>")));
    assert_eq!(out.trim(), "[2039]");
    let decoded =
        stdout(&nanochat(dir.path(), &["tokenizer", "decode", "--tokenizer", tok], Some(&sample["ids"].to_string())));
    assert_eq!(decoded, sample["text"].as_str().unwrap());
    let out = nanochat(dir.path(), &["tokenizer", "decode", "--tokenizer", tok], Some("1 two 3"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"two\" is not a token id"));
}

#[test]
fn tasks_show_prints_the_reference_examples() {
    let base = chat_base();
    let base_dir = base.dir.path();
    let tasks = golden("tasks.json");
    let find = |task: &str, args: Value| {
        tasks["tasks"].as_array().unwrap().iter().find(|t| t["task"] == task && t["args"] == args).unwrap().clone()
    };
    let gsm = find("GSM8K", serde_json::json!({"subset": "main", "split": "train"}));
    let out = stdout(&nanochat(base_dir, &["tasks", "show", "gsm8k", "--index", "17", "--json"], None));
    let example = gsm["examples"].as_array().unwrap().iter().find(|e| e["index"] == 17).unwrap();
    assert_eq!(json_lines(&out), vec![example["conversation"].clone()]);

    let bee = find("SpellingBee", serde_json::json!({"size": 100000, "split": "test"}));
    let out = stdout(&nanochat(
        base_dir,
        &["tasks", "show", "spellingbee", "--split", "test", "--size", "100000", "--range", "0:5", "--json"],
        None,
    ));
    let expected: Vec<Value> =
        bee["examples"].as_array().unwrap()[..5].iter().map(|e| e["conversation"].clone()).collect();
    assert_eq!(json_lines(&out), expected);

    // The stage mixtures with the d20 preset's (the reference's) sizes.
    let mixtures = golden("mixtures.json");
    let out =
        stdout(&nanochat(base_dir, &["--preset", "d20", "tasks", "show", "sft", "--range", "0:3", "--json"], None));
    let expected: Vec<Value> = mixtures["sft_train"]["first_examples"].as_array().unwrap()[..3].to_vec();
    assert_eq!(json_lines(&out), expected);

    // Readable form and the listing.
    let out = stdout(&nanochat(base_dir, &["tasks", "show", "arc-easy", "--split", "test"], None));
    assert!(out.contains("=== ARC-Easy/test #0 ===") && out.contains("[user]\nMultiple Choice question:"), "{out}");
    let out = stdout(&nanochat(base_dir, &["tasks", "list"], None));
    assert!(out.lines().any(|l| l.starts_with("gsm8k") && l.contains("downloaded")), "{out}");

    // Out of range and unknown names are clear errors.
    let out = nanochat(base_dir, &["tasks", "show", "humaneval", "--index", "164"], None);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the task has 164"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = nanochat(base_dir, &["tasks", "show", "imagenet"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown task \"imagenet\""));
}

#[test]
fn missing_task_data_says_how_to_download_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = nanochat(dir.path(), &["tasks", "show", "mmlu"], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cais/mmlu") && err.contains("nanochat data download --chat"), "{err}");
    let out = stdout(&nanochat(dir.path(), &["tasks", "list"], None));
    assert!(out.lines().any(|l| l.starts_with("mmlu ") && l.contains("missing")), "{out}");
    let out = nanochat(dir.path(), &["tasks", "show", "spellingbee"], None);
    assert!(String::from_utf8_lossy(&out.stderr).contains("words_alpha.txt"));
}

#[test]
fn the_chat_stages_explain_what_they_read_and_write() {
    let dir = tempfile::tempdir().unwrap();
    for stage in ["mid-train", "sft"] {
        let out = stdout(&nanochat(dir.path(), &[stage, "--help"], None));
        assert!(out.contains("Reads:") && out.contains("Writes:") && out.contains("--resume"), "{stage}: {out}");
    }
    // Without a tokenizer, then without a base model: which stage to run first.
    let out = nanochat(dir.path(), &["--preset", "smoke", "mid-train"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `nanochat tok-train` first"));
    let base = chat_base();
    std::fs::remove_dir_all(base.paths.checkpoints("base", 2)).unwrap();
    let out = nanochat(base.dir.path(), &["--preset", "smoke", "mid-train"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("run `nanochat base-train` first"));
    let out = nanochat(base.dir.path(), &["--preset", "smoke", "sft"], None);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no mid checkpoint")
            && String::from_utf8_lossy(&out.stderr).contains("run `nanochat mid-train` first")
    );
}
