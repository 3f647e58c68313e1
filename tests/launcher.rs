//! The torchrun-equivalent launcher through the real binary: workers run, a killed worker stops the
//! whole run promptly with its rank named, and a busy master port is a clear error.
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn nanochat(base: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nanochat"));
    // Gloo on the CPU whatever the preset (a CUDA preset refuses to run without CUDA otherwise).
    cmd.args(["--set", "hardware.device=cpu"]);
    cmd.env("NANOCHAT_BASE_DIR", base).env_remove("RANK").env_remove("WORLD_SIZE").env_remove("SLURM_PROCID");
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Child processes of `pid` with RANK=`rank` in their environment.
fn worker_pid(parent: u32, rank: usize) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid: Option<u32> = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1)?.parse().ok());
        if ppid != Some(parent) {
            continue;
        }
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        if environ.split(|b| *b == 0).any(|kv| kv == format!("RANK={rank}").as_bytes()) {
            return Some(pid);
        }
    }
    None
}

#[test]
fn two_workers_run_and_log_per_rank() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let out = nanochat(dir.path())
        .args([
            "bench",
            "collectives",
            "--nproc-per-node",
            "2",
            "--max-mib",
            "2",
            "--iters",
            "2",
            "--master-port",
            &port,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("over 2 processes") && stdout.contains("2 MiB"), "{stdout}");
    assert_eq!(stdout.matches("over 2 processes").count(), 1, "only rank 0 prints by default");
    for rank in 0..2 {
        assert!(dir.path().join(format!("logs/bench-collectives/rank{rank}.log")).exists());
    }
}

/// Starts a launcher with 2 workers that all-reduce (practically) forever; returns it once both
/// workers exist, with their pids (rank 0, rank 1).
// The callers wait for the returned launcher.
#[allow(clippy::zombie_processes)]
fn start_long_run(base: &Path) -> (std::process::Child, [i32; 2]) {
    let port = free_port().to_string();
    let mut launcher = nanochat(base)
        .args([
            "bench",
            "collectives",
            "--nproc-per-node",
            "2",
            "--max-mib",
            "1",
            "--iters",
            "100000000",
            "--master-port",
            &port,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let (Some(a), Some(b)) = (worker_pid(launcher.id(), 0), worker_pid(launcher.id(), 1)) {
            std::thread::sleep(Duration::from_millis(1500)); // let them get into the all-reduce loop
            return (launcher, [a, b]);
        }
        if Instant::now() >= deadline {
            let _ = launcher.kill();
            let _ = launcher.wait();
            panic!("workers did not start");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_worker_stops_the_run_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (launcher, [_, victim]) = start_long_run(dir.path());
    let killed_at = Instant::now();
    // SAFETY: kill(2) of a process this test started (through the launcher).
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let out = launcher.wait_with_output().unwrap();
    let stopped_after = killed_at.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("rank 1 was killed by signal 9"), "{stderr}");
    assert!(stderr.contains("rank1.log"), "{stderr}");
    assert!(stopped_after < Duration::from_secs(20), "took {stopped_after:?} to stop");
    assert!(worker_pid(std::process::id(), 0).is_none());
}

#[test]
fn busy_master_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let out = nanochat(dir.path())
        .args(["bench", "collectives", "--nproc-per-node", "2", "--master-port", &port])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("master port {port} on 127.0.0.1 is already in use"))
            && stderr.contains("--master-port"),
        "{stderr}"
    );
}

#[test]
fn sigterm_to_the_launcher_stops_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let (launcher, workers) = start_long_run(dir.path());
    // SAFETY: kill(2) of the launcher this test started.
    assert_eq!(unsafe { libc::kill(launcher.id() as i32, libc::SIGTERM) }, 0);
    let out = launcher.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("interrupted by signal 15"), "{stderr}");
    for pid in workers {
        let gone = !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ");
        assert!(gone, "worker {pid} still running");
    }
}
