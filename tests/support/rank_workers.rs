//! Multi-process test harness: a test re-runs its own binary as worker ranks on 127.0.0.1, each
//! told its role (rank/world/port) through an environment variable, and joins a Gloo group.
#![allow(dead_code)] // shared by several test binaries, each using part of it
use std::process::{Command, Stdio};
use std::time::Duration;

use nanochat::dist::{Backend, ProcessGroup};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `test_name` in `world` worker processes (role in env var `role_var`) and asserts they all
/// succeed; the workers' stderr (where they report measured figures) is passed through.
pub fn spawn_workers(role_var: &str, test_name: &str, world: usize) {
    spawn_workers_with_env(role_var, test_name, world, |_| Vec::new())
}

/// [`spawn_workers`] with environment variables `env(rank)` set in each worker.
pub fn spawn_workers_with_env(
    role_var: &str,
    test_name: &str,
    world: usize,
    env: impl Fn(usize) -> Vec<(&'static str, String)>,
) {
    let port = free_port();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..world)
        .map(|rank| {
            Command::new(&exe)
                .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
                .env(role_var, format!("{rank}/{world}/{port}"))
                .envs(env(rank))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (rank, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "rank {rank} of {test_name} failed:\n{}{stderr}",
            String::from_utf8_lossy(&out.stdout)
        );
        eprint!("{stderr}");
    }
}

/// In a worker: (rank, world, its Gloo group). In the parent test: None.
pub fn worker(role_var: &str, timeout: Duration) -> Option<(usize, usize, ProcessGroup)> {
    let role = std::env::var(role_var).ok()?;
    let parts: Vec<usize> = role.split('/').map(|p| p.parse().unwrap()).collect();
    let (rank, world, port) = (parts[0], parts[1], parts[2] as u16);
    let pg = ProcessGroup::new(Backend::Gloo, "127.0.0.1", port, rank, world, timeout).unwrap();
    Some((rank, world, pg))
}
