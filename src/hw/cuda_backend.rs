//! Whether libtorch's CUDA backend is linked into this binary, found by creating a CUDA tensor.
//! On a machine without a GPU a correctly linked binary fails with "...NVIDIA driver..."; a binary that
//! lost libtorch_cuda.so at link time fails with "Could not run ... 'CUDA' backend" (DESIGN.md).
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CudaBackend {
    /// CUDA works: this many devices are visible.
    Available { devices: usize },
    /// The backend is linked but there is no usable driver; the message is libtorch's.
    NoDriver { message: String },
    /// libtorch_cuda is not linked into the binary: a build problem.
    NotLinked { message: String },
    /// Any other failure (e.g. a driver too old for CUDA 13).
    Failed { message: String },
}

impl CudaBackend {
    pub fn probe() -> Self {
        match tch::Tensor::f_zeros([1], (tch::Kind::Float, tch::Device::Cuda(0))) {
            Ok(_) => CudaBackend::Available { devices: tch::Cuda::device_count().max(0) as usize },
            Err(e) => Self::classify(&e.to_string()),
        }
    }

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
        } else if error.contains("NVIDIA driver") {
            CudaBackend::NoDriver { message }
        } else {
            CudaBackend::Failed { message }
        }
    }

    pub fn is_linked(&self) -> bool {
        !matches!(self, CudaBackend::NotLinked { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            CudaBackend::Available { devices } => {
                format!("CUDA backend linked, {devices} device(s) usable")
            }
            CudaBackend::NoDriver { message } => {
                format!("CUDA backend linked; no GPU usable here ({message})")
            }
            CudaBackend::NotLinked { message } => {
                format!("CUDA backend NOT linked into this binary ({message}); rebuild with `make build`")
            }
            CudaBackend::Failed { message } => format!("CUDA backend linked but failed: {message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(CudaBackend::classify("CUDA driver version is insufficient"), CudaBackend::Failed { .. }));
    }
}
