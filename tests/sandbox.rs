//! The sandbox for generated code (src/sandbox/) against programs that try to get out or to
//! claim a pass they did not earn: each attempt must fail, be reported as a failure, and leave the
//! machine as it was.
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nanochat::sandbox::{Outcome, Sandbox, SandboxConfig, Status};

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
assert os.environ["HOME"] == "/nonexistent" and os.environ["TMPDIR"] == os.getcwd()
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
    // Its working directory's parent and its $HOME refuse too, and, seen from inside, every mount
    // but the working directory is read-only (/proc included).
    let name = unique("nanochat-escape");
    let outcome = run(&format!(
        r#"
import os
for target in ["../{name}", os.path.expanduser("~/{name}"), os.path.join(os.environ["HOME"], "{name}")]:
    try:
        open(target, "w").write("x")
    except OSError:
        pass
    else:
        raise AssertionError("wrote " + target)
writable = [line.split()[4] for line in open("/proc/self/mountinfo") if "rw" in line.split()[5].split(",")]
assert writable == [os.getcwd()], writable
"#
    ));
    assert_eq!(outcome.status, Status::Passed, "{}", outcome.stderr);
    assert!(!std::env::temp_dir().join(&name).exists());
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

/// The status of a program that leaves a process behind when it ends.
fn left_running() -> Status {
    Status::Failed { exception: String::new(), message: "left a process running".into() }
}

#[test]
fn a_daemonised_process_does_not_outlive_the_run_and_fails_it() {
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
    assert_eq!(outcome.status, left_running(), "{}", outcome.stderr);
    assert_eq!(outcome.human_eval_result(), "failed: left a process running");
    assert_eq!(outcome.stdout, "daemon running\n", "the daemon never started");
    assert_eq!(processes_with(&marker), 0, "the daemon survived the run");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(processes_with(&marker), 0);
    assert!(!late_file.exists(), "the daemon wrote after the run");
}

#[test]
fn a_background_process_left_behind_fails_the_run_and_a_finished_one_does_not() {
    let background = run("import subprocess\nsubprocess.Popen(['sleep', '30'])");
    assert_eq!(background.status, left_running(), "{}", background.stderr);
    let forked = run("import os, time\nif os.fork() == 0:\n    time.sleep(30)\n    os._exit(0)");
    assert_eq!(forked.status, left_running(), "{}", forked.stderr);
    // A child that ended (waited for or not) and a thread still running are not processes left behind.
    let finished = run("import os, subprocess, threading, time\nsubprocess.run(['true'], check=True)\n\
         if os.fork() == 0:\n    os._exit(0)\ntime.sleep(0.05)\n\
         threading.Thread(target=time.sleep, args=(30,), daemon=True).start()");
    assert_eq!(finished.status, Status::Passed, "{}", finished.stderr);
}

/// A human-eval style program: the prompt, a completion with `attack` after a wrong body, the
/// test and the check call. Only the check can say "passed", and here it fails.
fn attacked(attack: &str, body: &str) -> String {
    format!(
        "def add(a, b):\n    {body}\n{attack}\n\ndef check(candidate):\n    assert candidate(1, 2) == 3\n\ncheck(add)"
    )
}

#[test]
fn a_program_cannot_claim_a_pass_its_check_did_not_give() {
    let attacks = [
        // The reviewer's: the old verdict descriptor, then an exit before the check.
        "import os\nos.write(3, b'passed')\nos._exit(0)",
        // Every descriptor, with and without exiting.
        "import os\nfor fd in range(1024):\n    try:\n        os.write(fd, b'passed')\n    except OSError:\n        pass",
        "import os\nfor fd in range(1024):\n    try:\n        os.write(fd, b'passed')\n    except OSError:\n        pass\nos._exit(0)",
        // Reading every descriptor for something to echo back.
        "import os\nfor fd in range(64):\n    try:\n        data = os.read(fd, 4096)\n    except OSError:\n        continue\n    for out in range(64):\n        try:\n            os.write(out, data + b'passed')\n        except OSError:\n            pass",
        // Leaving early, cleanly or not.
        "import os\nos._exit(0)",
        "import sys\nsys.exit(0)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        // Overriding the check: the test's definition comes later, so it takes the name back.
        "def check(candidate):\n    pass",
        // Patching what a runner would use after the program returns.
        "import os\nreal = os.write\nos.write = lambda fd, data: real(fd, data.replace(b'failed', b'passed'))",
        "import builtins\nbuiltins.BaseException = type('Nothing', (Exception,), {})",
        "import builtins, os\nbuiltins.print = lambda *a, **k: (os.write(3, b'passed'), os._exit(0))",
        "import traceback, os\ntraceback.print_exc = lambda *a, **k: (os.write(3, b'passed'), os._exit(0))",
        "import sys, os\nclass Out:\n    def write(self, s):\n        os.write(3, b'passed')\n        os._exit(0)\n    def flush(self):\n        pass\nsys.stderr = sys.stdout = Out()",
        // Code that runs after the check failed: an exception's __str__, atexit, a thread.
        "import os\nclass Sly(Exception):\n    def __str__(self):\n        os.write(3, b'passed')\n        os._exit(0)\nimport builtins\nbuiltins.AssertionError = Sly",
        "import atexit, os\natexit.register(lambda: os.write(3, b'passed'))",
        "import os, threading\ndef spam():\n    while True:\n        os.write(3, b'passed')\nthreading.Thread(target=spam, daemon=True).start()",
    ];
    let sandbox = sandbox(Duration::from_secs(5));
    let programs: Vec<String> = attacks.iter().map(|a| attacked(a, "return 0")).collect();
    for (outcome, attack) in sandbox.run_many(&programs, 2).iter().zip(attacks) {
        assert!(!outcome.passed(), "scored passed:\n{attack}\nstderr: {}", outcome.stderr);
        assert_ne!(outcome.human_eval_result(), "passed");
    }
    // The same program shape with a right body passes: the check decides.
    let right = sandbox.run(&attacked("import os", "return a + b"));
    assert_eq!(right.status, Status::Passed, "{}", right.stderr);
}

#[test]
fn a_huge_output_keeps_its_end_and_ends_the_run() {
    let config = SandboxConfig { max_output_bytes: 64 << 10, ..SandboxConfig::default() };
    let tail = config.output_tail_bytes;
    let outcome = Sandbox::new(config).unwrap().run("while True:\n    print('x' * 10000)");
    assert_eq!(outcome.status, Status::OutputLimit);
    assert!(outcome.truncated);
    assert_eq!(outcome.stdout.len(), tail);
    assert!(outcome.stdout.bytes().all(|b| b == b'x' || b == b'\n'));
    assert!(outcome.wall_time < Duration::from_secs(4), "{:?}", outcome.wall_time);
    // Within the limit, only the end is kept: the traceback of a chatty failure survives.
    let chatty = run("for i in range(20000):\n    print(i)\nraise ValueError('the end')");
    assert_failed_with(&chatty, "ValueError");
    assert!(chatty.truncated && chatty.stdout.len() <= tail && chatty.stdout.ends_with("19999\n"), "{}", chatty.stdout);
    assert!(chatty.stderr.contains("ValueError: the end"), "{}", chatty.stderr);
}

/// MemAvailable of /proc/meminfo, in bytes.
fn mem_available() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:")).unwrap();
    kib.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() << 10
}

#[test]
fn memory_outside_the_address_space_limit_is_stopped_at_the_run_limit() {
    let config = SandboxConfig { timeout: Duration::from_secs(20), ..SandboxConfig::default() };
    let limit = config.memory_bytes;
    let sandbox = Sandbox::new(config).unwrap();
    assert!(sandbox.has_memory_cgroup(), "the test machines (root, cgroup v1 or v2) can make memory cgroups");
    // Each takes 2 GiB in pieces that each fit RLIMIT_AS: SysV segments detached after touching,
    // memfd files in three processes, anonymous memory in twelve processes. The forking ones hold
    // their pieces until every process has its own, so the whole 2 GiB is asked for whatever the
    // scheduling; on cgroup v1 the OOM killer then ends children one by one, and the parent that
    // outlives them and returns still has the run scored as over its memory limit.
    let shm = r#"
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmdt.argtypes = [ctypes.c_void_p]
for _ in range(32):
    segment = libc.shmget(0, 64 << 20, 0o1600)
    assert segment >= 0, ctypes.get_errno()
    address = libc.shmat(segment, None, 0)
    assert address not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    ctypes.memset(address, 1, 64 << 20)
    libc.shmdt(address)
"#;
    let hog = |setup: &str, step: &str, steps: usize, processes: usize| {
        format!(
            r#"
import os, time
{setup}
def hog():
    held = []
    for _ in range({steps}):
        held.append({step})
    return held
for _ in range({processes} - 1):
    if os.fork() == 0:
        hog()
        time.sleep(60)
        os._exit(0)
held = hog()
for _ in range({processes} - 1):
    os.wait()
"#
        )
    };
    let piece = "def piece():\n    fd = os.memfd_create('hog')\n    os.write(fd, b'1' * (16 << 20))\n    return fd";
    let memfd = hog(piece, "piece()", 43, 3);
    let anonymous = hog("", "bytearray(b'1' * (16 << 20))", 11, 12);
    for (name, program) in [("shm", shm.to_string()), ("memfd", memfd), ("anonymous", anonymous)] {
        let before = mem_available();
        let (outcome, lowest) = std::thread::scope(|scope| {
            let run = scope.spawn(|| sandbox.run(&program));
            let mut lowest = before;
            while !run.is_finished() {
                lowest = lowest.min(mem_available());
                std::thread::sleep(Duration::from_millis(5));
            }
            (run.join().unwrap(), lowest)
        });
        let fall = before.saturating_sub(lowest);
        eprintln!(
            "{name}: {:?}, MemAvailable fell by {} MiB at most (limit {} MiB)",
            outcome.status,
            fall >> 20,
            limit >> 20
        );
        assert_eq!(outcome.status, Status::MemoryLimit, "{name}: {}", outcome.stderr);
        assert_eq!(outcome.human_eval_result(), "failed: memory limit exceeded");
        // 2 GiB would have gone without the cgroup; the margin is for the rest of the machine
        // (other tests, other builds), whose use the same counter sees.
        assert!(fall < limit + (512 << 20), "{name}: MemAvailable fell by {} MiB", fall >> 20);
    }
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
    let outcomes = sandbox.run_many(&programs, 4);
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
