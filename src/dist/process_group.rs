//! A c10d process group on tch tensors: NCCL for CUDA tensors, Gloo for CPU ones, rendezvous through
//! a TCPStore on the master. Errors carry c10d's own message. Every rank must issue the same
//! collectives in the same order (DESIGN.md).
use std::ffi::{c_char, CString};
use std::time::Duration;

use tch::Tensor;

use super::ffi;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Gloo,
    Nccl,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    Sum = 0,
    Avg = 1,
    Max = 2,
    Min = 3,
}

#[derive(Debug, thiserror::Error)]
#[error("c10d {op} failed: {message}")]
pub struct DistError {
    pub op: &'static str,
    pub message: String,
}

pub struct ProcessGroup {
    raw: *mut std::ffi::c_void,
    pub rank: usize,
    pub world_size: usize,
    pub backend: Backend,
}

// SAFETY: the c10d backend is thread-safe for use from one thread at a time; the handle is moved, not shared.
unsafe impl Send for ProcessGroup {}

fn call(op: &'static str, f: impl FnOnce(*mut c_char, usize) -> i32) -> Result<(), DistError> {
    crate::shim::call(f).map_err(|message| DistError { op, message })
}

fn check_contiguous(op: &'static str, tensors: &[&Tensor]) -> Result<(), DistError> {
    match tensors.iter().find(|t| !t.is_contiguous()) {
        Some(_) => Err(DistError { op, message: "tensors passed to collectives must be contiguous".into() }),
        None => Ok(()),
    }
}

impl ProcessGroup {
    /// Joins the group: rank 0 serves the TCPStore on `master_addr:port`, the others connect to it.
    pub fn new(
        backend: Backend,
        master_addr: &str,
        port: u16,
        rank: usize,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Self, DistError> {
        let invalid = |message: String| DistError { op: "init", message };
        let name = CString::new(backend.name()).map_err(|e| invalid(e.to_string()))?;
        let addr = CString::new(master_addr).map_err(|e| invalid(e.to_string()))?;
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let mut raw = std::ptr::null_mut();
        call("init", |err, len| {
            // SAFETY: the strings outlive the call; err points to `len` writable bytes.
            raw = unsafe {
                ffi::nc_group_new(
                    name.as_ptr(),
                    addr.as_ptr(),
                    port as i32,
                    rank as i32,
                    world_size as i32,
                    timeout_ms,
                    err,
                    len,
                )
            };
            i32::from(raw.is_null())
        })?;
        Ok(ProcessGroup { raw, rank, world_size, backend })
    }

    pub fn all_reduce(&self, t: &mut Tensor, op: ReduceOp) -> Result<(), DistError> {
        check_contiguous("all_reduce", &[t])?;
        // SAFETY: raw is a live group; the tensor pointer is a valid at::Tensor for the call.
        call("all_reduce", |err, len| unsafe { ffi::nc_allreduce(self.raw, t.as_mut_ptr(), op as i32, err, len) })
    }

    /// `input` holds world_size × output.numel() elements, rank-major; this rank gets its reduced slice.
    pub fn reduce_scatter(&self, output: &mut Tensor, input: &mut Tensor, op: ReduceOp) -> Result<(), DistError> {
        check_contiguous("reduce_scatter", &[output, input])?;
        if input.numel() != output.numel() * self.world_size {
            return Err(DistError {
                op: "reduce_scatter",
                message: format!(
                    "input has {} elements, expected {} x {}",
                    input.numel(),
                    self.world_size,
                    output.numel()
                ),
            });
        }
        // SAFETY: as in all_reduce.
        call("reduce_scatter", |err, len| unsafe {
            ffi::nc_reduce_scatter(self.raw, output.as_mut_ptr(), input.as_mut_ptr(), op as i32, err, len)
        })
    }

    /// `output` receives world_size × input.numel() elements, rank-major.
    pub fn all_gather(&self, output: &mut Tensor, input: &mut Tensor) -> Result<(), DistError> {
        check_contiguous("all_gather", &[output, input])?;
        if output.numel() != input.numel() * self.world_size {
            return Err(DistError {
                op: "all_gather",
                message: format!(
                    "output has {} elements, expected {} x {}",
                    output.numel(),
                    self.world_size,
                    input.numel()
                ),
            });
        }
        // SAFETY: as in all_reduce.
        call("all_gather", |err, len| unsafe {
            ffi::nc_all_gather(self.raw, output.as_mut_ptr(), input.as_mut_ptr(), err, len)
        })
    }

    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), DistError> {
        check_contiguous("broadcast", &[t])?;
        // SAFETY: as in all_reduce.
        call("broadcast", |err, len| unsafe { ffi::nc_broadcast(self.raw, t.as_mut_ptr(), root as i32, err, len) })
    }

    pub fn barrier(&self) -> Result<(), DistError> {
        // SAFETY: raw is a live group.
        call("barrier", |err, len| unsafe { ffi::nc_barrier(self.raw, err, len) })
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: raw came from nc_group_new and is freed once.
        unsafe { ffi::nc_group_free(self.raw) }
    }
}
