//! The sandbox's seccomp filter (classic BPF): everything is allowed except the system calls that
//! reach outside the namespaces or widen the kernel's attack surface, which fail with an errno
//! (so Python raises an ordinary exception):
//! - `socket` (EPERM): no network, and no connection to a host's Unix socket (e.g. a Docker or
//!   D-Bus socket) through the read-only filesystem; `socketpair` stays allowed;
//! - `io_uring_*` (ENOSYS): it can open sockets and files outside these checks;
//! - `unshare`, `setns`, and `clone` with a namespace flag (EPERM), `clone3` (ENOSYS, so libc
//!   falls back to `clone`, whose flags a filter can read): no nested namespaces;
//! - `bpf`, `perf_event_open`, `userfaultfd`, `keyctl`, `add_key`, `request_key` (EPERM);
//! - `memfd_secret` (ENOSYS): pages the kernel itself cannot see;
//! - where the run has no memory cgroup to charge them to, `shmget` and `memfd_create` (EPERM):
//!   pages that outlive every mapping, so RLIMIT_AS does not bound them.
//!
//! Another architecture's system call numbers (and, on x86_64, the x32 ABI) are refused too, so
//! the list cannot be sidestepped. Built for x86_64 and aarch64; elsewhere the filter is empty and
//! the namespaces and limits are the whole boundary.
use libc::sock_filter;

const LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x05 | 0x30; // BPF_JMP | BPF_JGE | BPF_K
const JSET_K: u16 = 0x05 | 0x40; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Offsets in `struct seccomp_data`: nr, arch, then args[0] (its low 32 bits on little-endian).
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
const OFFSET_ARG0_LOW: u32 = 16;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// System calls numbered from here on x86_64 are the x32 ABI's.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const X32_SYSCALL_BIT: Option<u32> = None;

/// `clone` flags that create namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET).
const CLONE_NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The denied system calls and the errno each fails with.
fn denied(refuse_shared_memory: bool) -> Vec<(libc::c_long, i32)> {
    let mut denied = vec![
        (libc::SYS_socket, libc::EPERM),
        (libc::SYS_io_uring_setup, libc::ENOSYS),
        (libc::SYS_io_uring_enter, libc::ENOSYS),
        (libc::SYS_io_uring_register, libc::ENOSYS),
        (libc::SYS_unshare, libc::EPERM),
        (libc::SYS_setns, libc::EPERM),
        (libc::SYS_clone3, libc::ENOSYS),
        (libc::SYS_bpf, libc::EPERM),
        (libc::SYS_perf_event_open, libc::EPERM),
        (libc::SYS_userfaultfd, libc::EPERM),
        (libc::SYS_keyctl, libc::EPERM),
        (libc::SYS_add_key, libc::EPERM),
        (libc::SYS_request_key, libc::EPERM),
        (libc::SYS_memfd_secret, libc::ENOSYS),
    ];
    if refuse_shared_memory {
        denied.extend([(libc::SYS_shmget, libc::EPERM), (libc::SYS_memfd_create, libc::EPERM)]);
    }
    denied
}

/// The filter program (empty on architectures it is not built for); `refuse_shared_memory` where
/// the run has no memory cgroup.
pub(super) fn filter(refuse_shared_memory: bool) -> Vec<sock_filter> {
    let Some(arch) = AUDIT_ARCH else {
        return Vec::new();
    };
    let mut f = vec![
        stmt(LD_W_ABS, OFFSET_ARCH),
        jump(JEQ_K, arch, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFFSET_NR),
    ];
    if let Some(x32) = X32_SYSCALL_BIT {
        f.push(jump(JGE_K, x32, 0, 1));
        f.push(stmt(RET_K, RET_ERRNO | libc::ENOSYS as u32));
    }
    for (nr, errno) in denied(refuse_shared_memory) {
        f.push(jump(JEQ_K, nr as u32, 0, 1));
        f.push(stmt(RET_K, RET_ERRNO | errno as u32));
    }
    f.push(jump(JEQ_K, libc::SYS_clone as u32, 0, 3));
    f.push(stmt(LD_W_ABS, OFFSET_ARG0_LOW));
    f.push(jump(JSET_K, CLONE_NAMESPACE_FLAGS, 0, 1));
    f.push(stmt(RET_K, RET_ERRNO | libc::EPERM as u32));
    f.push(stmt(RET_K, RET_ALLOW));
    f
}
