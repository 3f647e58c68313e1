//! Muon for the transformer's matrices (NANOCHAT.md §4.2): momentum buffer lerp, Nesterov, then
//! orthogonalisation by a 5-step Newton–Schulz iteration in bf16, and a step scaled by
//! sqrt(max(1, rows/cols)). The per-parameter rule, [`MuonUpdate`], is shared with [`super::DistMuon`].
use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};

/// Quintic Newton–Schulz coefficients (a, b, c) (§4.2).
pub const NS_COEFFICIENTS: (f64, f64, f64) = (3.4445, -4.7750, 2.0315);

/// A bf16 matrix product: bf16 operands, fp32 accumulation, the result rounded to bf16 — what a bf16
/// GEMM computes. On CUDA that is the native bf16 matmul (tensor cores). On a CPU the same arithmetic
/// runs as an fp32 GEMM on the bf16 values, rounded once at the end: libtorch's CPU bf16 GEMM (without
/// AVX512-BF16 or AMX) is a fallback 3-12x slower than the fp32 GEMM at Muon's shapes, which made
/// Newton–Schulz more than half of the smoke model's training step. The two differ only in the fp32 summation order, as
/// bf16 GEMMs of different CPUs already do (a few elements in 10^4 by one bf16 ulp).
fn bf16_matmul(a: &Tensor, b: &Tensor) -> Tensor {
    match a.device() {
        Device::Cpu => a.to_kind(Kind::Float).matmul(&b.to_kind(Kind::Float)).to_kind(Kind::BFloat16),
        _ => a.matmul(b),
    }
}

/// Approximately orthogonalises `g` (its "zeroth power") in bf16: one matrix, or a stack of
/// matrices of one shape (batch dimensions first), each orthogonalised on its own.
pub fn newton_schulz(g: &Tensor, steps: u32) -> Tensor {
    let (a, b, c) = NS_COEFFICIENTS;
    let size = g.size();
    let tall = size[size.len() - 2] > size[size.len() - 1];
    let mut x = g.to_kind(Kind::BFloat16);
    if tall {
        x = x.transpose(-2, -1);
    }
    let norm = x.norm_scalaropt_dim(2, [-2i64, -1].as_slice(), true);
    x = &x / (norm + 1e-7);
    for _ in 0..steps {
        let a_mat = bf16_matmul(&x, &x.transpose(-2, -1));
        // The reference writes `b*A + c*A @ A`, which Python evaluates as b*A + (c*A) @ A.
        let b_mat = a_mat.g_mul_scalar(b) + bf16_matmul(&a_mat.g_mul_scalar(c), &a_mat);
        x = x.g_mul_scalar(a) + bf16_matmul(&b_mat, &x);
    }
    if tall {
        x = x.transpose(-2, -1);
    }
    x
}

/// The Muon update rule of one step (§4.2) with its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MuonUpdate {
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub ns_steps: u32,
}

impl MuonUpdate {
    /// Updates the 2-D parameter `p` in place from its gradient `g`, advancing the momentum buffer
    /// `buf` (zeros before the first step). With Nesterov, `g` is overwritten with the blended
    /// gradient (as the reference's `g.lerp_(buf, momentum)`).
    pub fn apply(&self, p: &Tensor, g: &mut Tensor, buf: &mut Tensor) {
        let mut buffers = [Some(buf.shallow_clone())];
        self.apply_group(std::slice::from_ref(p), &mut buffers, vec![(0, g.shallow_clone())]);
    }

    /// [`MuonUpdate::apply`] to parameters of one shape at once: `grads` holds (index into `params`,
    /// gradient) pairs, whose momentum buffers are `buffers` at the same index (zeros, made here, before
    /// the first step). The momentum per parameter, then one Newton–Schulz over their stack (one
    /// batched matmul per product instead of one per parameter) and the scaled updates. Each
    /// parameter gets what `apply` would give it alone.
    pub fn apply_group(&self, params: &[Tensor], buffers: &mut [Option<Tensor>], grads: Vec<(usize, Tensor)>) {
        let Some(&(first, _)) = grads.first() else { return };
        tch::no_grad(|| {
            let mut blended = Vec::with_capacity(grads.len());
            for (i, mut g) in grads.iter().map(|(i, g)| (*i, g.shallow_clone())) {
                let buf = buffers[i].get_or_insert_with(|| g.zeros_like());
                let _ = buf.lerp_(&g, 1.0 - self.momentum);
                blended.push(match self.nesterov {
                    true => g.lerp_(buf, self.momentum),
                    false => buf.shallow_clone(),
                });
            }
            let update = match blended.len() {
                1 => newton_schulz(&blended[0], self.ns_steps).unsqueeze(0),
                _ => newton_schulz(&Tensor::stack(&blended, 0), self.ns_steps),
            };
            let first = &params[first];
            let (rows, cols) = (first.size()[0] as f64, first.size()[1] as f64);
            let scale = (rows / cols).max(1.0).sqrt();
            let update = update.to_kind(first.kind()) * (-self.lr * scale);
            for (k, (i, _)) in grads.iter().enumerate() {
                let _ = params[*i].shallow_clone().g_add_(&update.get(k as i64));
            }
        });
    }
}

pub struct Muon {
    pub params: Vec<Tensor>,
    pub initial_lr: f64,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub ns_steps: u32,
    pub(crate) buffers: Vec<Option<Tensor>>,
}

impl Muon {
    pub fn new(params: Vec<Tensor>, lr: f64, momentum: f64, ns_steps: u32) -> Self {
        let buffers = params.iter().map(|_| None).collect();
        Muon { params, initial_lr: lr, lr, momentum, nesterov: true, ns_steps, buffers }
    }

    pub fn set_lr_multiplier(&mut self, multiplier: f64) {
        self.lr = self.initial_lr * multiplier;
    }

    /// The update rule with the current lr and momentum.
    pub fn rule(&self) -> MuonUpdate {
        MuonUpdate { lr: self.lr, momentum: self.momentum, nesterov: self.nesterov, ns_steps: self.ns_steps }
    }

    /// One update from the parameters' `.grad()`, the parameters of each shape and dtype together
    /// ([`MuonUpdate::apply_group`]). Parameters without a gradient are left alone.
    pub fn step(&mut self) {
        let rule = self.rule();
        let mut groups: BTreeMap<(Vec<i64>, String), Vec<usize>> = BTreeMap::new();
        for (i, p) in self.params.iter().enumerate() {
            if p.grad().defined() {
                groups.entry((p.size(), format!("{:?}", p.kind()))).or_default().push(i);
            }
        }
        for indices in groups.values() {
            let grads = indices.iter().map(|&i| (i, self.params[i].grad())).collect();
            rule.apply_group(&self.params, &mut self.buffers, grads);
        }
    }
}

impl Muon {
    /// Momentum buffers as named tensors, for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let buffers = self.buffers.iter().enumerate();
        buffers.filter_map(|(i, b)| Some((format!("muon.{i}.momentum_buffer"), b.as_ref()?.shallow_clone()))).collect()
    }

    pub fn load_state_tensors(
        &mut self,
        state: &std::collections::HashMap<String, Tensor>,
    ) -> Result<(), super::DistOptimError> {
        for (i, (p, buf)) in self.params.iter().zip(self.buffers.iter_mut()).enumerate() {
            *buf = match state.get(&format!("muon.{i}.momentum_buffer")) {
                Some(t) if t.size() == p.size() => Some(t.to_device(p.device()).to_kind(p.kind())),
                Some(t) => {
                    return Err(super::DistOptimError::State(format!(
                        "Muon buffer {i} has shape {:?}, expected {:?}",
                        t.size(),
                        p.size()
                    )))
                }
                None => None,
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_bf16_matmul_matches_the_native_bf16_gemm_up_to_summation_order() {
        tch::manual_seed(0);
        let a = Tensor::randn([64, 256], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let b = Tensor::randn([256, 96], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let ours = bf16_matmul(&a, &b);
        let native = a.matmul(&b);
        assert_eq!(ours.kind(), Kind::BFloat16);
        let (ours, native) = (ours.to_kind(Kind::Float), native.to_kind(Kind::Float));
        let differ = ours.ne_tensor(&native).sum(Kind::Int64).int64_value(&[]);
        assert!(differ * 100 < ours.numel() as i64, "{differ} of {} elements differ", ours.numel());
        // Where they differ, by one bf16 ulp at most (8 significant bits: 2^-7 relative, rounding either way).
        let rel = ((&ours - &native).abs() / native.abs().clamp_min(1e-3)).max().double_value(&[]);
        assert!(rel <= 2f64.powi(-7), "{rel}");
    }

    #[test]
    fn a_group_update_gives_each_parameter_what_it_gets_alone() {
        for (shape, nesterov) in [([24i64, 40], true), ([40, 24], false)] {
            let rule = MuonUpdate { lr: 0.02, momentum: 0.9, nesterov, ns_steps: 5 };
            // Drawn once and copied: the global generator is shared with the tests running beside this one.
            let initial: Vec<[Tensor; 3]> =
                (0..3).map(|_| std::array::from_fn(|_| Tensor::randn(shape, (Kind::Float, Device::Cpu)))).collect();
            let copies = || -> Vec<[Tensor; 3]> { initial.iter().map(|t| t.each_ref().map(Tensor::copy)).collect() };
            // Two steps each way, so the second starts from a non-zero momentum.
            let (alone, together) = (copies(), copies());
            for _ in 0..2 {
                for [p, g, buf] in &alone {
                    rule.apply(p, &mut g.copy(), &mut buf.shallow_clone());
                }
                let params: Vec<Tensor> = together.iter().map(|[p, _, _]| p.shallow_clone()).collect();
                let mut bufs: Vec<Option<Tensor>> = together.iter().map(|[_, _, b]| Some(b.shallow_clone())).collect();
                let grads = together.iter().enumerate().map(|(i, [_, g, _])| (i, g.copy())).collect();
                rule.apply_group(&params, &mut bufs, grads);
            }
            for (([p, _, buf], [q, _, buf_q]), [p0, _, _]) in alone.iter().zip(&together).zip(&initial) {
                assert!(p.equal(q) && buf.equal(buf_q), "{shape:?}: the batched update differs");
                assert!(!p.equal(p0), "the parameter moved");
            }
        }
    }

    #[test]
    fn newton_schulz_orthogonalises_wide_and_tall_matrices_in_bf16() {
        tch::manual_seed(1);
        for shape in [[32i64, 128], [128, 32]] {
            let g = Tensor::randn(shape, (Kind::Float, Device::Cpu));
            let x = newton_schulz(&g, 5);
            assert_eq!((x.kind(), x.size()), (Kind::BFloat16, shape.to_vec()));
            // The quintic iteration leaves every singular value near 1 (about 0.7..1.2), never 0 or 2:
            // the eigenvalues of X·Xᵀ (over the short side) are their squares.
            let x = x.to_kind(Kind::Float);
            let gram = if shape[0] <= shape[1] { x.matmul(&x.tr()) } else { x.tr().matmul(&x) };
            let s = gram.linalg_eigvalsh("L").sqrt();
            let (lo, hi) = (s.min().double_value(&[]), s.max().double_value(&[]));
            assert!(lo > 0.5 && hi < 1.3, "{shape:?}: singular values in [{lo}, {hi}]");
        }
    }
}
