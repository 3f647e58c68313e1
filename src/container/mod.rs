//! `nanochat container run`: the appliance image (docker/Dockerfile) started through the Docker Engine
//! API (bollard) the way a user would start it with `docker run --gpus all ...`: GPU device requests,
//! the cache volume, shared memory and ulimits sized for NCCL, streamed logs, Ctrl-C as a clean stop,
//! report.md copied out, and the container's exit code as ours (DESIGN.md "Layout": container/).
mod container_error;
mod container_spec;
mod gpu_selection;
mod launcher;

pub use container_error::ContainerError;
pub use container_spec::{parse_byte_size, CacheVolume, ContainerSpec, CACHE_DIR_IN_CONTAINER, LAUNCHER_LABEL};
pub use gpu_selection::GpuSelection;
pub use launcher::{run_container, ContainerOutcome, RunOptions};
