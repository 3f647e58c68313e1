//! The `nanochat` binary: parses the command line, sets up logging, runs the command, and turns an
//! error into one clear line (plus what to do next) and a non-zero exit code.
use clap::Parser;

use nanochat::cli::{commands, Cli};
use nanochat::logging;

fn main() {
    nanochat::hw::device::configure_cuda_allocator();
    let cli = Cli::parse();
    logging::init(logging::level_from_flags(cli.global.verbose, cli.global.quiet));
    if let Err(error) = commands::dispatch(&cli) {
        log::error!("{}", one_line(&error));
        std::process::exit(1);
    }
}

/// The error and its causes joined by ": ", leaving out a cause whose text the line already holds
/// (many errors print their source in their own message).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
