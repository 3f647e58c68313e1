//! The Rust side of the C++ shims' error convention (src/shim_guard.h): a shim function takes an error
//! buffer, writes the message of any exception into it and returns non-zero.
use std::ffi::c_char;

/// Room for a message (c10d's errors name hosts, ports and timeouts; longer text is cut).
const ERR_LEN: usize = 4096;

/// Runs `f` with an error buffer and its length; a non-zero return is the buffer's message.
pub(crate) fn call(f: impl FnOnce(*mut c_char, usize) -> i32) -> Result<(), String> {
    let mut buf = [0u8; ERR_LEN];
    if f(buf.as_mut_ptr() as *mut c_char, ERR_LEN) == 0 {
        return Ok(());
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Err(String::from_utf8_lossy(&buf[..end]).trim().to_string())
}
