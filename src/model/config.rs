//! GPT sizing (NANOCHAT.md §3.1): everything follows from the depth. Also the parameter count (§3.1)
//! and the FLOPs-per-token estimate (§3.6) that set the training horizon and MFU.
//!
//! The model options of nanochat 92d63d4 (§3.7, §12.7, §12.8: value embeddings, smear, backout,
//! per-layer resid/x0 lambdas, sliding windows, RoPE base 100K, QK scale, the uniform init, rotary
//! tables in the compute dtype) are fields with the late-2025 values as defaults, so checkpoints
//! written before they existed load unchanged and late-2025 configurations serialize as before.
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The reference's `model_config` (checkpoint meta, §8.1), same field names; the options 92d63d4
/// hard-codes are fields here. In JSON ([`GptConfigJson`]) a late-2025 configuration writes only
/// its dimensions, as 10231df's GPTConfig; one with a window pattern writes every option, so that a
/// `model_config` with a window pattern and no option at all is the reference's 92d63d4 GPTConfig
/// (its options are the code, not the config) and reads as that model, every option on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "GptConfigJson", into = "GptConfigJson")]
pub struct GptConfig {
    pub sequence_len: i64,
    pub vocab_size: i64,
    pub n_layer: i64,
    pub n_head: i64,
    pub n_kv_head: i64,
    pub n_embd: i64,
    /// Sliding-window attention: the pattern tiled over the layers, the last layer always long
    /// (92d63d4 `window_pattern`, §3.7). None: every layer attends to the whole context (late 2025).
    pub window_pattern: Option<WindowPattern>,
    /// Gated value embeddings (`value_embeds`, `attn.ve_gate`) on alternating layers, the last included.
    pub value_embeds: bool,
    /// Smear: the previous token's normed embedding mixed into each position (`smear_gate`, `smear_lambda`).
    pub smear: bool,
    /// Backout: a learned fraction (`backout_lambda`) of the residual after layer n_layer/2 subtracted
    /// before the final norm.
    pub backout: bool,
    /// `resid_lambdas` and `x0_lambdas`: before block i, x = resid_lambdas[i]·x + x0_lambdas[i]·x0.
    pub resid_x0_lambdas: bool,
    /// The rotary base θ (10,000 in late 2025, 100,000 at 92d63d4).
    pub rotary_base: i64,
    /// q and k are multiplied by this after the QK-norm (1 in late 2025, 1.2 at 92d63d4).
    pub qk_scale: f64,
    /// How `init_weights` draws the weights.
    pub init: WeightInit,
    /// The dtype of the rotary cos/sin tables.
    pub rotary_dtype: RotaryDtype,
}

/// [`GptConfig`] as JSON: an absent option is its late-2025 value, except that a window pattern
/// with no option present is 92d63d4's model (the reference's meta).
#[derive(Serialize, Deserialize)]
struct GptConfigJson {
    sequence_len: i64,
    vocab_size: i64,
    n_layer: i64,
    n_head: i64,
    n_kv_head: i64,
    n_embd: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window_pattern: Option<WindowPattern>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_embeds: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    smear: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backout: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    resid_x0_lambdas: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotary_base: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    qk_scale: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init: Option<WeightInit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotary_dtype: Option<RotaryDtype>,
}

impl From<GptConfig> for GptConfigJson {
    fn from(c: GptConfig) -> Self {
        let late = GptConfig::new(c.sequence_len, c.vocab_size, c.n_layer, c.n_head, c.n_kv_head, c.n_embd);
        // With a window pattern every option is written; without, those that differ from late 2025.
        let all = c.window_pattern.is_some();
        fn keep<T: PartialEq>(all: bool, value: T, late: T) -> Option<T> {
            (all || value != late).then_some(value)
        }
        GptConfigJson {
            sequence_len: c.sequence_len,
            vocab_size: c.vocab_size,
            n_layer: c.n_layer,
            n_head: c.n_head,
            n_kv_head: c.n_kv_head,
            n_embd: c.n_embd,
            window_pattern: c.window_pattern,
            value_embeds: keep(all, c.value_embeds, late.value_embeds),
            smear: keep(all, c.smear, late.smear),
            backout: keep(all, c.backout, late.backout),
            resid_x0_lambdas: keep(all, c.resid_x0_lambdas, late.resid_x0_lambdas),
            rotary_base: keep(all, c.rotary_base, late.rotary_base),
            qk_scale: keep(all, c.qk_scale, late.qk_scale),
            init: keep(all, c.init, late.init),
            rotary_dtype: keep(all, c.rotary_dtype, late.rotary_dtype),
        }
    }
}

impl From<GptConfigJson> for GptConfig {
    fn from(j: GptConfigJson) -> Self {
        let late = GptConfig::new(j.sequence_len, j.vocab_size, j.n_layer, j.n_head, j.n_kv_head, j.n_embd);
        let no_option = j.value_embeds.is_none()
            && j.smear.is_none()
            && j.backout.is_none()
            && j.resid_x0_lambdas.is_none()
            && j.rotary_base.is_none()
            && j.qk_scale.is_none()
            && j.init.is_none()
            && j.rotary_dtype.is_none();
        match j.window_pattern {
            // The reference's 92d63d4 GPTConfig: dimensions and window_pattern.
            Some(pattern) if no_option => late.with_92d63d4_options(pattern),
            window_pattern => GptConfig {
                window_pattern,
                value_embeds: j.value_embeds.unwrap_or(late.value_embeds),
                smear: j.smear.unwrap_or(late.smear),
                backout: j.backout.unwrap_or(late.backout),
                resid_x0_lambdas: j.resid_x0_lambdas.unwrap_or(late.resid_x0_lambdas),
                rotary_base: j.rotary_base.unwrap_or(late.rotary_base),
                qk_scale: j.qk_scale.unwrap_or(late.qk_scale),
                init: j.init.unwrap_or(late.init),
                rotary_dtype: j.rotary_dtype.unwrap_or(late.rotary_dtype),
                ..late
            },
        }
    }
}

/// `init_weights` of a reference version (§3.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightInit {
    /// 10231df: every Linear N(0, 1/sqrt(fan_in)·min(1, sqrt(fan_out/fan_in))), wte N(0, 1), lm_head
    /// and both c_proj zero.
    #[default]
    FanInNormal,
    /// 92d63d4: wte N(0, 0.8), lm_head N(0, 0.001), c_q/c_k/c_v U(±s) and c_fc U(±0.4·s) with
    /// s = sqrt(3/n_embd), both c_proj zero.
    Uniform,
}

/// The dtype of the rotary tables (§3.3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotaryDtype {
    /// 10231df: bf16 whatever the compute dtype.
    #[default]
    Bfloat16,
    /// 92d63d4 (no autocast, §12.6): the compute dtype, so fp32 on the CPU.
    Compute,
}

/// A `window_pattern` string of 'S' (short window) and 'L' (long window), tiled across the layers
/// (92d63d4 `_compute_window_sizes`): at most [`WindowPattern::MAX_LEN`] characters, case-insensitive
/// as the reference (which upper-cases it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WindowPattern {
    /// Bit i set: character i is 'S'.
    short: u64,
    len: u32,
}

impl WindowPattern {
    pub const MAX_LEN: usize = 64;

    /// Whether `layer` gets the short window before the last-layer rule: its character, the pattern tiled.
    fn is_short(&self, layer: i64) -> bool {
        self.short >> (layer % i64::from(self.len)) & 1 == 1
    }
}

impl FromStr for WindowPattern {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::WindowPattern(s.to_string());
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(bad());
        }
        let mut short = 0u64;
        for (i, c) in s.chars().enumerate() {
            match c.to_ascii_uppercase() {
                'S' => short |= 1 << i,
                'L' => {}
                _ => return Err(bad()),
            }
        }
        Ok(WindowPattern { short, len: s.len() as u32 })
    }
}

impl TryFrom<String> for WindowPattern {
    type Error = ConfigError;
    fn try_from(s: String) -> Result<Self, ConfigError> {
        s.parse()
    }
}

impl From<WindowPattern> for String {
    fn from(p: WindowPattern) -> String {
        p.to_string()
    }
}

impl fmt::Display for WindowPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (0..i64::from(self.len)).try_for_each(|i| f.write_str(if self.is_short(i) { "S" } else { "L" }))
    }
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
    #[error(
        "window_pattern `{0}` is not 1 to {max} characters of S (short window) and L (long window)",
        max = WindowPattern::MAX_LEN
    )]
    WindowPattern(String),
    #[error("{option} reads the first {channels} channels of the residual stream, but n_embd is {n_embd}")]
    TooNarrow { option: &'static str, channels: i64, n_embd: i64 },
}

/// The vocab of wte and lm_head is padded to a multiple of this (§3.2, `bc51da8`).
pub const VOCAB_PAD_MULTIPLE: i64 = 64;
/// Target head dimension: heads = ceil(d / 128) (§3.1); 92d63d4's `--head-dim` default.
pub const TARGET_HEAD_DIM: i64 = 128;
/// Model width per layer of depth (§3.1); 92d63d4's `--aspect-ratio` default.
pub const DIM_PER_LAYER: i64 = 64;
/// The late-2025 rotary base (§3.3).
pub const ROTARY_BASE: i64 = 10_000;
/// 92d63d4's rotary base (§12.7).
pub const ROTARY_BASE_92D63D4: i64 = 100_000;
/// 92d63d4's factor on q and k after the QK-norm (§12.8).
pub const QK_SCALE_92D63D4: f64 = 1.2;
/// 92d63d4's `--window-pattern` default (§3.7).
pub const WINDOW_PATTERN_92D63D4: &str = "SSSL";
/// The value-embedding gate reads this many channels of the attention input (§12.7).
pub const VE_GATE_CHANNELS: i64 = 12;
/// The smear gate reads this many channels of the normed embedding (§12.8).
pub const SMEAR_CHANNELS: i64 = 24;
/// Short windows are rounded up to a multiple of this (FA3's tile, §12.7).
pub const WINDOW_TILE: i64 = 128;

impl GptConfig {
    /// The late-2025 model (10231df) of these dimensions: every 92d63d4 option off.
    pub fn new(sequence_len: i64, vocab_size: i64, n_layer: i64, n_head: i64, n_kv_head: i64, n_embd: i64) -> Self {
        GptConfig {
            sequence_len,
            vocab_size,
            n_layer,
            n_head,
            n_kv_head,
            n_embd,
            window_pattern: None,
            value_embeds: false,
            smear: false,
            backout: false,
            resid_x0_lambdas: false,
            rotary_base: ROTARY_BASE,
            qk_scale: 1.0,
            init: WeightInit::FanInNormal,
            rotary_dtype: RotaryDtype::Bfloat16,
        }
    }

    /// d = 64·depth, heads = max(1, ceil(d/128)), one KV head per query head (§3.1).
    pub fn from_depth(depth: i64, vocab_size: i64, sequence_len: i64) -> Self {
        let n_embd = depth * DIM_PER_LAYER;
        let n_head = ((n_embd + TARGET_HEAD_DIM - 1) / TARGET_HEAD_DIM).max(1);
        GptConfig::new(sequence_len, vocab_size, depth, n_head, n_head, n_embd)
    }

    /// 92d63d4's sizing (`scripts/base_train.py`, §3.1 [B]): model_dim = depth·aspect_ratio rounded up
    /// to a multiple of head_dim, so every head is exactly head_dim wide; one KV head per query head.
    pub fn from_depth_and_aspect(
        depth: i64,
        aspect_ratio: i64,
        head_dim: i64,
        vocab_size: i64,
        sequence_len: i64,
    ) -> Self {
        let n_embd = (depth * aspect_ratio + head_dim - 1) / head_dim * head_dim;
        let n_head = n_embd / head_dim;
        GptConfig::new(sequence_len, vocab_size, depth, n_head, n_head, n_embd)
    }

    /// These dimensions with every model option of 92d63d4's gpt.py on (§12.7, §12.8).
    pub fn with_92d63d4_options(self, window_pattern: WindowPattern) -> Self {
        GptConfig {
            window_pattern: Some(window_pattern),
            value_embeds: true,
            smear: true,
            backout: true,
            resid_x0_lambdas: true,
            rotary_base: ROTARY_BASE_92D63D4,
            qk_scale: QK_SCALE_92D63D4,
            init: WeightInit::Uniform,
            rotary_dtype: RotaryDtype::Compute,
            ..self
        }
    }

    /// Whether the model has parameters late 2025's had not (value embeddings and their gates, smear,
    /// backout, the resid/x0 lambdas): such a model trains with 92d63d4's `MuonAdamW`.
    pub fn has_92d63d4_parameters(&self) -> bool {
        self.value_embeds || self.smear || self.backout || self.resid_x0_lambdas
    }

    pub fn head_dim(&self) -> i64 {
        self.n_embd / self.n_head
    }

    pub fn padded_vocab_size(&self) -> i64 {
        (self.vocab_size + VOCAB_PAD_MULTIPLE - 1) / VOCAB_PAD_MULTIPLE * VOCAB_PAD_MULTIPLE
    }

    /// Checks the divisibility rules the attention layout relies on, and that the gates have the
    /// channels they read.
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
        for (on, option, channels) in
            [(self.smear, "smear", SMEAR_CHANNELS), (self.value_embeds, "value_embeds", VE_GATE_CHANNELS)]
        {
            if on && self.n_embd < channels {
                return Err(ConfigError::TooNarrow { option, channels, n_embd: self.n_embd });
            }
        }
        Ok(())
    }

    /// Whether `layer` has a value embedding: alternating layers, the last one included (92d63d4 `has_ve`).
    pub fn has_value_embed(&self, layer: i64) -> bool {
        self.value_embeds && layer % 2 == (self.n_layer - 1) % 2
    }

    /// The residual after this layer is what backout subtracts (92d63d4: n_layer // 2).
    pub fn backout_layer(&self) -> i64 {
        self.n_layer / 2
    }

    /// Per layer, how many earlier positions a query attends to besides its own (FA3's left window);
    /// None: all of them. With a pattern (92d63d4 `_compute_window_sizes`): long = sequence_len,
    /// short = ceil(sequence_len/4) rounded up to a multiple of 128, the last layer always long.
    pub fn window_sizes(&self) -> Vec<Option<i64>> {
        let long = self.sequence_len;
        let short = ((long + 3) / 4 + WINDOW_TILE - 1) / WINDOW_TILE * WINDOW_TILE;
        (0..self.n_layer)
            .map(|layer| {
                self.window_pattern.map(|p| if p.is_short(layer) && layer != self.n_layer - 1 { short } else { long })
            })
            .collect()
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

    /// Layers with a value embedding (and its gate).
    fn value_embed_layers(&self) -> i64 {
        (0..self.n_layer).filter(|&l| self.has_value_embed(l)).count() as i64
    }

    /// The transformer blocks' matrices, the value-embedding gates included (92d63d4 `transformer_matrices`).
    pub fn transformer_matrix_params(&self) -> i64 {
        self.n_layer * self.block_params() + self.value_embed_layers() * VE_GATE_CHANNELS * self.n_kv_head
    }

    /// Parameters that multiply the token stream (92d63d4 `num_matmul_params`): the transformer
    /// matrices, lm_head and the smear gate. In late 2025 that is every parameter but wte.
    pub fn matmul_params(&self) -> i64 {
        let smear_gate = if self.smear { SMEAR_CHANNELS } else { 0 };
        self.transformer_matrix_params() + self.embedding_params() + smear_gate
    }

    /// The parameters 92d63d4's scaling laws count (§3.7): the transformer matrices and lm_head.
    pub fn scaling_params(&self) -> i64 {
        self.transformer_matrix_params() + self.embedding_params()
    }

    /// All parameters, embeddings included (the horizon uses this, §4.4).
    pub fn num_params(&self) -> i64 {
        let value_embeds = self.value_embed_layers() * self.padded_vocab_size() * self.n_kv_head * self.head_dim();
        let lambdas = if self.resid_x0_lambdas { 2 * self.n_layer } else { 0 };
        let smear_lambda = i64::from(self.smear);
        let backout_lambda = i64::from(self.backout);
        self.matmul_params() + self.embedding_params() + value_embeds + lambdas + smear_lambda + backout_lambda
    }

    /// 6·(matmul parameters) + Σ_layers 12·H·hd·min(window, T) (§3.6; 92d63d4 `estimate_flops`). Without
    /// options this is 6·(N − N_wte) + 12·L·H·hd·T.
    pub fn flops_per_token(&self) -> i64 {
        let t = self.sequence_len;
        let attention: i64 =
            self.window_sizes().iter().map(|w| 12 * self.n_head * self.head_dim() * w.map_or(t, |w| w.min(t))).sum();
        6 * self.matmul_params() + attention
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

    fn gpt2(depth: i64) -> GptConfig {
        GptConfig::from_depth_and_aspect(depth, DIM_PER_LAYER, TARGET_HEAD_DIM, 32_768, 2048)
            .with_92d63d4_options(WINDOW_PATTERN_92D63D4.parse().unwrap())
    }

    #[test]
    fn sizes_of_the_92d63d4_model_are_the_reference_counts() {
        // GPT(GPTConfig(...)).num_scaling_params() and .estimate_flops() of 92d63d4 on the meta device,
        // vocab 32,768, sequence_len 2048, window pattern SSSL, sized as its base_train.py does.
        let table = [
            (12, 768, 84_935_088, 286_261_730, 759_696_048),
            (20, 1280, 393_217_200, 896_533_746, 2_886_212_784),
            (24, 1536, 679_478_976, 1_384_122_122, 4_775_225_616),
            (26, 1664, 863_897_580, 1_681_786_938, 5_991_051_288),
            (32, 2048, 1_610_615_808, 2_818_575_450, 10_770_991_248),
        ];
        for (depth, n_embd, matrices, total, flops) in table {
            let c = gpt2(depth);
            assert!(c.validate().is_ok());
            assert_eq!((c.n_embd, c.head_dim(), c.n_kv_head), (n_embd, 128, n_embd / 128), "d{depth}");
            assert_eq!(c.transformer_matrix_params(), matrices, "d{depth}");
            assert_eq!(c.scaling_params(), matrices + c.embedding_params(), "d{depth}");
            assert_eq!(c.num_params(), total, "d{depth}");
            assert_eq!(c.flops_per_token(), flops, "d{depth}");
        }
        // Width is rounded up to whole heads: 3·64 = 192 → 256.
        let d3 = GptConfig::from_depth_and_aspect(3, 64, 128, 300, 256);
        assert_eq!((d3.n_embd, d3.n_head), (256, 2));
    }

    #[test]
    fn windows_tile_the_pattern_and_the_last_layer_is_long() {
        // 92d63d4 window_sizes: short = ceil(T/4) rounded up to 128 (2048 → 512, 256 → 128).
        let w: Vec<i64> = gpt2(6).window_sizes().into_iter().map(Option::unwrap).collect();
        assert_eq!(w, [512, 512, 512, 2048, 512, 2048]);
        let c = GptConfig { sequence_len: 256, n_layer: 3, ..gpt2(4) }.with_92d63d4_options("sL".parse().unwrap());
        assert_eq!(c.window_sizes(), [Some(128), Some(256), Some(256)]);
        assert_eq!(GptConfig { sequence_len: 1000, ..c }.window_sizes()[0], Some(256));
        assert_eq!(GptConfig::from_depth(4, 300, 256).window_sizes(), [None; 4]);
        for bad in ["", "SSX", "S".repeat(65).as_str()] {
            assert_eq!(bad.parse::<WindowPattern>(), Err(ConfigError::WindowPattern(bad.to_string())));
        }
    }

    #[test]
    fn value_embeds_alternate_ending_at_the_last_layer() {
        let layers = |c: GptConfig| (0..c.n_layer).filter(|&l| c.has_value_embed(l)).collect::<Vec<_>>();
        assert_eq!(layers(gpt2(4)), [1, 3]);
        assert_eq!(layers(gpt2(5)), [0, 2, 4]);
        assert_eq!(layers(GptConfig::from_depth(4, 300, 256)), Vec::<i64>::new());
        assert_eq!((gpt2(4).backout_layer(), gpt2(5).backout_layer()), (2, 2));
    }

    #[test]
    fn late_2025_meta_is_unchanged_and_the_options_round_trip() {
        let old = GptConfig::from_depth(20, 65_536, 2048);
        let json = serde_json::to_value(old).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"sequence_len": 2048, "vocab_size": 65_536, "n_layer": 20, "n_head": 10,
                "n_kv_head": 10, "n_embd": 1280})
        );
        assert_eq!(serde_json::from_value::<GptConfig>(json).unwrap(), old);
        let new = gpt2(24);
        let json = serde_json::to_value(new).unwrap();
        assert_eq!(json["window_pattern"], "SSSL");
        assert_eq!((json["rotary_base"].as_i64(), json["init"].as_str()), (Some(100_000), Some("uniform")));
        assert_eq!(serde_json::from_value::<GptConfig>(json).unwrap(), new);
        let bad = serde_json::json!({"sequence_len": 8, "vocab_size": 8, "n_layer": 1, "n_head": 1,
            "n_kv_head": 1, "n_embd": 8, "window_pattern": "SXL"});
        assert!(serde_json::from_value::<GptConfig>(bad).unwrap_err().to_string().contains("SXL"));
        // A window pattern with options off writes them all, so it does not read back as 92d63d4's.
        let windowed = GptConfig { window_pattern: Some("SL".parse().unwrap()), ..old };
        let json = serde_json::to_value(windowed).unwrap();
        assert_eq!((json["value_embeds"].as_bool(), json["rotary_base"].as_i64()), (Some(false), Some(10_000)));
        assert_eq!(serde_json::from_value::<GptConfig>(json).unwrap(), windowed);
        let narrow = GptConfig::from_depth(1, 300, 16).with_92d63d4_options("L".parse().unwrap());
        let narrow = GptConfig { n_embd: 16, n_head: 1, n_kv_head: 1, ..narrow };
        assert_eq!(narrow.validate(), Err(ConfigError::TooNarrow { option: "smear", channels: 24, n_embd: 16 }));
    }

    #[test]
    fn a_reference_92d63d4_model_config_is_the_model_with_every_option() {
        // 92d63d4's GPTConfig as its checkpoint_manager writes it: dimensions and window_pattern.
        let reference = serde_json::json!({"sequence_len": 2048, "vocab_size": 32_768, "n_layer": 24,
            "n_head": 12, "n_kv_head": 12, "n_embd": 1536, "window_pattern": "SSSL"});
        assert_eq!(serde_json::from_value::<GptConfig>(reference).unwrap(), gpt2(24));
        // 10231df's GPTConfig has no window_pattern: the late-2025 model.
        let late = serde_json::json!({"sequence_len": 2048, "vocab_size": 32_768, "n_layer": 24,
            "n_head": 12, "n_kv_head": 12, "n_embd": 1536});
        let late: GptConfig = serde_json::from_value(late).unwrap();
        assert!(!late.has_92d63d4_parameters() && late.window_pattern.is_none() && late.rotary_base == ROTARY_BASE);
    }
}
