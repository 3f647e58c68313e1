//! The `nanochat` binary: parses the command line, sets up logging, runs the command, and turns an
//! error into one clear line (plus what to do next) and a non-zero exit code.
use clap::Parser;

use nanochat::cli::{commands, Cli};
use nanochat::logging;

fn main() {
    let cli = Cli::parse();
    logging::init(logging::level_from_flags(cli.global.verbose, cli.global.quiet));
    if let Err(error) = commands::dispatch(&cli) {
        log::error!("{error:#}");
        std::process::exit(1);
    }
}
