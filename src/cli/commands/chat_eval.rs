//! `nanochat chat-eval` (NANOCHAT.md §6.3): launch or join the processes, then the stage in
//! src/eval/chat_eval.rs with the preset's [chat_eval] settings and the flags over them.
use super::launch::{launch_or_join, Role};
use crate::cli::chat_args::ChatEvalArgs;
use crate::cli::GlobalOptions;
use crate::dist::Cluster;
use crate::eval::chat_eval::{self, ChatEvalOptions};

pub fn run(global: &GlobalOptions, args: &ChatEvalArgs) -> anyhow::Result<()> {
    let name = format!("chat-eval-{}", args.source);
    let Role::Worker { ctx, group, device } = launch_or_join(global, &args.launch, &name)? else { return Ok(()) };
    if args.allow_unsandboxed {
        std::env::set_var(crate::chat::tasks::humaneval::ALLOW_UNSANDBOXED_ENV, "1");
    }
    let config = global.resolve_config()?;
    let paths = global.paths();
    if ctx.is_master() {
        crate::logging::tee_to_file(&paths.logs().join(format!("{name}.log")));
    }
    let mut settings = config.chat_eval.clone();
    settings.temperature = args.temperature.unwrap_or(settings.temperature);
    settings.max_new_tokens = args.max_new_tokens.unwrap_or(settings.max_new_tokens);
    settings.num_samples = args.num_samples.unwrap_or(settings.num_samples);
    settings.top_k = args.top_k.unwrap_or(settings.top_k);
    settings.batch_size = args.batch_size.unwrap_or(settings.batch_size);
    settings.max_problems = args.max_problems.unwrap_or(settings.max_problems);
    let options = ChatEvalOptions {
        source: args.source.clone(),
        step: args.step,
        checkpoint_dir: args.checkpoint.clone(),
        tasks: ChatEvalOptions::task_list(args.task_name.as_deref().or(config.chat_eval.tasks.as_deref()))?,
        settings,
        details: args.details.clone(),
    };
    let cluster = Cluster { ctx: &ctx, group: group.as_ref(), device };
    chat_eval::run(&paths, &cluster, &options)?;
    Ok(())
}
