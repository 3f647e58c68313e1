//! The typed run configuration: every hyperparameter of every stage, as held by a preset
//! (manifests/runs/*.toml). Values come from the reference (NANOCHAT.md §4 base training, §5 chat stages,
//! §6 evaluation, §10 speedrun). A preset must name every key; unknown keys are rejected.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub run: RunSection,
    pub hardware: HardwareExpectation,
    pub data: DataConfig,
    pub tok_train: TokTrainConfig,
    pub tok_eval: TokEvalConfig,
    pub base_train: BaseTrainConfig,
    pub base_loss: BaseLossConfig,
    pub base_eval: BaseEvalConfig,
    pub mid_train: MidTrainConfig,
    pub chat_sft: ChatSftConfig,
    pub chat_rl: ChatRlConfig,
    pub chat_eval: ChatEvalConfig,
    pub report: ReportConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    pub name: String,
    pub description: String,
    /// Base seed; every stage and rank derives its own seed from it (reference: 42 everywhere, §4.4).
    pub seed: u64,
    /// Pipeline stages in order; `nanochat speedrun` runs them.
    pub stages: Vec<String>,
}

/// What the preset expects of the machine; checked by `nanochat doctor` before anything expensive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HardwareExpectation {
    /// "cuda" or "cpu".
    pub device: String,
    /// GPUs the preset is tuned for (fewer still work, with more gradient accumulation and more time).
    pub gpus: u32,
    pub min_gpu_memory_gib: f64,
    /// bf16 training needs Ampere or newer.
    pub min_compute_capability: f64,
    /// The cu130 libtorch needs driver >= 580 (DESIGN.md).
    pub min_driver_major: u32,
    /// Disk the run downloads and writes under the base dir.
    pub disk_gib: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Data manifest (manifests/data/<name>.toml) the shards come from.
    pub manifest: String,
    /// Shards fetched before tokenizer training (reference: 8, ~2B chars; §10.1).
    pub tokenizer_shards: u32,
    /// Shards for pretraining; the last one present is validation (§2.1).
    pub train_shards: u32,
    pub download_workers: u32,
    /// Base URL of a mirror holding every data file under its plain file name (`<mirror_url>/<name>`);
    /// empty = each manifest's own URLs. Checksums still come from the manifests.
    pub mirror_url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokTrainConfig {
    /// Including the 9 special tokens (§1.2, §1.4).
    pub vocab_size: u32,
    pub max_chars: u64,
    pub doc_cap: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokEvalConfig {
    /// Compare against the GPT-2 and GPT-4 tokenizers when their files are available (§1.6).
    pub compare_baselines: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseTrainConfig {
    pub depth: u32,
    pub max_seq_len: u32,
    pub device_batch_size: u32,
    /// Tokens per optimizer step; 0 with `recipe_92d63d4`: its auto batch size (§12, B_opt ∝ D^0.383).
    pub total_batch_size: u64,
    /// Horizon precedence: num_iterations > target_flops > target_param_data_ratio; -1 disables (§4.4).
    pub num_iterations: i64,
    pub target_flops: f64,
    pub target_param_data_ratio: f64,
    pub embedding_lr: f64,
    pub unembedding_lr: f64,
    pub matrix_lr: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_eps: f64,
    pub muon_momentum_start: f64,
    pub muon_momentum_end: f64,
    pub muon_momentum_warmup_steps: u32,
    pub muon_ns_steps: u32,
    pub grad_clip: f64,
    pub warmup_ratio: f64,
    pub warmdown_ratio: f64,
    pub final_lr_frac: f64,
    pub eval_every: i64,
    pub eval_tokens: u64,
    pub core_metric_every: i64,
    pub core_metric_max_per_task: i64,
    pub sample_every: i64,
    pub save_every: i64,
    /// Compute dtype (§3.5): "auto" (bfloat16 on a GPU, float32 on CPU), "bfloat16" or "float32".
    #[serde(default = "auto_dtype")]
    pub dtype: String,
    /// nanochat 92d63d4's recipe (the `gpt2` presets, §12). Present: base training builds the model
    /// with every 92d63d4 option, sizes the horizon, batch and weight decay from the scaling
    /// parameters, steps `MuonAdamW` on 92d63d4's schedules (no gradient clipping), and reads the
    /// shards with the best-fit loader; `adam_*`, `muon_momentum_*`, `muon_ns_steps` and
    /// `warmup_ratio` are then unused (92d63d4 fixes them per parameter group). Absent: late 2025.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe_92d63d4: Option<Recipe92d63d4>,
}

/// base_train.py's arguments at 92d63d4 that late 2025 did not have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe92d63d4 {
    /// model_dim = depth · aspect_ratio, rounded up to a multiple of head_dim.
    pub aspect_ratio: u32,
    pub head_dim: u32,
    /// Sliding windows tiled over the layers: L = the full context, S = a quarter of it rounded up to
    /// 128 (the last layer always L).
    pub window_pattern: String,
    /// AdamW's LR for the resid/x0 lambdas.
    pub scalar_lr: f64,
    /// Linear LR warm-up, in steps.
    pub warmup_steps: u32,
    /// `--fp8`: the block matrices' training matmuls in fp8 with tensorwise scaling (GPUs of compute
    /// capability 8.9 or newer only; evaluation stays in the compute dtype).
    pub fp8: bool,
}

fn auto_dtype() -> String {
    "auto".to_string()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseLossConfig {
    pub device_batch_size: u32,
    pub split_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseEvalConfig {
    /// -1 = every example of every CORE task (§6.1).
    pub max_per_task: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MidTrainConfig {
    pub device_batch_size: u32,
    pub max_seq_len: u32,
    pub total_batch_size: u64,
    pub num_iterations: i64,
    pub init_lr_frac: f64,
    pub embedding_lr: f64,
    pub unembedding_lr: f64,
    pub matrix_lr: f64,
    pub weight_decay: f64,
    /// LR multiplier is 1 until this fraction of the data, then linear to 0 (§5.3).
    pub warmdown_start: f64,
    /// Muon momentum restarts its warm-up: start → end over `muon_momentum_warmup_steps` (§5.3).
    pub muon_momentum_start: f64,
    pub muon_momentum_end: f64,
    pub muon_momentum_warmup_steps: u32,
    pub eval_every: i64,
    pub eval_tokens: u64,
    /// Checkpoint every this many steps for `--resume` (≤ 0: only the final one, as the reference).
    pub save_every: i64,
    /// The training mixture (§5.3): SimpleSpelling and SpellingBee examples, identity epochs.
    pub simple_spelling_size: u32,
    pub spelling_bee_size: u32,
    pub identity_epochs: u32,
    /// The validation mixture's first MMLU-test and GSM8K-test examples (§5.3).
    pub mmlu_val_stop: u32,
    pub gsm8k_val_stop: u32,
    /// Compute dtype, as `base_train.dtype`.
    #[serde(default = "auto_dtype")]
    pub dtype: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatSftConfig {
    pub source: String,
    pub device_batch_size: u32,
    pub target_examples_per_step: u32,
    pub num_epochs: u32,
    pub num_iterations: i64,
    pub init_lr_frac: f64,
    pub embedding_lr: f64,
    pub unembedding_lr: f64,
    pub matrix_lr: f64,
    pub weight_decay: f64,
    pub eval_every: i64,
    pub eval_steps: u32,
    pub eval_metrics_every: i64,
    pub eval_metrics_max_problems: u32,
    /// Checkpoint every this many steps for `--resume` (≤ 0: only the final one, as the reference).
    pub save_every: i64,
    /// The training mixture (§5.4): first SmolTalk-train examples, SimpleSpelling and SpellingBee sizes.
    pub smoltalk_stop: u32,
    pub simple_spelling_size: u32,
    pub spelling_bee_size: u32,
    /// Compute dtype, as `base_train.dtype`.
    #[serde(default = "auto_dtype")]
    pub dtype: String,
    /// nanochat 92d63d4's `chat_sft.py` (the `gpt2` presets). Present: conversations packed into rows
    /// by best fit with padding, its mixture, a token batch, the progress-based schedule, validation
    /// bpb, and the optimizer warm-started from the source checkpoint; `target_examples_per_step`,
    /// `num_epochs`, `eval_steps`, `eval_metrics_*`, `smoltalk_stop` and the spelling sizes are then
    /// unused. Absent: late 2025's SFT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe_92d63d4: Option<SftRecipe92d63d4>,
}

/// chat_sft.py's arguments at 92d63d4 that late 2025 did not have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftRecipe92d63d4 {
    /// Tokens per row.
    pub max_seq_len: u32,
    /// Tokens per optimizer step; 0: the source checkpoint's base training batch (the reference inherits it).
    pub total_batch_size: u64,
    /// (With this recipe `chat_sft.num_iterations` counts batches per process, micro-batches included,
    /// as chat_sft.py's `--num-iterations` does; the progress is that count over it.)
    /// Epochs of MMLU's auxiliary train split and of GSM8K's train split in the mixture (with SmolTalk's train).
    pub mmlu_epochs: u32,
    pub gsm8k_epochs: u32,
    /// The LR schedule over the progress through the data (0 → 1).
    pub warmup_ratio: f64,
    pub warmdown_ratio: f64,
    pub final_lr_frac: f64,
    /// Validation tokens per evaluation.
    pub eval_tokens: u64,
    /// Start from the source checkpoint's optimizer state (momentum buffers; the LRs are this stage's).
    pub load_optimizer: bool,
    /// ChatCORE every this many steps and at the end (≤ 0: never), on at most `chatcore_max_cat`
    /// problems of each categorical task and `chatcore_max_sample` of each generative one (< 0: all).
    pub chatcore_every: i64,
    pub chatcore_max_cat: i64,
    pub chatcore_max_sample: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRlConfig {
    /// RL is optional in the reference speedrun (§10.1).
    pub enabled: bool,
    pub source: String,
    pub device_batch_size: u32,
    pub examples_per_step: u32,
    pub num_samples: u32,
    pub max_new_tokens: u32,
    pub temperature: f64,
    /// 0: sample from every token.
    pub top_k: u32,
    pub num_epochs: u32,
    /// Optimizer steps; ≤ 0: (GSM8K train questions // examples_per_step) × num_epochs (§5.5).
    pub num_steps: i64,
    pub init_lr_frac: f64,
    pub embedding_lr: f64,
    pub unembedding_lr: f64,
    pub matrix_lr: f64,
    pub weight_decay: f64,
    /// pass@k on the first `eval_examples` GSM8K test questions at every step divisible by this
    /// (step 0 included; ≤ 0: never).
    pub eval_every: i64,
    pub eval_examples: u32,
    /// Checkpoint every this many steps for `--resume`, and at the end.
    pub save_every: i64,
    /// Compute dtype, as `base_train.dtype`.
    #[serde(default = "auto_dtype")]
    pub dtype: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatEvalConfig {
    pub temperature: f64,
    pub max_new_tokens: u32,
    pub num_samples: u32,
    pub top_k: u32,
    pub batch_size: u32,
    /// -1 = all problems.
    pub max_problems: i64,
    /// The tasks the chat-eval stages run and ChatCORE averages, `|`-separated as `chat-eval -a`
    /// takes them. Absent: all six (late 2025); the gpt2 presets leave SpellingBee out, as 92d63d4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// USD per GPU-hour for the cost line; a negative value means "from the GPU name" (§8.2).
    pub gpu_hour_cost_usd: f64,
}
