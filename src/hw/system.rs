//! Facts about the host for the doctor and the report header: OS, CPU, memory, free disk.
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::gpu::GIB;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub cpu_model: String,
    pub logical_cpus: usize,
    pub physical_cpus: usize,
    pub memory_gib: f64,
}

impl SystemInfo {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = field_values(&cpuinfo, "model name").next().unwrap_or("unknown").to_string();
        let logical_cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let mut cores: Vec<(String, String)> = field_values(&cpuinfo, "physical id")
            .map(String::from)
            .zip(field_values(&cpuinfo, "core id").map(String::from))
            .collect();
        cores.sort();
        cores.dedup();
        let physical_cpus = if cores.is_empty() { logical_cpus } else { cores.len() };
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = field_values_colon_split(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let os = os_release
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        SystemInfo {
            hostname: read_trimmed("/proc/sys/kernel/hostname"),
            os,
            kernel: read_trimmed("/proc/sys/kernel/osrelease"),
            cpu_model,
            logical_cpus,
            physical_cpus,
            memory_gib: mem_kib * 1024.0 / GIB,
        }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown".into())
}

fn field_values<'a>(text: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.lines().filter_map(move |line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == key).then(|| v.trim())
    })
}

fn field_values_colon_split<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|line| line.strip_prefix(key)?.strip_prefix(':').map(str::trim))
}

/// Free space (GiB) on the file system that holds `path`, or its nearest existing ancestor.
pub fn free_disk_gib(path: &Path) -> Option<f64> {
    let stat = statvfs(path.ancestors().find(|p| p.exists())?)?;
    Some(stat.f_bavail as f64 * stat.f_frsize as f64 / GIB)
}

/// The size in bytes of /dev/shm (Docker gives 64 MiB unless started with `--shm-size` or `--ipc=host`).
pub fn shm_bytes() -> Option<u64> {
    let stat = statvfs(Path::new("/dev/shm"))?;
    Some(stat.f_blocks * stat.f_frsize)
}

fn statvfs(path: &Path) -> Option<libc::statvfs> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is a valid NUL-terminated string and stat a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    (rc == 0).then_some(stat)
}

/// Bytes already stored under `path` (so a resumed run does not need the whole budget again).
pub fn used_disk_gib(path: &Path) -> f64 {
    fn walk(path: &Path) -> u64 {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return 0;
        };
        if meta.is_dir() {
            std::fs::read_dir(path).map(|rd| rd.flatten().map(|e| walk(&e.path())).sum()).unwrap_or(0)
        } else {
            meta.len()
        }
    }
    walk(path) as f64 / GIB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_this_machine() {
        let info = SystemInfo::probe();
        assert!(info.logical_cpus >= 1);
        assert!(info.physical_cpus >= 1 && info.physical_cpus <= info.logical_cpus);
        assert!(info.memory_gib > 0.1, "{info:?}");
    }

    #[test]
    fn disk_numbers_for_a_path_that_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), vec![0u8; 1 << 20]).unwrap();
        assert!(free_disk_gib(&dir.path().join("not/yet/there")).unwrap() > 0.0);
        assert!(shm_bytes().unwrap() > 0, "/dev/shm is mounted on every Linux host and container");
        let used = used_disk_gib(dir.path());
        assert!((used - 1.0 / 1024.0).abs() < 1e-9, "{used}");
    }
}
