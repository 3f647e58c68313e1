//! The 92d63d4 optimizer, `MuonAdamW` of `nanochat/optim.py` (NANOCHAT.md §4.5, §12 items 7, 8, 10
//! and 11), next to the late-2025 [`super::Muon`] and [`super::AdamW`]: one list of parameter groups,
//! each AdamW (its own betas, eps and weight decay, fp32 arithmetic for bf16 parameters) or Muon (the
//! matrices of one shape, stacked: Nesterov momentum, MuonEq row equilibration, Polar Express
//! orthogonalisation, Muon+ renormalisation, NorMuon variance reduction and cautious weight decay).
//!
//! Like the reference's fused kernels, the hyperparameters enter as 0-D fp32 tensors (rounded to
//! fp32 once per step), so the arithmetic on them is the reference's own.
//! One implementation for one and many processes, as the reference: with a process group the
//! gradients are averaged inside the step (reduce-scatter or all-reduce), each rank updates its share
//! of the parameters with optimizer state for that share only, and all-gathers them; in one process
//! the same code runs without communication.
use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::dist::{DistError, ProcessGroup, ReduceOp, Work};
use crate::model::{Gpt, Precision};

use super::LR_REFERENCE_DIM;

/// Polar Express coefficients (a, b, c) per iteration, computed for 5 iterations, safety factor 2e-2,
/// cushion 2 (arXiv 2505.16932).
pub const POLAR_EXPRESS_COEFFICIENTS: [(f64, f64, f64); 5] = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
];

/// Across processes, AdamW parameters with fewer elements are all-reduced whole; larger ones are
/// reduce-scattered along dim 0, which must divide by the number of processes.
pub const SMALL_PARAM: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum MuonAdamWError {
    #[error(transparent)]
    Dist(#[from] DistError),
    #[error("`{param}` has {rows} rows, which do not split evenly over {world_size} processes")]
    IndivisibleRows { param: String, rows: i64, world_size: usize },
    #[error("Muon group of shape {shape:?}: parameter {index} has shape {other:?}")]
    MixedShapes { shape: Vec<i64>, index: usize, other: Vec<i64> },
    #[error("Muon handles 2-D matrices only; a parameter has shape {0:?}")]
    NotAMatrix(Vec<i64>),
    #[error("the parameter groups hold {grouped} tensors but the model has {total}")]
    Ungrouped { grouped: usize, total: usize },
    #[error("`{0}` has no gradient; every parameter needs one before a step")]
    MissingGradient(String),
    #[error("optimizer state lacks `{0}`")]
    MissingState(String),
    #[error("optimizer state `{0}` is not this optimizer's (another optimizer's, or other parameter groups)")]
    ForeignState(String),
    #[error("optimizer state `{name}` has shape {shape:?}, expected {expected:?}")]
    StateShape { name: String, shape: Vec<i64>, expected: Vec<i64> },
}

/// A 0-D fp32 tensor holding `value`, as the reference's `_t` tensors after `fill_` (which live on
/// the CPU; here on the parameters' device, so that no operation mixes devices).
fn scalar(value: f64, device: Device) -> Tensor {
    Tensor::from(value as f32).to_device(device)
}

/// The Adam moments of one parameter.
struct AdamState {
    step: i64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

pub struct AdamWGroup {
    pub name: &'static str,
    pub params: Vec<Tensor>,
    /// The LR the schedule multiplies (`initial_lr`).
    pub initial_lr: f64,
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
    state: Vec<Option<AdamState>>,
}

/// The factored second moment and the momentum of a Muon group's stack.
struct MuonState {
    momentum_buffer: Tensor,
    second_momentum_buffer: Tensor,
}

pub struct MuonGroup {
    /// Matrices of one shape, stacked in this order.
    pub params: Vec<Tensor>,
    pub initial_lr: f64,
    pub lr: f64,
    pub momentum: f64,
    pub ns_steps: usize,
    pub beta2: f64,
    pub weight_decay: f64,
    /// Orthogonalise in bf16 (the reference does where its COMPUTE_DTYPE is bf16); false: in the
    /// gradients' dtype.
    pub bf16_orthogonalisation: bool,
    state: Option<MuonState>,
}

pub enum ParamGroup {
    AdamW(AdamWGroup),
    Muon(MuonGroup),
}

impl AdamWGroup {
    pub fn new(
        name: &'static str,
        params: Vec<Tensor>,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
    ) -> Self {
        let state = params.iter().map(|_| None).collect();
        AdamWGroup { name, params, initial_lr: lr, lr, betas, eps, weight_decay, state }
    }
}

impl MuonGroup {
    /// Every parameter must be a matrix of the first one's shape.
    pub fn new(
        params: Vec<Tensor>,
        lr: f64,
        momentum: f64,
        ns_steps: usize,
        beta2: f64,
        weight_decay: f64,
    ) -> Result<Self, MuonAdamWError> {
        let shape = params.first().map(Tensor::size).unwrap_or_default();
        if shape.len() != 2 {
            return Err(MuonAdamWError::NotAMatrix(shape));
        }
        if let Some((index, p)) = params.iter().enumerate().find(|(_, p)| p.size() != shape) {
            return Err(MuonAdamWError::MixedShapes { shape, index, other: p.size() });
        }
        Ok(MuonGroup {
            params,
            initial_lr: lr,
            lr,
            momentum,
            ns_steps,
            beta2,
            weight_decay,
            bf16_orthogonalisation: false,
            state: None,
        })
    }
}

/// `adamw_step_fused`: decoupled weight decay, the moments' lerps, bias corrections and the update,
/// in fp32 (bf16 parameters and moments are read as fp32 and written back).
#[allow(clippy::too_many_arguments)]
fn adamw_step(
    p: &Tensor,
    grad: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    step: i64,
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
) {
    let d = p.device();
    let (step_t, lr_t, beta1_t, beta2_t, eps_t, wd_t) = (
        scalar(step as f64, d),
        scalar(lr, d),
        scalar(betas.0, d),
        scalar(betas.1, d),
        scalar(eps, d),
        scalar(weight_decay, d),
    );
    // A same-dtype `to_kind` is the tensor itself: for fp32 these update p and the moments in place.
    let mut p32 = p.to_kind(Kind::Float);
    let mut exp_avg32 = exp_avg.to_kind(Kind::Float);
    let mut exp_avg_sq32 = exp_avg_sq.to_kind(Kind::Float);
    let grad32 = grad.to_kind(Kind::Float);
    // Weight decay (decoupled, applied before the update)
    let _ = p32.g_mul_(&(-(&lr_t * &wd_t) + 1.0));
    // Running averages
    let _ = exp_avg32.lerp_tensor_(&grad32, &(-&beta1_t + 1.0));
    let _ = exp_avg_sq32.lerp_tensor_(&grad32.square(), &(-&beta2_t + 1.0));
    // Bias corrections
    let bias1 = -beta1_t.pow(&step_t) + 1.0;
    let bias2 = -beta2_t.pow(&step_t) + 1.0;
    // Compute update and apply. The reference's `add_(x, alpha=-step_size)` rounds p + alpha·x once
    // per element (a fused multiply-add), which tch cannot call: in fp64 the product of two fp32
    // values is exact and the sum rounds to the same fp32 value (but for double-rounding ties).
    let denom = (&exp_avg_sq32 / &bias2).sqrt() + &eps_t;
    let step_size = &lr_t / &bias1;
    let update = (&exp_avg32 / &denom).to_kind(Kind::Double) * (-step_size).to_kind(Kind::Double);
    p32.copy_(&(p32.to_kind(Kind::Double) + update).to_kind(Kind::Float));
    // Write back (no-ops where everything is fp32 already)
    for (dst, src) in [(p, &p32), (exp_avg, &exp_avg32), (exp_avg_sq, &exp_avg_sq32)] {
        dst.shallow_clone().copy_(src);
    }
}

/// `muon_step_fused` on a stack (K, rows, cols) of gradients and parameters: Nesterov momentum,
/// MuonEq, Polar Express, Muon+, NorMuon variance reduction and the cautious update, in place on
/// `params`, `momentum_buffer` and `second_momentum_buffer` (and on `grads`, as the reference's lerp).
#[allow(clippy::too_many_arguments)]
fn muon_step(
    grads: &mut Tensor,
    params: &mut Tensor,
    momentum_buffer: &mut Tensor,
    second_momentum_buffer: &mut Tensor,
    momentum: f64,
    lr: f64,
    weight_decay: f64,
    beta2: f64,
    ns_steps: usize,
    red_dim: i64,
    bf16_orthogonalisation: bool,
) {
    let (rows, cols) = (grads.size()[1], grads.size()[2]);
    // Nesterov momentum
    let d = grads.device();
    let momentum = scalar(momentum, d).to_kind(grads.kind());
    let _ = momentum_buffer.lerp_tensor_(grads, &(-&momentum + 1.0));
    let g = grads.lerp_tensor_(momentum_buffer, &momentum);
    // In bf16 where the model computes in bf16 (the reference's COMPUTE_DTYPE)
    let mut x = match bf16_orthogonalisation {
        true => g.to_kind(Kind::BFloat16),
        false => g.shallow_clone(),
    };
    // MuonEq row equilibration: each row rescaled to the mean row norm
    let dims = [-2i64, -1].as_slice();
    let target = x.to_kind(Kind::Float).norm_scalaropt_dim(2, dims, true) / (rows as f64).powf(0.5);
    let row_norm = x.to_kind(Kind::Float).norm_scalaropt_dim(2, [-1i64].as_slice(), true).clamp_min(1e-6);
    x = &x * (target / row_norm).to_kind(x.kind());
    // Polar Express orthogonalisation
    x = &x / (x.norm_scalaropt_dim(2, dims, true) * 1.01 + 1e-6);
    for &(a, b, c) in &POLAR_EXPRESS_COEFFICIENTS[..ns_steps] {
        if rows > cols {
            let a_mat = x.mt().matmul(&x);
            let b_mat = a_mat.g_mul_scalar(b) + a_mat.matmul(&a_mat).g_mul_scalar(c);
            x = x.g_mul_scalar(a) + x.matmul(&b_mat);
        } else {
            let a_mat = x.matmul(&x.mt());
            let b_mat = a_mat.g_mul_scalar(b) + a_mat.matmul(&a_mat).g_mul_scalar(c);
            x = x.g_mul_scalar(a) + b_mat.matmul(&x);
        }
    }
    let g = x.to_kind(params.kind());
    // Muon+ renormalisation: the Frobenius norm of a semi-orthogonal matrix, sqrt(min(rows, cols))
    let target_norm = (rows.min(cols) as f64).powf(0.5);
    let current_norm = g.to_kind(Kind::Float).norm_scalaropt_dim(2, dims, true).clamp_min(1e-6);
    let g = &g * (current_norm.reciprocal() * target_norm).to_kind(g.kind());
    // NorMuon variance reduction
    let beta2 = scalar(beta2, d).to_kind(g.kind());
    let v_mean = g.to_kind(Kind::Float).square().mean_dim([red_dim].as_slice(), true, None);
    let red_dim_size = g.size()[(3 + red_dim) as usize] as f64;
    let v_norm = (v_mean.sum_dim_intlist(dims, true, None) * red_dim_size).sqrt();
    let _ = second_momentum_buffer.lerp_tensor_(&v_mean.to_kind(second_momentum_buffer.kind()), &(-&beta2 + 1.0));
    let step_size = second_momentum_buffer.clamp_min(1e-10).rsqrt();
    let scaled_sq_sum = (&v_mean * red_dim_size) * step_size.to_kind(Kind::Float).square();
    let v_norm_new = scaled_sq_sum.sum_dim_intlist(dims, true, None).sqrt();
    let final_scale = &step_size * (v_norm / v_norm_new.clamp_min(1e-10));
    let g = &g * final_scale.to_kind(g.kind());
    // Cautious weight decay + parameter update
    let lr = scalar(lr, d).to_kind(g.kind());
    let wd = scalar(weight_decay, d).to_kind(g.kind());
    let mask = (&g * &*params).ge(0.0);
    let _ = params.g_sub_(&(&lr * &g + &lr * &wd * &*params * mask));
}

/// This process's rank and the number of processes (0 of 1 without a process group).
fn place(pg: Option<&ProcessGroup>) -> (usize, usize) {
    pg.map_or((0, 1), |pg| (pg.rank, pg.world_size))
}

/// A parameter's gradient after phase 1: the whole gradient (one process, or a small parameter
/// being all-reduced in place) or this rank's rows of it (being reduce-scattered).
struct AdamReduce<'pg> {
    grad: Tensor,
    work: Option<Work<'pg>>,
    sharded: bool,
}

/// A Muon group's gradients after phase 1: this rank's chunk of the stack (all of it in one process)
/// and, across processes, the padded stack that is reduce-scattered and later gathered into.
struct MuonReduce<'pg> {
    grad_chunk: Tensor,
    stacked_grads: Option<Tensor>,
    chunk_size: i64,
    work: Option<Work<'pg>>,
}

enum Reduce<'pg> {
    AdamW(Vec<AdamReduce<'pg>>),
    Muon(MuonReduce<'pg>),
}

/// A gather started in phase 2; a Muon group's stack is copied back into its parameters in phase 3.
struct Gather<'pg> {
    work: Option<Work<'pg>>,
    copy_back: Option<(Tensor, Vec<Tensor>)>,
}

fn gradient(p: &Tensor, what: impl FnOnce() -> String) -> Result<Tensor, MuonAdamWError> {
    let grad = p.grad();
    match grad.defined() {
        true => Ok(grad),
        false => Err(MuonAdamWError::MissingGradient(what())),
    }
}

impl AdamWGroup {
    /// Phase 1: one process keeps the whole gradient; across processes a small parameter's gradient
    /// is all-reduced (averaged) in place, a large one's reduce-scattered along dim 0.
    fn reduce<'pg>(&self, pg: Option<&'pg ProcessGroup>) -> Result<Vec<AdamReduce<'pg>>, MuonAdamWError> {
        let mut reduced = Vec::with_capacity(self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            let grad = gradient(p, || format!("{}[{i}]", self.name))?;
            reduced.push(match pg {
                Some(pg) if pg.world_size > 1 && p.numel() < SMALL_PARAM => {
                    let work = pg.all_reduce_async(&grad, ReduceOp::Avg)?;
                    AdamReduce { grad, work: Some(work), sharded: false }
                }
                Some(pg) if pg.world_size > 1 => {
                    let rows = p.size()[0];
                    if rows % pg.world_size as i64 != 0 {
                        let param = format!("{}[{i}]", self.name);
                        return Err(MuonAdamWError::IndivisibleRows { param, rows, world_size: pg.world_size });
                    }
                    let grad_slice = grad.narrow(0, 0, rows / pg.world_size as i64).empty_like();
                    let work = pg.reduce_scatter_async(&grad_slice, &grad, ReduceOp::Avg)?;
                    AdamReduce { grad: grad_slice, work: Some(work), sharded: true }
                }
                _ => AdamReduce { grad, work: None, sharded: false },
            });
        }
        Ok(reduced)
    }

    /// Phase 2: wait for each reduce, update the parameter (or this rank's rows of it, with moments
    /// for those rows only) and start the all-gather of a sharded one.
    fn update<'pg>(
        &mut self,
        reduced: Vec<AdamReduce<'pg>>,
        pg: Option<&'pg ProcessGroup>,
        gathers: &mut Vec<Gather<'pg>>,
    ) -> Result<(), MuonAdamWError> {
        let (rank, world_size) = place(pg);
        for ((p, state), r) in self.params.iter().zip(self.state.iter_mut()).zip(reduced) {
            if let Some(work) = r.work {
                work.wait()?;
            }
            let p_slice = match r.sharded {
                true => {
                    let rank_size = p.size()[0] / world_size as i64;
                    p.narrow(0, rank as i64 * rank_size, rank_size)
                }
                false => p.shallow_clone(),
            };
            let state = state.get_or_insert_with(|| AdamState {
                step: 0,
                exp_avg: p_slice.zeros_like(),
                exp_avg_sq: p_slice.zeros_like(),
            });
            state.step += 1;
            adamw_step(
                &p_slice,
                &r.grad,
                &state.exp_avg,
                &state.exp_avg_sq,
                state.step,
                self.lr,
                self.betas,
                self.eps,
                self.weight_decay,
            );
            if let (true, Some(pg)) = (r.sharded, pg) {
                gathers.push(Gather { work: Some(pg.all_gather_async(p, &p_slice)?), copy_back: None });
            }
        }
        Ok(())
    }
}

impl MuonGroup {
    /// Phase 1: the gradients stacked; across W processes zero-padded to a multiple of W and
    /// reduce-scattered (averaged), so each rank receives the chunk of ceil(K/W) matrices it owns.
    fn reduce<'pg>(&self, pg: Option<&'pg ProcessGroup>) -> Result<MuonReduce<'pg>, MuonAdamWError> {
        let shape = self.params[0].size();
        let grads = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| gradient(p, || format!("matrix {i} of shape {shape:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        let k = grads.len() as i64;
        let grad_stack = Tensor::stack(&grads, 0);
        let Some(pg) = pg.filter(|pg| pg.world_size > 1) else {
            return Ok(MuonReduce { grad_chunk: grad_stack, stacked_grads: None, chunk_size: k, work: None });
        };
        let world_size = pg.world_size as i64;
        let chunk_size = (k + world_size - 1) / world_size;
        let options = (grad_stack.kind(), grad_stack.device());
        let stacked_grads = Tensor::zeros([chunk_size * world_size, shape[0], shape[1]], options);
        stacked_grads.narrow(0, 0, k).copy_(&grad_stack);
        let grad_chunk = Tensor::empty([chunk_size, shape[0], shape[1]], options);
        let work = pg.reduce_scatter_async(&grad_chunk, &stacked_grads, ReduceOp::Avg)?;
        Ok(MuonReduce { grad_chunk, stacked_grads: Some(stacked_grads), chunk_size, work: Some(work) })
    }

    /// Phase 2: wait for the reduce, update the matrices this rank owns (the group's state holds the
    /// buffers of its chunk) and start the all-gather of the chunk's updated matrices (zeros where the
    /// chunk is short) into the padded stack.
    fn update<'pg>(
        &mut self,
        reduced: MuonReduce<'pg>,
        pg: Option<&'pg ProcessGroup>,
        gathers: &mut Vec<Gather<'pg>>,
    ) -> Result<(), MuonAdamWError> {
        if let Some(work) = reduced.work {
            work.wait()?;
        }
        let MuonReduce { grad_chunk, stacked_grads, chunk_size, .. } = reduced;
        let (rows, cols) = (self.params[0].size()[0], self.params[0].size()[1]);
        let (rank, _) = place(pg);
        // How many matrices this rank owns
        let k = self.params.len() as i64;
        let start = rank as i64 * chunk_size;
        let num_owned = chunk_size.min((k - start).max(0));
        let options = (self.params[0].kind(), self.params[0].device());
        let state = self.state.get_or_insert_with(|| {
            let second_shape = if rows >= cols { [chunk_size, rows, 1] } else { [chunk_size, 1, cols] };
            MuonState {
                momentum_buffer: Tensor::zeros([chunk_size, rows, cols], options),
                second_momentum_buffer: Tensor::zeros(second_shape, options),
            }
        });
        let red_dim = if rows >= cols { -1 } else { -2 };
        let mut stacked_owned = None;
        if num_owned > 0 {
            let mut owned = Tensor::stack(&self.params[start as usize..(start + num_owned) as usize], 0);
            muon_step(
                &mut grad_chunk.narrow(0, 0, num_owned),
                &mut owned,
                &mut state.momentum_buffer.narrow(0, 0, num_owned),
                &mut state.second_momentum_buffer.narrow(0, 0, num_owned),
                self.momentum,
                // Tall matrices step by sqrt(rows/cols) more.
                self.lr * (rows as f64 / cols as f64).max(1.0).powf(0.5),
                self.weight_decay,
                self.beta2,
                self.ns_steps,
                red_dim,
                self.bf16_orthogonalisation,
            );
            stacked_owned = Some(owned);
        }
        let params = self.params.iter().map(Tensor::shallow_clone).collect();
        let (Some(stacked_params), Some(pg)) = (stacked_grads, pg) else {
            // One process: the updated stack maps directly onto the parameters.
            let stacked = stacked_owned.expect("one process owns every matrix");
            gathers.push(Gather { work: None, copy_back: Some((stacked, params)) });
            return Ok(());
        };
        let updated = Tensor::zeros([chunk_size, rows, cols], options);
        if let Some(owned) = &stacked_owned {
            updated.narrow(0, 0, num_owned).copy_(owned);
        }
        // The stacked gradients' buffer receives the gathered matrices.
        let work = pg.all_gather_async(&stacked_params, &updated)?;
        gathers.push(Gather { work: Some(work), copy_back: Some((stacked_params, params)) });
        Ok(())
    }
}

/// The combined optimizer: AdamW groups and Muon groups, stepped in the order they are listed.
pub struct MuonAdamW {
    pub groups: Vec<ParamGroup>,
}

impl MuonAdamW {
    pub fn new(groups: Vec<ParamGroup>) -> Self {
        MuonAdamW { groups }
    }

    /// base_train.py's schedule: every group's LR is its initial LR times `lr_multiplier`; Muon
    /// groups take the momentum of the step, and its weight decay where one is given (SFT keeps
    /// the one it was built with).
    pub fn set_schedule(&mut self, lr_multiplier: f64, muon_momentum: f64, muon_weight_decay: Option<f64>) {
        for group in &mut self.groups {
            match group {
                ParamGroup::AdamW(g) => g.lr = g.initial_lr * lr_multiplier,
                ParamGroup::Muon(g) => {
                    g.lr = g.initial_lr * lr_multiplier;
                    g.momentum = muon_momentum;
                    if let Some(wd) = muon_weight_decay {
                        g.weight_decay = wd;
                    }
                }
            }
        }
    }

    /// Every group's initial LR (and LR) times `frac` (chat_sft.py's `init_lr_frac`).
    pub fn scale_initial_lrs(&mut self, frac: f64) {
        for group in &mut self.groups {
            let (initial, lr) = match group {
                ParamGroup::AdamW(g) => (&mut g.initial_lr, &mut g.lr),
                ParamGroup::Muon(g) => (&mut g.initial_lr, &mut g.lr),
            };
            *initial *= frac;
            *lr = *initial;
        }
    }

    /// One update from the parameters' `.grad()`. With a process group of several ranks the
    /// gradients are averaged here (the model is not wrapped in DDP) and the optimizer state is
    /// sharded (ZeRO-2 style); every rank must hold a gradient for every parameter and call `step`
    /// with the same groups. In three phases, as the reference: start every group's reduce; group by
    /// group wait for it, update and start the gathers; wait for the gathers and copy back.
    pub fn step(&mut self, pg: Option<&ProcessGroup>) -> Result<(), MuonAdamWError> {
        tch::no_grad(|| {
            let reduced = self
                .groups
                .iter()
                .map(|group| match group {
                    ParamGroup::AdamW(g) => g.reduce(pg).map(Reduce::AdamW),
                    ParamGroup::Muon(g) => g.reduce(pg).map(Reduce::Muon),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let mut gathers = Vec::new();
            for (group, reduced) in self.groups.iter_mut().zip(reduced) {
                match (group, reduced) {
                    (ParamGroup::AdamW(g), Reduce::AdamW(r)) => g.update(r, pg, &mut gathers)?,
                    (ParamGroup::Muon(g), Reduce::Muon(r)) => g.update(r, pg, &mut gathers)?,
                    _ => unreachable!("each group's reduce has the group's kind"),
                }
            }
            for gather in gathers {
                if let Some(work) = gather.work {
                    work.wait()?;
                }
                if let Some((stacked, params)) = gather.copy_back {
                    for (i, p) in params.iter().enumerate() {
                        p.shallow_clone().copy_(&stacked.get(i as i64));
                    }
                }
            }
            Ok(())
        })
    }
}

impl MuonAdamW {
    /// This rank's optimizer state as named tensors, for `optim_XXXXXX_rankR` (the moments of its
    /// rows of each AdamW parameter with their step, the buffers of its chunk of each Muon group);
    /// `muon_adamw.G.…` for group G. Parameters not stepped yet have none.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (gi, group) in self.groups.iter().enumerate() {
            match group {
                ParamGroup::AdamW(g) => {
                    for (i, state) in g.state.iter().enumerate() {
                        if let Some(s) = state {
                            out.push((format!("muon_adamw.{gi}.{i}.step"), Tensor::from(s.step)));
                            out.push((format!("muon_adamw.{gi}.{i}.exp_avg"), s.exp_avg.shallow_clone()));
                            out.push((format!("muon_adamw.{gi}.{i}.exp_avg_sq"), s.exp_avg_sq.shallow_clone()));
                        }
                    }
                }
                ParamGroup::Muon(g) => {
                    if let Some(s) = &g.state {
                        out.push((format!("muon_adamw.{gi}.momentum_buffer"), s.momentum_buffer.shallow_clone()));
                        let second = s.second_momentum_buffer.shallow_clone();
                        out.push((format!("muon_adamw.{gi}.second_momentum_buffer"), second));
                    }
                }
            }
        }
        out
    }

    /// Restores what [`MuonAdamW::state_tensors`] saved for the same groups and process count; state
    /// that is absent stays unset (made at the next step). Tensors move to the parameters' device
    /// and dtype.
    pub fn load_state_tensors(&mut self, state: &HashMap<String, Tensor>) -> Result<(), MuonAdamWError> {
        // Parameters that never stepped have no entries, so absent names are fine; a name these
        // groups could not have written means the state is another optimizer's.
        let ours = |name: &str| {
            let mut parts = name.split('.');
            let (Some("muon_adamw"), Some(gi)) = (parts.next(), parts.next().and_then(|g| g.parse::<usize>().ok()))
            else {
                return false;
            };
            let rest: Vec<&str> = parts.collect();
            match (self.groups.get(gi), rest.as_slice()) {
                (Some(ParamGroup::AdamW(g)), [i, "step" | "exp_avg" | "exp_avg_sq"]) => {
                    i.parse::<usize>().is_ok_and(|i| i < g.params.len())
                }
                (Some(ParamGroup::Muon(_)), ["momentum_buffer" | "second_momentum_buffer"]) => true,
                _ => false,
            }
        };
        if let Some(foreign) = state.keys().find(|name| !ours(name)) {
            return Err(MuonAdamWError::ForeignState(foreign.clone()));
        }
        let load = |name: String, like: &Tensor, shape: &[i64]| -> Result<Option<Tensor>, MuonAdamWError> {
            match state.get(&name) {
                None => Ok(None),
                Some(t) if t.size() != shape => {
                    Err(MuonAdamWError::StateShape { name, shape: t.size(), expected: shape.to_vec() })
                }
                Some(t) => Ok(Some(t.to_device(like.device()).to_kind(like.kind()))),
            }
        };
        for (gi, group) in self.groups.iter_mut().enumerate() {
            match group {
                ParamGroup::AdamW(g) => {
                    for (i, (p, slot)) in g.params.iter().zip(g.state.iter_mut()).enumerate() {
                        let Some(step) = state.get(&format!("muon_adamw.{gi}.{i}.step")) else { continue };
                        // A sharded parameter's moments cover this rank's rows.
                        let rows = state.get(&format!("muon_adamw.{gi}.{i}.exp_avg")).map_or(0, |t| t.size()[0]);
                        let mut shape = p.size();
                        shape[0] = rows;
                        let moment = |kind: &str| {
                            let name = format!("muon_adamw.{gi}.{i}.{kind}");
                            load(name.clone(), p, &shape)?.ok_or(MuonAdamWError::MissingState(name))
                        };
                        let (exp_avg, exp_avg_sq) = (moment("exp_avg")?, moment("exp_avg_sq")?);
                        *slot = Some(AdamState { step: step.int64_value(&[]), exp_avg, exp_avg_sq });
                    }
                }
                ParamGroup::Muon(g) => {
                    let name = |kind: &str| format!("muon_adamw.{gi}.{kind}");
                    let Some(momentum) = state.get(&name("momentum_buffer")) else { continue };
                    let (p, chunk) = (&g.params[0], momentum.size()[0]);
                    let (rows, cols) = (p.size()[0], p.size()[1]);
                    let second_shape = if rows >= cols { [chunk, rows, 1] } else { [chunk, 1, cols] };
                    let momentum_buffer = load(name("momentum_buffer"), p, &[chunk, rows, cols])?;
                    let second_momentum_buffer = load(name("second_momentum_buffer"), p, &second_shape)?;
                    if let (Some(momentum_buffer), Some(second_momentum_buffer)) =
                        (momentum_buffer, second_momentum_buffer)
                    {
                        g.state = Some(MuonState { momentum_buffer, second_momentum_buffer });
                    }
                }
            }
        }
        Ok(())
    }
}

/// The values `GPT.setup_optimizer` receives from base_train.py: the LRs already multiplied by the
/// batch-size scale and Muon's weight decay already scaled ([`super::schedule_92d63d4::Sizing`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MuonAdamWSettings {
    pub unembedding_lr: f64,
    pub embedding_lr: f64,
    pub matrix_lr: f64,
    pub scalar_lr: f64,
    pub weight_decay: f64,
}

impl MuonAdamWSettings {
    /// base_train.py's defaults (`--unembedding-lr` 0.008, `--embedding-lr` 0.3, `--matrix-lr` 0.02,
    /// `--scalar-lr` 0.5, `--weight-decay` 0.28), before any scaling.
    pub fn reference() -> Self {
        MuonAdamWSettings {
            unembedding_lr: 0.008,
            embedding_lr: 0.3,
            matrix_lr: 0.02,
            scalar_lr: 0.5,
            weight_decay: 0.28,
        }
    }

    /// The LRs times `batch_lr_scale` (in the reference's order of operations) and `weight_decay`.
    pub fn scaled(&self, batch_lr_scale: f64, weight_decay: f64) -> Self {
        MuonAdamWSettings {
            unembedding_lr: self.unembedding_lr * batch_lr_scale,
            embedding_lr: self.embedding_lr * batch_lr_scale,
            matrix_lr: self.matrix_lr * batch_lr_scale,
            scalar_lr: self.scalar_lr * batch_lr_scale,
            weight_decay,
        }
    }
}

/// One AdamW group's hyperparameters as `setup_optimizer` sets them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSpec {
    pub name: &'static str,
    pub lr: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    pub weight_decay: f64,
}

/// Muon's hyperparameters as `setup_optimizer` sets them (every shape group alike).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MuonSpec {
    pub lr: f64,
    pub momentum: f64,
    pub ns_steps: usize,
    pub beta2: f64,
    pub weight_decay: f64,
}

/// `setup_optimizer`'s AdamW groups for a model of width `n_embd`, in its order: lm_head, wte,
/// value_embeds, resid_lambdas, x0_lambdas, smear (smear_gate, smear_lambda, backout_lambda). The
/// embedding and unembedding LRs scale by (n_embd/768)^−0.5; the smear group's LR is fixed.
pub fn adamw_specs(n_embd: i64, s: &MuonAdamWSettings) -> [AdamWSpec; 6] {
    let dmodel_lr_scale = (n_embd as f64 / LR_REFERENCE_DIM).powf(-0.5);
    let spec = |name, lr, betas, weight_decay| AdamWSpec { name, lr, betas, eps: 1e-10, weight_decay };
    [
        spec("lm_head", s.unembedding_lr * dmodel_lr_scale, (0.8, 0.96), 0.01),
        spec("wte", s.embedding_lr * dmodel_lr_scale, (0.8, 0.995), 0.001),
        spec("value_embeds", s.embedding_lr * dmodel_lr_scale * 0.5, (0.8, 0.995), 0.01),
        spec("resid_lambdas", s.scalar_lr * 0.01, (0.8, 0.95), 0.05),
        // A higher beta1 for x0
        spec("x0_lambdas", s.scalar_lr, (0.96, 0.95), 0.0),
        spec("smear", 0.2, (0.8, 0.95), 0.0),
    ]
}

/// `setup_optimizer`'s Muon hyperparameters.
pub fn muon_spec(s: &MuonAdamWSettings) -> MuonSpec {
    MuonSpec { lr: s.matrix_lr, momentum: 0.95, ns_steps: 5, beta2: 0.9, weight_decay: s.weight_decay }
}

/// `GPT.setup_optimizer`: the six AdamW groups of [`adamw_specs`] over the model's parameters, then
/// one Muon group per shape of the block matrices (shapes in ascending order, matrices in block
/// order within a shape), orthogonalising in bf16 where the model computes in bf16. Groups of parameters the model lacks (a model without some 92d63d4
/// option) are empty.
pub fn setup_muon_adamw(model: &Gpt, s: &MuonAdamWSettings) -> Result<MuonAdamW, MuonAdamWError> {
    let (resid, x0) = match model.resid_x0_lambdas() {
        Some((resid, x0)) => (vec![resid], vec![x0]),
        None => (vec![], vec![]),
    };
    let params = [vec![model.lm_head()], vec![model.wte()], model.value_embeds(), resid, x0, model.smear_params()];
    let mut groups: Vec<ParamGroup> = adamw_specs(model.config.n_embd, s)
        .into_iter()
        .zip(params)
        .map(|(spec, params)| {
            ParamGroup::AdamW(AdamWGroup::new(spec.name, params, spec.lr, spec.betas, spec.eps, spec.weight_decay))
        })
        .collect();
    let matrices = model.block_matrices();
    let mut shapes: Vec<Vec<i64>> = matrices.iter().map(Tensor::size).collect();
    shapes.sort();
    shapes.dedup();
    let m = muon_spec(s);
    for shape in shapes {
        let params = matrices.iter().filter(|p| p.size() == shape).map(Tensor::shallow_clone).collect();
        let mut group = MuonGroup::new(params, m.lr, m.momentum, m.ns_steps, m.beta2, m.weight_decay)?;
        group.bf16_orthogonalisation = model.precision == Precision::BFloat16;
        groups.push(ParamGroup::Muon(group));
    }
    let grouped: usize = groups
        .iter()
        .map(|g| match g {
            ParamGroup::AdamW(g) => g.params.len(),
            ParamGroup::Muon(g) => g.params.len(),
        })
        .sum();
    let total = model.parameters_in_reference_order().len();
    if grouped != total {
        return Err(MuonAdamWError::Ungrouped { grouped, total });
    }
    Ok(MuonAdamW::new(groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An AdamW group of one parameter `p` with gradient `g`, stepped once.
    fn adamw_once(p: &Tensor, g: &Tensor) -> MuonAdamW {
        let p = p.shallow_clone().set_requires_grad(true);
        (&p * g).sum(p.kind()).backward();
        let group = AdamWGroup::new("p", vec![p], 0.3, (0.8, 0.995), 1e-10, 0.01);
        let mut optimizer = MuonAdamW::new(vec![ParamGroup::AdamW(group)]);
        optimizer.step(None).unwrap();
        optimizer
    }

    #[test]
    fn a_bf16_parameter_gets_the_fp32_update_rounded_once() {
        // bf16 values, held once in bf16 and once in fp32, with the same (bf16-exact) gradient.
        let values = Tensor::randn([16, 8], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let grad = Tensor::randn([16, 8], (Kind::Float, Device::Cpu)).to_kind(Kind::BFloat16);
        let (p16, p32) = (values.copy(), values.to_kind(Kind::Float));
        let o16 = adamw_once(&p16, &grad);
        adamw_once(&p32, &grad.to_kind(Kind::Float));
        // The arithmetic is fp32 for both; the bf16 parameter is its result rounded once.
        assert_eq!(p16.kind(), Kind::BFloat16);
        assert!(p16.equal(&p32.to_kind(Kind::BFloat16)));
        assert!(!p16.equal(&values), "the parameter moved");
        // The moments keep the parameter's dtype.
        let ParamGroup::AdamW(group) = &o16.groups[0] else { unreachable!() };
        let state = group.state[0].as_ref().unwrap();
        assert_eq!((state.exp_avg.kind(), state.exp_avg_sq.kind()), (Kind::BFloat16, Kind::BFloat16));
    }

    #[test]
    fn state_tensors_resume_the_same_trajectory() {
        // Two AdamW parameters (one small), two Muon matrices of one shape, one wide.
        let shapes: [&[i64]; 4] = [&[16, 8], &[3], &[6, 10], &[6, 10]];
        let initial: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu))).collect();
        let grads: Vec<Vec<Tensor>> = (0..3).map(|_| initial.iter().map(Tensor::randn_like).collect()).collect();
        let build = || {
            let ps: Vec<Tensor> = initial.iter().map(|p| p.copy().set_requires_grad(true)).collect();
            let adamw =
                AdamWGroup::new("a", vec![ps[0].shallow_clone(), ps[1].shallow_clone()], 0.1, (0.8, 0.95), 1e-10, 0.01);
            let muon =
                MuonGroup::new(vec![ps[2].shallow_clone(), ps[3].shallow_clone()], 0.02, 0.95, 5, 0.9, 0.1).unwrap();
            (ps, MuonAdamW::new(vec![ParamGroup::AdamW(adamw), ParamGroup::Muon(muon)]))
        };
        let step = |ps: &[Tensor], o: &mut MuonAdamW, g: &[Tensor]| {
            for (p, g) in ps.iter().zip(g) {
                let mut p = p.shallow_clone();
                p.zero_grad();
                (&p * g).sum(Kind::Float).backward();
            }
            o.step(None).unwrap();
        };
        let (ps, mut original) = build();
        step(&ps, &mut original, &grads[0]);
        step(&ps, &mut original, &grads[1]);
        // A fresh optimizer over copies of the parameters, with the saved state.
        let (qs, mut resumed) = build();
        tch::no_grad(|| qs.iter().zip(&ps).for_each(|(q, p)| q.shallow_clone().copy_(p)));
        let saved: HashMap<String, Tensor> = original.state_tensors().into_iter().map(|(n, t)| (n, t.copy())).collect();
        assert_eq!(saved.len(), 2 * 3 + 2);
        resumed.load_state_tensors(&saved).unwrap();
        step(&ps, &mut original, &grads[2]);
        step(&qs, &mut resumed, &grads[2]);
        for (p, q) in ps.iter().zip(&qs) {
            assert!(p.equal(q));
        }
        // A buffer of another shape is refused.
        let (_, mut other) = build();
        let mut wrong: HashMap<String, Tensor> = saved.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        wrong.insert("muon_adamw.1.momentum_buffer".into(), Tensor::zeros([1, 6, 10], (Kind::Float, Device::Cpu)));
        assert!(matches!(other.load_state_tensors(&wrong), Err(MuonAdamWError::StateShape { .. })));
        // Another optimizer's state, or a group these groups do not have, is refused by name.
        for foreign in ["adamw.0.exp_avg", "muon_adamw.9.momentum_buffer", "muon_adamw.0.7.step", "muon_adamw.1.0.step"]
        {
            let (_, mut other) = build();
            let state = HashMap::from([(foreign.to_string(), Tensor::zeros([1], (Kind::Float, Device::Cpu)))]);
            assert!(matches!(other.load_state_tensors(&state), Err(MuonAdamWError::ForeignState(n)) if n == foreign));
        }
    }

    #[test]
    fn groups_refuse_mixed_shapes_and_non_matrices() {
        let m = |shape: &[i64]| Tensor::zeros(shape, (Kind::Float, Device::Cpu));
        let mixed = MuonGroup::new(vec![m(&[4, 8]), m(&[8, 4])], 0.02, 0.95, 5, 0.9, 0.0);
        assert!(matches!(mixed, Err(MuonAdamWError::MixedShapes { index: 1, .. })));
        let vector = MuonGroup::new(vec![m(&[4])], 0.02, 0.95, 5, 0.9, 0.0);
        assert!(matches!(vector, Err(MuonAdamWError::NotAMatrix(shape)) if shape == [4]));
    }

    #[test]
    fn a_parameter_without_gradient_is_an_error() {
        let p = Tensor::zeros([4, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let group = MuonGroup::new(vec![p], 0.02, 0.95, 5, 0.9, 0.0).unwrap();
        let mut optimizer = MuonAdamW::new(vec![ParamGroup::Muon(group)]);
        assert!(matches!(optimizer.step(None), Err(MuonAdamWError::MissingGradient(_))));
    }
}
