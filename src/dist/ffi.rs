//! Raw bindings to src/dist/c10d_shim.cpp. Use [`super::ProcessGroup`] instead.
use std::os::raw::{c_char, c_int, c_void};

use torch_sys::C_tensor;

extern "C" {
    pub fn nc_group_new(
        backend: *const c_char,
        master_addr: *const c_char,
        port: c_int,
        rank: c_int,
        world: c_int,
        timeout_ms: c_int,
        err: *mut c_char,
        err_len: usize,
    ) -> *mut c_void;
    pub fn nc_group_free(group: *mut c_void);
    pub fn nc_work_wait(work: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
    pub fn nc_work_free(work: *mut c_void);
    pub fn nc_allreduce(
        group: *mut c_void,
        t: *mut C_tensor,
        op: c_int,
        work: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn nc_reduce_scatter(
        group: *mut c_void,
        output: *mut C_tensor,
        input: *mut C_tensor,
        op: c_int,
        work: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn nc_all_gather(
        group: *mut c_void,
        output: *mut C_tensor,
        input: *mut C_tensor,
        work: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn nc_broadcast(
        group: *mut c_void,
        t: *mut C_tensor,
        root: c_int,
        work: *mut *mut c_void,
        err: *mut c_char,
        err_len: usize,
    ) -> c_int;
    pub fn nc_barrier(group: *mut c_void, err: *mut c_char, err_len: usize) -> c_int;
}
