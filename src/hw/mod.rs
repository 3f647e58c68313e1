//! Hardware: GPUs through NVML, host facts, the libtorch CUDA backend, and the preflight that checks
//! them against a preset (`nanochat doctor`).
pub mod cuda_backend;
pub mod gpu;
pub mod peak_flops;
pub mod preflight;
pub mod system;

pub use cuda_backend::CudaBackend;
pub use gpu::{GpuInfo, GpuInventory};
pub use system::SystemInfo;
