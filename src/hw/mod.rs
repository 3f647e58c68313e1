//! Hardware: GPUs through NVML, host facts, whether CUDA starts (and why not), the device a command runs on,
//! and the preflight that checks them against a preset (`nanochat doctor`).
pub mod cuda_backend;
pub mod device;
pub mod gpu;
pub mod peak_flops;
pub mod preflight;
pub mod system;

pub use cuda_backend::{CudaBackend, CudaHost, CudaUnavailable};
pub use gpu::{GpuInfo, GpuInventory};
pub use system::SystemInfo;
