//! Rotary position embeddings (NANOCHAT.md §3.3): base 10,000 (100,000 at 92d63d4, §12.7), half-split
//! pairing, rotation by −θ, angles in fp32 then cos/sin rounded to bf16 (to the compute dtype at
//! 92d63d4), cached for 10× the sequence length.
use tch::{Device, Kind, Tensor};

use super::config::ROTARY_BASE;

/// The cache covers this many times the training sequence length (§3.3).
pub const ROTARY_OVERCOMPUTE: i64 = 10;

/// (cos, sin), each (1, seq_len, 1, head_dim/2) in bf16, base 10,000 (late 2025).
pub fn precompute(seq_len: i64, head_dim: i64, device: Device) -> (Tensor, Tensor) {
    precompute_with_base(seq_len, head_dim, ROTARY_BASE, Kind::BFloat16, device)
}

/// (cos, sin), each (1, seq_len, 1, head_dim/2) in `kind`, for rotary base `base`.
pub fn precompute_with_base(seq_len: i64, head_dim: i64, base: i64, kind: Kind, device: Device) -> (Tensor, Tensor) {
    let channels = Tensor::arange_start_step(0, head_dim, 2, (Kind::Float, device));
    // Same op sequence as the reference so the rounded values agree bit for bit: 1/base^(c/hd).
    let inv_freq = Tensor::pow_scalar(base, &(channels / head_dim as f64)).reciprocal();
    let t = Tensor::arange(seq_len, (Kind::Float, device));
    let freqs = t.outer(&inv_freq);
    let shape = [1, seq_len, 1, head_dim / 2];
    (freqs.cos().to_kind(kind).reshape(shape), freqs.sin().to_kind(kind).reshape(shape))
}

/// Rotates (B, T, H, hd) by the given (1, T, 1, hd/2) cos/sin: y1 = x1·cos + x2·sin, y2 = −x1·sin + x2·cos,
/// as one autograd function ([`super::fused_ops::rotary`]).
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    super::fused_ops::rotary(x, cos, sin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_longer_table_extends_the_shorter_one_bit_for_bit() {
        let (cos, sin) = precompute(40, 16, Device::Cpu);
        let (long_cos, long_sin) = precompute(100, 16, Device::Cpu);
        assert!(long_cos.narrow(1, 0, 40).equal(&cos));
        assert!(long_sin.narrow(1, 0, 40).equal(&sin));
    }

    #[test]
    fn positions_past_the_table_are_computed_on_demand() {
        // sequence_len 4 caches 40 positions; a causal model's first 40 logits do not depend on later tokens.
        tch::manual_seed(7);
        let mut model = crate::model::Gpt::new(crate::model::GptConfig::from_depth(1, 64, 4), Device::Cpu).unwrap();
        model.init_weights();
        tch::no_grad(|| {
            for (_, p) in model.named_parameters() {
                let _ = p.shallow_clone().normal_(0.0, 0.1);
            }
        });
        let ids = Tensor::arange(50, (Kind::Int64, Device::Cpu)).remainder(64).view([1, 50]);
        let long = model.forward(&ids, None);
        let short = model.forward(&ids.narrow(1, 0, 40), None);
        assert_eq!(long.size(), [1, 50, 64]);
        assert!(long.narrow(1, 0, 40).allclose(&short, 1e-6, 1e-6, false));
    }
}
