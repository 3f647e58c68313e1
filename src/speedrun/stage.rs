//! The stages the orchestrator can run, each described by what it reads, what it writes and the
//! command line that runs it (`nanochat <stage> ...`). Stages are added here as they are built.
use std::path::PathBuf;

use serde_json::Value;

use crate::config::RunConfig;
use crate::paths::Paths;

/// One stage as the orchestrator sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSpec {
    pub name: String,
    /// Arguments after the global options: the subcommand and its flags.
    pub args: Vec<String>,
    pub inputs: Vec<PathBuf>,
    pub outputs: Vec<PathBuf>,
    /// The part of the resolved configuration this stage depends on.
    pub config: Value,
    /// Stages that must look at the present every time (the hardware check, the report).
    pub always_run: bool,
    /// Added to `args` to continue after a failed attempt with unchanged inputs (e.g. `--resume`).
    pub resume_args: Vec<String>,
}

/// Options of `nanochat speedrun` that change how stages are invoked.
#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    pub allow_mismatch: bool,
    /// Processes for the training and evaluation stages (None: the stage's default).
    pub nproc_per_node: Option<usize>,
}

/// Every stage this build knows, in pipeline order.
pub const KNOWN_STAGES: &[&str] = &[
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

#[derive(Debug, thiserror::Error)]
#[error("unknown stage `{name}`; stages in this build: {}", KNOWN_STAGES.join(", "))]
pub struct UnknownStage {
    pub name: String,
}

/// `<command> [--nproc-per-node N]`.
fn distributed_args(command: &str, options: &PipelineOptions) -> Vec<String> {
    let mut args = vec![command.to_string()];
    if let Some(n) = options.nproc_per_node {
        args.extend(["--nproc-per-node".to_string(), n.to_string()]);
    }
    args
}

fn tokenizer_files(paths: &Paths) -> Vec<PathBuf> {
    use crate::tokenizer::artifacts::{RANK_FILE, TOKENIZER_JSON, TOKEN_BYTES};
    [TOKENIZER_JSON, RANK_FILE, TOKEN_BYTES].iter().map(|f| paths.tokenizer().join(f)).collect()
}

/// The first `n` shard files of the preset's data manifest.
fn shard_files(config: &RunConfig, paths: &Paths, n: u32) -> Vec<PathBuf> {
    let shards = paths.shards(&config.data.manifest);
    (0..n).map(|i| shards.join(crate::download::shard_file_name(i as usize))).collect()
}

/// Shards the "data" stage waits for: the tokenizer's, plus one more because tok-train needs a
/// validation shard beyond the ones it reads (NANOCHAT.md §2.1: the last shard present is val).
fn first_shards(config: &RunConfig) -> u32 {
    (config.data.tokenizer_shards + 1).min(config.data.train_shards)
}

/// The data settings that change which bytes a data stage produces (not the mirror or the workers).
fn data_identity(config: &RunConfig) -> Value {
    serde_json::json!({
        "manifest": config.data.manifest,
        "tokenizer_shards": config.data.tokenizer_shards,
        "train_shards": config.data.train_shards,
        "compare_baselines": config.tok_eval.compare_baselines,
    })
}

/// What the chat stages read besides a checkpoint: the task datasets and the chat extras (§5.2).
fn chat_data(paths: &Paths) -> Vec<PathBuf> {
    crate::download::chat_data_dirs(paths)
}

fn section(config: &RunConfig, key: &str) -> Value {
    serde_json::to_value(config).ok().and_then(|v| v.get(key).cloned()).unwrap_or(Value::Null)
}

pub fn stage_spec(
    name: &str,
    config: &RunConfig,
    paths: &Paths,
    options: &PipelineOptions,
) -> Result<StageSpec, UnknownStage> {
    let report_dir = paths.report();
    let spec = match name {
        "doctor" => StageSpec {
            name: name.into(),
            args: std::iter::once("doctor".to_string())
                .chain(options.allow_mismatch.then(|| "--allow-mismatch".to_string()))
                .collect(),
            inputs: vec![],
            outputs: vec![report_dir.join("hardware-check.json")],
            config: section(config, "hardware"),
            always_run: true,
            resume_args: vec![],
        },
        // NANOCHAT.md §10.1 step 4: the tokenizer's shards now, the rest in the background.
        "data" => StageSpec {
            name: name.into(),
            args: vec![
                "data".into(),
                "download".into(),
                "--first".into(),
                first_shards(config).to_string(),
                "--background-rest".into(),
            ],
            inputs: vec![],
            outputs: shard_files(config, paths, first_shards(config)),
            config: data_identity(config),
            always_run: false,
            resume_args: vec![],
        },
        // §10.1 step 6: wait for the shard download (and repair it if the background run failed); then,
        // when a chat stage is listed, the chat data (§5.2, steps 8-9).
        "data-wait" => {
            let mut outputs = shard_files(config, paths, config.data.train_shards);
            let mut identity = data_identity(config);
            if crate::download::stages_need_chat_data(&config.run.stages) {
                outputs.extend(chat_data(paths));
                identity["chat_data"] = Value::Bool(true);
            }
            StageSpec {
                name: name.into(),
                args: vec!["data".into(), "download".into(), "--wait".into()],
                inputs: vec![],
                outputs,
                config: identity,
                always_run: false,
                resume_args: vec![],
            }
        }
        "tok-train" => {
            let shards = paths.shards(&config.data.manifest);
            let first: Vec<PathBuf> =
                (0..config.data.tokenizer_shards).map(|i| shards.join(format!("shard_{i:05}.parquet"))).collect();
            StageSpec {
                name: name.into(),
                args: vec!["tok-train".into()],
                inputs: first,
                outputs: tokenizer_files(paths),
                config: serde_json::json!({"tok_train": section(config, "tok_train"), "data": data_identity(config)}),
                always_run: false,
                resume_args: vec![],
            }
        }
        "tok-eval" => StageSpec {
            name: name.into(),
            args: vec!["tok-eval".into()],
            inputs: [tokenizer_files(paths), vec![paths.baseline_tokenizers()]].concat(),
            outputs: vec![report_dir.join("tokenizer-evaluation.json")],
            config: section(config, "tok_eval"),
            always_run: false,
            resume_args: vec![],
        },
        "base-train" => StageSpec {
            name: name.into(),
            args: distributed_args("base-train", options),
            inputs: [tokenizer_files(paths), shard_files(config, paths, config.data.train_shards)].concat(),
            outputs: vec![paths.checkpoints("base", config.base_train.depth)],
            config: serde_json::json!({
                "base_train": section(config, "base_train"),
                "data": data_identity(config),
                "seed": config.run.seed,
            }),
            always_run: false,
            resume_args: vec!["--resume".into()],
        },
        "base-loss" => StageSpec {
            name: name.into(),
            args: distributed_args("base-loss", options),
            inputs: [tokenizer_files(paths), vec![paths.checkpoints("base", config.base_train.depth)]].concat(),
            outputs: vec![report_dir.join("base-model-loss.json")],
            config: section(config, "base_loss"),
            always_run: false,
            resume_args: vec![],
        },
        // §10.1 step 7: CORE of the base model (the bundle is fetched by the stage on first use).
        "base-eval" => StageSpec {
            name: name.into(),
            args: distributed_args("base-eval", options),
            inputs: [tokenizer_files(paths), vec![paths.checkpoints("base", config.base_train.depth)]].concat(),
            outputs: vec![report_dir.join("base-model-evaluation.json"), paths.base_eval()],
            config: serde_json::json!({"base_eval": section(config, "base_eval"), "data": data_identity(config)}),
            always_run: false,
            resume_args: vec![],
        },
        // §10.1 step 8: midtraining from the base model.
        "mid-train" => StageSpec {
            name: name.into(),
            args: distributed_args("mid-train", options),
            inputs: [
                tokenizer_files(paths),
                vec![paths.checkpoints("base", config.base_train.depth)],
                chat_data(paths),
            ]
            .concat(),
            outputs: vec![paths.checkpoints("mid", config.base_train.depth)],
            config: serde_json::json!({"mid_train": section(config, "mid_train"), "seed": config.run.seed}),
            always_run: false,
            resume_args: vec!["--resume".into()],
        },
        // §10.1 step 9: supervised fine-tuning from the chat_sft.source checkpoint (mid by default).
        "sft" => StageSpec {
            name: name.into(),
            args: distributed_args("sft", options),
            inputs: [
                tokenizer_files(paths),
                vec![paths.checkpoints(&config.chat_sft.source, config.base_train.depth)],
                chat_data(paths),
            ]
            .concat(),
            outputs: vec![paths.checkpoints("sft", config.base_train.depth)],
            config: serde_json::json!({"chat_sft": section(config, "chat_sft"), "seed": config.run.seed}),
            always_run: false,
            resume_args: vec!["--resume".into()],
        },
        // §10.1 (commented out in the reference's speedrun.sh): RL from the chat_rl.source checkpoint
        // (sft by default); the pipeline leaves it out unless chat_rl.enabled.
        "chat-rl" => StageSpec {
            name: name.into(),
            args: distributed_args("chat-rl", options),
            inputs: [
                tokenizer_files(paths),
                vec![paths.checkpoints(&config.chat_rl.source, config.base_train.depth)],
                chat_data(paths),
            ]
            .concat(),
            outputs: vec![paths.checkpoints("rl", config.base_train.depth)],
            config: serde_json::json!({"chat_rl": section(config, "chat_rl"), "seed": config.run.seed}),
            always_run: false,
            resume_args: vec!["--resume".into()],
        },
        // §10.1 steps 8-10: the chat evaluation of the mid, SFT and RL checkpoints.
        "chat-eval-mid" | "chat-eval-sft" | "chat-eval-rl" => {
            let phase = name.trim_start_matches("chat-eval-");
            let mut args = distributed_args("chat-eval", options);
            args.extend(["--source".to_string(), phase.to_string()]);
            if phase == "rl" {
                // §10.1: the RL model is evaluated on GSM8K only.
                args.extend(["-a".to_string(), "GSM8K".to_string()]);
            }
            StageSpec {
                name: name.into(),
                args,
                inputs: [
                    tokenizer_files(paths),
                    vec![paths.checkpoints(phase, config.base_train.depth)],
                    chat_data(paths),
                ]
                .concat(),
                outputs: vec![report_dir.join(format!("chat-evaluation-{phase}.json"))],
                config: section(config, "chat_eval"),
                always_run: false,
                resume_args: vec![],
            }
        }
        "report" => StageSpec {
            name: name.into(),
            args: vec!["report".into(), "generate".into()],
            inputs: vec![],
            outputs: vec![report_dir.join("report.md")],
            config: section(config, "report"),
            always_run: true,
            resume_args: vec![],
        },
        other => return Err(UnknownStage { name: other.to_string() }),
    };
    Ok(spec)
}

/// Whether a listed stage runs under this configuration: RL and its evaluation only when
/// `chat_rl.enabled` (optional in the reference, §5.5).
pub fn stage_enabled(name: &str, config: &RunConfig) -> bool {
    !matches!(name, "chat-rl" | "chat-eval-rl") || config.chat_rl.enabled
}

/// The stages of a preset that run, in its order.
pub fn pipeline(config: &RunConfig, paths: &Paths, options: &PipelineOptions) -> Result<Vec<StageSpec>, UnknownStage> {
    config
        .run
        .stages
        .iter()
        .filter(|name| stage_enabled(name, config))
        .map(|name| stage_spec(name, config, paths, options))
        .collect()
}
