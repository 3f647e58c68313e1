//! The hardware preflight: the machine (GPUs from NVML, whether CUDA starts, /dev/shm, free disk) checked
//! against what a preset expects, before anything is downloaded. A failed check says what was found, what
//! is needed and which preset or flag would fit.
use serde::{Deserialize, Serialize};

use super::cuda_backend::CudaUnavailable;
use super::gpu::GpuInventory;
use crate::config::HardwareExpectation;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Pass,
    Warn,
    /// A mismatch `--allow-mismatch` may override (fewer or smaller GPUs than the preset expects).
    Fail,
    /// The preset cannot run here at all, whatever the flags: it wants CUDA and CUDA does not start.
    Blocked,
}

impl Verdict {
    /// Fail or Blocked: the finding keeps the preflight from passing.
    pub fn fails(self) -> bool {
        matches!(self, Verdict::Fail | Verdict::Blocked)
    }
}

/// What the doctor concludes from its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Mismatches only, and `--allow-mismatch` was given.
    MismatchAllowed,
    Refused,
}

pub fn outcome(findings: &[Finding], allow_mismatch: bool) -> Outcome {
    if findings.iter().any(|f| f.verdict == Verdict::Blocked) {
        Outcome::Refused
    } else if passed(findings) {
        Outcome::Pass
    } else if allow_mismatch {
        Outcome::MismatchAllowed
    } else {
        Outcome::Refused
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub check: String,
    pub found: String,
    pub needed: String,
    pub verdict: Verdict,
    /// What to do about a warning or failure.
    pub hint: Option<String>,
}

/// Disk figures for the base dir: free space and what is already stored there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiskState {
    pub free_gib: f64,
    pub used_by_base_dir_gib: f64,
}

pub fn check(expect: &HardwareExpectation, inventory: &GpuInventory, disk: Option<DiskState>) -> Vec<Finding> {
    let mut findings = Vec::new();
    if expect.device == "cuda" {
        check_gpus(expect, inventory, &mut findings);
    } else {
        findings.push(Finding {
            check: "device".into(),
            found: format!("GPUs: {}", inventory.summary()),
            needed: "CPU only".into(),
            verdict: Verdict::Pass,
            hint: None,
        });
    }
    findings.push(check_disk(expect, disk));
    findings
}

pub fn passed(findings: &[Finding]) -> bool {
    findings.iter().all(|f| !f.verdict.fails())
}

/// Whether CUDA starts, for a preset that wants it: `usable` is [`super::cuda_backend::diagnose`]'s answer.
/// A preset that wants CUDA never runs on the CPU instead, so this failure is not overridable.
pub fn check_cuda(expect: &HardwareExpectation, usable: &Result<usize, CudaUnavailable>) -> Option<Finding> {
    if expect.device != "cuda" {
        return None;
    }
    Some(match usable {
        Ok(devices) => Finding {
            check: "CUDA".into(),
            found: format!("{devices} device(s) usable"),
            needed: "CUDA starts".into(),
            verdict: Verdict::Pass,
            hint: None,
        },
        Err(cause) => Finding {
            check: "CUDA".into(),
            found: "CUDA does not start".into(),
            needed: "CUDA starts (this preset never falls back to the CPU)".into(),
            verdict: Verdict::Blocked,
            hint: Some(cause.to_string()),
        },
    })
}

/// Below this, /dev/shm is too small for NCCL's shared-memory transport between several local ranks.
pub const MIN_SHM_BYTES: u64 = 1 << 30;

/// /dev/shm's size when several GPUs will talk over NCCL on this host (Docker's default is 64 MiB).
pub fn check_shm(expect: &HardwareExpectation, shm_bytes: Option<u64>) -> Option<Finding> {
    let shm = shm_bytes?;
    (expect.device == "cuda" && expect.gpus > 1 && shm < MIN_SHM_BYTES).then(|| Finding {
        check: "/dev/shm".into(),
        found: format!("{} MiB", shm >> 20),
        needed: format!(">= {} MiB with {} GPUs (NCCL shared memory)", MIN_SHM_BYTES >> 20, expect.gpus),
        verdict: Verdict::Warn,
        hint: Some("in Docker add `--shm-size 16g` (or `--ipc=host`) to `docker run`".into()),
    })
}

fn check_gpus(expect: &HardwareExpectation, inv: &GpuInventory, out: &mut Vec<Finding>) {
    let Some(driver) = inv.driver_version.clone() else {
        out.push(Finding {
            check: "NVIDIA driver".into(),
            found: format!("none ({})", inv.unavailable_reason.as_deref().unwrap_or("NVML not available")),
            needed: format!("driver >= {} with {} GPU(s)", expect.min_driver_major, expect.gpus),
            verdict: Verdict::Fail,
            hint: Some("this preset trains on GPUs; on this machine run a CPU preset (see below)".into()),
        });
        return;
    };
    let major = inv.driver_major().unwrap_or(0);
    out.push(Finding {
        check: "NVIDIA driver".into(),
        found: format!("{driver} (CUDA {})", inv.cuda_driver_version.as_deref().unwrap_or("?")),
        needed: format!(">= {}", expect.min_driver_major),
        verdict: if major >= expect.min_driver_major { Verdict::Pass } else { Verdict::Fail },
        hint: Some(
            "the pinned libtorch is a CUDA 13 build: upgrade the NVIDIA driver, or build against a CUDA 12 libtorch"
                .into(),
        )
        .filter(|_| major < expect.min_driver_major),
    });
    let count = inv.gpus.len() as u32;
    out.push(Finding {
        check: "GPU count".into(),
        found: format!("{count} ({})", inv.summary()),
        needed: format!("{}", expect.gpus),
        verdict: if count >= expect.gpus { Verdict::Pass } else { Verdict::Fail },
        hint: (count < expect.gpus).then(|| {
            format!(
                "fewer GPUs give the same result with more gradient accumulation, about {:.1}x the wall time: pass --allow-mismatch to go on",
                expect.gpus as f64 / count.max(1) as f64
            )
        }),
    });
    if let Some(smallest) = inv.gpus.iter().map(|g| g.memory_total_gib).reduce(f64::min) {
        let fits = smallest >= expect.min_gpu_memory_gib;
        out.push(Finding {
            check: "memory per GPU".into(),
            found: format!("{smallest:.1} GiB"),
            needed: format!(">= {:.1} GiB", expect.min_gpu_memory_gib),
            verdict: if fits { Verdict::Pass } else { Verdict::Fail },
            hint: (!fits).then(|| {
                "halve the device batch (gradient accumulation keeps the total batch): e.g. --set base_train.device_batch_size=16 --set mid_train.device_batch_size=16 --allow-mismatch".to_string()
            }),
        });
    }
    if let Some(lowest) = inv.gpus.iter().map(|g| g.compute_capability_value()).reduce(f64::min) {
        let fits = lowest + 1e-9 >= expect.min_compute_capability;
        out.push(Finding {
            check: "compute capability".into(),
            found: format!("{lowest:.1}"),
            needed: format!(">= {:.1}", expect.min_compute_capability),
            verdict: if fits { Verdict::Pass } else { Verdict::Fail },
            hint: (!fits).then(|| "bf16 training needs Ampere (8.0) or newer; use --set base_train.dtype=float32 --allow-mismatch (slow)".to_string()),
        });
    }
    let busy: Vec<String> = inv
        .gpus
        .iter()
        .filter(|g| !g.processes.is_empty())
        .map(|g| {
            format!("GPU {}: {} process(es), {}% busy", g.index, g.processes.len(), g.utilization_percent.unwrap_or(0))
        })
        .collect();
    if !busy.is_empty() {
        out.push(Finding {
            check: "GPUs in use".into(),
            found: busy.join("; "),
            needed: "idle GPUs".into(),
            verdict: Verdict::Warn,
            hint: Some("other processes share these GPUs: expect less memory and speed (nvidia-smi lists them)".into()),
        });
    }
}

fn check_disk(expect: &HardwareExpectation, disk: Option<DiskState>) -> Finding {
    let Some(disk) = disk else {
        return Finding {
            check: "disk".into(),
            found: "unknown".into(),
            needed: format!("{:.1} GiB", expect.disk_gib),
            verdict: Verdict::Warn,
            hint: Some("could not measure free space under the base dir".into()),
        };
    };
    let still_needed = (expect.disk_gib - disk.used_by_base_dir_gib).max(0.0);
    let fits = disk.free_gib >= still_needed;
    Finding {
        check: "disk".into(),
        found: format!("{:.1} GiB free ({:.1} GiB already in the base dir)", disk.free_gib, disk.used_by_base_dir_gib),
        needed: format!("{still_needed:.1} GiB more ({:.1} GiB in all)", expect.disk_gib),
        verdict: if fits { Verdict::Pass } else { Verdict::Fail },
        hint: (!fits).then(|| "free space, or point --base-dir (NANOCHAT_BASE_DIR) at a larger disk".to_string()),
    }
}

/// Names of the built-in presets whose expectations this machine meets.
pub fn fitting_presets(inventory: &GpuInventory, disk: Option<DiskState>) -> Vec<String> {
    crate::config::builtin_names()
        .into_iter()
        .filter_map(|name| {
            let config = crate::config::resolve(name, &[], None).ok()?;
            passed(&check(&config.hardware, inventory, disk)).then(|| name.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expectation(preset: &str) -> HardwareExpectation {
        crate::config::resolve(preset, &[], None).unwrap().hardware
    }

    const ROOMY: Option<DiskState> = Some(DiskState { free_gib: 500.0, used_by_base_dir_gib: 0.0 });

    #[test]
    fn eight_h100_fit_d20() {
        let f = check(
            &expectation("d20"),
            &GpuInventory::uniform(8, "NVIDIA H100 80GB HBM3", 79.6, (9, 0), "580.65.06"),
            ROOMY,
        );
        assert!(passed(&f), "{f:#?}");
    }

    #[test]
    fn no_driver_refuses_gpu_presets_and_only_cpu_presets_fit() {
        let none = GpuInventory { unavailable_reason: Some("libnvidia-ml.so not found".into()), ..Default::default() };
        let f = check(&expectation("d20"), &none, ROOMY);
        assert!(!passed(&f));
        assert!(f[0].found.contains("libnvidia-ml.so not found"));
        assert!(passed(&check(&expectation("smoke"), &none, ROOMY)));
        assert_eq!(fitting_presets(&none, ROOMY), vec!["smoke".to_string(), "gpt2-smoke".to_string()]);
    }

    #[test]
    fn each_shortfall_names_what_was_found_needed_and_a_way_out() {
        let m = GpuInventory::uniform(4, "NVIDIA A100-SXM4-40GB", 39.4, (8, 0), "575.1");
        let f = check(&expectation("d20"), &m, Some(DiskState { free_gib: 10.0, used_by_base_dir_gib: 5.0 }));
        let failed: Vec<&str> = f.iter().filter(|x| x.verdict == Verdict::Fail).map(|x| x.check.as_str()).collect();
        assert_eq!(failed, ["NVIDIA driver", "GPU count", "memory per GPU", "disk"]);
        let count = f.iter().find(|x| x.check == "GPU count").unwrap();
        assert!(
            count.hint.as_ref().unwrap().contains("--allow-mismatch") && count.hint.as_ref().unwrap().contains("2.0x")
        );
        let mem = f.iter().find(|x| x.check == "memory per GPU").unwrap();
        assert!(mem.hint.as_ref().unwrap().contains("device_batch_size"));
        let disk = f.iter().find(|x| x.check == "disk").unwrap();
        assert!(disk.needed.starts_with("35.0 GiB more"), "{disk:?}");
    }

    #[test]
    fn the_doctor_refuses_a_cuda_preset_whatever_the_probe_says_unless_cuda_starts() {
        use crate::hw::cuda_backend::{diagnose, CudaBackend, CudaHost};
        let (d20, smoke) = (expectation("d20"), expectation("smoke"));
        let h100s = GpuInventory::uniform(8, "NVIDIA H100 80GB HBM3", 79.6, (9, 0), "580.65.06");
        let host = CudaHost::default();
        let verdict = |expect: &HardwareExpectation, m: &GpuInventory, probe: &CudaBackend, allow: bool| {
            let mut f = check(expect, m, ROOMY);
            f.extend(check_cuda(expect, &diagnose(probe, m, &host)));
            (outcome(&f, allow), f)
        };
        let failures = [
            CudaBackend::NotLinked {
                message: "Could not run 'aten::empty' with arguments from the 'CUDA' backend".into(),
            },
            CudaBackend::NoDriver { message: "Found no NVIDIA driver on your system.".into() },
            CudaBackend::DriverTooOld { message: "too old (found version 12080)".into() },
            CudaBackend::NoDevice { message: "No CUDA GPUs are available".into() },
            CudaBackend::InitFailed { code: Some(802), message: "system not yet initialized".into() },
            CudaBackend::InitFailed { code: Some(999), message: "unknown error".into() },
            CudaBackend::InitFailed { code: None, message: "something else".into() },
        ];
        for probe in &failures {
            for allow in [false, true] {
                let (o, f) = verdict(&d20, &h100s, probe, allow);
                assert_eq!(o, Outcome::Refused, "{probe:?} allow={allow}");
                let cuda = f.iter().find(|x| x.check == "CUDA").unwrap();
                assert_eq!(cuda.verdict, Verdict::Blocked);
                assert!(cuda.hint.as_ref().is_some_and(|h| h.len() > 20), "{cuda:?}");
            }
            // A CPU preset does not ask for CUDA, so no CUDA finding and no refusal.
            assert_eq!(verdict(&smoke, &h100s, probe, false).0, Outcome::Pass, "{probe:?}");
        }
        let ok = CudaBackend::Available { devices: 8, name: "NVIDIA H100 80GB HBM3".into() };
        assert_eq!(verdict(&d20, &h100s, &ok, false).0, Outcome::Pass);
        // Four GPUs where eight are expected: a mismatch that --allow-mismatch may override.
        let four = GpuInventory::uniform(4, "NVIDIA H100 80GB HBM3", 79.6, (9, 0), "580.65.06");
        let four_ok = CudaBackend::Available { devices: 4, name: "NVIDIA H100 80GB HBM3".into() };
        assert_eq!(verdict(&d20, &four, &four_ok, false).0, Outcome::Refused);
        assert_eq!(verdict(&d20, &four, &four_ok, true).0, Outcome::MismatchAllowed);
    }

    #[test]
    fn small_shm_warns_only_when_several_gpus_share_the_host() {
        let d20 = expectation("d20");
        let f = check_shm(&d20, Some(64 << 20)).unwrap();
        assert_eq!(f.verdict, Verdict::Warn);
        assert!(f.found == "64 MiB" && f.hint.as_ref().unwrap().contains("--shm-size 16g"), "{f:?}");
        assert!(check_shm(&d20, Some(16 << 30)).is_none());
        let one_gpu = HardwareExpectation { gpus: 1, ..d20.clone() };
        assert!(check_shm(&one_gpu, Some(64 << 20)).is_none());
        assert!(check_shm(&expectation("smoke"), Some(64 << 20)).is_none());
    }

    #[test]
    fn old_gpus_and_busy_gpus() {
        let mut m = GpuInventory::uniform(8, "Tesla V100-SXM2-32GB", 80.0, (7, 0), "580.1");
        m.gpus[3].processes.push(crate::hw::gpu::GpuProcess { pid: 7, used_memory_mib: Some(1000) });
        let f = check(&expectation("d20"), &m, ROOMY);
        assert_eq!(f.iter().find(|x| x.check == "compute capability").unwrap().verdict, Verdict::Fail);
        let busy = f.iter().find(|x| x.check == "GPUs in use").unwrap();
        assert_eq!(busy.verdict, Verdict::Warn);
        assert!(busy.found.contains("GPU 3"));
    }
}
