//! Arguments of the chat half's commands: `tokenizer`, `tasks`, `mid-train`, `sft`.
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::LaunchArgs;

#[derive(Debug, Args, Clone)]
pub struct TokenizerSource {
    /// Tokenizer to use: a tok/ directory, a tokenizer.ranks file or a tokenizer.json
    /// (default: tok/ under the base dir).
    #[arg(long, value_name = "PATH")]
    pub tokenizer: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenizerCommand {
    /// Encode text (the argument, or standard input) to token ids, printed as a JSON list.
    #[command(long_about = "Encode text to token ids, printed as one JSON list.\n\n\
        Special-token strings like <|bos|> are ordinary text unless --special is given.\n\n\
        Example: nanochat tokenizer encode 'Hello world'\n\
        Example: echo 'Hello' | nanochat tokenizer encode --bos")]
    Encode {
        /// Text to encode (default: all of standard input).
        text: Option<String>,
        /// Prepend <|bos|>.
        #[arg(long)]
        bos: bool,
        /// Encode special-token strings in the text as the special tokens.
        #[arg(long)]
        special: bool,
        #[command(flatten)]
        source: TokenizerSource,
    },
    /// Decode token ids (arguments, or a JSON list / whitespace-separated ids on standard input).
    #[command(long_about = "Decode token ids to text (invalid UTF-8 shows as U+FFFD).\n\n\
        Example: nanochat tokenizer decode 65527 1234 56\n\
        Example: nanochat tokenizer encode hi | nanochat tokenizer decode")]
    Decode {
        ids: Vec<u32>,
        #[command(flatten)]
        source: TokenizerSource,
    },
    /// Render conversations (JSONL) to token ids and loss masks, or a readable view.
    #[command(long_about = "Render a JSONL file of conversations with the chat format of NANOCHAT.md §5.1.\n\n\
        Input: one conversation per line, {\"messages\": [{\"role\": ..., \"content\": ...}, ...]} or a bare list \
        of messages; assistant content may be a list of parts {\"type\": \"text\"|\"python\"|\"python_output\", \
        \"text\": ...}.\n\
        Output: one line per conversation, {\"ids\": [...], \"mask\": [...]} (mask 1 = supervised), or with \
        --for-completion {\"ids\": [...]}: the prompt without the last assistant message, ending in \
        <|assistant_start|>. --view prints the tokens separated by | with the supervised ones in green \
        (on a terminal) or inside [[ ]].\n\n\
        Example: nanochat tokenizer render conversations.jsonl > rendered.jsonl\n\
        Example: nanochat tasks show gsm8k --index 0 --json | nanochat tokenizer render --view -")]
    Render {
        /// JSONL file of conversations ("-" for standard input).
        input: PathBuf,
        /// Render the prompt for a completion (render_for_completion) instead.
        #[arg(long)]
        for_completion: bool,
        /// Readable view instead of JSON.
        #[arg(long)]
        view: bool,
        /// Truncate each conversation to this many tokens (§5.1: 2048).
        #[arg(long, default_value_t = crate::chat::MAX_CONVERSATION_TOKENS)]
        max_tokens: usize,
        #[command(flatten)]
        source: TokenizerSource,
    },
}

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List the tasks and mixtures, their splits and whether their data is downloaded.
    List,
    /// Print examples of a task as conversations (the exact examples the stages use, in order).
    #[command(long_about = "Print examples of a task or of a stage's mixture, in the order the stages see \
        them (the dataset shuffle with seed 42, the mixtures' Random(42) interleaving, NANOCHAT.md §5.2).\n\n\
        Reads: data/hf/<dataset>/ and data/chat-data/ (run `nanochat data download --chat` first); the \
        mixtures `mid` and `sft` follow the preset's mid_train / chat_sft sizes.\n\n\
        Example: nanochat tasks show gsm8k --index 0\n\
        Example: nanochat tasks show spellingbee --split test --range 0:5 --json\n\
        Example: nanochat tasks show mid --range 0:10")]
    Show(TasksShowArgs),
}

#[derive(Debug, Args)]
pub struct TasksShowArgs {
    /// Task or mixture name (see `nanochat tasks list`).
    pub name: String,
    /// Split (default: the task's first, usually train).
    #[arg(long)]
    pub split: Option<String>,
    /// One example.
    #[arg(long, conflicts_with = "range")]
    pub index: Option<usize>,
    /// Examples A..B (B excluded), e.g. 0:10; an empty end means to the last one.
    #[arg(long, value_name = "A:B")]
    pub range: Option<String>,
    /// Size of the synthetic spelling tasks (reference default 1000).
    #[arg(long)]
    pub size: Option<usize>,
    /// One JSON conversation per line ({"messages": [...], ...} as the reference's tasks return it).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ChatStageArgs {
    /// Continue the last checkpoint of this stage exactly (weights, optimizer state, data position).
    #[arg(long)]
    pub resume: bool,
    /// Source checkpoint directory (default: the reference's rule, largest depth and last step of the
    /// source phase under the base dir).
    #[arg(long, value_name = "DIR")]
    pub source_dir: Option<PathBuf>,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

#[derive(Debug, Args)]
pub struct BenchChatDataArgs {
    /// Batches timed per stage after one warm-up batch.
    #[arg(long, default_value_t = 100)]
    pub batches: usize,
}

/// Which model to talk to.
#[derive(Debug, Args, Clone)]
pub struct ModelArgs {
    /// Training phase whose checkpoint to load: base, mid, sft or rl (largest depth, last step).
    #[arg(short = 'i', long, value_name = "PHASE")]
    pub source: Option<String>,
    /// Checkpoint step (default: the last).
    #[arg(short = 's', long)]
    pub step: Option<u64>,
    /// A checkpoint directory (ours, or the reference's with model_XXXXXX.pt) instead of --source.
    #[arg(long, value_name = "DIR", conflicts_with = "source")]
    pub checkpoint: Option<PathBuf>,
    /// Precision of the weights, activations and KV cache: auto (float32 on CPU, exact against the
    /// reference; bfloat16 on CUDA, as the reference runs), bfloat16 or float32.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    #[command(flatten)]
    pub tokenizer: TokenizerSource,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text to continue (a <|bos|> is put before it).
    #[arg(short = 'p', long)]
    pub prompt: String,
    /// 0 = greedy.
    #[arg(short = 't', long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Sample among the k most likely tokens (0 = all).
    #[arg(short = 'k', long, default_value_t = 50)]
    pub top_k: i64,
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 1)]
    pub num_samples: usize,
    /// One JSON object per sample: its token ids and text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Answer this one message and exit.
    #[arg(short = 'p', long)]
    pub prompt: Option<String>,
    /// NANOCHAT.md §7 (chat_cli.py): 0.6.
    #[arg(short = 't', long, default_value_t = 0.6)]
    pub temperature: f64,
    /// NANOCHAT.md §7: 50 (0 = all).
    #[arg(short = 'k', long, default_value_t = 50)]
    pub top_k: i64,
    /// NANOCHAT.md §7: 256 tokens per reply.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
}

#[derive(Debug, Args)]
pub struct ChatEvalArgs {
    /// Phase whose checkpoint to evaluate: mid, sft or rl.
    #[arg(short = 'i', long, value_name = "PHASE")]
    pub source: String,
    /// Tasks, `|`-separated (default: all six): ARC-Easy, ARC-Challenge, MMLU, GSM8K, HumanEval, SpellingBee.
    #[arg(short = 'a', long, value_name = "NAMES")]
    pub task_name: Option<String>,
    /// Checkpoint step (default: the last).
    #[arg(short = 's', long)]
    pub step: Option<u64>,
    /// A checkpoint directory instead of --source's.
    #[arg(long, value_name = "DIR")]
    pub checkpoint: Option<PathBuf>,
    /// Sampling temperature of the generative tasks (preset: 0 = greedy).
    #[arg(short = 't', long)]
    pub temperature: Option<f64>,
    /// Longest generated reply (preset: 512).
    #[arg(short = 'm', long)]
    pub max_new_tokens: Option<u32>,
    /// Samples per generative problem; a problem passes if any does (preset: 1).
    #[arg(short = 'n', long)]
    pub num_samples: Option<u32>,
    /// Top-k of the sampling (preset: 50).
    #[arg(short = 'k', long)]
    pub top_k: Option<u32>,
    /// Prompts per forward pass in the categorical tasks (preset: 8).
    #[arg(short = 'b', long)]
    pub batch_size: Option<u32>,
    /// Evaluate only the first N problems of each task (preset: -1 = all).
    #[arg(short = 'x', long)]
    pub max_problems: Option<i64>,
    /// Write each problem's responses and result here, one JSON object per line (other processes:
    /// FILE.rankN).
    #[arg(long, value_name = "FILE")]
    pub details: Option<PathBuf>,
    /// Run HumanEval's generated code even where the sandbox cannot isolate it (no namespaces, e.g. in
    /// a container); without this HumanEval is skipped there. Same as NANOCHAT_ALLOW_UNSANDBOXED=1.
    #[arg(long)]
    pub allow_unsandboxed: bool,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on (0.0.0.0: every interface, as the reference; 127.0.0.1: this machine only).
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// Port (0: any free port; the address is printed).
    #[arg(short = 'p', long, default_value_t = 8000)]
    pub port: u16,
    /// Model replicas, one per GPU (cuda:0..N-1); on CPU only 1.
    #[arg(short = 'n', long, default_value_t = 1)]
    pub num_gpus: usize,
    /// Default temperature of requests that give none (§9: 0.8).
    #[arg(short = 't', long, default_value_t = 0.8)]
    pub temperature: f64,
    /// Default top-k (§9: 50).
    #[arg(short = 'k', long, default_value_t = 50)]
    pub top_k: i64,
    /// Default max_tokens (§9: 512).
    #[arg(short = 'm', long, default_value_t = 512)]
    pub max_tokens: usize,
    /// cpu or cuda (default: cuda when a GPU is visible).
    #[arg(long, value_name = "TYPE")]
    pub device_type: Option<String>,
    /// MiB of KV cache per replica, allocated once and shared by the batch in blocks of 16 positions; a
    /// request needing more than all of it gets a 400.
    #[arg(long, default_value_t = 1024)]
    pub kv_cache_mb: usize,
    /// Sequences decoded together per replica (a request with n completions counts n).
    #[arg(long, default_value_t = 64)]
    pub max_batch: usize,
    /// Prompt tokens prefilled per decoding step, so long prompts do not stall the replies in progress.
    #[arg(long, default_value_t = 256)]
    pub prefill_chunk: usize,
    /// Requests that may wait when every batch is full; more are answered 503.
    #[arg(long, default_value_t = 32)]
    pub queue_limit: usize,
    /// Seconds a request may wait for a seat in a batch, then for KV memory, before a 503.
    #[arg(long, default_value_t = 30)]
    pub queue_timeout: u64,
    /// Seconds a reply may generate; it ends there (finish_reason "length").
    #[arg(long, default_value_t = 300)]
    pub generation_timeout: u64,
    /// Seconds to receive a request body before a 408.
    #[arg(long, default_value_t = 30)]
    pub read_timeout: u64,
    /// Largest request body in bytes (413 beyond; a larger Content-Length is refused before reading).
    #[arg(long, default_value_t = 1 << 20)]
    pub body_limit: usize,
    /// Seconds from a request's first byte to its complete head; slower connections are closed.
    #[arg(long, default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a kept-alive connection may wait for its next request before it is closed.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout: u64,
    /// Open connections at most; at the cap a new one closes the longest-idle one, or is answered 503
    /// when none is idle (default: the open-file limit less 64, at most 4096).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Seconds requests in flight may finish after Ctrl-C / SIGTERM; then every connection is closed.
    #[arg(long, default_value_t = 10)]
    pub drain_timeout: u64,
    /// Require `Authorization: Bearer KEY` on every API route (the page asks for it once).
    #[arg(long, env = "NANOCHAT_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// An origin allowed to call the API from a browser (repeatable; `*` for any). Default: any origin
    /// without --api-key (as the reference), only the page's own with it.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BenchRlArgs {
    /// Timed RL steps, after one untimed warm-up step.
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// Prompt tokens (random, fixed seed); GSM8K prompts are about 100-200 tokens.
    #[arg(long, default_value_t = 128)]
    pub prompt_len: usize,
}

#[derive(Debug, Args)]
pub struct BenchEngineArgs {
    /// Where to run: auto (CUDA when it starts, else the CPU), cpu, or cuda (an error without CUDA).
    #[arg(long, default_value = "auto")]
    pub device: crate::hw::device::DeviceChoice,
    #[arg(long, default_value_t = 4)]
    pub depth: i64,
    #[arg(long, default_value_t = 65_536)]
    pub vocab: i64,
    /// Prompt tokens (random, fixed seed).
    #[arg(long, default_value_t = 128)]
    pub prompt_len: usize,
    /// Tokens generated per row.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Rows decoded together (num_samples) in the batched measurement.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// auto (float32 on CPU, bfloat16 on CUDA), bfloat16 (every weight stored bf16) or float32.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
}
