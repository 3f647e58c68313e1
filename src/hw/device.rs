//! The device a command runs on: the CPU, CUDA (or a stop with the reason: never the CPU instead), or
//! CUDA when it starts and the CPU otherwise (benchmarks, `chat`, `serve` without `--device-type`).
//! A CUDA process is bound to its device (`cudaSetDevice`, as `torch.cuda.set_device(local_rank)`) before
//! anything else touches CUDA, and every choice is logged as `device: cpu` or `device: cuda:N (<name>)`,
//! the line `make gpu-check` reads back from each run's log.
use tch::Device;

use super::cuda_backend::{self, CudaUnavailable};

/// What a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    /// CUDA or an error.
    Cuda,
    /// CUDA when it starts, else the CPU (with a warning when GPUs are present but CUDA fails).
    Auto,
}

impl DeviceChoice {
    /// A preset's `hardware.device`: "cpu" or "cuda".
    pub fn from_preset(device: &str) -> Self {
        if device == "cpu" {
            DeviceChoice::Cpu
        } else {
            DeviceChoice::Cuda
        }
    }
}

/// A `--device` that is none of auto, cpu and cuda.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a device: auto, cpu or cuda")]
pub struct UnknownDevice(pub String);

/// `auto`, `cpu` or `cuda` (the benchmarks' `--device`).
impl std::str::FromStr for DeviceChoice {
    type Err = UnknownDevice;

    fn from_str(s: &str) -> Result<Self, UnknownDevice> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            other => Err(UnknownDevice(other.to_string())),
        }
    }
}

/// The device for local rank `local_rank`, bound to this process when it is a GPU.
pub fn select(choice: DeviceChoice, local_rank: usize) -> Result<Device, CudaUnavailable> {
    let device = match choice {
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Cuda => bind(local_rank)?,
        DeviceChoice::Auto if tch::Cuda::device_count() > 0 => bind(local_rank)?,
        DeviceChoice::Auto => {
            let inventory = super::GpuInventory::probe();
            if !inventory.gpus.is_empty() {
                // libtorch counted none: the probe says why.
                if let Err(cause) = cuda_backend::require_device(0) {
                    log::warn!(
                        "{} GPU(s) present but CUDA does not start: {cause}; running on the CPU",
                        inventory.gpus.len()
                    );
                }
            }
            Device::Cpu
        }
    };
    if device == Device::Cpu {
        log::info!("device: cpu ({} threads)", tch::get_num_threads());
    }
    Ok(device)
}

fn bind(index: usize) -> Result<Device, CudaUnavailable> {
    let (devices, name) = cuda_backend::require_device(index)?;
    log::info!("device: cuda:{index} ({name}; {devices} visible)");
    Ok(Device::Cuda(index))
}

/// Several ranks on one host share its cores: one OpenMP thread each, as torchrun sets, unless the user
/// chose a number (OMP_NUM_THREADS). Returns the threads now in use.
pub fn share_cores_between_ranks(local_world_size: usize) -> i32 {
    if local_world_size > 1 && std::env::var_os("OMP_NUM_THREADS").is_none() {
        tch::set_num_threads(1);
        log::info!("{local_world_size} ranks on this host: 1 OpenMP thread each (set OMP_NUM_THREADS to change)");
    }
    tch::get_num_threads()
}

/// Asks the CUDA caching allocator for expandable segments (less fragmentation at the large, changing
/// shapes of training and evaluation; PyTorch's recommendation for such runs), unless the user configured
/// the allocator. Must run before CUDA is first used; the setting is inherited by launched ranks.
pub fn configure_cuda_allocator() {
    const KEYS: [&str; 2] = ["PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"];
    if KEYS.iter().all(|k| std::env::var_os(k).is_none()) {
        std::env::set_var("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_map_to_choices_and_the_cpu_needs_no_probe() {
        assert_eq!(DeviceChoice::from_preset("cpu"), DeviceChoice::Cpu);
        assert_eq!(DeviceChoice::from_preset("cuda"), DeviceChoice::Cuda);
        assert_eq!(select(DeviceChoice::Cpu, 3), Ok(Device::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceChoice::Cuda));
        assert!("gpu".parse::<DeviceChoice>().unwrap_err().to_string().contains("auto, cpu or cuda"));
    }

    #[test]
    fn cuda_without_a_gpu_is_an_error_and_auto_falls_back_to_the_cpu() {
        if tch::Cuda::device_count() > 0 {
            assert!(matches!(select(DeviceChoice::Cuda, 0), Ok(Device::Cuda(0))));
            return;
        }
        let err = select(DeviceChoice::Cuda, 0).unwrap_err();
        assert!(err.to_string().contains("NVIDIA driver"), "{err}");
        assert_eq!(select(DeviceChoice::Auto, 0), Ok(Device::Cpu));
    }
}
