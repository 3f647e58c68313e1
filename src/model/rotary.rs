//! Rotary position embeddings (NANOCHAT.md §3.3): base 10,000, half-split pairing, rotation by −θ,
//! angles in fp32 then cos/sin rounded to bf16, cached for 10× the sequence length.
use tch::{Device, Kind, Tensor};

pub const ROTARY_BASE: i64 = 10_000;
/// The cache covers this many times the training sequence length (§3.3).
pub const ROTARY_OVERCOMPUTE: i64 = 10;

/// (cos, sin), each (1, seq_len, 1, head_dim/2) in bf16.
pub fn precompute(seq_len: i64, head_dim: i64, device: Device) -> (Tensor, Tensor) {
    let channels = Tensor::arange_start_step(0, head_dim, 2, (Kind::Float, device));
    // Same op sequence as the reference so the bf16 values agree bit for bit: 1/base^(c/hd).
    let inv_freq = Tensor::pow_scalar(ROTARY_BASE, &(channels / head_dim as f64)).reciprocal();
    let t = Tensor::arange(seq_len, (Kind::Float, device));
    let freqs = t.outer(&inv_freq);
    let shape = [1, seq_len, 1, head_dim / 2];
    (freqs.cos().to_kind(Kind::BFloat16).reshape(shape), freqs.sin().to_kind(Kind::BFloat16).reshape(shape))
}

/// Rotates (B, T, H, hd) by the given (1, T, 1, hd/2) cos/sin: y1 = x1·cos + x2·sin, y2 = −x1·sin + x2·cos.
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Tensor {
    let half = x.size()[3] / 2;
    let x1 = x.narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    let y1 = &x1 * cos + &x2 * sin;
    let y2 = &x1 * (-sin) + &x2 * cos;
    Tensor::cat(&[y1, y2], 3)
}
