//! The facts in the report header: build, host, GPUs and cost (NANOCHAT.md §8.2 "Environment").
use serde::Serialize;

use crate::build_info;
use crate::hw::{GpuInventory, SystemInfo};

#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub version: String,
    pub commit: String,
    pub rustc: String,
    pub libtorch: String,
    /// The container image this ran in (NANOCHAT_CONTAINER_IMAGE: set by the image, made exact by the launcher).
    pub container_image: Option<String>,
    pub system: SystemInfo,
    pub gpus: GpuInventory,
}

impl Environment {
    pub fn probe() -> Self {
        Environment {
            version: build_info::VERSION.to_string(),
            commit: build_info::GIT_COMMIT.to_string(),
            rustc: build_info::RUSTC.to_string(),
            libtorch: build_info::LIBTORCH.to_string(),
            container_image: std::env::var("NANOCHAT_CONTAINER_IMAGE").ok().filter(|s| !s.is_empty()),
            system: SystemInfo::probe(),
            gpus: GpuInventory::probe(),
        }
    }
}

/// USD per GPU-hour by GPU name, as the reference's `estimate_cost` (§8.2): H100 3.00, A100 1.79,
/// V100 0.55, anything else 2.00.
pub fn default_gpu_hour_cost(gpu_name: &str) -> f64 {
    if gpu_name.contains("H100") {
        3.00
    } else if gpu_name.contains("A100") {
        1.79
    } else if gpu_name.contains("V100") {
        0.55
    } else {
        2.00
    }
}

/// Hourly cost of the whole machine: a configured per-GPU price (>= 0) or the name table, times the GPUs.
pub fn hourly_rate(gpus: &GpuInventory, configured_per_gpu: f64) -> Option<f64> {
    let first = gpus.gpus.first()?;
    let per_gpu = if configured_per_gpu >= 0.0 { configured_per_gpu } else { default_gpu_hour_cost(&first.name) };
    Some(per_gpu * gpus.gpus.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_h100_cost_24_per_hour() {
        let gpu = crate::hw::GpuInfo {
            index: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            memory_total_gib: 80.0,
            memory_used_gib: 0.0,
            compute_capability: (9, 0),
            utilization_percent: None,
            processes: vec![],
        };
        let inv = GpuInventory { gpus: vec![gpu; 8], ..Default::default() };
        assert_eq!(hourly_rate(&inv, -1.0), Some(24.0));
        assert_eq!(hourly_rate(&inv, 2.5), Some(20.0));
        assert_eq!(hourly_rate(&GpuInventory::default(), -1.0), None);
        assert_eq!(default_gpu_hour_cost("Tesla V100-SXM2-32GB"), 0.55);
        assert_eq!(default_gpu_hour_cost("NVIDIA L4"), 2.0);
    }
}
