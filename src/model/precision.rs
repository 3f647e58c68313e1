//! The numeric precision of a model (NANOCHAT.md §3.5, §12 item 6): which dtype the embedding, the
//! residual stream and every matmul compute in. The reference gets bf16 compute on CUDA from a bf16
//! embedding plus autocast; here the same numerics come from an explicit compute dtype: wte is stored
//! in it (so its gradient and Adam moments are bf16 too, §4.3), every other weight stays an fp32 master
//! copy cast to the input's dtype per matmul, RMSNorm computes in fp32 internally, and the logits are
//! cast to fp32 before the soft-cap and the loss.
use std::fmt;

use tch::{Device, Kind};

/// A stage's `dtype` setting: `auto` (bf16 on CUDA, fp32 on CPU), `bfloat16` or `float32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Float32,
    BFloat16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype `{0}`: use auto, bfloat16 or float32")]
pub struct UnknownDtype(pub String);

impl Precision {
    /// What `auto` means on `device`: bf16 on a GPU (as the reference's autocast), fp32 on CPU (where
    /// the CPU equivalence with the reference is checked).
    pub fn auto(device: Device) -> Self {
        if device.is_cuda() {
            Precision::BFloat16
        } else {
            Precision::Float32
        }
    }

    /// Parses a `dtype` setting for `device`.
    pub fn resolve(setting: &str, device: Device) -> Result<Self, UnknownDtype> {
        match setting.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Self::auto(device)),
            "bfloat16" | "bf16" => Ok(Precision::BFloat16),
            "float32" | "fp32" => Ok(Precision::Float32),
            other => Err(UnknownDtype(other.to_string())),
        }
    }

    /// The dtype of the embedding, the residual stream and the matmuls.
    pub fn compute_kind(self) -> Kind {
        match self {
            Precision::Float32 => Kind::Float,
            Precision::BFloat16 => Kind::BFloat16,
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Float32 => "float32",
            Precision::BFloat16 => "bfloat16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_is_bf16_on_cuda_and_fp32_on_cpu() {
        assert_eq!(Precision::resolve("auto", Device::Cpu), Ok(Precision::Float32));
        assert_eq!(Precision::resolve("auto", Device::Cuda(0)), Ok(Precision::BFloat16));
        assert_eq!(Precision::resolve("bfloat16", Device::Cpu), Ok(Precision::BFloat16));
        assert_eq!(Precision::resolve("float32", Device::Cuda(0)), Ok(Precision::Float32));
        assert_eq!(Precision::resolve("half", Device::Cpu), Err(UnknownDtype("half".into())));
        assert_eq!(Precision::BFloat16.compute_kind(), Kind::BFloat16);
    }
}
