//! Dense bf16 peak FLOP/s by GPU name, for MFU. The reference [A'] hard-codes the H100 SXM figure
//! (989e12, §4.4); later versions look the device up by name (§11 "MFU"), as here.

/// (substring of the NVML/CUDA device name, dense bf16 FLOP/s), most specific first.
const PEAKS: &[(&str, f64)] = &[
    ("GB200", 2.5e15),
    ("B200", 2.25e15),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("A10G", 70e12),
];

/// Peak bf16 FLOP/s of one GPU called `name`, if known.
pub fn peak_bf16_flops(name: &str) -> Option<f64> {
    PEAKS.iter().find(|(key, _)| name.contains(key)).map(|(_, flops)| *flops)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_devices() {
        assert_eq!(peak_bf16_flops("NVIDIA H100 80GB HBM3"), Some(989e12));
        assert_eq!(peak_bf16_flops("NVIDIA H100 PCIe"), Some(756e12));
        assert_eq!(peak_bf16_flops("NVIDIA A100-SXM4-80GB"), Some(312e12));
        assert_eq!(peak_bf16_flops("NVIDIA H200"), Some(989e12));
        assert_eq!(peak_bf16_flops("Some Future GPU"), None);
    }
}
