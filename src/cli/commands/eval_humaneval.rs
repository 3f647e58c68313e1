//! `nanochat eval humaneval`: scores a human-eval samples file with pass@k, every program run in
//! the sandbox (src/eval/humaneval.rs, src/eval/sandbox/).
use std::sync::Mutex;

use anyhow::Context;

use crate::cli::eval_args::HumanevalArgs;
use crate::cli::GlobalOptions;
use crate::eval::humaneval::{
    load_problems, match_samples, mean_pass_at_k, package_program, pass_at_k_json, per_problem_counts, read_samples,
    results_jsonl,
};
use crate::eval::sandbox::{Sandbox, Status};
use crate::progress::{Progress, Unit};

pub fn run(global: &GlobalOptions, args: &HumanevalArgs) -> anyhow::Result<()> {
    let problems = load_problems(args.problems.as_deref(), &global.paths())?;
    let samples = read_samples(&args.samples)?;
    let matched = match_samples(&samples, &problems, &args.samples, args.ignore_incomplete)?;
    let sandbox = Sandbox::new(args.sandbox.config(args.timeout))?;
    let programs: Vec<String> =
        samples.iter().zip(&matched).map(|(s, &i)| package_program(&problems[i], &s.completion)).collect();

    let progress = Mutex::new(Progress::new("running test programs", programs.len() as u64, Unit::Items));
    let outcomes = sandbox.run_many(&programs, args.workers as usize, &|_| {
        if let Ok(mut p) = progress.lock() {
            p.advance(1);
        }
    });
    drop(progress);
    if let Some(error) = outcomes.iter().find_map(|o| match &o.status {
        Status::SandboxError(e) => Some(e),
        _ => None,
    }) {
        log::warn!("the sandbox failed to run some programs (counted as failed): {error}");
    }

    let results_path = format!("{}_results.jsonl", args.samples.display());
    crate::fsutil::write_atomic(std::path::Path::new(&results_path), results_jsonl(&samples, &outcomes).as_bytes())
        .with_context(|| format!("writing {results_path}"))?;

    let counts = per_problem_counts(&matched, &outcomes, problems.len());
    let passed = outcomes.iter().filter(|o| o.passed()).count();
    let timed_out = outcomes.iter().filter(|o| o.status == Status::TimedOut).count();
    log::info!(
        "{} samples of {} problems: {passed} passed, {timed_out} timed out, {} failed otherwise; results in {results_path}",
        samples.len(),
        counts.len(),
        samples.len() - passed - timed_out,
    );
    let scores = mean_pass_at_k(&counts, &args.k);
    if scores.is_empty() {
        log::warn!("no pass@k to report: some problem has fewer samples than every k in {:?}", args.k);
    }
    println!("{}", pass_at_k_json(&scores));
    Ok(())
}
