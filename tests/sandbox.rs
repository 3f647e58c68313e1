//! The sandbox for generated code (src/eval/sandbox/) against programs that try to get out: each
//! attempt must fail, be reported as a failure, and leave the machine as it was.
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nanochat::eval::sandbox::{Outcome, Sandbox, SandboxConfig, Status};

fn sandbox(timeout: Duration) -> Sandbox {
    Sandbox::new(SandboxConfig { timeout, ..SandboxConfig::default() }).expect("namespaces work on the test machines")
}

fn run(program: &str) -> Outcome {
    sandbox(Duration::from_secs(5)).run(program)
}

fn assert_failed_with(outcome: &Outcome, exception: &str) {
    match &outcome.status {
        Status::Failed { exception: e, .. } if e == exception => {}
        other => panic!("expected a failure with {exception}, got {other:?}\nstderr: {}", outcome.stderr),
    }
}

/// Processes on the machine whose command line contains `marker`.
fn processes_with(marker: &str) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if entry.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()) {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
                if String::from_utf8_lossy(&cmdline).contains(marker) {
                    count += 1;
                }
            }
        }
    }
    count
}

/// A name no other test (or test run) uses.
fn unique(name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{name}-{}-{}-{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

#[test]
fn a_passing_and_a_failing_program_are_told_apart_like_exec() {
    let ok = run("def f(x):\n    return x + 1\nassert f(1) == 2\nprint('done')");
    assert_eq!(ok.status, Status::Passed, "{}", ok.stderr);
    assert_eq!(ok.stdout, "done\n");
    let wrong = run("def f(x):\n    return x\nassert f(1) == 2, 'f is wrong'");
    assert_eq!(wrong.status, Status::Failed { exception: "AssertionError".into(), message: "f is wrong".into() });
    assert!(wrong.stderr.contains("AssertionError: f is wrong"), "{}", wrong.stderr);
    assert_eq!(wrong.human_eval_result(), "failed: f is wrong");
    // As the reference's exec(program, {}): SystemExit is a failure, and __main__ blocks do not run.
    assert_failed_with(&run("import sys\nsys.exit(0)"), "SystemExit");
    let main = run("if __name__ == '__main__':\n    raise RuntimeError('ran')\nprint(__name__)");
    assert_eq!(main.status, Status::Passed, "{}", main.stderr);
    assert_eq!(main.stdout, "builtins\n");
    assert_failed_with(&run("def f(:\n"), "SyntaxError");
}

#[test]
fn the_program_runs_alone_unprivileged_and_without_network() {
    let facts = run(r#"
import os
assert os.getpid() == 1, os.getpid()
assert [p for p in os.listdir("/proc") if p.isdigit()] == ["1"]
assert os.getuid() == 65534 and os.getgid() == 65534 and os.getgroups() == []
status = open("/proc/self/status").read()
assert "CapEff:\t0000000000000000" in status, status
assert "NoNewPrivs:\t1" in status
devices = [line.split(":")[0].strip() for line in open("/proc/net/dev").read().splitlines()[2:]]
assert devices == ["lo"], devices
assert os.environ["HOME"] == os.getcwd() == os.environ["TMPDIR"]
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
assert libc.unshare(0x10000000) == -1 and ctypes.get_errno() == 1, "a nested user namespace"
"#);
    assert_eq!(facts.status, Status::Passed, "{}", facts.stderr);
}

#[test]
fn connecting_to_a_listener_on_loopback_fails() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let outcome = run(&format!(
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=2)\ns.sendall(b'hello')"
    ));
    assert_failed_with(&outcome, "PermissionError");
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the listener got a connection: {other:?}"),
    }
}

#[test]
fn writes_outside_the_temporary_directory_fail_and_leave_nothing() {
    // A directory anyone may write to: only the sandbox's read-only mounts can stop the write.
    let own = tempfile::tempdir().unwrap();
    std::fs::set_permissions(own.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let in_own = own.path().join("escaped.txt");
    let in_tmp = std::env::temp_dir().join(unique("nanochat-escape"));
    let in_shm = Path::new("/dev/shm").join(unique("nanochat-escape"));
    for target in [&in_own, &in_tmp, &in_shm] {
        let outcome = run(&format!("open({:?}, 'w').write('x')", target.to_str().unwrap()));
        assert_failed_with(&outcome, "OSError");
        assert!(outcome.stderr.contains("Read-only file system"), "{}", outcome.stderr);
        assert!(!target.exists(), "{} was written", target.display());
    }
    // Its own directory is writable, and gone afterwards.
    let outcome = run("import os\nopen('scratch.txt', 'w').write('x' * 1000)\nprint(os.getcwd())");
    assert_eq!(outcome.status, Status::Passed, "{}", outcome.stderr);
    let dir = Path::new(outcome.stdout.trim());
    assert!(dir.starts_with(std::env::temp_dir()) && dir.to_string_lossy().contains("nanochat-sandbox-"), "{dir:?}");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn the_temporary_directory_is_size_capped() {
    let outcome = run("open('big', 'wb').write(b'x' * (64 << 20))");
    assert_failed_with(&outcome, "OSError");
    assert!(outcome.stderr.contains("No space left on device"), "{}", outcome.stderr);
}

#[test]
fn a_fork_bomb_stays_bounded_and_dies_with_the_run() {
    let marker = unique("nanochat-fork-bomb");
    let config = SandboxConfig { timeout: Duration::from_secs(2), ..SandboxConfig::default() };
    let limit = config.max_processes as usize;
    let sandbox = Sandbox::new(config).unwrap();
    let program = format!(
        "import os, sys\nos.execv(sys.executable, [sys.executable, '-c', \
         'import os\\nwhile True:\\n    try:\\n        os.fork()\\n    except OSError:\\n        pass', {marker:?}])"
    );
    let started = Instant::now();
    let (outcome, peak) = std::thread::scope(|scope| {
        let run = scope.spawn(|| sandbox.run(&program));
        let mut peak = 0;
        while !run.is_finished() {
            peak = peak.max(processes_with(&marker));
            std::thread::sleep(Duration::from_millis(20));
        }
        (run.join().unwrap(), peak)
    });
    assert_eq!(outcome.status, Status::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(6), "took {:?}", started.elapsed());
    assert!(peak > 1, "the bomb never forked (peak {peak})");
    assert!(peak <= limit, "{peak} bomb processes at once, limit {limit}");
    assert_eq!(processes_with(&marker), 0, "bomb processes survived the run");
}

#[test]
fn a_memory_hog_fails_with_memory_error() {
    let outcome = run("blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))");
    assert_failed_with(&outcome, "MemoryError");
    assert_failed_with(&run("x = bytearray(1 << 34)"), "MemoryError");
}

#[test]
fn an_infinite_loop_times_out_within_the_limit() {
    let outcome = sandbox(Duration::from_secs(1)).run("while True:\n    pass");
    assert_eq!(outcome.status, Status::TimedOut);
    assert_eq!(outcome.human_eval_result(), "timed out");
    assert!(outcome.wall_time >= Duration::from_secs(1), "{:?}", outcome.wall_time);
    assert!(outcome.wall_time < Duration::from_millis(2500), "{:?}", outcome.wall_time);
}

#[test]
fn a_daemonised_process_does_not_outlive_the_run() {
    let marker = unique("nanochat-daemon");
    let written = tempfile::tempdir().unwrap();
    std::fs::set_permissions(written.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let late_file = written.path().join("late.txt");
    // Double fork and setsid, then the grandchild sleeps and writes; the program itself returns.
    let program = format!(
        r#"
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c",
            "import sys, time\ntime.sleep(1.5)\nopen(sys.argv[1], 'w').write('late')", {late:?}, {marker:?}])
    os._exit(0)
for _ in range(100):
    if any({marker:?} in open(f"/proc/{{p}}/cmdline").read() for p in os.listdir("/proc") if p.isdigit()):
        print("daemon running")
        break
    time.sleep(0.02)
"#,
        late = late_file.to_str().unwrap()
    );
    let outcome = run(&program);
    assert_eq!(outcome.status, Status::Passed, "{}", outcome.stderr);
    assert_eq!(outcome.stdout, "daemon running\n", "the daemon never started");
    assert_eq!(processes_with(&marker), 0, "the daemon survived the run");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(processes_with(&marker), 0);
    assert!(!late_file.exists(), "the daemon wrote after the run");
}

#[test]
fn a_huge_output_is_cut_at_the_cap_and_ends_the_run() {
    let config = SandboxConfig { max_output_bytes: 64 << 10, ..SandboxConfig::default() };
    let outcome = Sandbox::new(config).unwrap().run("while True:\n    print('x' * 10000)");
    assert_eq!(outcome.status, Status::OutputLimit);
    assert!(outcome.truncated);
    assert_eq!(outcome.stdout.len(), 64 << 10);
    assert!(outcome.wall_time < Duration::from_secs(4), "{:?}", outcome.wall_time);
}

#[test]
fn standard_input_is_empty() {
    let outcome = run("import sys\nassert sys.stdin.read() == ''\nprint('eof')");
    assert_eq!(outcome.status, Status::Passed, "{}", outcome.stderr);
    assert_failed_with(&run("input()"), "EOFError");
}

#[test]
fn concurrent_runs_keep_their_own_results() {
    let sandbox = sandbox(Duration::from_secs(5));
    let programs: Vec<String> =
        (0..12).map(|i| if i % 3 == 0 { format!("assert {i} == -1") } else { format!("print({i} * {i})") }).collect();
    let outcomes = sandbox.run_many(&programs, 4, &|_| {});
    for (i, outcome) in outcomes.iter().enumerate() {
        if i % 3 == 0 {
            assert_failed_with(outcome, "AssertionError");
        } else {
            assert_eq!(outcome.stdout, format!("{}\n", i * i));
        }
    }
}

#[test]
fn a_missing_interpreter_is_a_clear_error() {
    let config = SandboxConfig { python: "/nonexistent/python3".into(), ..SandboxConfig::default() };
    let error = Sandbox::new(config).unwrap_err().to_string();
    assert!(error.contains("/nonexistent/python3") && error.contains("--python"), "{error}");
}
