//! The GPT of NANOCHAT.md §3 ([A'] 10231df): token embedding, RMSNorm without weights, pre-norm blocks
//! of causal self-attention (rotary then QK-norm, MQA/GQA through SDPA) and a ReLU² MLP, a final norm,
//! an untied lm_head over the padded vocab, logits in fp32 soft-capped at 15.
//! With the options of [`GptConfig`] it is 92d63d4's GPT (§3.7, §12.7, §12.8): smear after the
//! embedding, resid/x0 lambdas before each block, gated value embeddings added to v, q and k scaled
//! after the QK-norm, sliding-window attention (as the reference's SDPA fallback masks it), backout
//! before the final norm.
//! Parameter names and shapes are the reference's state_dict keys (§3.2), so weights move both ways.
use tch::nn::VarStore;
use tch::{Device, Kind, Reduction, Tensor};

use super::config::{GptConfig, RotaryDtype, WeightInit, SMEAR_CHANNELS, VE_GATE_CHANNELS};
use super::kv_cache::KvCache;
use super::precision::Precision;
use super::{chunked_loss, fp8, fused_ops, rotary};

/// Logits are squashed into (−SOFTCAP, SOFTCAP) (§3.3).
pub const SOFTCAP: f64 = 15.0;
/// The value-embedding gate is VE_GATE_RANGE·sigmoid(·), in (0, 3) (92d63d4, §12.7).
pub const VE_GATE_RANGE: f64 = 3.0;

struct Block {
    c_q: Tensor,
    c_k: Tensor,
    c_v: Tensor,
    attn_proj: Tensor,
    /// (n_kv_head, VE_GATE_CHANNELS) on the layers with a value embedding.
    ve_gate: Option<Tensor>,
    c_fc: Tensor,
    mlp_proj: Tensor,
}

impl Block {
    /// In the reference's module registration order (which is also the order 10231df initialises them
    /// in): c_q, c_k, c_v, c_proj, ve_gate, c_fc, c_proj.
    fn matrices(&self) -> Vec<&Tensor> {
        let attn = [&self.c_q, &self.c_k, &self.c_v, &self.attn_proj].into_iter().chain(self.ve_gate.as_ref());
        attn.chain([&self.c_fc, &self.mlp_proj]).collect()
    }
}

/// Smear's parameters (92d63d4 `smear_gate`, `smear_lambda`).
struct Smear {
    /// (1, SMEAR_CHANNELS)
    gate: Tensor,
    /// (1,)
    lambda: Tensor,
}

impl Smear {
    /// x (B, T, d), the normed embeddings, with the one before each position mixed in:
    /// x_t + smear_lambda·sigmoid(smear_gate(x_t[:24]))·x_{t−1}. The one before the first position is
    /// `previous` (B, 1, d) when given (a cached decode), else the first position stays as it is. (The
    /// reference, given a cache and several positions, ignores its cached embedding; it only does that
    /// at position 0, where there is none, so both agree wherever the reference runs.)
    fn apply(&self, x: &Tensor, previous: Option<&Tensor>) -> Tensor {
        let t = x.size()[1];
        let (current, before) = match previous {
            Some(p) if t > 1 => (x.shallow_clone(), Tensor::cat(&[p, &x.narrow(1, 0, t - 1)], 1)),
            Some(p) => (x.shallow_clone(), p.shallow_clone()),
            None if t > 1 => (x.narrow(1, 1, t - 1), x.narrow(1, 0, t - 1)),
            None => return x.shallow_clone(),
        };
        let gate = self.lambda.to_kind(x.kind()) * linear(&current.narrow(2, 0, SMEAR_CHANNELS), &self.gate).sigmoid();
        let smeared = &current + gate * before;
        match previous {
            Some(_) => smeared,
            None => Tensor::cat(&[x.narrow(1, 0, 1), smeared], 1),
        }
    }
}

pub struct Gpt {
    pub config: GptConfig,
    /// The compute dtype: wte's dtype, hence the residual stream's and every matmul's.
    pub precision: Precision,
    pub vs: VarStore,
    wte: Tensor,
    blocks: Vec<Block>,
    lm_head: Tensor,
    /// (n_layer,) each, with `resid_x0_lambdas`.
    resid_lambdas: Option<Tensor>,
    x0_lambdas: Option<Tensor>,
    smear: Option<Smear>,
    /// (1,), with `backout`.
    backout_lambda: Option<Tensor>,
    /// Per layer, (padded vocab, n_kv_head·head_dim) in the compute dtype where it has one.
    value_embeds: Vec<Option<Tensor>>,
    /// Per layer, the attention's left window (None: the whole context).
    window_sizes: Vec<Option<i64>>,
    /// 92d63d4's `--fp8`: [`Gpt::train_loss`] runs the block matrices' matmuls in fp8 (those passing
    /// [`fp8::takes_fp8`]); every other forward, evaluation's included, stays in the compute dtype, as
    /// the reference's `disable_fp8` around its evaluations. The head stays in the compute dtype: the
    /// chunked loss never holds the whole logits tensor whose gradient fp8.py scales as one.
    pub fp8_training: bool,
    cos: Tensor,
    sin: Tensor,
}

/// RMSNorm over the last dimension with no weight and eps = fp32 machine epsilon (§3.3).
pub fn norm(x: &Tensor) -> Tensor {
    let d = *x.size().last().unwrap_or(&1);
    x.rms_norm([d], None::<Tensor>, None)
}

/// y = x·Wᵀ with W cast to x's dtype (bf16 compute on GPU, fp32 on CPU; NANOCHAT.md §12.6).
fn linear(x: &Tensor, w: &Tensor) -> Tensor {
    if w.kind() == x.kind() {
        x.linear(w, None::<Tensor>)
    } else {
        x.linear(&w.to_kind(x.kind()), None::<Tensor>)
    }
}

/// A block matrix's y = x·Wᵀ: in fp8 where `fp8` is set and the layer passes 92d63d4's filter
/// ([`fp8::takes_fp8`]), else [`linear`].
fn project(x: &Tensor, w: &Tensor, fp8: bool) -> Tensor {
    let (out_features, in_features) = (w.size()[0], w.size()[1]);
    match fp8 && fp8::takes_fp8(in_features, out_features) {
        true => fp8::linear(x, w),
        false => linear(x, w),
    }
}

/// The rotary table of `config` for positions 0..seq_len: in bf16 or in the compute dtype.
fn rotary_table(config: &GptConfig, precision: Precision, seq_len: i64, device: Device) -> (Tensor, Tensor) {
    let kind = match config.rotary_dtype {
        RotaryDtype::Bfloat16 => Kind::BFloat16,
        RotaryDtype::Compute => precision.compute_kind(),
    };
    rotary::precompute_with_base(seq_len, config.head_dim(), config.rotary_base, kind, device)
}

/// Attention (B, H, Tq, hd) of the last Tq of Tk positions, each query seeing its own key and the ones
/// before it, at most `window` of those (None: all), as 92d63d4's SDPA fallback (`_sdpa_attention`)
/// computes it: plain causal SDPA when the window masks nothing and Tq = Tk; for one query, SDPA over
/// the last window + 1 keys; otherwise SDPA with the explicit mask.
fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, window: Option<i64>, gqa: bool) -> Tensor {
    let (tq, tk) = (q.size()[2], k.size()[2]);
    // A window reaching every key masks nothing.
    let window = window.filter(|&w| w < tk);
    if tq == tk && window.is_none() {
        Tensor::scaled_dot_product_attention(q, k, v, None::<Tensor>, 0.0, true, None, gqa)
    } else if tq == 1 {
        let keep = window.map_or(tk, |w| w + 1);
        let (k, v) = (k.narrow(2, tk - keep, keep), v.narrow(2, tk - keep, keep));
        Tensor::scaled_dot_product_attention(q, &k, &v, None::<Tensor>, 0.0, false, None, gqa)
    } else {
        // Queries sit at positions Tk − Tq.., after any cached prefix.
        let rows = (Tensor::arange(tq, (Kind::Int64, q.device())) + (tk - tq)).unsqueeze(1);
        let cols = Tensor::arange(tk, (Kind::Int64, q.device())).unsqueeze(0);
        let mut mask = cols.less_equal_tensor(&rows);
        if let Some(w) = window {
            mask = mask.logical_and(&(&rows - &cols).less_equal(w));
        }
        Tensor::scaled_dot_product_attention(q, k, v, Some(mask), 0.0, false, None, gqa)
    }
}

/// The SDPA kernel libtorch picks for attention shaped like this model's, as `_fused_sdp_choice`
/// numbers it: 0 math (unfused), 1 flash, 2 memory-efficient, 3 cuDNN; -1 none.
pub fn sdpa_backend(config: &GptConfig, device: Device, kind: Kind) -> i64 {
    let (h, h_kv, hd, t) = (config.n_head, config.n_kv_head, config.head_dim(), config.sequence_len);
    let q = Tensor::zeros([1, h, t, hd], (kind, device));
    let kv = Tensor::zeros([1, h_kv, t, hd], (kind, device));
    Tensor::internal_fused_sdp_choice(&q, &kv, &kv, None::<Tensor>, 0.0, true, None, h != h_kv)
}

/// Names of [`sdpa_backend`]'s numbers.
pub fn sdpa_backend_name(backend: i64) -> &'static str {
    match backend {
        0 => "math (unfused)",
        1 => "flash attention",
        2 => "memory-efficient attention",
        3 => "cuDNN attention",
        _ => "none",
    }
}

impl Gpt {
    /// Builds the parameters (uninitialised zeros; call [`Gpt::init_weights`] or load a checkpoint)
    /// in the device's default precision ([`Precision::auto`]: bf16 on a GPU, fp32 on CPU).
    pub fn new(config: GptConfig, device: Device) -> Result<Self, super::config::ConfigError> {
        Self::with_precision(config, device, Precision::auto(device))
    }

    /// Builds the parameters with wte stored in `precision`'s compute dtype, which makes the residual
    /// stream and every matmul that dtype (bf16: §3.4, §3.5); every other weight is an fp32 master copy.
    pub fn with_precision(
        config: GptConfig,
        device: Device,
        precision: Precision,
    ) -> Result<Self, super::config::ConfigError> {
        config.validate()?;
        let vs = VarStore::new(device);
        let root = vs.root();
        let (d, v) = (config.n_embd, config.padded_vocab_size());
        let kv = config.n_kv_head * config.head_dim();
        // The embeddings are stored in the compute dtype; set_data changes the variable the VarStore
        // holds too (they share one tensor).
        let in_compute_kind = |mut embedding: Tensor| {
            if precision.compute_kind() != embedding.kind() {
                tch::no_grad(|| embedding.set_data(&embedding.to_kind(precision.compute_kind())));
            }
            embedding
        };
        let wte = in_compute_kind((&root / "transformer" / "wte").zeros("weight", &[v, d]));
        let blocks = (0..config.n_layer)
            .map(|i| {
                let h = &root / "transformer" / "h" / i;
                let attn = &h / "attn";
                let mlp = &h / "mlp";
                Block {
                    c_q: (&attn / "c_q").zeros("weight", &[config.n_head * config.head_dim(), d]),
                    c_k: (&attn / "c_k").zeros("weight", &[kv, d]),
                    c_v: (&attn / "c_v").zeros("weight", &[kv, d]),
                    attn_proj: (&attn / "c_proj").zeros("weight", &[d, d]),
                    ve_gate: config
                        .has_value_embed(i)
                        .then(|| (&attn / "ve_gate").zeros("weight", &[config.n_kv_head, VE_GATE_CHANNELS])),
                    c_fc: (&mlp / "c_fc").zeros("weight", &[4 * d, d]),
                    mlp_proj: (&mlp / "c_proj").zeros("weight", &[d, 4 * d]),
                }
            })
            .collect();
        let lm_head = (&root / "lm_head").zeros("weight", &[v, d]);
        let lambdas = |name: &str| config.resid_x0_lambdas.then(|| root.zeros(name, &[config.n_layer]));
        let (resid_lambdas, x0_lambdas) = (lambdas("resid_lambdas"), lambdas("x0_lambdas"));
        let smear = config.smear.then(|| Smear {
            gate: (&root / "smear_gate").zeros("weight", &[1, SMEAR_CHANNELS]),
            lambda: root.zeros("smear_lambda", &[1]),
        });
        let backout_lambda = config.backout.then(|| root.zeros("backout_lambda", &[1]));
        let value_embeds = (0..config.n_layer)
            .map(|i| {
                config
                    .has_value_embed(i)
                    .then(|| in_compute_kind((&root / "value_embeds" / i).zeros("weight", &[v, kv])))
            })
            .collect();
        let window_sizes = config.window_sizes();
        let (cos, sin) = rotary_table(&config, precision, config.sequence_len * rotary::ROTARY_OVERCOMPUTE, device);
        Ok(Gpt {
            config,
            precision,
            vs,
            wte,
            blocks,
            lm_head,
            resid_lambdas,
            x0_lambdas,
            smear,
            backout_lambda,
            value_embeds,
            window_sizes,
            fp8_training: false,
            cos,
            sin,
        })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The reference's `init_weights` (§3.4), drawing from libtorch's generator in the same order and
    /// with the same shapes, so the same seed gives the same weights on CPU.
    /// [`WeightInit::FanInNormal`] (10231df): every Linear N(0, 1/sqrt(fan_in)·min(1, sqrt(fan_out/fan_in))),
    /// wte N(0, 1), then lm_head and both c_proj zeroed. [`WeightInit::Uniform`] (92d63d4): wte N(0, 0.8),
    /// lm_head N(0, 0.001), per block c_q, c_k, c_v U(±s) and c_fc U(±0.4·s) with s = sqrt(3/n_embd),
    /// both c_proj zero. Then the options' parameters as 92d63d4: resid_lambdas 1.15 → 1.05 and
    /// x0_lambdas 0.20 → 0.05 linearly over the layers, smear_lambda 0, backout_lambda 0.2, smear_gate
    /// U(0, 0.02), value embeddings U(±s), ve_gate U(0, 0.02).
    pub fn init_weights(&mut self) {
        let s = 3f64.sqrt() / (self.config.n_embd as f64).sqrt();
        tch::no_grad(|| {
            match self.config.init {
                WeightInit::FanInNormal => {
                    let _ = self.wte.shallow_clone().normal_(0.0, 1.0);
                    let linears = self.blocks.iter().flat_map(|b| b.matrices()).chain(std::iter::once(&self.lm_head));
                    for w in linears {
                        let (fan_out, fan_in) = (w.size()[0] as f64, w.size()[1] as f64);
                        let std = 1.0 / fan_in.sqrt() * (fan_out / fan_in).sqrt().min(1.0);
                        let _ = w.shallow_clone().normal_(0.0, std);
                    }
                    let _ = self.lm_head.shallow_clone().zero_();
                }
                WeightInit::Uniform => {
                    let _ = self.wte.shallow_clone().normal_(0.0, 0.8);
                    let _ = self.lm_head.shallow_clone().normal_(0.0, 0.001);
                    for b in &self.blocks {
                        for w in [&b.c_q, &b.c_k, &b.c_v] {
                            let _ = w.shallow_clone().uniform_(-s, s);
                        }
                        let _ = b.c_fc.shallow_clone().uniform_(-s * 0.4, s * 0.4);
                    }
                }
            }
            for b in &self.blocks {
                let _ = b.attn_proj.shallow_clone().zero_();
                let _ = b.mlp_proj.shallow_clone().zero_();
            }
            let n_layer = self.config.n_layer;
            let per_layer = |first: f64, drop: f64| {
                let values: Vec<f32> =
                    (0..n_layer).map(|i| (first - drop * i as f64 / (n_layer - 1).max(1) as f64) as f32).collect();
                Tensor::from_slice(&values)
            };
            if let (Some(resid), Some(x0)) = (&self.resid_lambdas, &self.x0_lambdas) {
                resid.shallow_clone().copy_(&per_layer(1.15, 0.10));
                x0.shallow_clone().copy_(&per_layer(0.20, 0.15));
            }
            if let Some(backout) = &self.backout_lambda {
                let _ = backout.shallow_clone().fill_(0.2);
            }
            if let Some(smear) = &self.smear {
                let _ = smear.lambda.shallow_clone().zero_();
                let _ = smear.gate.shallow_clone().uniform_(0.0, 0.02);
            }
            for ve in self.value_embeds.iter().flatten() {
                let _ = ve.shallow_clone().uniform_(-s, s);
            }
            for gate in self.blocks.iter().filter_map(|b| b.ve_gate.as_ref()) {
                let _ = gate.shallow_clone().uniform_(0.0, 0.02);
            }
        });
    }

    /// Logits (B, T, vocab_size) in fp32. With a cache, positions continue from `cache.pos()`.
    pub fn forward(&self, idx: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        self.head(&self.hidden(idx, cache, false))
    }

    /// Logits (B, 1, vocab_size) of the last position only: what generation samples from, without
    /// the classifier's work for the prompt's other positions.
    pub fn forward_last(&self, idx: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        let x = self.hidden(idx, cache, false);
        let t = x.size()[1];
        self.head_rows(&x.select(1, t - 1)).unsqueeze(1)
    }

    /// Logits (N, vocab_size) at N chosen (row, position) pairs of `idx` (int64 tensors `rows`,
    /// `positions`): the classifier on just the positions a caller scores (CORE's answer spans).
    pub fn forward_at(&self, idx: &Tensor, rows: &Tensor, positions: &Tensor) -> Tensor {
        let x = self.hidden(idx, None, false);
        let picked = x.index(&[Some(rows), Some(positions)]);
        self.head(&picked.unsqueeze(0)).squeeze_dim(0)
    }

    /// Softcapped fp32 logits of final hidden states.
    fn head(&self, x: &Tensor) -> Tensor {
        let logits = linear(&norm(x), &self.lm_head).narrow(2, 0, self.config.vocab_size).to_kind(Kind::Float);
        (logits / SOFTCAP).tanh() * SOFTCAP
    }

    /// The residual stream after the last block (B, T, n_embd), before the final norm, in the
    /// compute dtype.
    pub fn hidden_states(&self, idx: &Tensor) -> Tensor {
        self.hidden(idx, None, false)
    }

    /// The hidden states after the last block (and backout), before the final norm; with `fp8`, the
    /// block matrices' matmuls in fp8 ([`Gpt::fp8_training`]).
    fn hidden(&self, idx: &Tensor, mut cache: Option<&mut KvCache>, fp8: bool) -> Tensor {
        let t = idx.size()[1];
        let t0 = cache.as_ref().map_or(0, |c| c.pos());
        // Positions past the cached table (10× sequence_len) get the same values computed on demand
        // (the reference asserts instead; a chat conversation can be longer than a tiny model's table).
        let (cos, sin) = if t0 + t <= self.cos.size()[1] {
            (self.cos.narrow(1, t0, t), self.sin.narrow(1, t0, t))
        } else {
            let (cos, sin) = rotary_table(&self.config, self.precision, t0 + t, self.device());
            (cos.narrow(1, t0, t), sin.narrow(1, t0, t))
        };
        let mut x = norm(&Tensor::embedding(&self.wte, idx, -1, false, false));
        if let Some(smear) = &self.smear {
            // With a cache, the position before this call's first is the cache's last embedding (none
            // at the start), and this call's last embedding is kept for the next call.
            let previous = cache.as_deref_mut().and_then(|c| c.swap_previous_embedding(x.narrow(1, t - 1, 1)));
            x = smear.apply(&x, previous.as_ref());
        }
        let x0 = x.shallow_clone();
        let mut x_backout = None;
        for (layer, block) in self.blocks.iter().enumerate() {
            if let (Some(resid), Some(x0_lambdas)) = (&self.resid_lambdas, &self.x0_lambdas) {
                x = resid.get(layer as i64) * &x + x0_lambdas.get(layer as i64) * &x0;
            }
            let ve = self.value_embeds[layer]
                .as_ref()
                .map(|w| Tensor::embedding(w, idx, -1, false, false).to_kind(x.kind()));
            x = &x + self.attention(block, layer, &norm(&x), ve.as_ref(), (&cos, &sin), cache.as_deref_mut(), fp8);
            let hidden = fused_ops::relu_square(&project(&norm(&x), &block.c_fc, fp8));
            x = &x + project(&hidden, &block.mlp_proj, fp8);
            if self.backout_lambda.is_some() && layer as i64 == self.config.backout_layer() {
                x_backout = Some(x.shallow_clone());
            }
        }
        if let (Some(lambda), Some(mid)) = (&self.backout_lambda, x_backout) {
            x = &x - lambda.to_kind(x.kind()) * mid;
        }
        x
    }

    /// The 92d63d4 options [`Gpt::forward_packed`] does not implement (smear needs each sequence's
    /// previous token, sliding windows the caller's attention, and the others are not written there
    /// yet); empty when continuous batching computes this model's forward.
    pub fn options_without_packed_decoding(&self) -> Vec<&'static str> {
        let c = &self.config;
        let options = [
            (c.window_pattern.is_some(), "window_pattern"),
            (c.value_embeds, "value_embeds"),
            (c.smear, "smear"),
            (c.backout, "backout"),
            (c.resid_x0_lambdas, "resid_x0_lambdas"),
            (c.qk_scale != 1.0, "qk_scale"),
        ];
        options.into_iter().filter(|(on, _)| *on).map(|(_, name)| name).collect()
    }

    /// Logits (M, vocab_size) for the packed tokens of several sequences, as continuous batching runs
    /// them (engine::scheduler): `idx` (N,) token ids at the rotary `positions` (N of them), the
    /// classifier only at the packed indices `wanted` (M,). Attention across tokens is the caller's:
    /// `attend(layer, q, k, v)` gets the (N, H, hd) queries and (N, H_kv, hd) keys and values of the
    /// layer (rotary and QK-norm applied, §3.3) and returns the (N, H, hd) attention output, keeping the
    /// keys and values in its own cache. Everything else is [`Gpt::forward`]'s computation, for a model
    /// without [`Gpt::options_without_packed_decoding`].
    pub fn forward_packed(
        &self,
        idx: &Tensor,
        positions: &[i64],
        wanted: &Tensor,
        attend: &mut dyn FnMut(usize, &Tensor, &Tensor, &Tensor) -> Tensor,
    ) -> Tensor {
        let n = idx.size()[0];
        let (h, h_kv, hd) = (self.config.n_head, self.config.n_kv_head, self.config.head_dim());
        let end = positions.iter().max().map_or(0, |&p| p + 1);
        let table = if end <= self.cos.size()[1] {
            (self.cos.shallow_clone(), self.sin.shallow_clone())
        } else {
            rotary_table(&self.config, self.precision, end, self.device())
        };
        let at = Tensor::from_slice(positions).to_device(self.device());
        let (cos, sin) = (table.0.index_select(1, &at), table.1.index_select(1, &at));
        let mut x = norm(&Tensor::embedding(&self.wte, &idx.view([1, n]), -1, false, false));
        for (layer, b) in self.blocks.iter().enumerate() {
            let xn = norm(&x);
            let q = norm(&rotary::apply(&linear(&xn, &b.c_q).view([1, n, h, hd]), &cos, &sin));
            let k = norm(&rotary::apply(&linear(&xn, &b.c_k).view([1, n, h_kv, hd]), &cos, &sin));
            let v = linear(&xn, &b.c_v).view([n, h_kv, hd]);
            let y = attend(layer, &q.view([n, h, hd]), &k.view([n, h_kv, hd]), &v);
            x = &x + linear(&y.reshape([1, n, h * hd]), &b.attn_proj);
            let hidden = fused_ops::relu_square(&linear(&norm(&x), &b.c_fc));
            x = &x + linear(&hidden, &b.mlp_proj);
        }
        self.head_rows(&x.index_select(1, wanted).squeeze_dim(0))
    }

    /// Softcapped fp32 logits (M, vocab_size) of a few final hidden states (M, n_embd), as decoding
    /// needs them. The classifier is lm_head · xᵀ: with a few rows MKL then streams the (vocab, n_embd)
    /// weight once instead of repacking it as the right operand of x · lm_headᵀ at every step (same
    /// products, the same values at one row).
    fn head_rows(&self, x: &Tensor) -> Tensor {
        let x = norm(x);
        let w =
            if self.lm_head.kind() == x.kind() { self.lm_head.shallow_clone() } else { self.lm_head.to_kind(x.kind()) };
        let logits = w.matmul(&x.transpose(0, 1)).transpose(0, 1);
        let logits = logits.narrow(1, 0, self.config.vocab_size).to_kind(Kind::Float);
        (logits / SOFTCAP).tanh() * SOFTCAP
    }

    /// The training loss: mean cross-entropy of the soft-capped logits over the targets that are not
    /// −1, computed chunk by chunk over positions so the (B·T, vocab) fp32 logits never exist at once
    /// ([`chunked_loss`]); when gradients are recorded, the head's gradient is computed in the same
    /// pass. Same value as [`Gpt::loss`] with `Reduction::Mean` within float rounding.
    pub fn train_loss(&self, idx: &Tensor, targets: &Tensor) -> Tensor {
        self.train_loss_from_hidden(&self.hidden(idx, None, self.fp8_training), targets)
    }

    /// [`Gpt::train_loss`] from the blocks' output ([`Gpt::hidden_states`]): the final norm, the head
    /// and the loss.
    pub fn train_loss_from_hidden(&self, hidden: &Tensor, targets: &Tensor) -> Tensor {
        let x = norm(hidden).view([-1, self.config.n_embd]);
        chunked_loss::softcapped_cross_entropy(&x, &self.lm_head, self.config.vocab_size, &targets.view([-1]))
    }

    /// Evaluation's losses: the cross-entropy of each next-token target (B·T,) in fp32, 0 where the
    /// target is −1, without gradients, one chunk of positions' logits at a time ([`chunked_loss`]).
    /// Same values as [`Gpt::loss`] with `Reduction::None` within float rounding.
    pub fn token_losses(&self, idx: &Tensor, targets: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let (d, vocab) = (self.config.n_embd, self.config.vocab_size);
            let x = norm(&self.hidden_states(idx)).view([-1, d]);
            let rows = chunked_loss::chunk_rows(vocab, self.device());
            chunked_loss::softcapped_token_losses(&x, &self.lm_head, vocab, &targets.view([-1]), rows)
        })
    }

    /// Cross-entropy of the next-token targets from the full (B·T, vocab) logits; targets of −1 are
    /// ignored (§3.3 step 4). Chat RL's policy gradient uses it (per-token log-probabilities with
    /// gradients, on short rollouts); training and evaluation use the chunked [`Gpt::train_loss`]
    /// and [`Gpt::token_losses`].
    pub fn loss(&self, idx: &Tensor, targets: &Tensor, reduction: Reduction) -> Tensor {
        let logits = self.forward(idx, None);
        let v = logits.size()[2];
        logits.view([-1, v]).cross_entropy_loss(&targets.view([-1]), None::<Tensor>, reduction, -1, 0.0)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        b: &Block,
        layer: usize,
        x: &Tensor,
        ve: Option<&Tensor>,
        (cos, sin): (&Tensor, &Tensor),
        cache: Option<&mut KvCache>,
        fp8: bool,
    ) -> Tensor {
        let (bsz, t) = (x.size()[0], x.size()[1]);
        let (h, h_kv, hd) = (self.config.n_head, self.config.n_kv_head, self.config.head_dim());
        let q = project(x, &b.c_q, fp8).view([bsz, t, h, hd]);
        let k = project(x, &b.c_k, fp8).view([bsz, t, h_kv, hd]);
        let mut v = project(x, &b.c_v, fp8).view([bsz, t, h_kv, hd]);
        if let (Some(ve), Some(ve_gate)) = (ve, &b.ve_gate) {
            // Value residual: v + 3·sigmoid(ve_gate(x[..., :12])) · ve, one gate per KV head.
            let gate = linear(&x.narrow(2, 0, VE_GATE_CHANNELS), ve_gate).sigmoid() * VE_GATE_RANGE;
            v = &v + gate.unsqueeze(-1) * ve.view([bsz, t, h_kv, hd]);
        }
        // Rotary first, then QK-norm (§3.3) and the QK scale; heads become the batch dimension.
        let (mut q, mut k) = (norm(&rotary::apply(&q, cos, sin)), norm(&rotary::apply(&k, cos, sin)));
        if self.config.qk_scale != 1.0 {
            q = &q * self.config.qk_scale;
            k = &k * self.config.qk_scale;
        }
        let (q, k, v) = (q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2));
        let (k, v) = match cache {
            Some(cache) => cache.insert(layer, &k, &v),
            None => (k, v),
        };
        let y = causal_attention(&q, &k, &v, self.window_sizes[layer], h != h_kv);
        project(&y.transpose(1, 2).contiguous().view([bsz, t, h * hd]), &b.attn_proj, fp8)
    }

    /// Parameters by state_dict name, sorted (a stable order for optimizers and collectives).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// Every parameter in the reference's registration order, which is the order `clip_grad_norm_`
    /// reduces in: resid_lambdas, x0_lambdas, smear_lambda, backout_lambda (the model's own), wte, the
    /// blocks, lm_head, smear_gate, the value embeddings.
    pub fn parameters_in_reference_order(&self) -> Vec<Tensor> {
        let own = [&self.resid_lambdas, &self.x0_lambdas].into_iter().flatten();
        let own = own.chain(self.smear.as_ref().map(|s| &s.lambda)).chain(self.backout_lambda.as_ref());
        let blocks = self.blocks.iter().flat_map(|b| b.matrices());
        let after = std::iter::once(&self.lm_head).chain(self.smear.as_ref().map(|s| &s.gate));
        let all =
            own.chain(std::iter::once(&self.wte)).chain(blocks).chain(after).chain(self.value_embeds.iter().flatten());
        all.map(Tensor::shallow_clone).collect()
    }

    /// The matrices Muon optimises, block by block (the value-embedding gates included, 92d63d4).
    pub fn block_matrices(&self) -> Vec<Tensor> {
        self.blocks.iter().flat_map(|b| b.matrices()).map(Tensor::shallow_clone).collect()
    }

    /// The value embeddings, layer by layer (92d63d4's `value_embeds` group).
    pub fn value_embeds(&self) -> Vec<Tensor> {
        self.value_embeds.iter().flatten().map(Tensor::shallow_clone).collect()
    }

    /// `resid_lambdas` and `x0_lambdas`, when the model has them.
    pub fn resid_x0_lambdas(&self) -> Option<(Tensor, Tensor)> {
        self.resid_lambdas.as_ref().zip(self.x0_lambdas.as_ref()).map(|(r, x0)| (r.shallow_clone(), x0.shallow_clone()))
    }

    /// smear_gate, smear_lambda and backout_lambda, those the model has (92d63d4's `smear_params` group).
    pub fn smear_params(&self) -> Vec<Tensor> {
        let smear = self.smear.iter().flat_map(|s| [&s.gate, &s.lambda]);
        smear.chain(self.backout_lambda.as_ref()).map(Tensor::shallow_clone).collect()
    }

    pub fn wte(&self) -> Tensor {
        self.wte.shallow_clone()
    }

    pub fn lm_head(&self) -> Tensor {
        self.lm_head.shallow_clone()
    }

    pub fn zero_grad(&self) {
        for (_, p) in self.named_parameters() {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }
}
