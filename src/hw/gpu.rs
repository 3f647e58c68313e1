//! GPU inventory through NVML (nvml-wrapper loads libnvidia-ml at run time, so the binary starts on
//! machines without a driver and reports that plainly).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuProcess {
    pub pid: u32,
    pub used_memory_mib: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuInfo {
    pub index: u32,
    pub name: String,
    pub memory_total_gib: f64,
    pub memory_used_gib: f64,
    pub compute_capability: (i32, i32),
    pub utilization_percent: Option<u32>,
    pub processes: Vec<GpuProcess>,
}

impl GpuInfo {
    pub fn compute_capability_value(&self) -> f64 {
        self.compute_capability.0 as f64 + self.compute_capability.1 as f64 / 10.0
    }
}

/// What NVML reports; `driver_version` is None when no NVIDIA driver could be loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GpuInventory {
    pub driver_version: Option<String>,
    pub cuda_driver_version: Option<String>,
    pub gpus: Vec<GpuInfo>,
    /// Why NVML is unavailable (no driver, library not found, ...).
    pub unavailable_reason: Option<String>,
}

impl GpuInventory {
    pub fn probe() -> Self {
        match probe_nvml() {
            Ok(inventory) => inventory,
            Err(nvml_wrapper::error::NvmlError::LibloadingError(_)) => GpuInventory {
                unavailable_reason: Some("no NVIDIA driver: libnvidia-ml.so.1 not found".into()),
                ..Default::default()
            },
            Err(e) => GpuInventory { unavailable_reason: Some(format!("NVML: {e}")), ..Default::default() },
        }
    }

    pub fn driver_major(&self) -> Option<u32> {
        self.driver_version.as_deref()?.split('.').next()?.parse().ok()
    }

    /// e.g. "8 x NVIDIA H100 80GB HBM3" or "none".
    pub fn summary(&self) -> String {
        match self.gpus.first() {
            None => "none".to_string(),
            Some(first) if self.gpus.iter().all(|g| g.name == first.name) => {
                format!("{} x {}", self.gpus.len(), first.name)
            }
            Some(_) => self.gpus.iter().map(|g| g.name.clone()).collect::<Vec<_>>().join(", "),
        }
    }

    pub fn total_memory_gib(&self) -> f64 {
        self.gpus.iter().map(|g| g.memory_total_gib).sum()
    }
}

fn probe_nvml() -> Result<GpuInventory, nvml_wrapper::error::NvmlError> {
    let nvml = nvml_wrapper::Nvml::init()?;
    let driver_version = nvml.sys_driver_version().ok();
    let cuda_driver_version = nvml.sys_cuda_driver_version().ok().map(|v| {
        format!("{}.{}", nvml_wrapper::cuda_driver_version_major(v), nvml_wrapper::cuda_driver_version_minor(v))
    });
    let mut gpus = Vec::new();
    for index in 0..nvml.device_count()? {
        let device = nvml.device_by_index(index)?;
        let memory = device.memory_info()?;
        let cc = device.cuda_compute_capability()?;
        let processes = device
            .running_compute_processes()
            .unwrap_or_default()
            .into_iter()
            .map(|p| GpuProcess {
                pid: p.pid,
                used_memory_mib: match p.used_gpu_memory {
                    nvml_wrapper::enums::device::UsedGpuMemory::Used(bytes) => Some(bytes >> 20),
                    nvml_wrapper::enums::device::UsedGpuMemory::Unavailable => None,
                },
            })
            .collect();
        gpus.push(GpuInfo {
            index,
            name: device.name()?,
            memory_total_gib: memory.total as f64 / GIB,
            memory_used_gib: memory.used as f64 / GIB,
            compute_capability: (cc.major, cc.minor),
            utilization_percent: device.utilization_rates().ok().map(|u| u.gpu),
            processes,
        });
    }
    Ok(GpuInventory { driver_version, cuda_driver_version, gpus, unavailable_reason: None })
}

pub const GIB: f64 = (1u64 << 30) as f64;

#[cfg(test)]
impl GpuInventory {
    /// A test machine: `n` idle GPUs of one kind under `driver` (CUDA 13.0).
    pub(crate) fn uniform(n: usize, name: &str, memory_gib: f64, cc: (i32, i32), driver: &str) -> Self {
        GpuInventory {
            driver_version: Some(driver.into()),
            cuda_driver_version: Some("13.0".into()),
            gpus: (0..n)
                .map(|i| GpuInfo {
                    index: i as u32,
                    name: name.into(),
                    memory_total_gib: memory_gib,
                    memory_used_gib: 0.5,
                    compute_capability: cc,
                    utilization_percent: Some(0),
                    processes: vec![],
                })
                .collect(),
            unavailable_reason: None,
        }
    }
}
