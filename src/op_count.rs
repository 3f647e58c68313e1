//! Operator counts by phase (`nanochat bench train --profile`): how many ATen operators a stretch of
//! work dispatches, how many of them launch a kernel, and how many make the host wait for the device,
//! through libtorch's RecordFunction hook (src/op_count.cpp). A "kernel" here is a leaf operator (one
//! that calls no other operator) that is not metadata-only (views, reshapes, empty allocations): on
//! CUDA that is about one kernel launch each; on the CPU the same count says how many passes over
//! memory the step makes. Host syncs are the operators that read a value back (`.item()`) or whose
//! output size depends on the data (`nonzero`, `masked_select`, ...).
use std::ffi::c_char;

const PHASES: usize = 8;
const COUNTERS: usize = 4;

extern "C" {
    fn nc_opcount_start(err: *mut c_char, err_len: usize) -> i32;
    fn nc_opcount_phase(phase: i32);
    fn nc_opcount_stop(out: *mut u64, err: *mut c_char, err_len: usize) -> i32;
}

/// The counts of one phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Every operator call, nested ones included.
    pub ops: u64,
    /// Calls that called no other operator.
    pub leaves: u64,
    /// Leaves that launch a kernel (not views, reshapes or empty allocations).
    pub kernels: u64,
    /// Calls that make the host wait for the device.
    pub host_syncs: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("operator counting: {0}")]
pub struct OpCountError(String);

/// Counting in progress; [`OpCounter::finish`] stops it. Phases are numbered by the caller (0..8).
pub struct OpCounter {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl OpCounter {
    /// Starts counting, in phase 0, from zero. Counting is process-wide: one counter at a time.
    pub fn start() -> Result<OpCounter, OpCountError> {
        // SAFETY: the buffer and its length come from shim::call.
        crate::shim::call(|err, len| unsafe { nc_opcount_start(err, len) }).map_err(OpCountError)?;
        Ok(OpCounter { _not_send: std::marker::PhantomData })
    }

    /// Counts what follows in `phase` (below 8).
    pub fn phase(&self, phase: usize) {
        assert!(phase < PHASES, "phase {phase} of {PHASES}");
        // SAFETY: stores an integer.
        unsafe { nc_opcount_phase(phase as i32) }
    }

    /// Stops counting; the counts of each phase.
    pub fn finish(self) -> Result<[Counts; PHASES], OpCountError> {
        let mut raw = [0u64; PHASES * COUNTERS];
        // SAFETY: `raw` has the PHASES × COUNTERS values the shim writes.
        crate::shim::call(|err, len| unsafe { nc_opcount_stop(raw.as_mut_ptr(), err, len) }).map_err(OpCountError)?;
        Ok(std::array::from_fn(|p| {
            let c = &raw[p * COUNTERS..(p + 1) * COUNTERS];
            Counts { ops: c[0], leaves: c[1], kernels: c[2], host_syncs: c[3] }
        }))
    }
}
