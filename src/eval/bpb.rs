//! Bits per byte (NANOCHAT.md §6.2): per-token cross-entropy in nats, summed over targets whose token
//! has a byte length > 0 (special tokens and ignored targets count neither nats nor bytes), divided by
//! ln 2 times the total bytes. Independent of the vocabulary, so tokenizers can be compared.
use tch::{Kind, Tensor};

use crate::model::Gpt;

/// Sums of nats and bytes over some batches; add partial sums across ranks before [`BpbTotals::bpb`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BpbTotals {
    pub nats: f64,
    pub bytes: f64,
    /// Targets counted (those with bytes).
    pub tokens: f64,
}

impl BpbTotals {
    /// ∞ when no byte was seen (as the reference).
    pub fn bpb(&self) -> f64 {
        if self.bytes > 0.0 {
            self.nats / (std::f64::consts::LN_2 * self.bytes)
        } else {
            f64::INFINITY
        }
    }

    /// Mean cross-entropy in nats over the counted targets (the loss behind the bpb).
    pub fn nats_per_token(&self) -> f64 {
        if self.tokens > 0.0 {
            self.nats / self.tokens
        } else {
            f64::INFINITY
        }
    }

    pub fn add(&mut self, other: BpbTotals) {
        self.nats += other.nats;
        self.bytes += other.bytes;
        self.tokens += other.tokens;
    }

    /// The totals of every process added up.
    pub fn summed_over(&self, cluster: &crate::dist::Cluster<'_>) -> Result<Self, crate::dist::DistError> {
        let v = cluster.reduce(&[self.nats, self.bytes, self.tokens], crate::dist::ReduceOp::Sum)?;
        Ok(BpbTotals { nats: v[0], bytes: v[1], tokens: v[2] })
    }
}

/// Nats and bytes of one (inputs, targets) batch. `token_bytes` is an int tensor (vocab,) on the
/// model's device; targets may contain −1 (ignored). The per-token losses come a chunk of positions
/// at a time ([`Gpt::token_losses`]), so the batch's full-vocabulary logits never exist at once.
pub fn batch_totals(model: &Gpt, inputs: &Tensor, targets: &Tensor, token_bytes: &Tensor) -> BpbTotals {
    tch::no_grad(|| {
        let loss = model.token_losses(inputs, targets);
        let y = targets.view([-1]);
        let valid = y.ge(0);
        let safe = y.where_self(&valid, &y.zeros_like());
        let nbytes =
            token_bytes.index_select(0, &safe).where_self(&valid, &safe.zeros_like().to_kind(token_bytes.kind()));
        let counted = nbytes.gt(0).to_kind(Kind::Float);
        BpbTotals {
            nats: (loss * &counted).sum(Kind::Double).double_value(&[]),
            bytes: nbytes.sum(Kind::Double).double_value(&[]),
            tokens: counted.sum(Kind::Double).double_value(&[]),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GptConfig;
    use tch::Device;

    #[test]
    fn uniform_model_scores_log2_vocab_per_token_over_its_bytes() {
        // A fresh model predicts uniformly (lm_head is zero): every counted token costs ln(V) nats.
        tch::manual_seed(3);
        let mut model = Gpt::new(GptConfig::from_depth(1, 64, 8), Device::Cpu).unwrap();
        model.init_weights();
        // Tokens 0..=1 are "special" (0 bytes), the others 2 bytes each.
        let token_bytes = Tensor::from_slice(&[0i32, 0].iter().chain([2i32; 62].iter()).copied().collect::<Vec<_>>());
        let x = Tensor::from_slice(&[5i64, 6, 7, 8, 9, 10, 11, 12]).view([1, 8]);
        let y = Tensor::from_slice(&[6i64, 0, -1, 9, 10, 11, 12, 13]).view([1, 8]);
        let t = batch_totals(&model, &x, &y, &token_bytes);
        assert_eq!(t.bytes, 12.0, "6 counted targets x 2 bytes; the special and the ignored one add none");
        assert!((t.nats - 6.0 * 64f64.ln()).abs() < 1e-4, "{t:?}");
        assert_eq!(t.tokens, 6.0);
        assert!((t.nats_per_token() - 64f64.ln()).abs() < 1e-5);
        assert!((t.bpb() - 6.0 * 64f64.ln() / (std::f64::consts::LN_2 * 12.0)).abs() < 1e-5);
        assert_eq!(BpbTotals::default().bpb(), f64::INFINITY);
    }
}
