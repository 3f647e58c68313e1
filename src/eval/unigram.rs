//! The unigram baseline in bits per byte: the cost of predicting every counted target token from
//! its own frequency in the same tokens (an upper bound on what any model that learned nothing
//! beyond token frequencies achieves). A trained model must land clearly below it.
use std::collections::HashMap;

use tch::Tensor;

/// Token counts and bytes of the targets seen so far (special tokens and −1 excluded).
#[derive(Debug, Default, Clone)]
pub struct UnigramCounts {
    counts: HashMap<i64, u64>,
    bytes: f64,
}

impl UnigramCounts {
    pub fn add(&mut self, targets: &Tensor, token_bytes: &[u32]) {
        let ids: Vec<i64> = Vec::try_from(targets.flatten(0, -1).to_device(tch::Device::Cpu)).unwrap_or_default();
        for id in ids {
            let Some(&nb) = usize::try_from(id).ok().and_then(|i| token_bytes.get(i)) else { continue };
            if nb > 0 {
                *self.counts.entry(id).or_default() += 1;
                self.bytes += nb as f64;
            }
        }
    }

    /// Σ −log2 p(t) over the counted tokens, divided by their bytes.
    pub fn bpb(&self) -> f64 {
        let total: u64 = self.counts.values().sum();
        if total == 0 || self.bytes == 0.0 {
            return f64::INFINITY;
        }
        let bits: f64 = self.counts.values().map(|&c| c as f64 * -(c as f64 / total as f64).log2()).sum();
        bits / self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_equally_likely_one_byte_tokens_cost_one_bit_per_byte() {
        let mut u = UnigramCounts::default();
        let token_bytes = [0u32, 1, 1, 2];
        u.add(&Tensor::from_slice(&[1i64, 2, 1, 2, 0, -1]), &token_bytes);
        assert!((u.bpb() - 1.0).abs() < 1e-12, "{}", u.bpb());
        u.add(&Tensor::from_slice(&[3i64, 3, 3, 3]), &token_bytes);
        // p = 1/4, 1/4, 1/2 over 8 tokens and 12 bytes: (2·2 + 2·2 + 4·1) / 12 = 1.
        assert!((u.bpb() - 1.0).abs() < 1e-12, "{}", u.bpb());
        assert_eq!(UnigramCounts::default().bpb(), f64::INFINITY);
    }
}
