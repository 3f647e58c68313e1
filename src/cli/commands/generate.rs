//! `nanochat generate`, `nanochat chat` (NANOCHAT.md §7) and `nanochat serve` (§9): load a checkpoint,
//! then the engine or the server.
use std::io::{BufRead, IsTerminal, Write};

use std::time::Duration;

use anyhow::Context;

use crate::cli::chat_args::{ChatArgs, GenerateArgs, ModelArgs, ServeArgs};
use crate::cli::GlobalOptions;
use crate::engine::chat_engine::{Engine, GenerationSettings, SamplingRng};
use crate::engine::chat_session::ChatSession;
use crate::engine::loaded_model::{LoadedModel, ModelSpec};
use crate::hw::device::{self, DeviceChoice};
use crate::serve::request::{Defaults, MAX_TEMPERATURE, MAX_TOKENS_LIMIT, MAX_TOP_K};
use crate::serve::ServeConfig;

fn model_spec(args: &ModelArgs, default_phase: &str) -> ModelSpec {
    ModelSpec {
        phase: args.source.clone().unwrap_or_else(|| default_phase.to_string()),
        step: args.step,
        checkpoint_dir: args.checkpoint.clone(),
        tokenizer: args.tokenizer.tokenizer.clone(),
    }
}

fn load(global: &GlobalOptions, args: &ModelArgs, default_phase: &str) -> anyhow::Result<LoadedModel> {
    let spec = model_spec(args, default_phase);
    let device = device::select(DeviceChoice::Auto, 0)?;
    let precision = crate::model::Precision::resolve(&args.dtype, device)?;
    let loaded = LoadedModel::open_with(&global.paths(), &spec, device, precision).context("loading the model")?;
    log::info!("model: {}", loaded.describe());
    Ok(loaded)
}

/// The sampling generator's seed: `--seed`, else the reference's 42 (§7).
fn sampling_seed(global: &GlobalOptions) -> i64 {
    global.seed.map_or(42, |s| s as i64)
}

fn top_k(k: i64) -> Option<i64> {
    (k > 0).then_some(k)
}

pub fn generate(global: &GlobalOptions, args: &GenerateArgs) -> anyhow::Result<()> {
    let loaded = load(global, &args.model, "base")?;
    let engine = Engine::new(&loaded.model, &loaded.encoder)?;
    let prompt = loaded.encoder.encode_with_bos(&args.prompt)?;
    let settings = GenerationSettings {
        num_samples: args.num_samples.max(1),
        max_tokens: Some(args.max_tokens),
        temperature: args.temperature,
        top_k: top_k(args.top_k),
        seed: sampling_seed(global),
        rng: SamplingRng::Torch,
    };
    let (rows, _) = engine.generate_batch(&prompt, &settings);
    for row in rows {
        let generated = &row[prompt.len()..];
        let text = loaded.encoder.decode_lossy(generated)?;
        if args.json {
            println!("{}", serde_json::json!({"prompt_ids": prompt, "ids": generated, "text": text}));
        } else {
            println!("{}{text}", args.prompt);
        }
    }
    Ok(())
}

pub fn chat(global: &GlobalOptions, args: &ChatArgs) -> anyhow::Result<()> {
    let loaded = load(global, &args.model, "sft")?;
    let engine = Engine::new(&loaded.model, &loaded.encoder)?;
    let mut settings = GenerationSettings {
        num_samples: 1,
        max_tokens: Some(args.max_tokens),
        temperature: args.temperature,
        top_k: top_k(args.top_k),
        seed: sampling_seed(global),
        rng: SamplingRng::Torch,
    };
    let mut session = ChatSession::new(engine, settings);
    let mut out = std::io::stdout();
    let mut answer = |session: &mut ChatSession<'_, _>, message: &str| -> anyhow::Result<()> {
        print!("Assistant: ");
        session.reply(message, |text| {
            print!("{text}");
            let _ = out.flush();
        })?;
        println!();
        Ok(())
    };
    if let Some(prompt) = &args.prompt {
        return answer(&mut session, prompt);
    }
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!("nanochat chat ({}): `clear` starts over, `quit` leaves", loaded.describe());
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            print!("\nUser: ");
            std::io::stdout().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let message = line.context("reading standard input")?;
        let message = message.trim();
        match message.to_lowercase().as_str() {
            "quit" | "exit" => break,
            "clear" => {
                session.clear();
                println!("Conversation cleared.");
                continue;
            }
            "" => continue,
            _ => {}
        }
        answer(&mut session, message)?;
        settings.seed += 1;
        session.set_settings(settings);
    }
    Ok(())
}

pub fn serve(global: &GlobalOptions, args: &ServeArgs) -> anyhow::Result<()> {
    let gpus = tch::Cuda::device_count().max(0) as usize;
    let cuda = match args.device_type.as_deref() {
        None => gpus > 0,
        Some("cuda") => {
            crate::hw::cuda_backend::require_devices()
                .map_err(|cause| anyhow::anyhow!("--device-type cuda: {cause}"))?;
            true
        }
        Some("cpu") => false,
        Some(other) => anyhow::bail!("--device-type must be cpu or cuda, not {other:?}"),
    };
    let devices: Vec<tch::Device> = if cuda {
        if args.num_gpus == 0 || args.num_gpus > gpus {
            anyhow::bail!("--num-gpus {} but {gpus} GPU(s) are visible (1..={gpus})", args.num_gpus);
        }
        (0..args.num_gpus).map(tch::Device::Cuda).collect()
    } else {
        if args.num_gpus != 1 {
            anyhow::bail!("--num-gpus {}: on CPU the server runs one worker (--num-gpus 1)", args.num_gpus);
        }
        vec![tch::Device::Cpu]
    };
    let defaults = Defaults { temperature: args.temperature, top_k: args.top_k, max_tokens: args.max_tokens };
    if !(0.0..=MAX_TEMPERATURE).contains(&defaults.temperature)
        || !(1..=MAX_TOP_K).contains(&defaults.top_k)
        || !(1..=MAX_TOKENS_LIMIT as usize).contains(&defaults.max_tokens)
    {
        anyhow::bail!(
            "the defaults must lie within the request limits: temperature 0-{MAX_TEMPERATURE}, top-k 1-{MAX_TOP_K}, \
             max-tokens 1-{MAX_TOKENS_LIMIT}"
        );
    }
    crate::model::Precision::resolve(&args.model.dtype, tch::Device::Cpu)?;
    if args.kv_cache_mb == 0 || args.max_batch == 0 || args.prefill_chunk == 0 {
        anyhow::bail!("--kv-cache-mb, --max-batch and --prefill-chunk must be at least 1");
    }
    if args.max_connections == Some(0) || args.header_timeout == 0 || args.idle_timeout == 0 {
        anyhow::bail!("--max-connections, --header-timeout and --idle-timeout must be at least 1");
    }
    let config = ServeConfig {
        host: args.host.clone(),
        port: args.port,
        model: model_spec(&args.model, "sft"),
        dtype: args.model.dtype.clone(),
        devices,
        defaults,
        batch: crate::serve::workers::BatchConfig {
            kv_cache_mb: args.kv_cache_mb,
            max_batch: args.max_batch,
            prefill_chunk: args.prefill_chunk,
        },
        queue_limit: args.queue_limit,
        queue_timeout: Duration::from_secs(args.queue_timeout),
        generation_timeout: Duration::from_secs(args.generation_timeout),
        read_timeout: Duration::from_secs(args.read_timeout),
        body_limit: args.body_limit,
        connections: crate::serve::connections::ConnectionLimits {
            header_timeout: Duration::from_secs(args.header_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            max_connections: args.max_connections.unwrap_or_else(crate::serve::connections::default_max_connections),
            drain_timeout: Duration::from_secs(args.drain_timeout),
        },
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        cors_origins: args.cors_origins.clone(),
    };
    crate::serve::run(&global.paths(), config).context("nanochat serve")
}
