//! The binary is CUDA-capable even though it was built (and runs here) without a GPU: libtorch_cuda
//! is linked, so a CUDA tensor fails for want of a driver, never for want of a CUDA backend.
use std::process::Command;

use nanochat::hw::{CudaBackend, GpuInventory};

#[test]
fn creating_a_cuda_tensor_names_the_driver_not_a_missing_backend() {
    let probe = CudaBackend::probe();
    assert!(probe.is_linked(), "libtorch_cuda is not linked: {probe:?}");
    if GpuInventory::probe().driver_version.is_none() {
        assert!(matches!(&probe, CudaBackend::NoDriver { message } if message.contains("NVIDIA driver")), "{probe:?}");
    }
}

#[test]
fn binary_needs_libtorch_cuda_and_runs_without_ld_library_path() {
    let exe = env!("CARGO_BIN_EXE_nanochat");
    let elf = Command::new("readelf").args(["-d", exe]).output().expect("readelf (binutils) is installed");
    let dynamic = String::from_utf8_lossy(&elf.stdout);
    assert!(dynamic.contains("[libtorch_cuda.so]"), "{dynamic}");
    assert!(dynamic.contains("RUNPATH") && dynamic.contains("torch/lib"), "{dynamic}");
    let out = Command::new(exe).arg("--version").env_remove("LD_LIBRARY_PATH").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("libtorch 2.11.0"));
}
