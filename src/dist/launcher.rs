//! The torchrun-equivalent launcher: starts one worker process per local rank (this same binary and
//! command line, with torchrun's environment), keeps each rank's output in its own log (rank 0 also on
//! the console), forwards SIGINT/SIGTERM, and when a worker fails stops the others and reports the
//! rank, its exit status and its last lines.
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::env::DistContext;

/// Lines of a failed worker's output quoted in the error.
pub const TAIL_LINES: usize = 15;
/// How long stopped workers get to exit before they are killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct LaunchPlan {
    pub nproc_per_node: usize,
    pub nnodes: usize,
    pub node_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// Per-rank logs go to `<log_dir>/rank<r>.log`.
    pub log_dir: PathBuf,
    /// Show every rank's output on the console (prefixed), not only rank 0's.
    pub all_ranks_to_console: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start worker {rank}: {source}")]
    Spawn { rank: usize, source: std::io::Error },
    #[error("master port {port} on {addr} is already in use; pass --master-port with a free port")]
    PortInUse { addr: String, port: u16 },
    #[error("rank {rank} {status}; its log: {log}\n--- last lines of rank {rank} ---\n{tail}")]
    WorkerFailed { rank: usize, status: String, log: PathBuf, tail: String },
    #[error("interrupted by signal {0}; workers stopped")]
    Interrupted(i32),
    #[error("cannot write worker logs under {path}: {source}")]
    Logs { path: PathBuf, source: std::io::Error },
}

static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn remember_signal(sig: i32) {
    SIGNAL.store(sig, Ordering::SeqCst);
}

struct Worker {
    rank: usize,
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
    log: PathBuf,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// Runs `exe args` once per local rank and supervises the workers until all have finished.
pub fn launch(exe: &Path, args: &[String], plan: &LaunchPlan) -> Result<(), LaunchError> {
    let world_size = plan.nproc_per_node * plan.nnodes;
    if plan.node_rank == 0 && std::net::TcpListener::bind((plan.master_addr.as_str(), plan.master_port)).is_err() {
        return Err(LaunchError::PortInUse { addr: plan.master_addr.clone(), port: plan.master_port });
    }
    std::fs::create_dir_all(&plan.log_dir)
        .map_err(|source| LaunchError::Logs { path: plan.log_dir.clone(), source })?;
    // SAFETY: the handler only stores into an atomic.
    unsafe {
        libc::signal(libc::SIGINT, remember_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, remember_signal as *const () as libc::sighandler_t);
    }
    let mut workers = Vec::new();
    for local_rank in 0..plan.nproc_per_node {
        let ctx = DistContext {
            rank: plan.node_rank * plan.nproc_per_node + local_rank,
            local_rank,
            world_size,
            local_world_size: plan.nproc_per_node,
            master_addr: plan.master_addr.clone(),
            master_port: plan.master_port,
        };
        match spawn_worker(exe, args, &ctx, plan) {
            Ok(w) => workers.push(w),
            Err(e) => {
                stop_all(&mut workers);
                return Err(e);
            }
        }
    }
    log::info!("launched {} worker(s) of {world_size}; logs in {}", workers.len(), plan.log_dir.display());
    supervise(workers)
}

fn spawn_worker(exe: &Path, args: &[String], ctx: &DistContext, plan: &LaunchPlan) -> Result<Worker, LaunchError> {
    let log = plan.log_dir.join(format!("rank{}.log", ctx.rank));
    let file = File::create(&log).map_err(|source| LaunchError::Logs { path: log.clone(), source })?;
    let file = Arc::new(Mutex::new(file));
    let mut child = Command::new(exe)
        .args(args)
        .envs(ctx.to_vars())
        .env(crate::logging::CAPTURED_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LaunchError::Spawn { rank: ctx.rank, source })?;
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let echo = if ctx.rank == 0 {
        Some(String::new())
    } else if plan.all_ranks_to_console {
        Some(format!("[rank {}] ", ctx.rank))
    } else {
        None
    };
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(pump(out, file.clone(), tail.clone(), echo.clone(), false));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(pump(err, file, tail.clone(), echo, true));
    }
    Ok(Worker { rank: ctx.rank, child, tail, log, readers })
}

fn pump(
    stream: impl Read + Send + 'static,
    file: Arc<Mutex<File>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    echo: Option<String>,
    to_stderr: bool,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Ok(mut f) = file.lock() {
                let _ = writeln!(f, "{line}");
            }
            if let Some(prefix) = &echo {
                if to_stderr {
                    eprintln!("{prefix}{line}");
                } else {
                    println!("{prefix}{line}");
                }
            }
            if let Ok(mut t) = tail.lock() {
                t.push_back(line);
                if t.len() > TAIL_LINES {
                    t.pop_front();
                }
            }
        }
    })
}

fn supervise(mut workers: Vec<Worker>) -> Result<(), LaunchError> {
    let mut running: Vec<bool> = vec![true; workers.len()];
    loop {
        let sig = SIGNAL.swap(0, Ordering::SeqCst);
        if sig != 0 {
            log::warn!("received signal {sig}; stopping the workers");
            stop_all(&mut workers);
            return Err(LaunchError::Interrupted(sig));
        }
        for i in 0..workers.len() {
            if !running[i] {
                continue;
            }
            let Ok(Some(status)) = workers[i].child.try_wait() else { continue };
            running[i] = false;
            if !status.success() {
                let code = exit_code(status);
                let failed_rank = workers[i].rank;
                let log = workers[i].log.clone();
                stop_all(&mut workers);
                let tail = workers
                    .iter()
                    .find(|w| w.rank == failed_rank)
                    .map(|w| {
                        w.tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
                    })
                    .unwrap_or_default();
                let status = if code > 128 {
                    format!("was killed by signal {}", code - 128)
                } else {
                    format!("exited with code {code}")
                };
                return Err(LaunchError::WorkerFailed { rank: failed_rank, status, log, tail });
            }
        }
        if running.iter().all(|r| !r) {
            for w in &mut workers {
                for r in w.readers.drain(..) {
                    let _ = r.join();
                }
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM to every live worker, then SIGKILL after the grace period; waits for their output.
fn stop_all(workers: &mut [Worker]) {
    for w in workers.iter_mut() {
        if let Ok(None) = w.child.try_wait() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(w.child.id() as i32, libc::SIGTERM) };
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    for w in workers.iter_mut() {
        while matches!(w.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(w.child.try_wait(), Ok(None)) {
            let _ = w.child.kill();
        }
        let _ = w.child.wait();
        for r in w.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// The exit code, or 128 + signal number for a child killed by a signal (as shells report it).
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1)
}
