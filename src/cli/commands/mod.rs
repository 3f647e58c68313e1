//! One handler per subcommand; each returns an error with context for the CLI edge to print.
mod base_eval;
mod base_loss;
mod base_train;
mod bench_chat_data;
mod bench_collectives;
mod bench_dataloader;
mod bench_engine;
mod bench_pointwise;
mod bench_rl;
mod bench_sandbox;
mod bench_tokenizer;
mod bench_train;
mod chat_eval;
mod chat_stage;
mod checkpoint;
mod config;
mod container;
mod data;
mod doctor;
mod eval_humaneval;
mod generate;
pub mod launch;
mod report;
mod speedrun;
mod tasks;
mod tok_eval;
mod tok_train;
mod tokenizer;

use super::eval_args::EvalCommand;
use super::{BenchCommand, Cli, Command, ContainerCommand};

pub fn dispatch(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Speedrun(args) => speedrun::run(&cli.global, args),
        Command::Doctor(args) => doctor::run(&cli.global, args),
        Command::BaseLoss(args) => base_loss::run(&cli.global, args),
        Command::BaseEval(args) => base_eval::run(&cli.global, args),
        Command::BaseTrain(args) => base_train::run(&cli.global, args),
        Command::MidTrain(args) => chat_stage::run(&cli.global, args, chat_stage::ChatStage::Mid),
        Command::Sft(args) => chat_stage::run(&cli.global, args, chat_stage::ChatStage::Sft),
        Command::ChatRl(args) => chat_stage::run(&cli.global, args, chat_stage::ChatStage::Rl),
        Command::ChatEval(args) => chat_eval::run(&cli.global, args),
        Command::TokTrain(args) => tok_train::run(&cli.global, args),
        Command::TokEval => tok_eval::run(&cli.global),
        Command::Generate(args) => generate::generate(&cli.global, args),
        Command::Chat(args) => generate::chat(&cli.global, args),
        Command::Serve(args) => generate::serve(&cli.global, args),
        Command::Tokenizer(command) => tokenizer::run(&cli.global, command),
        Command::Tasks(command) => tasks::run(&cli.global, command),
        Command::Data(command) => data::run(&cli.global, command),
        Command::Report(command) => report::run(&cli.global, command),
        Command::Config(command) => config::run(&cli.global, command),
        Command::Checkpoint(command) => checkpoint::run(&cli.global, command),
        Command::Bench(BenchCommand::Collectives(args)) => bench_collectives::run(&cli.global, args),
        Command::Bench(BenchCommand::Tokenizer(command)) => bench_tokenizer::run(command),
        Command::Bench(BenchCommand::Train(args)) => bench_train::run(args),
        Command::Bench(BenchCommand::Pointwise(args)) => bench_pointwise::run(args),
        Command::Bench(BenchCommand::ChatData(args)) => bench_chat_data::run(&cli.global, args),
        Command::Bench(BenchCommand::Engine(args)) => bench_engine::run(args),
        Command::Bench(BenchCommand::Rl(args)) => bench_rl::run(&cli.global, args),
        Command::Bench(BenchCommand::Dataloader(args)) => bench_dataloader::run(&cli.global, args),
        Command::Bench(BenchCommand::Sandbox(args)) => bench_sandbox::run(&cli.global, args),
        Command::Eval(EvalCommand::Humaneval(args)) => eval_humaneval::run(&cli.global, args),
        Command::Container(ContainerCommand::Run(args)) => container::run(&cli.global, args),
    }
}
