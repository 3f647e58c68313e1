//! A memory cgroup per sandboxed run. RLIMIT_AS bounds each process's address space, but not what a
//! program keeps outside it (SysV shared memory and memfd pages after unmapping, tmpfs files) nor
//! the sum over its processes; a memory cgroup is charged for all of it, and the kernel's OOM
//! killer ends the run at the limit. Swap is limited to zero with it, so the limit is on RAM.
//!
//! Where: cgroup v2 at /sys/fs/cgroup (a sibling of nanochat's own cgroup, under the parent that
//! enables the memory controller for its children, or under the root when nanochat's cgroup is
//! the root), else cgroup v1's memory hierarchy at /sys/fs/cgroup/memory (a child of nanochat's own
//! memory cgroup). Both need write access there: root, or a delegated subtree.
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

const V2_ROOT: &str = "/sys/fs/cgroup";
const V1_MEMORY_ROOT: &str = "/sys/fs/cgroup/memory";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

/// Why no memory cgroup can be made for the runs.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("reading /proc/self/cgroup: {0}")]
    OwnCgroup(io::Error),
    #[error("no cgroup v2 at {V2_ROOT} and no cgroup v1 memory hierarchy at {V1_MEMORY_ROOT}")]
    NoHierarchy,
    #[error("the cgroup v2 memory controller is not enabled in {} (for nanochat's cgroup {own})", control.display())]
    NoMemoryController { control: PathBuf, own: String },
    #[error(transparent)]
    Probe(#[from] io::Error),
}

/// Where the runs' cgroups are made.
#[derive(Debug)]
pub(super) struct Hierarchy {
    version: Version,
    parent: PathBuf,
}

impl Hierarchy {
    /// The hierarchy nanochat can make memory cgroups in, checked by making one; else what is missing.
    pub(super) fn find(tag: &str) -> Result<Hierarchy, CgroupError> {
        let own = std::fs::read_to_string("/proc/self/cgroup").map_err(CgroupError::OwnCgroup)?;
        let v2 = Path::new(V2_ROOT).join("cgroup.controllers").exists();
        let found = if v2 {
            let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
            v2_parent(Path::new(V2_ROOT), path).map(|parent| Hierarchy { version: Version::V2, parent })
        } else if Path::new(V1_MEMORY_ROOT).is_dir() {
            let path = own.lines().find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let controllers = fields.nth(1)?;
                controllers.split(',').any(|c| c == "memory").then(|| fields.next()).flatten()
            });
            let parent = Path::new(V1_MEMORY_ROOT).join(path.unwrap_or("/").trim_start_matches('/'));
            Ok(Hierarchy { version: Version::V1, parent })
        } else {
            Err(CgroupError::NoHierarchy)
        }?;
        super::remove_stale(&found.parent);
        drop(found.create(&format!("{tag}-probe"), 64 << 20)?);
        Ok(found)
    }

    /// A fresh cgroup limited to `limit` bytes of RAM and no swap.
    pub(super) fn create(&self, name: &str, limit: u64) -> io::Result<RunCgroup> {
        let dir = self.parent.join(name);
        std::fs::create_dir(&dir).map_err(|e| context(e, "creating the memory cgroup", &dir))?;
        let cgroup = RunCgroup { dir, version: self.version };
        let limit = limit.to_string();
        // (file, value, whether it must exist): without swap accounting the swap files are absent
        // and there is no swap to limit; memory.oom.group makes the OOM killer end the whole run.
        let files: &[(&str, &str, bool)] = match self.version {
            Version::V2 => {
                &[("memory.max", &limit, true), ("memory.swap.max", "0", false), ("memory.oom.group", "1", false)]
            }
            // The memory+swap limit comes after the memory limit, which it may not be below.
            Version::V1 => &[("memory.limit_in_bytes", &limit, true), ("memory.memsw.limit_in_bytes", &limit, false)],
        };
        for &(file, value, required) in files {
            let path = cgroup.dir.join(file);
            if required || path.exists() {
                std::fs::write(&path, value).map_err(|e| context(e, "setting the memory limit", &path))?;
            }
        }
        Ok(cgroup)
    }
}

/// The v2 cgroup whose children get the memory controller: the parent of nanochat's own (the root
/// when nanochat is in the root), which enables it for them (the root is asked to when it does not).
fn v2_parent(root: &Path, own: &str) -> Result<PathBuf, CgroupError> {
    let own_dir = root.join(own.trim_start_matches('/'));
    let parent = if own_dir == root { root.to_path_buf() } else { own_dir.parent().unwrap_or(root).to_path_buf() };
    let control = parent.join("cgroup.subtree_control");
    let enabled = |p: &Path| std::fs::read_to_string(p).is_ok_and(|s| s.split_whitespace().any(|c| c == "memory"));
    if !enabled(&control) && parent == root {
        let _ = std::fs::write(&control, "+memory");
    }
    if enabled(&control) {
        Ok(parent)
    } else {
        Err(CgroupError::NoMemoryController { control, own: own.to_string() })
    }
}

fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} ({}): {e}", path.display()))
}

/// One run's cgroup: its processes are killed and it is removed on drop.
#[derive(Debug)]
pub(super) struct RunCgroup {
    dir: PathBuf,
    version: Version,
}

impl RunCgroup {
    /// Moves `pid` (with the threads of its process) into the cgroup.
    pub(super) fn add(&self, pid: libc::pid_t) -> io::Result<()> {
        let path = self.dir.join("cgroup.procs");
        std::fs::write(&path, pid.to_string()).map_err(|e| context(e, "entering the memory cgroup", &path))
    }

    /// How many processes the OOM killer ended for going over the limit.
    pub(super) fn oom_kills(&self) -> u64 {
        let file = match self.version {
            Version::V2 => "memory.events",
            Version::V1 => "memory.oom_control",
        };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }

    fn pids(&self) -> Vec<libc::pid_t> {
        let text = std::fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        text.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        // The run's PID namespace is gone with its PID 1, so the cgroup is normally empty already;
        // what is not (a run without namespaces, processes still exiting) is killed, a bounded wait.
        for _ in 0..200 {
            match std::fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    for pid in self.pids() {
                        // SAFETY: a signal to a process of this run's cgroup.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    log::warn!("could not remove the sandbox cgroup {}: {e}", self.dir.display());
                    return;
                }
            }
        }
        log::warn!("could not remove the sandbox cgroup {}: processes are still in it", self.dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_runs_go_next_to_nanochats_cgroup_where_its_parent_enables_memory() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        std::fs::create_dir_all(root.join("system.slice/job.service")).unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "cpu memory pids\n").unwrap();
        std::fs::write(root.join("system.slice/cgroup.subtree_control"), "cpu pids\n").unwrap();
        let error = v2_parent(root, "/system.slice/job.service").unwrap_err().to_string();
        assert!(error.contains("memory controller is not enabled") && error.contains("system.slice"), "{error}");
        std::fs::write(root.join("system.slice/cgroup.subtree_control"), "cpu memory\n").unwrap();
        assert_eq!(v2_parent(root, "/system.slice/job.service").unwrap(), root.join("system.slice"));
        assert_eq!(v2_parent(root, "/").unwrap(), root);
    }

    #[test]
    fn oom_kills_are_read_from_either_version() {
        for (version, file, text) in [
            (Version::V2, "memory.events", "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 1\n"),
            (Version::V1, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(file), text).unwrap();
            let cgroup = RunCgroup { dir: dir.path().to_path_buf(), version };
            assert_eq!(cgroup.oom_kills(), 2, "{file}");
            // Not a cgroup: nothing to remove on drop.
            std::mem::forget(cgroup);
        }
    }
}
