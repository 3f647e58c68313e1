//! The GPT of NANOCHAT.md §3 ([A'] 10231df): token embedding, RMSNorm without weights, pre-norm blocks
//! of causal self-attention (rotary then QK-norm, MQA/GQA through SDPA) and a ReLU² MLP, a final norm,
//! an untied lm_head over the padded vocab, logits in fp32 soft-capped at 15.
//! Parameter names and shapes are the reference's state_dict keys (§3.2), so weights move both ways.
use tch::nn::VarStore;
use tch::{Device, Kind, Reduction, Tensor};

use super::config::GptConfig;
use super::kv_cache::KvCache;
use super::precision::Precision;
use super::{chunked_loss, fused_ops, rotary};

/// Logits are squashed into (−SOFTCAP, SOFTCAP) (§3.3).
pub const SOFTCAP: f64 = 15.0;

struct Block {
    c_q: Tensor,
    c_k: Tensor,
    c_v: Tensor,
    attn_proj: Tensor,
    c_fc: Tensor,
    mlp_proj: Tensor,
}

impl Block {
    /// In the reference's module registration order, which is also its initialisation order.
    fn matrices(&self) -> [&Tensor; 6] {
        [&self.c_q, &self.c_k, &self.c_v, &self.attn_proj, &self.c_fc, &self.mlp_proj]
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
        let mut wte = (&root / "transformer" / "wte").zeros("weight", &[v, d]);
        if precision.compute_kind() != wte.kind() {
            // set_data changes the variable the VarStore holds too (they share one tensor).
            tch::no_grad(|| wte.set_data(&wte.to_kind(precision.compute_kind())));
        }
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
                    c_fc: (&mlp / "c_fc").zeros("weight", &[4 * d, d]),
                    mlp_proj: (&mlp / "c_proj").zeros("weight", &[d, 4 * d]),
                }
            })
            .collect();
        let lm_head = (&root / "lm_head").zeros("weight", &[v, d]);
        let (cos, sin) =
            rotary::precompute(config.sequence_len * rotary::ROTARY_OVERCOMPUTE, config.head_dim(), device);
        Ok(Gpt { config, precision, vs, wte, blocks, lm_head, cos, sin })
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// The reference's `init_weights` (§3.4), drawing from libtorch's generator in the same order and
    /// with the same shapes, so the same seed gives the same weights on CPU: every Linear
    /// N(0, 1/sqrt(fan_in)·min(1, sqrt(fan_out/fan_in))), wte N(0, 1), then lm_head and both c_proj zeroed.
    pub fn init_weights(&mut self) {
        tch::no_grad(|| {
            let _ = self.wte.shallow_clone().normal_(0.0, 1.0);
            let linears = self.blocks.iter().flat_map(|b| b.matrices()).chain(std::iter::once(&self.lm_head));
            for w in linears {
                let (fan_out, fan_in) = (w.size()[0] as f64, w.size()[1] as f64);
                let std = 1.0 / fan_in.sqrt() * (fan_out / fan_in).sqrt().min(1.0);
                let _ = w.shallow_clone().normal_(0.0, std);
            }
            let _ = self.lm_head.shallow_clone().zero_();
            for b in &self.blocks {
                let _ = b.attn_proj.shallow_clone().zero_();
                let _ = b.mlp_proj.shallow_clone().zero_();
            }
        });
    }

    /// Logits (B, T, vocab_size) in fp32. With a cache, positions continue from `cache.pos()`.
    pub fn forward(&self, idx: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        self.head(&self.hidden(idx, cache))
    }

    /// Logits (B, 1, vocab_size) of the last position only: what generation samples from, without
    /// the classifier's work for the prompt's other positions.
    pub fn forward_last(&self, idx: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        let x = self.hidden(idx, cache);
        let t = x.size()[1];
        self.head_rows(&x.select(1, t - 1)).unsqueeze(1)
    }

    /// Logits (N, vocab_size) at N chosen (row, position) pairs of `idx` (int64 tensors `rows`,
    /// `positions`): the classifier on just the positions a caller scores (CORE's answer spans).
    pub fn forward_at(&self, idx: &Tensor, rows: &Tensor, positions: &Tensor) -> Tensor {
        let x = self.hidden(idx, None);
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
        self.hidden(idx, None)
    }

    /// The hidden states after the last block, before the final norm.
    fn hidden(&self, idx: &Tensor, mut cache: Option<&mut KvCache>) -> Tensor {
        let t = idx.size()[1];
        let t0 = cache.as_ref().map_or(0, |c| c.pos());
        // Positions past the cached table (10× sequence_len) get the same values computed on demand
        // (the reference asserts instead; a chat conversation can be longer than a tiny model's table).
        let (cos, sin) = if t0 + t <= self.cos.size()[1] {
            (self.cos.narrow(1, t0, t), self.sin.narrow(1, t0, t))
        } else {
            let (cos, sin) = rotary::precompute(t0 + t, self.config.head_dim(), self.device());
            (cos.narrow(1, t0, t), sin.narrow(1, t0, t))
        };
        let mut x = norm(&Tensor::embedding(&self.wte, idx, -1, false, false));
        for (layer, block) in self.blocks.iter().enumerate() {
            x = &x + self.attention(block, layer, &norm(&x), &cos, &sin, cache.as_deref_mut());
            let hidden = fused_ops::relu_square(&linear(&norm(&x), &block.c_fc));
            x = &x + linear(&hidden, &block.mlp_proj);
        }
        x
    }

    /// Logits (M, vocab_size) for the packed tokens of several sequences, as continuous batching runs
    /// them (engine::scheduler): `idx` (N,) token ids at the rotary `positions` (N of them), the
    /// classifier only at the packed indices `wanted` (M,). Attention across tokens is the caller's:
    /// `attend(layer, q, k, v)` gets the (N, H, hd) queries and (N, H_kv, hd) keys and values of the
    /// layer (rotary and QK-norm applied, §3.3) and returns the (N, H, hd) attention output, keeping the
    /// keys and values in its own cache. Everything else is [`Gpt::forward`]'s computation.
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
            rotary::precompute(end, hd, self.device())
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
        self.train_loss_from_hidden(&self.hidden_states(idx), targets)
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

    fn attention(
        &self,
        b: &Block,
        layer: usize,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Tensor {
        let (bsz, t) = (x.size()[0], x.size()[1]);
        let (h, h_kv, hd) = (self.config.n_head, self.config.n_kv_head, self.config.head_dim());
        let q = linear(x, &b.c_q).view([bsz, t, h, hd]);
        let k = linear(x, &b.c_k).view([bsz, t, h_kv, hd]);
        let v = linear(x, &b.c_v).view([bsz, t, h_kv, hd]);
        // Rotary first, then QK-norm (§3.3); heads become the batch dimension.
        let q = norm(&rotary::apply(&q, cos, sin)).transpose(1, 2);
        let k = norm(&rotary::apply(&k, cos, sin)).transpose(1, 2);
        let v = v.transpose(1, 2);
        let (k, v) = match cache {
            Some(cache) => cache.insert(layer, &k, &v),
            None => (k, v),
        };
        let (tq, tk) = (q.size()[2], k.size()[2]);
        let gqa = h != h_kv;
        let y = if tq == tk {
            Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, true, None, gqa)
        } else if tq == 1 {
            Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, gqa)
        } else {
            // A chunk after a cached prefix: the whole prefix, then causal within the chunk.
            let prefix = Tensor::ones([tq, tk - tq], (Kind::Bool, q.device()));
            let chunk = Tensor::ones([tq, tq], (Kind::Bool, q.device())).tril(0);
            let mask = Tensor::cat(&[prefix, chunk], 1);
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, gqa)
        };
        linear(&y.transpose(1, 2).contiguous().view([bsz, t, h * hd]), &b.attn_proj)
    }

    /// Parameters by state_dict name, sorted (a stable order for optimizers and collectives).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> = self.vs.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// Every parameter in the reference's registration order (wte, blocks, lm_head), which is the
    /// order `clip_grad_norm_` reduces in.
    pub fn parameters_in_reference_order(&self) -> Vec<Tensor> {
        let blocks = self.blocks.iter().flat_map(|b| b.matrices()).map(Tensor::shallow_clone);
        std::iter::once(self.wte()).chain(blocks).chain(std::iter::once(self.lm_head())).collect()
    }

    /// The matrices Muon optimises, block by block.
    pub fn block_matrices(&self) -> Vec<Tensor> {
        self.blocks.iter().flat_map(|b| b.matrices()).map(Tensor::shallow_clone).collect()
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
