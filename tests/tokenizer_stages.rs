//! tok-train and tok-eval through the binary on parquet shards of real text: the files they write,
//! the tokenizer they train (identical to training in-process), and the report sections.
use std::path::Path;
use std::process::{Command, Output};

use nanochat::data::shard_writer::{write_shard, ShardWriterOptions};
use nanochat::tokenizer::{artifacts, rank_file};

fn nanochat(base: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nanochat")).args(args).env("NANOCHAT_BASE_DIR", base).output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Real English text: the license texts every Debian system ships, split into paragraphs.
fn documents() -> Vec<String> {
    let mut docs = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir("/usr/share/common-licenses").unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    for f in files {
        if let Ok(t) = std::fs::read_to_string(&f) {
            docs.extend(t.split("\n\n").map(str::trim).filter(|d| d.len() > 40).map(String::from));
        }
    }
    docs
}

fn write_shards(base: &Path) -> Vec<String> {
    let docs = documents();
    let dir = base.join("data/smoke");
    let per = docs.len() / 3;
    for i in 0..3 {
        let opts = ShardWriterOptions { docs_per_row_group: 64, ..Default::default() };
        write_shard(&dir.join(format!("shard_{i:05}.parquet")), &docs[i * per..(i + 1) * per], opts).unwrap();
    }
    docs
}

#[test]
fn tok_train_then_tok_eval_on_shards() {
    let dir = tempfile::tempdir().unwrap();
    let docs = write_shards(dir.path());
    let sets = ["--preset", "smoke", "--set", "tok_train.vocab_size=1000"];
    let out = nanochat(dir.path(), &[&sets[..], &["tok-train"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let tok = dir.path().join("tok");
    for f in ["tokenizer.json", "tokenizer.ranks", "token_bytes.json", "config.toml"] {
        assert!(tok.join(f).exists(), "{f}");
    }
    let encoder = artifacts::load(&tok).unwrap();
    assert_eq!(encoder.vocab_size(), 1000);
    assert_eq!(encoder.bos_id().unwrap(), 991, "specials follow the 991 BPE tokens (§1.2)");
    let token_bytes = artifacts::load_token_bytes(&tok).unwrap();
    assert_eq!(token_bytes.len(), 1000);
    assert!(token_bytes[991..].iter().all(|&b| b == 0));

    // The stage reads the first 2 shards (smoke's tokenizer_shards) with the preset's caps:
    // training the same documents in-process gives the same ranks.
    let per = docs.len() / 3;
    let cfg = nanochat::tokenizer::TokenizerTrainingConfig { vocab_size: 1000, doc_cap: 10_000, max_chars: 20_000_000 };
    let direct = nanochat::tokenizer::train_tokenizer(docs[..2 * per].iter().cloned(), cfg, |_| {}).unwrap();
    assert_eq!(rank_file::load_rank_file(&tok.join("tokenizer.ranks")).unwrap(), direct.encoder.mergeable_tokens());

    let section = std::fs::read_to_string(dir.path().join("report/tokenizer-training.json")).unwrap();
    for key in ["train_time", "num_special_tokens", "token_bytes_mean", "vocab_size"] {
        assert!(section.contains(key), "{key} missing: {section}");
    }

    // Baselines: smoke turns them off; with them on and the files absent the report says so.
    let out = nanochat(dir.path(), &[&sets[..], &["--set", "tok_eval.compare_baselines=true", "tok-eval"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let eval = std::fs::read_to_string(dir.path().join("report/tokenizer-evaluation.json")).unwrap();
    assert!(eval.contains("Not available") && eval.contains("r50k_base.tiktoken not found"), "{eval}");
    for row in ["news", "korean", "code", "math", "science", "fwe-train", "fwe-val"] {
        assert!(eval.contains(&format!("| {row} |")), "{row} row missing: {eval}");
    }
    // A baseline file present (here our own ranks under GPT-2's name) yields the comparison table.
    let baselines = dir.path().join("data/tokenizers");
    std::fs::create_dir_all(&baselines).unwrap();
    std::fs::copy(tok.join("tokenizer.ranks"), baselines.join("r50k_base.tiktoken")).unwrap();
    let out = nanochat(dir.path(), &[&sets[..], &["--set", "tok_eval.compare_baselines=true", "tok-eval"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let eval = std::fs::read_to_string(dir.path().join("report/tokenizer-evaluation.json")).unwrap();
    assert!(
        eval.contains(
            "| Text Type | Bytes | GPT-2 Tokens | GPT-2 Ratio | Ours Tokens | Ours Ratio | Relative Diff % |"
        ),
        "{eval}"
    );
}

#[test]
fn tok_train_explains_missing_shards_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = nanochat(dir.path(), &["--preset", "smoke", "tok-train"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("nanochat data download --preset smoke"), "{}", text(&out));
    let out = nanochat(dir.path(), &["--preset", "smoke", "tok-train", "--input", "/nonexistent/corpus"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("/nonexistent/corpus"), "{}", text(&out));
    let out = nanochat(dir.path(), &["--preset", "smoke", "tok-eval"]);
    assert!(text(&out).contains("run `nanochat tok-train` first"), "{}", text(&out));
}
