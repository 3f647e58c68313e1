// The error convention of nanochat's C++ shims (src/dist/c10d_shim.cpp, src/optim/fused_adamw.cpp,
// src/model/fused_ops.cpp, src/hw/cuda_device.cpp,
// src/op_count.cpp, src/checkpoint/torch_pt.cpp): an exported function runs its body through `nc_shim::guarded`, which catches
// every exception, copies its message (c10::Error without backtrace) into the caller's buffer and returns
// non-zero; 0 means success. The Rust side reads the buffer back (src/shim.rs).
#pragma once

#include <c10/util/Exception.h>

#include <cstring>
#include <exception>
#include <string>

namespace nc_shim {

// Copies `text` into the caller's buffer of `len` bytes, cut to fit and NUL-terminated.
inline void copy_out(char* out, size_t len, const std::string& text) {
  if (out && len > 0) {
    std::strncpy(out, text.c_str(), len - 1);
    out[len - 1] = '\0';
  }
}

inline void set_error(char* err, size_t len, const std::string& msg) { copy_out(err, len, msg); }

template <typename F>
int guarded(char* err, size_t len, F&& body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    set_error(err, len, e.what_without_backtrace());
  } catch (const std::exception& e) {
    set_error(err, len, e.what());
  } catch (...) {
    set_error(err, len, "unknown C++ exception");
  }
  return 1;
}

}  // namespace nc_shim
