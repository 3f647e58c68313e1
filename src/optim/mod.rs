//! Optimisers of NANOCHAT.md §4: AdamW for the embedding and lm_head, Muon for every matrix in the
//! transformer blocks, the LR/momentum schedules and gradient clipping. Under DDP the gradients are
//! averaged inside the optimisers: [`DistAdamW`] (ZeRO-2 style sharding, §4.3) and [`DistMuon`]
//! (one owner per matrix, §4.2).
pub mod adamw;
pub mod dist_adamw;
pub mod dist_muon;
pub mod muon;
pub mod muon_adamw;
pub mod optimizer_pair;
pub mod schedule;
pub mod schedule_92d63d4;

use tch::Tensor;

pub use adamw::{AdamEps, AdamGroup, AdamHyper, AdamUpdate, AdamW};
pub use dist_adamw::DistAdamW;
pub use dist_muon::DistMuon;
pub use muon::{Muon, MuonUpdate};
pub use muon_adamw::{setup_muon_adamw, MuonAdamW, MuonAdamWError, MuonAdamWSettings};
pub use optimizer_pair::Optimizers;

use crate::dist::DistError;
use crate::model::Gpt;

/// What can go wrong in a distributed optimiser step or when restoring its state.
#[derive(Debug, thiserror::Error)]
pub enum DistOptimError {
    #[error(transparent)]
    Dist(#[from] DistError),
    #[error(transparent)]
    MuonAdamW(#[from] MuonAdamWError),
    #[error(
        "DistAdamW shards `{param}` (shape {shape:?}) along dim 0, but its {rows} rows do not split evenly over \
         {world_size} ranks; use a number of processes that divides {rows}"
    )]
    IndivisibleRows { param: String, shape: Vec<i64>, rows: i64, world_size: usize },
    #[error("{optimizer} was built for {expected} ranks but the process group has {actual}")]
    WorldSizeMismatch { optimizer: &'static str, expected: usize, actual: usize },
    #[error("{optimizer}: `{param}` has no gradient; every rank needs a gradient for every parameter before a step")]
    MissingGradient { optimizer: &'static str, param: String },
    #[error("DistMuon: parameters of shape {shape:?} mix dtypes {first:?} and {other:?}")]
    MixedKinds { shape: Vec<i64>, first: tch::Kind, other: tch::Kind },
    #[error("DistMuon handles 2-D matrices only; parameter {index} has shape {shape:?}")]
    NotAMatrix { index: usize, shape: Vec<i64> },
    #[error("optimizer state: {0}")]
    State(String),
}

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
    /// Every initial LR is this fraction of the one above (the chat stages' `init_lr_frac`, §5.3-5.5),
    /// applied after the width scaling as the reference does.
    pub init_lr_frac: f64,
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
            init_lr_frac: 1.0,
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
        initial_lr: lr * scale * s.init_lr_frac,
        lr: lr * scale * s.init_lr_frac,
    };
    let adamw = AdamW::new(
        vec![group("lm_head", s.unembedding_lr, model.lm_head()), group("wte", s.embedding_lr, model.wte())],
        s.adam_betas,
        s.adam_eps,
        s.weight_decay,
    );
    let muon = Muon::new(model.block_matrices(), s.matrix_lr * s.init_lr_frac, s.muon_momentum, s.muon_ns_steps);
    (adamw, muon)
}

/// [`setup_optimizers`] for rank `rank` of `world_size` processes: the same groups and settings,
/// with the gradient averaging done by the optimisers (§4.1: the model is not wrapped in DDP).
pub fn setup_dist_optimizers(
    model: &Gpt,
    s: &OptimizerSettings,
    rank: usize,
    world_size: usize,
) -> Result<(DistAdamW, DistMuon), DistOptimError> {
    let (adamw, muon) = setup_optimizers(model, s);
    Ok((DistAdamW::from_adamw(adamw, rank, world_size)?, DistMuon::from_muon(muon, rank, world_size)?))
}

/// Scales all gradients so their global L2 norm is at most `max_norm` (torch's clip_grad_norm_:
/// coefficient max_norm/(norm + 1e-6), clamped to 1). Returns the norm before clipping.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    clip_grad_norm_queued(params, max_norm).double_value(&[])
}

/// [`clip_grad_norm`] without waiting for the device: the total norm is returned as a scalar tensor
/// on the parameters' device (0 when no parameter has a gradient).
pub fn clip_grad_norm_queued(params: &[Tensor], max_norm: f64) -> Tensor {
    tch::no_grad(|| {
        let grads: Vec<Tensor> = params.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
        let Some(first) = grads.first() else { return Tensor::from(0.0f32) };
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm();
        let coef = (max_norm / (&total + 1e-6)).clamp_max(1.0);
        for g in &grads {
            let _ = g.shallow_clone().g_mul_(&coef.to_kind(g.kind()));
        }
        total.to_device(first.device())
    })
}
