//! Base training's sizing and schedules at nanochat 92d63d4 (`scripts/base_train.py`; NANOCHAT.md
//! §4.5, §12 items 3, 7 and 8), next to the late-2025 ones of [`super::schedule`]: the horizon from
//! the target param/data ratio over the scaling parameters, the auto batch size (Power Lines,
//! B_opt ∝ D^0.383 from d12 at 2^19 tokens), the LR and weight-decay scaling by batch size, and the
//! per-step LR multiplier, Muon momentum and Muon weight decay.
//!
//! Python's `round` rounds halves to even, so every `round` of the reference is
//! [`f64::round_ties_even`] here.
use crate::model::GptConfig;

/// The batch size the hyperparameters were tuned at, in tokens (d12's optimum, `B_REF`).
pub const BATCH_REF: i64 = 1 << 19;
/// The model the horizon and batch size are referenced to (`d12_ref`).
pub const DEPTH_REF: i64 = 12;
/// B_opt ∝ D^0.383 (Power Lines, arXiv 2505.13738).
pub const BATCH_EXPONENT: f64 = 0.383;
/// Muon momentum warms up from 0.85 to 0.97 over the first 400 steps, and down to 0.90 during the
/// LR warm-down.
pub const MOMENTUM_WARMUP_STEPS: i64 = 400;
pub const MOMENTUM_START: f64 = 0.85;
pub const MOMENTUM_PEAK: f64 = 0.97;
pub const MOMENTUM_END: f64 = 0.90;

#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum SizingError {
    #[error("target param/data ratio must be positive, got {0}")]
    Ratio(f64),
    #[error("total batch size must be positive, got {0}")]
    BatchSize(i64),
    #[error("number of iterations must be positive, got {0}")]
    Iterations(i64),
}

/// What the user sets (base_train.py's arguments of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizingSettings {
    /// Tokens per scaling parameter (`--target-param-data-ratio`; 12 by default, 8 in the speedrun).
    pub target_param_data_ratio: f64,
    /// `--total-batch-size`; None: the auto batch size.
    pub total_batch_size: Option<i64>,
    /// `--num-iterations`; None: from the ratio.
    pub num_iterations: Option<i64>,
    /// Muon's weight decay at d12 and 2^19 tokens (`--weight-decay`, 0.28).
    pub weight_decay: f64,
}

/// The horizon, batch size and scaled hyperparameters base_train.py derives before training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    /// Transformer matrices (value-embedding gates included) and lm_head: what the scaling laws count.
    pub scaling_params: i64,
    /// ratio · scaling params, truncated (`target_tokens`).
    pub target_tokens: i64,
    /// ratio · d12's scaling params (`D_REF`).
    pub d_ref: f64,
    pub total_batch_size: i64,
    /// Every initial LR is multiplied by √(B/B_REF) (1 exactly when B = B_REF).
    pub batch_lr_scale: f64,
    /// Muon's weight decay λ_ref·√(B/B_REF)·(D_REF/D) (the T_epoch rule, arXiv 2405.13698).
    pub weight_decay: f64,
    pub num_iterations: i64,
}

impl Sizing {
    /// `model` is the model to train and `d12` the same recipe at depth [`DEPTH_REF`] (base_train.py's
    /// `build_model_meta(12)`: the same aspect ratio, head dim, sequence length, vocabulary and options).
    pub fn new(model: &GptConfig, d12: &GptConfig, s: &SizingSettings) -> Result<Self, SizingError> {
        if s.target_param_data_ratio <= 0.0 {
            return Err(SizingError::Ratio(s.target_param_data_ratio));
        }
        // 1) The horizon in tokens from the scaling parameters.
        let scaling_params = model.scaling_params();
        let target_tokens = (s.target_param_data_ratio * scaling_params as f64) as i64;
        let d_ref = s.target_param_data_ratio * d12.scaling_params() as f64;
        // 2) The batch size: B_REF · (D/D_REF)^0.383, to the nearest power of two.
        let total_batch_size = match s.total_batch_size {
            Some(b) if b <= 0 => return Err(SizingError::BatchSize(b)),
            Some(b) => b,
            None => {
                let predicted = BATCH_REF as f64 * (target_tokens as f64 / d_ref).powf(BATCH_EXPONENT);
                1i64 << predicted.log2().round_ties_even() as u32
            }
        };
        // 3) LRs ∝ √(B/B_REF) (AdamW's rule, assumed for Muon as well).
        let batch_ratio = total_batch_size as f64 / BATCH_REF as f64;
        let batch_lr_scale = if batch_ratio != 1.0 { batch_ratio.powf(0.5) } else { 1.0 };
        // 4) Weight decay keeping T_epoch = B/(η·λ·D) constant.
        let weight_decay = s.weight_decay * batch_ratio.sqrt() * (d_ref / target_tokens as f64);
        // The horizon in steps: given, or the target tokens over the batch.
        let num_iterations = match s.num_iterations {
            Some(n) if n <= 0 => return Err(SizingError::Iterations(n)),
            Some(n) => n,
            None => target_tokens / total_batch_size,
        };
        Ok(Sizing {
            scaling_params,
            target_tokens,
            d_ref,
            total_batch_size,
            batch_lr_scale,
            weight_decay,
            num_iterations,
        })
    }
}

/// The LR schedule's shape (`--warmup-steps`, `--warmdown-ratio`, `--final-lr-frac`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub warmup_steps: i64,
    pub warmdown_ratio: f64,
    pub final_lr_frac: f64,
}

impl LrSchedule {
    /// base_train.py's defaults: 40 warm-up steps, the last 65 % warming down to 5 %.
    pub fn reference() -> Self {
        LrSchedule { warmup_steps: 40, warmdown_ratio: 0.65, final_lr_frac: 0.05 }
    }

    /// round(warmdown_ratio · N) steps of warm-down.
    pub fn warmdown_steps(&self, num_iterations: i64) -> i64 {
        (self.warmdown_ratio * num_iterations as f64).round_ties_even() as i64
    }

    /// LR multiplier at step `it`: linear warm-up to 1 over `warmup_steps`, constant, then linear to
    /// `final_lr_frac` at step N (`get_lr_multiplier`).
    pub fn lr_multiplier(&self, it: i64, num_iterations: i64) -> f64 {
        let warmdown = self.warmdown_steps(num_iterations);
        if it < self.warmup_steps {
            (it + 1) as f64 / self.warmup_steps as f64
        } else if it <= num_iterations - warmdown {
            1.0
        } else {
            let progress = (num_iterations - it) as f64 / warmdown as f64;
            progress * 1.0 + (1.0 - progress) * self.final_lr_frac
        }
    }

    /// Muon's momentum at step `it` (`get_muon_momentum`): 0.85 → 0.97 over the first 400 steps,
    /// 0.97, then 0.97 → 0.90 over the LR warm-down. The warm-up wins where the two overlap.
    pub fn muon_momentum(&self, it: i64, num_iterations: i64) -> f64 {
        let warmdown = self.warmdown_steps(num_iterations);
        let warmdown_start = num_iterations - warmdown;
        if it < MOMENTUM_WARMUP_STEPS {
            let frac = it as f64 / MOMENTUM_WARMUP_STEPS as f64;
            (1.0 - frac) * MOMENTUM_START + frac * MOMENTUM_PEAK
        } else if it >= warmdown_start {
            let progress = (it - warmdown_start) as f64 / warmdown as f64;
            MOMENTUM_PEAK * (1.0 - progress) + MOMENTUM_END * progress
        } else {
            MOMENTUM_PEAK
        }
    }
}

/// Muon's weight decay at step `it` (`get_weight_decay`): `weight_decay` (the scaled one,
/// [`Sizing::weight_decay`]) decayed to 0 at step N along half a cosine.
pub fn muon_weight_decay(weight_decay: f64, it: i64, num_iterations: i64) -> f64 {
    weight_decay * 0.5 * (1.0 + (std::f64::consts::PI * it as f64 / num_iterations as f64).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_batch_and_horizon_are_kept_and_bad_ones_refused() {
        let d4 = GptConfig::from_depth(4, 300, 256);
        let s = SizingSettings {
            target_param_data_ratio: 8.0,
            total_batch_size: Some(BATCH_REF * 4),
            num_iterations: Some(7),
            weight_decay: 0.28,
        };
        let sizing = Sizing::new(&d4, &d4, &s).unwrap();
        assert_eq!((sizing.total_batch_size, sizing.num_iterations, sizing.batch_lr_scale), (BATCH_REF * 4, 7, 2.0));
        assert_eq!(
            Sizing::new(&d4, &d4, &SizingSettings { target_param_data_ratio: -1.0, ..s }),
            Err(SizingError::Ratio(-1.0))
        );
        assert_eq!(
            Sizing::new(&d4, &d4, &SizingSettings { total_batch_size: Some(0), ..s }),
            Err(SizingError::BatchSize(0))
        );
        assert_eq!(
            Sizing::new(&d4, &d4, &SizingSettings { num_iterations: Some(0), ..s }),
            Err(SizingError::Iterations(0))
        );
    }

    #[test]
    fn warmdown_rounds_half_to_even_as_python() {
        // 0.5 · 5 = 2.5 → 2 (Python), not 3.
        let s = LrSchedule { warmup_steps: 0, warmdown_ratio: 0.5, final_lr_frac: 0.0 };
        assert_eq!(s.warmdown_steps(5), 2);
        assert_eq!(s.lr_multiplier(3, 5), 1.0);
        assert_eq!(s.lr_multiplier(4, 5), 0.5);
    }
}
