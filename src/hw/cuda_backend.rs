//! Whether this process can use CUDA, and if not, why, in words a user can act on.
//!
//! The probe binds the process to one device through libtorch (src/hw/cuda_device.cpp: the device count with
//! libtorch's reasons, `cudaSetDevice`, a first allocation, the device name) and sorts libtorch's answer into
//! [`CudaBackend`]. [`diagnose`] then turns a failure into a [`CudaUnavailable`]: the one cause (no driver, a
//! driver below what the linked CUDA needs, CUDA error N at init, no GPU visible, a container started without
//! `--gpus`, a build without the CUDA backend) and its fix, using what NVML and the host say besides. A preset
//! that asks for CUDA stops on it; it never runs on the CPU instead (DESIGN.md "GPU path").
use std::ffi::c_char;

use serde::{Deserialize, Serialize};

use super::gpu::GpuInventory;

/// The lowest NVIDIA driver branch that runs the CUDA 13 build of the pinned libtorch (DESIGN.md).
pub const MIN_DRIVER_FOR_CUDA13: u32 = 580;

extern "C" {
    fn nc_cuda_bind(
        index: i32,
        devices: *mut i32,
        name: *mut c_char,
        name_len: usize,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

/// What libtorch answered when asked for a CUDA device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CudaBackend {
    /// CUDA works: this many devices are visible, and the probed one has this name.
    Available { devices: usize, name: String },
    /// libtorch_cuda is not linked into the binary: a build problem.
    NotLinked { message: String },
    /// No NVIDIA driver (libcuda) could be loaded.
    NoDriver { message: String },
    /// The driver is older than the CUDA runtime libtorch was built with.
    DriverTooOld { message: String },
    /// The driver loaded but CUDA reports no device.
    NoDevice { message: String },
    /// CUDA failed to initialise; `code` is the CUDA error number when libtorch gives or names it.
    InitFailed { code: Option<u32>, message: String },
}

impl CudaBackend {
    /// Probes device 0.
    pub fn probe() -> Self {
        Self::probe_device(0)
    }

    /// Makes `index` this process's current CUDA device (as `torch.cuda.set_device`) and allocates there.
    pub fn probe_device(index: usize) -> Self {
        let (mut devices, mut name) = (0i32, [0u8; 256]);
        let index = i32::try_from(index).unwrap_or(i32::MAX);
        let outcome = crate::shim::call(|err, len| {
            // SAFETY: `devices` and `name` outlive the call; `name` has `name.len()` writable bytes and `err`
            // points to `len` writable bytes.
            unsafe { nc_cuda_bind(index, &mut devices, name.as_mut_ptr() as *mut c_char, name.len(), err, len) }
        });
        match outcome {
            Ok(()) => {
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                CudaBackend::Available {
                    devices: devices.max(0) as usize,
                    name: String::from_utf8_lossy(&name[..end]).into_owned(),
                }
            }
            Err(message) => Self::classify(&message),
        }
    }

    /// Sorts one of libtorch's CUDA error messages (c10/cuda/CUDAFunctions.cpp's wording).
    pub fn classify(error: &str) -> Self {
        // libtorch's first sentence is the useful part; the rest is advice and a backtrace.
        let first_line = error.lines().find(|l| !l.trim().is_empty()).unwrap_or(error).trim();
        let first_line = first_line.strip_prefix("Internal torch error: ").unwrap_or(first_line);
        let message = match first_line.find(". ") {
            Some(end) => first_line[..=end].trim().to_string(),
            None => first_line.to_string(),
        };
        if error.contains("'CUDA' backend") {
            CudaBackend::NotLinked { message }
        } else if error.contains("driver on your system is too old") || error.contains("driver version is insufficient")
        {
            CudaBackend::DriverTooOld { message: first_line.to_string() }
        } else if error.contains("NVIDIA driver") {
            CudaBackend::NoDriver { message }
        } else if error.contains("No CUDA GPUs are available") || error.contains("no CUDA-capable device") {
            CudaBackend::NoDevice { message }
        } else {
            CudaBackend::InitFailed { code: cuda_error_code(error), message: first_line.to_string() }
        }
    }

    pub fn is_linked(&self) -> bool {
        !matches!(self, CudaBackend::NotLinked { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            CudaBackend::Available { devices, name } => {
                format!("CUDA backend linked, {devices} device(s) usable ({name})")
            }
            CudaBackend::NotLinked { message } => {
                format!("CUDA backend NOT linked into this binary ({message}); rebuild with `make build`")
            }
            CudaBackend::NoDriver { message }
            | CudaBackend::DriverTooOld { message }
            | CudaBackend::NoDevice { message }
            | CudaBackend::InitFailed { message, .. } => {
                format!("CUDA backend linked; no GPU usable here ({message})")
            }
        }
    }
}

/// The CUDA error number in a libtorch message: "Error 802: ..." as c10 prints an unexpected
/// `cudaGetDeviceCount` result, or the runtime's text for the errors seen at init.
fn cuda_error_code(error: &str) -> Option<u32> {
    if let Some(rest) = error.split("Error ").nth(1) {
        if let Ok(code) = rest.split(|c: char| !c.is_ascii_digit()).next().unwrap_or("").parse() {
            return Some(code);
        }
    }
    [("system not yet initialized", 802), ("unknown error", 999), ("initialization failed", 3)]
        .iter()
        .find(|(text, _)| error.to_ascii_lowercase().contains(text))
        .map(|&(_, code)| code)
}

/// Facts about the host that tell the causes apart, besides libtorch's and NVML's answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CudaHost {
    /// Running inside the nanochat image (its Dockerfile sets NANOCHAT_CONTAINER_IMAGE) or a Podman container.
    /// Not /.dockerenv: machines whose root file system was exported from a Docker image carry it too.
    pub in_container: bool,
    /// /dev/nvidiactl exists (the NVIDIA Container Toolkit maps it in with `--gpus`).
    pub nvidia_device_nodes: bool,
    /// The value of CUDA_VISIBLE_DEVICES, when set.
    pub cuda_visible_devices: Option<String>,
}

impl CudaHost {
    pub fn probe() -> Self {
        let exists = |p: &str| std::path::Path::new(p).exists();
        CudaHost {
            in_container: std::env::var_os("NANOCHAT_CONTAINER_IMAGE").is_some() || exists("/run/.containerenv"),
            nvidia_device_nodes: exists("/dev/nvidiactl"),
            cuda_visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        }
    }
}

/// Why CUDA cannot be used here, each with the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CudaUnavailable {
    #[error("this binary was built without libtorch's CUDA backend ({message}); rebuild it with `make build`")]
    NotLinked { message: String },
    #[error(
        "no GPU in this container: it was started without `--gpus` (no /dev/nvidiactl, no NVIDIA driver library); \
         start it with `docker run --gpus all --shm-size 16g ...` on a host with the NVIDIA Container Toolkit"
    )]
    ContainerWithoutGpus,
    #[error(
        "no NVIDIA driver on this machine ({message}); install NVIDIA driver {MIN_DRIVER_FOR_CUDA13} or newer, or run \
         on the CPU with `--preset smoke`"
    )]
    NoDriver { message: String },
    #[error(
        "NVIDIA driver {found} is below what the linked CUDA 13 libtorch needs (driver >= {MIN_DRIVER_FOR_CUDA13}); \
         upgrade the driver (e.g. `sudo apt install nvidia-driver-{MIN_DRIVER_FOR_CUDA13}-server`, then reboot)"
    )]
    DriverTooOld { found: String },
    #[error("CUDA error {code} at init ({message}); {fix}")]
    InitFailed { code: String, message: String, fix: String },
    #[error(
        "no GPU visible: CUDA_VISIBLE_DEVICES={value:?} hides the {seen} GPU(s) the driver sees; unset it or list \
         valid indices (0..{seen})"
    )]
    HiddenByEnv { value: String, seen: usize },
    #[error("the NVIDIA driver loaded but CUDA sees no GPU ({message}); check `nvidia-smi` on this machine")]
    NoDevice { message: String },
}

/// The number of usable devices, or why there are none, from the probe and the host's other facts.
pub fn diagnose(probe: &CudaBackend, inventory: &GpuInventory, host: &CudaHost) -> Result<usize, CudaUnavailable> {
    let container_without_gpus = host.in_container && !host.nvidia_device_nodes;
    let old_driver = inventory.driver_major().is_some_and(|major| major < MIN_DRIVER_FOR_CUDA13);
    match probe {
        CudaBackend::Available { devices, .. } => Ok(*devices),
        CudaBackend::NotLinked { message } => Err(CudaUnavailable::NotLinked { message: message.clone() }),
        CudaBackend::NoDriver { .. } if container_without_gpus => Err(CudaUnavailable::ContainerWithoutGpus),
        CudaBackend::NoDriver { message } => Err(CudaUnavailable::NoDriver { message: message.clone() }),
        CudaBackend::DriverTooOld { message } => {
            let reported = message.split("found version ").nth(1).and_then(|r| r.split(')').next()).unwrap_or("?");
            let found = inventory.driver_version.clone().unwrap_or_else(|| driver_api_version(reported));
            Err(CudaUnavailable::DriverTooOld { found })
        }
        CudaBackend::NoDevice { message } => Err(match &host.cuda_visible_devices {
            Some(value) if !inventory.gpus.is_empty() => {
                CudaUnavailable::HiddenByEnv { value: value.clone(), seen: inventory.gpus.len() }
            }
            _ if container_without_gpus => CudaUnavailable::ContainerWithoutGpus,
            _ => CudaUnavailable::NoDevice { message: message.clone() },
        }),
        CudaBackend::InitFailed { .. } if old_driver => {
            Err(CudaUnavailable::DriverTooOld { found: inventory.driver_version.clone().unwrap_or_default() })
        }
        CudaBackend::InitFailed { code, message } => Err({
            let fix = match code {
                Some(802) => "on an NVSwitch (HGX) machine start the fabric manager, whose version must equal the \
                              driver's: `sudo systemctl start nvidia-fabricmanager`"
                    .to_string(),
                Some(999) => "the driver is in a bad state (often after a GPU fault): reload it or reboot, then check \
                              `nvidia-smi`"
                    .to_string(),
                _ => "check `nvidia-smi` and `dmesg` on this machine; a driver reload or reboot often clears it"
                    .to_string(),
            };
            let code = code.map_or_else(|| "?".to_string(), |c| c.to_string());
            CudaUnavailable::InitFailed { code, message: message.clone(), fix }
        }),
    }
}

/// The CUDA driver API version libtorch prints (e.g. 12020) as "CUDA 12.2 driver".
fn driver_api_version(raw: &str) -> String {
    match raw.trim().parse::<u32>() {
        Ok(v) => format!("with CUDA {}.{} support", v / 1000, (v % 1000) / 10),
        Err(_) => raw.trim().to_string(),
    }
}

/// CUDA device `index` bound to this process, or why it cannot be. NVML and the host are only asked on failure.
pub fn require_device(index: usize) -> Result<(usize, String), CudaUnavailable> {
    let probe = CudaBackend::probe_device(index);
    if let CudaBackend::Available { devices, name } = probe {
        return Ok((devices, name));
    }
    diagnose(&probe, &GpuInventory::probe(), &CudaHost::probe()).map(|devices| (devices, String::new()))
}

/// How many CUDA devices are usable, or why none is, without creating a CUDA context when there are some
/// (a launcher that only counts must not take memory on GPU 0 for the whole run).
pub fn require_devices() -> Result<usize, CudaUnavailable> {
    match tch::Cuda::device_count() {
        n if n > 0 => Ok(n as usize),
        // libtorch's count is 0 both for "none" and for every failure; the probe says which.
        _ => require_device(0).map(|(devices, _)| devices),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nvml(driver: &str, gpus: usize) -> GpuInventory {
        GpuInventory::uniform(gpus, "NVIDIA H100 80GB HBM3", 79.6, (9, 0), driver)
    }

    fn no_nvml() -> GpuInventory {
        GpuInventory { unavailable_reason: Some("libnvidia-ml.so.1 not found".into()), ..Default::default() }
    }

    const BARE_HOST: CudaHost =
        CudaHost { in_container: false, nvidia_device_nodes: false, cuda_visible_devices: None };

    #[test]
    fn classifies_libtorch_messages() {
        let no_driver = "Internal torch error: Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU.\nException raised from ...";
        assert_eq!(
            CudaBackend::classify(no_driver),
            CudaBackend::NoDriver { message: "Found no NVIDIA driver on your system.".into() }
        );
        let unlinked = "Could not run 'aten::empty.memory_format' with arguments from the 'CUDA' backend. This could be because...";
        assert!(matches!(CudaBackend::classify(unlinked), CudaBackend::NotLinked { .. }));
        assert!(!CudaBackend::classify(unlinked).is_linked());
        let too_old =
            "The NVIDIA driver on your system is too old (found version 12020). Please update your GPU driver";
        assert!(matches!(CudaBackend::classify(too_old), CudaBackend::DriverTooOld { .. }));
        assert!(matches!(
            CudaBackend::classify("CUDA error: CUDA driver version is insufficient for CUDA runtime version"),
            CudaBackend::DriverTooOld { .. }
        ));
        assert!(matches!(CudaBackend::classify("No CUDA GPUs are available"), CudaBackend::NoDevice { .. }));
        let fabric = "Unexpected error from cudaGetDeviceCount(). Did you run some cuda functions before calling \
                      NumCudaDevices() that might have already set an error? Error 802: system not yet initialized";
        assert!(matches!(CudaBackend::classify(fabric), CudaBackend::InitFailed { code: Some(802), .. }));
        let unknown = "CUDA unknown error - this may be due to an incorrectly set up environment";
        assert!(matches!(CudaBackend::classify(unknown), CudaBackend::InitFailed { code: Some(999), .. }));
    }

    #[test]
    fn each_probe_result_gets_one_cause_and_its_fix() {
        let ok = CudaBackend::Available { devices: 8, name: "NVIDIA H100 80GB HBM3".into() };
        assert_eq!(diagnose(&ok, &nvml("580.65.06", 8), &BARE_HOST), Ok(8));

        let unlinked = CudaBackend::NotLinked { message: "Could not run".into() };
        let e = diagnose(&unlinked, &nvml("580.65.06", 8), &BARE_HOST).unwrap_err();
        assert!(e.to_string().contains("make build"), "{e}");

        let no_driver = CudaBackend::NoDriver { message: "Found no NVIDIA driver on your system.".into() };
        let e = diagnose(&no_driver, &no_nvml(), &BARE_HOST).unwrap_err();
        assert!(matches!(e, CudaUnavailable::NoDriver { .. }) && e.to_string().contains("--preset smoke"), "{e}");
        let docker = CudaHost { in_container: true, ..BARE_HOST };
        let e = diagnose(&no_driver, &no_nvml(), &docker).unwrap_err();
        assert_eq!(e, CudaUnavailable::ContainerWithoutGpus);
        assert!(e.to_string().contains("--gpus all"), "{e}");

        // Driver 570 with a CUDA 13 libtorch: libtorch says "too old", NVML gives the version to print.
        let too_old = CudaBackend::classify("The NVIDIA driver on your system is too old (found version 12080).");
        let e = diagnose(&too_old, &nvml("570.124.06", 8), &BARE_HOST).unwrap_err();
        assert_eq!(e, CudaUnavailable::DriverTooOld { found: "570.124.06".into() });
        assert!(e.to_string().contains(">= 580"), "{e}");
        // Without NVML the runtime's own version is named.
        let e = diagnose(&too_old, &no_nvml(), &BARE_HOST).unwrap_err();
        assert!(e.to_string().contains("CUDA 12.8"), "{e}");
        // Any init failure under an old driver is the old driver.
        let odd = CudaBackend::InitFailed { code: Some(35), message: "CUDA error: insufficient".into() };
        assert!(matches!(diagnose(&odd, &nvml("535.1", 1), &BARE_HOST), Err(CudaUnavailable::DriverTooOld { .. })));

        let fabric = CudaBackend::InitFailed { code: Some(802), message: "system not yet initialized".into() };
        let e = diagnose(&fabric, &nvml("580.65.06", 8), &BARE_HOST).unwrap_err();
        assert!(e.to_string().starts_with("CUDA error 802 at init") && e.to_string().contains("fabricmanager"), "{e}");
        let bad = CudaBackend::InitFailed { code: Some(999), message: "unknown error".into() };
        assert!(diagnose(&bad, &nvml("580.65.06", 8), &BARE_HOST).unwrap_err().to_string().contains("reboot"));

        let none = CudaBackend::NoDevice { message: "No CUDA GPUs are available".into() };
        let hidden = CudaHost { cuda_visible_devices: Some(String::new()), ..BARE_HOST };
        let e = diagnose(&none, &nvml("580.65.06", 8), &hidden).unwrap_err();
        assert_eq!(e, CudaUnavailable::HiddenByEnv { value: String::new(), seen: 8 });
        assert!(matches!(diagnose(&none, &nvml("580.65.06", 0), &BARE_HOST), Err(CudaUnavailable::NoDevice { .. })));
    }
}
