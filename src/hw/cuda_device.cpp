// Binding this process to one CUDA device through libtorch (src/hw/cuda_backend.rs): the device count with
// libtorch's own reasons when there is none (c10::cuda::device_count_ensure_non_zero says "no NVIDIA driver",
// "driver too old (found version N)", "CUDA error N" where c10::cuda::device_count() would only answer 0), then
// cudaSetDevice (torch.cuda.set_device), a first allocation there, and the device's name. Error convention:
// src/shim_guard.h.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContextLight.h>
#include <c10/cuda/CUDAFunctions.h>

#include "../shim_guard.h"

#include <cstring>

extern "C" {

// Returns 0 and fills `devices` and `name` (NUL-terminated, cut to name_len) on success.
int nc_cuda_bind(int index, int* devices, char* name, size_t name_len, char* err, size_t err_len) {
  return nc_shim::guarded(err, err_len, [&] {
    auto count = c10::cuda::device_count_ensure_non_zero();
    TORCH_CHECK(index >= 0 && index < count, "CUDA device ", index, " requested but ", static_cast<int>(count),
                " device(s) are visible");
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(index));
    at::empty({1}, at::TensorOptions().device(at::kCUDA, index));
    *devices = static_cast<int>(count);
    nc_shim::copy_out(name, name_len, at::cuda::getDeviceProperties(static_cast<c10::DeviceIndex>(index))->name);
  });
}

}  // extern "C"
