//! Progress for long work: an indicatif bar on a terminal, plain periodic log lines otherwise
//! (CI, log files, `speedrun` children), so progress is visible in both.
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Interval between plain progress lines when there is no terminal.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

static ACTIVE_BARS: Mutex<Vec<ProgressBar>> = Mutex::new(Vec::new());

/// Runs `f` (e.g. printing a log line) with every visible bar hidden, so lines and bars do not mix.
pub fn suspend_bars<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE_BARS.lock().ok().and_then(|bars| bars.last().cloned());
    match bar {
        Some(bar) => bar.suspend(f),
        None => f(),
    }
}

pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    unit: Unit,
    bar: Option<ProgressBar>,
    started: Instant,
    last_line: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Items,
    Bytes,
}

impl Progress {
    pub fn new(label: &str, total: u64, unit: Unit) -> Self {
        let interactive = std::io::stderr().is_terminal() && log::max_level() >= log::LevelFilter::Info;
        let bar = interactive.then(|| {
            let template = match unit {
                Unit::Bytes => "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                Unit::Items => "{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}",
            };
            let bar = ProgressBar::new(total).with_message(label.to_string());
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            if let Ok(mut bars) = ACTIVE_BARS.lock() {
                bars.push(bar.clone());
            }
            bar
        });
        let now = Instant::now();
        Progress { label: label.to_string(), total, done: 0, unit, bar, started: now, last_line: now }
    }

    pub fn advance(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.set_position(self.done),
            None if self.last_line.elapsed() >= LOG_INTERVAL => {
                self.last_line = Instant::now();
                log::info!("{}", self.line());
            }
            None => {}
        }
    }

    pub fn set_position(&mut self, position: u64) {
        self.advance(position.saturating_sub(self.done));
    }

    /// "label: 12.0 MiB / 48.0 MiB (25%), 3.1 MiB/s, eta 12 s"
    pub fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done as f64 / secs;
        let eta = if rate > 0.0 { (self.total.saturating_sub(self.done)) as f64 / rate } else { f64::INFINITY };
        let pct = if self.total > 0 { 100.0 * self.done as f64 / self.total as f64 } else { 100.0 };
        let (done, total, rate) = match self.unit {
            Unit::Bytes => (mib(self.done as f64), mib(self.total as f64), format!("{}/s", mib(rate))),
            Unit::Items => (self.done.to_string(), self.total.to_string(), format!("{rate:.1}/s")),
        };
        format!("{}: {done} / {total} ({pct:.0}%), {rate}, eta {eta:.0} s", self.label)
    }

    pub fn finish(self) {}
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Ok(mut bars) = ACTIVE_BARS.lock() {
                bars.retain(|b| !b.is_finished());
            }
        }
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_line_reports_fraction_and_rate() {
        let mut p = Progress::new("hashing", 4 << 20, Unit::Bytes);
        p.advance(1 << 20);
        let line = p.line();
        assert!(line.starts_with("hashing: 1.0 MiB / 4.0 MiB (25%)"), "{line}");
        let mut q = Progress::new("merges", 10, Unit::Items);
        q.advance(10);
        assert!(q.line().contains("10 / 10 (100%)"), "{}", q.line());
    }
}
