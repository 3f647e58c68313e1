//! The loss without the full logits: cross-entropy of soft-capped logits (NANOCHAT.md §3.3 steps
//! 3-4) computed over chunks of positions, as the training loss (the mean, with its gradient) and as
//! evaluation's per-token losses (no gradient). At vocab 65,536 the (B·T, vocab) fp32 logits and
//! their gradient are the largest tensors of a step; here at most one chunk of them exists at a time.
//!
//! When the hidden states carry a gradient, each chunk's backward is done in the same pass, by hand:
//! dL/dz = (softmax(z) − onehot(y))·valid/count for the soft-capped logits z = 15·tanh(l/15), then
//! dz/dl = 1 − tanh², then the two matmuls that give dL/dh and dL/dW. The returned loss carries those
//! gradients through a zero-valued surrogate, `s − s.detach()` with s = Σ h·dL/dh + Σ W·dL/dW, so a
//! plain `.backward()` (scaled or accumulated like any loss) delivers them to the rest of the graph.
use std::sync::atomic::{AtomicBool, Ordering};

use tch::{Device, Kind, Tensor};

use super::gpt::SOFTCAP;

/// Elements of one chunk's fp32 logits on the CPU: 2^25 (128 MiB), so 512 positions at vocab
/// 65,536: the chunk stays near the caches and the step's peak memory low.
pub const CHUNK_ELEMENTS: i64 = 1 << 25;

/// Elements of one chunk's fp32 logits on a GPU: 2^28 (1 GiB), so 4,096 positions at vocab 65,536
/// (d20's 32×2048 batch in 16 chunks, about 5 GiB of temporaries at a time). Each chunk's work is
/// a dozen kernels whatever its size, so fewer, larger chunks keep the GPU busy between launches.
pub const CUDA_CHUNK_ELEMENTS: i64 = 1 << 28;

/// Positions per chunk at this vocabulary on `device`: [`CHUNK_ELEMENTS`] or
/// [`CUDA_CHUNK_ELEMENTS`] logits, at least one row.
pub fn chunk_rows(vocab: i64, device: Device) -> i64 {
    let elements = if device.is_cuda() { CUDA_CHUNK_ELEMENTS } else { CHUNK_ELEMENTS };
    (elements / vocab).max(1)
}

/// Mean cross-entropy over the targets that are not −1 of `15·tanh((h·Wᵀ)[:, :vocab] / 15)`, for
/// final-norm hidden states `h` (N, d) in the compute dtype, the head `w` (padded vocab, d) and
/// targets (N). The matmuls run in `h`'s dtype (W cast to it), the soft-cap and the loss in fp32.
pub fn softcapped_cross_entropy(h: &Tensor, w: &Tensor, vocab: i64, targets: &Tensor) -> Tensor {
    softcapped_cross_entropy_in_chunks(h, w, vocab, targets, chunk_rows(vocab, h.device()))
}

/// [`softcapped_cross_entropy`] with `chunk_rows` positions per chunk.
pub fn softcapped_cross_entropy_in_chunks(
    h: &Tensor,
    w: &Tensor,
    vocab: i64,
    targets: &Tensor,
    chunk_rows: i64,
) -> Tensor {
    let (n, d) = (h.size()[0], h.size()[1]);
    let device = h.device();
    let with_grad = h.requires_grad();
    let count = targets.ge(0).sum(Kind::Float);

    let mut loss_sum = Tensor::zeros([], (Kind::Float, device));
    let mut grad_h = with_grad.then(|| Tensor::empty([n, d], (h.kind(), device)));
    let mut grad_w = with_grad.then(|| Tensor::zeros([vocab, d], (Kind::Float, device)));
    let wc = head_in(w, vocab, h.kind());
    for_each_chunk(h, &wc, targets, chunk_rows, |c| {
        loss_sum += c.nll.sum(Kind::Float);
        if let (Some(grad_h), Some(grad_w)) = (grad_h.as_mut(), grad_w.as_mut()) {
            let mut g = (c.z - &c.lse).exp_();
            let _ = g.scatter_add_(1, &c.targets, &Tensor::full([c.len, 1], -1.0, (Kind::Float, device)));
            let _ = g.g_mul_(&(&c.valid / &count));
            let _ = g.g_mul_(&(c.t.square().neg_() + 1.0));
            let g = g.to_kind(h.kind());
            grad_h.narrow(0, c.start, c.len).copy_(&g.matmul(&wc));
            accumulate_head_grad(grad_w, &g, &c.h);
        }
    });
    let loss = loss_sum / &count;
    match (grad_h, grad_w) {
        (Some(grad_h), Some(grad_w)) => {
            let s = (h * grad_h).sum(Kind::Float) + (w.narrow(0, 0, vocab) * grad_w).sum(Kind::Float);
            loss + (&s - s.detach())
        }
        _ => loss,
    }
}

/// `grad_w += gᵀ·h` for the chunk's logit gradient `g` and hidden states `h` (compute dtype) into
/// the fp32 `grad_w`. On CUDA with bf16 operands the GEMM accumulates into `grad_w` itself (fp32
/// output, β = 1: `addmm` with `out_dtype`), one pass over it per chunk; elsewhere (fp32, or the
/// CPU, where the golden tests fix the rounding) the product is rounded to the compute dtype and
/// added, as before. Should libtorch refuse the CUDA form, the other is used, with one warning.
fn accumulate_head_grad(grad_w: &mut Tensor, g: &Tensor, h: &Tensor) {
    static REFUSED: AtomicBool = AtomicBool::new(false);
    if grad_w.device().is_cuda() && g.kind() != Kind::Float && !REFUSED.load(Ordering::Relaxed) {
        let acc: &Tensor = grad_w;
        match acc.f_addmm_dtype_out(acc, &g.tr(), h, Kind::Float) {
            Ok(_) => return,
            Err(e) => {
                REFUSED.store(true, Ordering::Relaxed);
                log::warn!("addmm with an fp32 output failed ({e}); the loss adds the head's gradient in two passes");
            }
        }
    }
    *grad_w += g.tr().matmul(h).to_kind(Kind::Float);
}

/// The cross-entropy of each position (N,) in fp32, 0 where the target is −1 (as `Reduction::None`
/// with ignore_index −1), `chunk_rows` positions at a time and without gradients: evaluation's
/// per-token losses with at most one chunk of fp32 logits alive.
pub fn softcapped_token_losses(h: &Tensor, w: &Tensor, vocab: i64, targets: &Tensor, chunk_rows: i64) -> Tensor {
    let losses = Tensor::empty([h.size()[0]], (Kind::Float, h.device()));
    for_each_chunk(h, &head_in(w, vocab, h.kind()), targets, chunk_rows, |c| {
        losses.narrow(0, c.start, c.len).copy_(&c.nll.squeeze_dim(1));
    });
    losses
}

/// The head's first `vocab` rows, detached, in the compute dtype `kind`.
fn head_in(w: &Tensor, vocab: i64, kind: Kind) -> Tensor {
    w.detach().narrow(0, 0, vocab).to_kind(kind)
}

/// Positions `start..start + len` with their soft-capped logits.
struct Chunk {
    start: i64,
    len: i64,
    /// The chunk's hidden states (len, d).
    h: Tensor,
    /// Targets (len, 1) with −1 replaced by 0, and 1.0 where the target is not −1 (len, 1).
    targets: Tensor,
    valid: Tensor,
    /// t = tanh(l/15) and the soft-capped logits z = 15·t (len, vocab), fp32.
    t: Tensor,
    z: Tensor,
    /// logsumexp of z (len, 1).
    lse: Tensor,
    /// Cross-entropy of each position (len, 1), 0 where the target is −1.
    nll: Tensor,
}

/// Calls `each` on the chunks of `chunk_rows` positions of `h` against the head `wc` (vocab, d) in
/// `h`'s dtype, without recording gradients.
fn for_each_chunk(h: &Tensor, wc: &Tensor, targets: &Tensor, chunk_rows: i64, mut each: impl FnMut(Chunk)) {
    let n = h.size()[0];
    let h = h.detach();
    let valid = targets.ge(0).to_kind(Kind::Float).unsqueeze(1);
    let safe_targets = targets.clamp_min(0).unsqueeze(1);
    tch::no_grad(|| {
        for start in (0..n).step_by(chunk_rows.max(1) as usize) {
            let len = chunk_rows.min(n - start);
            let hc = h.narrow(0, start, len);
            let t = hc.matmul(&wc.tr()).to_kind(Kind::Float).divide_scalar_(SOFTCAP).tanh_();
            let z = &t * SOFTCAP;
            let lse = z.logsumexp([1i64].as_slice(), true);
            let (targets, valid) = (safe_targets.narrow(0, start, len), valid.narrow(0, start, len));
            let nll = (&lse - z.gather(1, &targets, false)) * &valid;
            each(Chunk { start, len, h: hc, targets, valid, t, z, lse, nll });
        }
    });
}

#[cfg(test)]
mod tests {
    use tch::{Device, Reduction};

    use super::*;

    /// The unfused reference: full logits, soft-cap, cross_entropy with ignore_index −1.
    fn unfused_with(h: &Tensor, w: &Tensor, vocab: i64, targets: &Tensor, reduction: Reduction) -> Tensor {
        let logits = h.linear(&w.to_kind(h.kind()), None::<Tensor>).narrow(1, 0, vocab).to_kind(Kind::Float);
        let z = (logits / SOFTCAP).tanh() * SOFTCAP;
        z.cross_entropy_loss(targets, None::<Tensor>, reduction, -1, 0.0)
    }

    fn unfused(h: &Tensor, w: &Tensor, vocab: i64, targets: &Tensor) -> Tensor {
        unfused_with(h, w, vocab, targets, Reduction::Mean)
    }

    fn case(kind: Kind) -> (Tensor, Tensor, Tensor) {
        tch::manual_seed(3);
        let h = Tensor::randn([37, 16], (Kind::Float, Device::Cpu)).to_kind(kind).set_requires_grad(true);
        let w = (Tensor::randn([128, 16], (Kind::Float, Device::Cpu)) * 2.0).set_requires_grad(true);
        let targets = Tensor::randint(100, [37], (Kind::Int64, Device::Cpu));
        // Some ignored positions, as SFT's masks make.
        let _ = targets.narrow(0, 5, 4).fill_(-1);
        (h, w, targets)
    }

    fn grads(loss: &Tensor, h: &Tensor, w: &Tensor) -> (Tensor, Tensor) {
        h.shallow_clone().zero_grad();
        w.shallow_clone().zero_grad();
        (loss * 0.5).backward();
        (h.grad().to_kind(Kind::Float).copy(), w.grad().copy())
    }

    #[test]
    fn same_loss_and_gradients_as_the_full_logits_in_fp32() {
        let (h, w, targets) = case(Kind::Float);
        let expected = unfused(&h, &w, 100, &targets);
        let (eh, ew) = grads(&expected, &h, &w);
        for chunk_rows in [1, 8, 37, 100] {
            let fused = softcapped_cross_entropy_in_chunks(&h, &w, 100, &targets, chunk_rows);
            assert!(fused.allclose(&expected, 1e-6, 1e-6, false), "{chunk_rows}: {fused:?} vs {expected:?}");
            let (gh, gw) = grads(&fused, &h, &w);
            assert!(gh.allclose(&eh, 1e-5, 1e-7, false), "dL/dh with {chunk_rows} rows per chunk");
            assert!(gw.allclose(&ew, 1e-5, 1e-7, false), "dL/dW with {chunk_rows} rows per chunk");
        }
        // The padded rows of W (vocab 100 of 128) get no gradient, as through the unfused narrow.
        assert_eq!(ew.narrow(0, 100, 28).abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    #[test]
    fn bf16_hidden_states_match_within_bf16_tolerance() {
        let (h, w, targets) = case(Kind::BFloat16);
        let expected = unfused(&h, &w, 100, &targets);
        let (eh, ew) = grads(&expected, &h, &w);
        let fused = softcapped_cross_entropy_in_chunks(&h, &w, 100, &targets, 8);
        assert_eq!(fused.kind(), Kind::Float, "the loss is fp32");
        assert!(fused.allclose(&expected, 1e-3, 1e-3, false), "{fused:?} vs {expected:?}");
        let (gh, gw) = grads(&fused, &h, &w);
        assert_eq!(h.grad().kind(), Kind::BFloat16);
        assert!(gh.allclose(&eh, 2e-2, 1e-3, false));
        assert!(gw.allclose(&ew, 2e-2, 1e-3, false));
    }

    #[test]
    fn without_gradients_it_only_computes_the_loss() {
        let (h, w, targets) = case(Kind::Float);
        let expected = tch::no_grad(|| unfused(&h, &w, 100, &targets));
        let fused = tch::no_grad(|| softcapped_cross_entropy_in_chunks(&h.detach(), &w, 100, &targets, 8));
        assert!(!fused.requires_grad());
        assert!(fused.allclose(&expected, 1e-6, 1e-6, false));
    }

    #[test]
    fn per_token_losses_match_the_full_logits_whatever_the_chunking() {
        for kind in [Kind::Float, Kind::BFloat16] {
            let (h, w, targets) = case(kind);
            let expected = tch::no_grad(|| unfused_with(&h, &w, 100, &targets, Reduction::None));
            let tolerance = if kind == Kind::Float { 1e-6 } else { 1e-3 };
            // One row, a chunk boundary inside the batch, an uneven last chunk, all at once.
            for chunk_rows in [1, 8, 36, 37, 100] {
                let losses = softcapped_token_losses(&h, &w, 100, &targets, chunk_rows);
                assert_eq!((losses.kind(), losses.size()), (Kind::Float, vec![37]));
                assert!(!losses.requires_grad(), "evaluation records no graph");
                assert!(losses.allclose(&expected, tolerance, tolerance, false), "{kind:?}, {chunk_rows} rows");
            }
            let ignored = softcapped_token_losses(&h, &w, 100, &targets, 8).narrow(0, 5, 4);
            assert_eq!(ignored.abs().sum(Kind::Float).double_value(&[]), 0.0, "−1 targets cost nothing");
        }
    }

    #[test]
    fn all_targets_ignored_gives_nan_like_the_unfused_mean() {
        let (h, w, _) = case(Kind::Float);
        let targets = Tensor::full([37], -1, (Kind::Int64, Device::Cpu));
        assert!(softcapped_cross_entropy(&h, &w, 100, &targets).double_value(&[]).is_nan());
        assert!(unfused(&h, &w, 100, &targets).double_value(&[]).is_nan());
    }
}
