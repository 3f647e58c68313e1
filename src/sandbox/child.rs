//! The sandboxed child between clone(2) and execve(2). It runs in a copy of a possibly
//! multi-threaded parent, so it only makes system calls on data prepared before the clone
//! (`ChildPlan`): no allocation, no locks, no panics. A failing step writes its number and errno to
//! the error pipe and exits; the parent turns that into a `SandboxError`.
use std::ffi::{c_char, CString};
use std::os::fd::RawFd;

/// Declares `Step` (the steps of the child, in order) with `Step::ALL` and each step's description.
macro_rules! steps {
    ($($name:ident => $text:literal,)*) => {
        /// The steps of the child, in order; the parent names the failed one.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub(super) enum Step {
            $($name,)*
        }

        impl Step {
            const ALL: &'static [Step] = &[$(Step::$name,)*];

            pub(super) fn describe(self) -> &'static str {
                match self {
                    $(Step::$name => $text,)*
                }
            }
        }
    };
}

steps! {
    WaitForParent => "waiting for the parent to set up the cgroup and user namespace",
    NewSession => "setsid",
    PrivateMounts => "making the mounts private",
    ReadOnlyRoot => "remounting the filesystem read-only (mount_setattr, Linux 5.12+)",
    MountWorkdir => "mounting the tmpfs working directory",
    MountProc => "mounting /proc",
    DropGroups => "dropping supplementary groups",
    SetGid => "setting the group id",
    SetUid => "setting the user id",
    ParentDeathSignal => "prctl(PR_SET_PDEATHSIG)",
    WriteProgram => "writing the program file",
    Chdir => "entering the working directory",
    Descriptors => "setting up stdin/stdout/stderr",
    Limits => "setting resource limits",
    NoNewPrivileges => "prctl(PR_SET_NO_NEW_PRIVS)",
    Seccomp => "installing the seccomp filter",
    Exec => "starting the interpreter",
}

impl Step {
    pub(super) fn from_code(code: u8) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u8 == code)
    }

    /// Steps that only fail when the kernel or its configuration lacks the isolation.
    pub(super) fn is_isolation(self) -> bool {
        matches!(self, Step::PrivateMounts | Step::ReadOnlyRoot | Step::MountWorkdir | Step::MountProc | Step::Seccomp)
    }
}

/// Everything the child needs, built by the parent before the clone.
pub(super) struct ChildPlan {
    /// In fresh namespaces (mounts to set up); otherwise a plain child.
    pub namespaces: bool,
    pub python: CString,
    /// Null-terminated pointer arrays into `_argv` and `_envp`.
    pub argv: Vec<*const c_char>,
    pub envp: Vec<*const c_char>,
    pub _argv: Vec<CString>,
    pub _envp: Vec<CString>,
    pub workdir: CString,
    pub program_path: CString,
    pub program: Vec<u8>,
    pub tmpfs_options: CString,
    /// Set the user and group ids (and drop supplementary groups when `drop_groups`).
    pub set_ids: Option<(libc::uid_t, libc::gid_t)>,
    pub drop_groups: bool,
    pub limits: Vec<(libc::__rlimit_resource_t, libc::rlim_t)>,
    pub filter: Vec<libc::sock_filter>,
}

/// The parent's descriptors the child uses (raw numbers, valid in the child after the clone).
pub(super) struct ChildFds {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// The runner's verdict (write end) and nonce (read end), descriptors 3 and 4 after exec.
    pub verdict: RawFd,
    pub nonce: RawFd,
    /// A byte from the parent once the child is in its cgroup and its user namespace is mapped
    /// (end of file: the parent gave up).
    pub sync: RawFd,
    /// Close-on-exec: end of file at exec tells the parent the interpreter started.
    pub error: RawFd,
}

fn fail(error_fd: RawFd, step: Step) -> ! {
    // SAFETY: only async-signal-safe calls on local data.
    unsafe {
        let errno = *libc::__errno_location();
        let mut report = [0u8; 5];
        report[0] = step as u8;
        report[1..].copy_from_slice(&errno.to_ne_bytes());
        libc::write(error_fd, report.as_ptr().cast(), report.len());
        libc::_exit(127)
    }
}

fn check(result: libc::c_long, error_fd: RawFd, step: Step) {
    if result < 0 {
        fail(error_fd, step);
    }
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;

/// Runs in the child: sets up the sandbox and execs the interpreter, or reports the failed step.
///
/// # Safety
/// Call only in a freshly cloned child, with `plan` and `fds` prepared by the parent.
pub(super) unsafe fn run(plan: &ChildPlan, fds: &ChildFds) -> ! {
    let e = fds.error;
    let mut byte = 0u8;
    if libc::read(fds.sync, (&mut byte as *mut u8).cast(), 1) != 1 {
        fail(e, Step::WaitForParent);
    }
    libc::close(fds.sync);
    check(libc::setsid() as libc::c_long, e, Step::NewSession);
    if plan.namespaces {
        let root = c"/".as_ptr();
        let none = std::ptr::null::<c_char>();
        check(
            libc::mount(none, root, none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) as libc::c_long,
            e,
            Step::PrivateMounts,
        );
        let attr =
            MountAttr { attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, attr_clr: 0, propagation: 0, userns_fd: 0 };
        check(
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                root,
                libc::AT_RECURSIVE as libc::c_uint,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            ),
            e,
            Step::ReadOnlyRoot,
        );
        check(
            libc::mount(
                c"tmpfs".as_ptr(),
                plan.workdir.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                plan.tmpfs_options.as_ptr().cast(),
            ) as libc::c_long,
            e,
            Step::MountWorkdir,
        );
        // A read-only /proc of the new PID namespace; where the kernel refuses (a partly hidden
        // host /proc, as in containers) an empty read-only tmpfs hides the host's.
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RDONLY;
        let proc_dir = c"/proc".as_ptr();
        if libc::mount(c"proc".as_ptr(), proc_dir, c"proc".as_ptr(), flags, std::ptr::null()) != 0 {
            check(
                libc::mount(c"tmpfs".as_ptr(), proc_dir, c"tmpfs".as_ptr(), flags, c"size=4k".as_ptr().cast())
                    as libc::c_long,
                e,
                Step::MountProc,
            );
        }
    }
    // Raw system calls: glibc's wrappers would wait for the parent's other threads to change ids too,
    // threads that do not exist in this copy of the process.
    if let Some((uid, gid)) = plan.set_ids {
        if plan.drop_groups {
            check(libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()), e, Step::DropGroups);
        }
        check(libc::syscall(libc::SYS_setresgid, gid, gid, gid), e, Step::SetGid);
        check(libc::syscall(libc::SYS_setresuid, uid, uid, uid), e, Step::SetUid);
    }
    // After the id change, which clears it.
    check(
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) as libc::c_long,
        e,
        Step::ParentDeathSignal,
    );

    let file =
        libc::open(plan.program_path.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC, 0o600);
    check(file as libc::c_long, e, Step::WriteProgram);
    let mut written = 0usize;
    while written < plan.program.len() {
        let rest = &plan.program[written..];
        let n = libc::write(file, rest.as_ptr().cast(), rest.len());
        check(n as libc::c_long, e, Step::WriteProgram);
        written += n as usize;
    }
    libc::close(file);
    check(libc::chdir(plan.workdir.as_ptr()) as libc::c_long, e, Step::Chdir);

    // Move the five descriptors above any number they could collide with, then into place.
    let mut high = [fds.stdin, fds.stdout, fds.stderr, fds.verdict, fds.nonce];
    for fd in high.iter_mut() {
        *fd = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 16);
        check(*fd as libc::c_long, e, Step::Descriptors);
    }
    for (target, fd) in high.iter().enumerate() {
        check(libc::dup2(*fd, target as RawFd) as libc::c_long, e, Step::Descriptors);
    }
    debug_assert_eq!((super::verdict::VERDICT_FD, super::verdict::NONCE_FD), (3, 4));
    // Everything else the parent had open closes at exec (the error pipe with it).
    check(
        libc::syscall(libc::SYS_close_range, 5 as libc::c_uint, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC),
        e,
        Step::Descriptors,
    );

    for &(resource, value) in &plan.limits {
        let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
        check(libc::setrlimit(resource, &limit) as libc::c_long, e, Step::Limits);
    }
    check(
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, 0, 0, 0) as libc::c_long,
        e,
        Step::NoNewPrivileges,
    );
    if !plan.filter.is_empty() {
        let program = libc::sock_fprog { len: plan.filter.len() as u16, filter: plan.filter.as_ptr() as *mut _ };
        check(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &program as *const _ as libc::c_ulong,
            ) as libc::c_long,
            e,
            Step::Seccomp,
        );
    }
    libc::execve(plan.python.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr());
    fail(e, Step::Exec)
}
