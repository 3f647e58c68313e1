//! A c10d process group on tch tensors: NCCL for CUDA tensors, Gloo for CPU ones, rendezvous through
//! a TCPStore on the master. Errors carry c10d's own message. Every rank must issue the same
//! collectives in the same order (DESIGN.md). Each collective has an `_async` form that starts it and
//! returns a [`Work`]; the plain form starts it and waits.
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CString};
use std::marker::PhantomData;
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
    raw: *mut c_void,
    pub rank: usize,
    pub world_size: usize,
    pub backend: Backend,
    /// The collectives started since [`ProcessGroup::start_trace`], while tracing.
    trace: RefCell<Option<Vec<&'static str>>>,
}

/// A collective in flight, started by one of [`ProcessGroup`]'s `_async` methods. Until
/// [`Work::wait`] returns, its tensors must be neither read nor written; it holds handles to them, so
/// they stay allocated while it lives.
///
/// The wait, on Gloo, blocks until the collective has finished (an error after the group's timeout)
/// and then divides an average by the world size (Gloo only sums). On NCCL it makes the thread's
/// current CUDA stream wait for the collective and returns without blocking the host, as PyTorch's
/// `work.wait()`; c10d's watchdog enforces the group's timeout (src/dist/c10d_shim.cpp).
///
/// Dropping a `Work` without waiting detaches it: c10d runs the collective to completion on its own
/// references to the tensors, and later collectives of the group are unaffected, but the tensors'
/// contents are unspecified from then on (an average on Gloo is left a sum; on CUDA no later kernel is
/// ordered after it).
#[must_use = "a collective's result is defined only after `wait`"]
pub struct Work<'pg> {
    raw: *mut c_void,
    op: &'static str,
    _tensors: Vec<Tensor>,
    _group: PhantomData<&'pg ProcessGroup>,
}

impl Work<'_> {
    /// Waits for the collective as described on [`Work`]; its error, if it failed.
    pub fn wait(self) -> Result<(), DistError> {
        // SAFETY: raw is a live handle from the shim, freed only by Drop; err points to `len` bytes.
        call(self.op, |err, len| unsafe { ffi::nc_work_wait(self.raw, err, len) })
    }
}

impl Drop for Work<'_> {
    fn drop(&mut self) {
        // SAFETY: raw came from a successful start and is freed once; the group outlives 'pg.
        unsafe { ffi::nc_work_free(self.raw) }
    }
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
        Ok(ProcessGroup { raw, rank, world_size, backend, trace: RefCell::new(None) })
    }

    /// Starts recording which collectives this group starts ("all_reduce", "reduce_scatter",
    /// "all_gather", "broadcast", "barrier"), in order, discarding any earlier record.
    pub fn start_trace(&self) {
        *self.trace.borrow_mut() = Some(Vec::new());
    }

    /// The collectives started since [`ProcessGroup::start_trace`], in order; stops recording.
    pub fn take_trace(&self) -> Vec<&'static str> {
        self.trace.borrow_mut().take().unwrap_or_default()
    }

    fn record(&self, op: &'static str) {
        if let Some(trace) = self.trace.borrow_mut().as_mut() {
            trace.push(op);
        }
    }

    /// Runs a shim call that starts `op` on `tensors` and hands back its work handle.
    fn start(
        &self,
        op: &'static str,
        mut tensors: Vec<Tensor>,
        f: impl FnOnce(&mut [Tensor], *mut *mut c_void, *mut c_char, usize) -> i32,
    ) -> Result<Work<'_>, DistError> {
        let mut raw = std::ptr::null_mut();
        call(op, |err, len| f(&mut tensors, &mut raw, err, len))?;
        self.record(op);
        Ok(Work { raw, op, _tensors: tensors, _group: PhantomData })
    }

    pub fn all_reduce_async(&self, t: &Tensor, op: ReduceOp) -> Result<Work<'_>, DistError> {
        check_contiguous("all_reduce", &[t])?;
        self.start("all_reduce", vec![t.shallow_clone()], |ts, work, err, len| {
            // SAFETY: raw is a live group; the tensor is a valid at::Tensor, kept alive by the Work.
            unsafe { ffi::nc_allreduce(self.raw, ts[0].as_mut_ptr(), op as i32, work, err, len) }
        })
    }

    /// `input` holds world_size × output.numel() elements, rank-major; this rank gets its reduced slice.
    pub fn reduce_scatter_async(&self, output: &Tensor, input: &Tensor, op: ReduceOp) -> Result<Work<'_>, DistError> {
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
        self.start("reduce_scatter", vec![output.shallow_clone(), input.shallow_clone()], |ts, work, err, len| {
            let (out, rest) = ts.split_at_mut(1);
            // SAFETY: as in all_reduce_async.
            unsafe {
                ffi::nc_reduce_scatter(self.raw, out[0].as_mut_ptr(), rest[0].as_mut_ptr(), op as i32, work, err, len)
            }
        })
    }

    /// `output` receives world_size × input.numel() elements, rank-major.
    pub fn all_gather_async(&self, output: &Tensor, input: &Tensor) -> Result<Work<'_>, DistError> {
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
        self.start("all_gather", vec![output.shallow_clone(), input.shallow_clone()], |ts, work, err, len| {
            let (out, rest) = ts.split_at_mut(1);
            // SAFETY: as in all_reduce_async.
            unsafe { ffi::nc_all_gather(self.raw, out[0].as_mut_ptr(), rest[0].as_mut_ptr(), work, err, len) }
        })
    }

    pub fn broadcast_async(&self, t: &Tensor, root: usize) -> Result<Work<'_>, DistError> {
        check_contiguous("broadcast", &[t])?;
        self.start("broadcast", vec![t.shallow_clone()], |ts, work, err, len| {
            // SAFETY: as in all_reduce_async.
            unsafe { ffi::nc_broadcast(self.raw, ts[0].as_mut_ptr(), root as i32, work, err, len) }
        })
    }

    pub fn all_reduce(&self, t: &mut Tensor, op: ReduceOp) -> Result<(), DistError> {
        self.all_reduce_async(t, op)?.wait()
    }

    /// [`ProcessGroup::reduce_scatter_async`], waited for.
    pub fn reduce_scatter(&self, output: &mut Tensor, input: &mut Tensor, op: ReduceOp) -> Result<(), DistError> {
        self.reduce_scatter_async(output, input, op)?.wait()
    }

    /// [`ProcessGroup::all_gather_async`], waited for.
    pub fn all_gather(&self, output: &mut Tensor, input: &mut Tensor) -> Result<(), DistError> {
        self.all_gather_async(output, input)?.wait()
    }

    pub fn broadcast(&self, t: &mut Tensor, root: usize) -> Result<(), DistError> {
        self.broadcast_async(t, root)?.wait()
    }

    /// Returns once every rank has reached it (on NCCL the host also waits for the current CUDA stream).
    pub fn barrier(&self) -> Result<(), DistError> {
        self.record("barrier");
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
