//! Multi-process collectives through libtorch's c10d (NCCL on GPU, Gloo on CPU) via a C++ shim
//! compiled by build.rs (DESIGN.md "libtorch and the build").
pub mod cluster;
pub mod env;
mod ffi;
pub mod launcher;
pub mod process_group;

pub use cluster::Cluster;
pub use env::DistContext;
pub use process_group::{Backend, DistError, ProcessGroup, ReduceOp, Work};
