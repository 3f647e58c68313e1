//! Where every artifact lives under the base directory (`--base-dir`, env NANOCHAT_BASE_DIR,
//! default ~/.cache/nanochat; NANOCHAT.md §0 and DESIGN.md "Data and artifacts").
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Paths {
    base: PathBuf,
}

impl Paths {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }

    /// `$HOME/.cache/nanochat`, or `./.cache/nanochat` when HOME is unset.
    pub fn default_base_dir() -> PathBuf {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")).join(".cache/nanochat")
    }

    pub fn base(&self) -> &Path {
        &self.base
    }
    pub fn data(&self) -> PathBuf {
        self.base.join("data")
    }
    /// Parquet shards of one data manifest (e.g. data/fineweb-edu-100b/shard_00000.parquet).
    pub fn shards(&self, manifest: &str) -> PathBuf {
        self.data().join(manifest)
    }
    /// tiktoken rank files of the GPT-2/GPT-4 tokenizers that tok-eval compares against.
    pub fn baseline_tokenizers(&self) -> PathBuf {
        self.data().join("tokenizers")
    }
    /// Files of a HuggingFace dataset repository (e.g. "allenai/ai2_arc") at their paths inside the
    /// repository: data/hf/allenai/ai2_arc/ARC-Easy/train-00000-of-00001.parquet (NANOCHAT.md §5.2).
    pub fn hf_dataset(&self, repo: &str) -> PathBuf {
        self.data().join("hf").join(repo)
    }
    /// The chat stages' extra files (identity conversations, SpellingBee word list; §5.2).
    pub fn chat_extras(&self) -> PathBuf {
        self.data().join("chat-data")
    }
    pub fn tokenizer(&self) -> PathBuf {
        self.base.join("tok")
    }
    pub fn eval_bundle(&self) -> PathBuf {
        self.base.join("eval_bundle")
    }
    /// CORE results of base-eval: base_model_XXXXXX.csv (NANOCHAT.md §6.1).
    pub fn base_eval(&self) -> PathBuf {
        self.base.join("base_eval")
    }
    /// Checkpoints of a training phase ("base", "mid", "sft", "rl") at a depth: e.g. base_d20/.
    pub fn checkpoints(&self, phase: &str, depth: u32) -> PathBuf {
        self.base.join(format!("{phase}_d{depth}"))
    }
    pub fn report(&self) -> PathBuf {
        self.base.join("report")
    }
    pub fn logs(&self) -> PathBuf {
        self.base.join("logs")
    }
    /// Stage records of the speedrun orchestrator.
    pub fn speedrun(&self) -> PathBuf {
        self.base.join("speedrun")
    }
}
