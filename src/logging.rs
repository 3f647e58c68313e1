//! Console logging for every command: plain lines on stderr at the chosen verbosity (-v/-q), and,
//! for a stage run on its own, a copy with timestamps in `base_dir/logs/<stage>.log`. Under
//! `speedrun` the parent already captures the stage's output, so no second copy is written.
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use log::{Level, LevelFilter, Log, Metadata, Record};

struct ConsoleLogger {
    level: LevelFilter,
    file: Mutex<Option<File>>,
}

impl Log for ConsoleLogger {
    /// Other crates' records (e.g. rustls logging a certificate failure that our own error then reports)
    /// only from -v on: every failure reaches the user once, in our words.
    fn enabled(&self, metadata: &Metadata) -> bool {
        let ours = metadata.target().starts_with(env!("CARGO_CRATE_NAME"));
        metadata.level() <= self.level && (ours || self.level >= LevelFilter::Debug)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match record.level() {
            Level::Error => format!("error: {}", record.args()),
            Level::Warn => format!("warning: {}", record.args()),
            Level::Info => record.args().to_string(),
            Level::Debug | Level::Trace => format!("[{}] {}", record.target(), record.args()),
        };
        crate::progress::suspend_bars(|| eprintln!("{line}"));
        if let Ok(mut guard) = self.file.lock() {
            if let Some(file) = guard.as_mut() {
                let _ = writeln!(file, "{} {line}", now_timestamp());
            }
        }
    }

    fn flush(&self) {}
}

static LOGGER: std::sync::OnceLock<ConsoleLogger> = std::sync::OnceLock::new();

/// Verbosity from the count of -v and -q flags: default info, -v debug, -vv trace, -q warnings only.
pub fn level_from_flags(verbose: u8, quiet: bool) -> LevelFilter {
    match (quiet, verbose) {
        (true, _) => LevelFilter::Warn,
        (false, 0) => LevelFilter::Info,
        (false, 1) => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

pub fn init(level: LevelFilter) {
    let logger = LOGGER.get_or_init(|| ConsoleLogger { level, file: Mutex::new(None) });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Environment variable telling a process that its output is already captured to a log (set by the
/// speedrun orchestrator and the launcher for the processes they start).
pub const CAPTURED_ENV: &str = "NANOCHAT_OUTPUT_CAPTURED";

/// Also append log lines to `path`, unless a parent process already captures this process's output.
pub fn tee_to_file(path: &Path) {
    if std::env::var_os(CAPTURED_ENV).is_some() {
        return;
    }
    let Some(logger) = LOGGER.get() else { return };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match OpenOptions::new().create(true).append(true).open(path) {
        Ok(file) => {
            if let Ok(mut guard) = logger.file.lock() {
                *guard = Some(file);
            }
        }
        Err(e) => log::warn!("cannot write the log file {}: {e}", path.display()),
    }
}

/// The local time as the logs and the report write it: `2026-12-07 17:16:57`.
pub fn now_timestamp() -> String {
    chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled(level: LevelFilter, target: &str, record_level: Level) -> bool {
        let logger = ConsoleLogger { level, file: Mutex::new(None) };
        logger.enabled(&Metadata::builder().target(target).level(record_level).build())
    }

    #[test]
    fn dependency_records_wait_for_verbose() {
        assert!(enabled(LevelFilter::Info, "nanochat::download::downloader", Level::Warn));
        assert!(!enabled(LevelFilter::Info, "nanochat::download::downloader", Level::Debug));
        assert!(!enabled(LevelFilter::Info, "rustls_platform_verifier::verification", Level::Error));
        assert!(enabled(LevelFilter::Debug, "rustls_platform_verifier::verification", Level::Error));
        assert!(!enabled(LevelFilter::Warn, "ureq::unit", Level::Error));
    }
}
