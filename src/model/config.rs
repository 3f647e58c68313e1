//! GPT sizing (NANOCHAT.md §3.1): everything follows from the depth. Also the parameter count (§3.1)
//! and the FLOPs-per-token estimate (§3.6) that set the training horizon and MFU.
use serde::{Deserialize, Serialize};

/// The reference's `model_config` (checkpoint meta, §8.1), same field names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GptConfig {
    pub sequence_len: i64,
    pub vocab_size: i64,
    pub n_layer: i64,
    pub n_head: i64,
    pub n_kv_head: i64,
    pub n_embd: i64,
}

/// A model configuration the attention layout cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("n_embd {n_embd} is not divisible by n_head {n_head}")]
    HeadsDoNotDivideWidth { n_embd: i64, n_head: i64 },
    #[error("n_head {n_head} is not a multiple of n_kv_head {n_kv_head}")]
    KvHeads { n_head: i64, n_kv_head: i64 },
    #[error("head_dim {0} must be even for rotary embeddings")]
    OddHeadDim(i64),
}

/// The vocab of wte and lm_head is padded to a multiple of this (§3.2, `bc51da8`).
pub const VOCAB_PAD_MULTIPLE: i64 = 64;
/// Target head dimension: heads = ceil(d / 128) (§3.1).
pub const TARGET_HEAD_DIM: i64 = 128;
/// Model width per layer of depth (§3.1).
pub const DIM_PER_LAYER: i64 = 64;

impl GptConfig {
    /// d = 64·depth, heads = max(1, ceil(d/128)), one KV head per query head (§3.1).
    pub fn from_depth(depth: i64, vocab_size: i64, sequence_len: i64) -> Self {
        let n_embd = depth * DIM_PER_LAYER;
        let n_head = ((n_embd + TARGET_HEAD_DIM - 1) / TARGET_HEAD_DIM).max(1);
        GptConfig { sequence_len, vocab_size, n_layer: depth, n_head, n_kv_head: n_head, n_embd }
    }

    pub fn head_dim(&self) -> i64 {
        self.n_embd / self.n_head
    }

    pub fn padded_vocab_size(&self) -> i64 {
        (self.vocab_size + VOCAB_PAD_MULTIPLE - 1) / VOCAB_PAD_MULTIPLE * VOCAB_PAD_MULTIPLE
    }

    /// Checks the divisibility rules the attention layout relies on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.n_head <= 0 || self.n_embd % self.n_head != 0 {
            return Err(ConfigError::HeadsDoNotDivideWidth { n_embd: self.n_embd, n_head: self.n_head });
        }
        if self.n_kv_head <= 0 || self.n_kv_head > self.n_head || self.n_head % self.n_kv_head != 0 {
            return Err(ConfigError::KvHeads { n_head: self.n_head, n_kv_head: self.n_kv_head });
        }
        if self.head_dim() % 2 != 0 {
            return Err(ConfigError::OddHeadDim(self.head_dim()));
        }
        Ok(())
    }

    pub fn embedding_params(&self) -> i64 {
        self.padded_vocab_size() * self.n_embd
    }

    /// Matrices of one transformer block: c_q, c_k, c_v, attn c_proj, mlp c_fc, mlp c_proj.
    pub fn block_params(&self) -> i64 {
        let d = self.n_embd;
        let kv = self.n_kv_head * self.head_dim();
        d * d + 2 * kv * d + d * d + 8 * d * d
    }

    /// All parameters, embeddings included (the horizon uses this, §4.4).
    pub fn num_params(&self) -> i64 {
        2 * self.embedding_params() + self.n_layer * self.block_params()
    }

    /// 6·(N − N_wte) + 12·L·H·hd·T (§3.6).
    pub fn flops_per_token(&self) -> i64 {
        6 * (self.num_params() - self.embedding_params())
            + 12 * self.n_layer * self.n_head * self.head_dim() * self.sequence_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_sizes() {
        // §3.1 table and §3.6.
        let d20 = GptConfig::from_depth(20, 65_536, 2048);
        assert_eq!((d20.n_embd, d20.n_head, d20.head_dim()), (1280, 10, 128));
        assert_eq!(d20.num_params(), 560_988_160);
        assert_eq!(d20.flops_per_token(), 3_491_758_080);
        assert_eq!(GptConfig::from_depth(26, 65_536, 2048).num_params(), 1_081_999_360);
        assert_eq!(GptConfig::from_depth(32, 65_536, 2048).num_params(), 1_879_048_192);
        assert_eq!(GptConfig::from_depth(34, 65_536, 2048).num_params(), 2_217_082_880);
        let tiny = GptConfig::from_depth(1, 4_000, 64);
        assert_eq!((tiny.n_embd, tiny.n_head, tiny.padded_vocab_size()), (64, 1, 4_032));
        assert!(tiny.validate().is_ok());
    }
}
