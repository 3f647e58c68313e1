//! Optimisers of NANOCHAT.md §4: AdamW for the embedding and lm_head, Muon for every matrix in the
//! transformer blocks, the LR/momentum schedules and gradient clipping.
pub mod adamw;
pub mod muon;
pub mod schedule;

use tch::Tensor;

pub use adamw::{AdamGroup, AdamW};
pub use muon::Muon;

use crate::model::Gpt;

/// The AdamW LRs were tuned at d = 768 and scale by (d/768)^−0.5 (§4.1).
pub const LR_REFERENCE_DIM: f64 = 768.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerSettings {
    pub unembedding_lr: f64,
    pub embedding_lr: f64,
    pub matrix_lr: f64,
    pub weight_decay: f64,
    pub adam_betas: (f64, f64),
    pub adam_eps: f64,
    pub muon_momentum: f64,
    pub muon_ns_steps: u32,
}

impl OptimizerSettings {
    /// The reference defaults (§4.1).
    pub fn reference() -> Self {
        OptimizerSettings {
            unembedding_lr: 0.004,
            embedding_lr: 0.2,
            matrix_lr: 0.02,
            weight_decay: 0.0,
            adam_betas: (0.8, 0.95),
            adam_eps: 1e-10,
            muon_momentum: 0.95,
            muon_ns_steps: 5,
        }
    }
}

/// The reference's `setup_optimizers`: AdamW over [lm_head, wte] with width-scaled LRs, Muon over
/// every block matrix (§4.1). Stepping order is AdamW then Muon.
pub fn setup_optimizers(model: &Gpt, s: &OptimizerSettings) -> (AdamW, Muon) {
    let scale = (model.config.n_embd as f64 / LR_REFERENCE_DIM).powf(-0.5);
    let group = |name: &str, lr: f64, param: Tensor| AdamGroup {
        name: name.to_string(),
        params: vec![param],
        initial_lr: lr * scale,
        lr: lr * scale,
    };
    let adamw = AdamW::new(
        vec![group("lm_head", s.unembedding_lr, model.lm_head()), group("wte", s.embedding_lr, model.wte())],
        s.adam_betas,
        s.adam_eps,
        s.weight_decay,
    );
    let muon = Muon::new(model.block_matrices(), s.matrix_lr, s.muon_momentum, s.muon_ns_steps);
    (adamw, muon)
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (torch's clip_grad_norm_:
/// coefficient max_norm/(norm + 1e-6), clamped to 1). Returns the norm before clipping.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return 0.0;
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm();
        let coef = (max_norm / (&total + 1e-6)).clamp_max(1.0);
        for g in &grads {
            let _ = g.shallow_clone().g_mul_(&coef.to_kind(g.kind()));
        }
        total.double_value(&[])
    })
}
