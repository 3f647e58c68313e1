//! AdamW for the embedding and lm_head (NANOCHAT.md §4.1, §4.3): the standard bias-corrected update
//! p ← p·(1 − lr·wd) − lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) + eps), computed by PyTorch's fused AdamW
//! kernel itself (src/optim/fused_adamw.cpp), as the reference's `fused=True`.
//! Moments have the parameter's dtype (bf16 for a bf16 wte, §4.3). The per-parameter rule,
//! [`AdamUpdate`], is shared with the sharded [`super::DistAdamW`].
use std::os::raw::c_char;

use tch::Tensor;
use torch_sys::C_tensor;

extern "C" {
    fn nc_fused_adamw(
        p: *mut C_tensor,
        g: *mut C_tensor,
        m: *mut C_tensor,
        v: *mut C_tensor,
        step: f64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        err: *mut c_char,
        err_len: usize,
    ) -> i32;
}

/// Where eps enters the AdamW step (§4.3, §14 item 9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdamEps {
    /// PyTorch's AdamW: lr/(1−β1ᵗ) · m / (sqrt(v)/sqrt(1−β2ᵗ) + eps).
    #[default]
    BiasCorrected,
    /// The reference DistAdamW of [A]/[A'] (fixed in `4ddc803`): lr·sqrt(1−β2ᵗ)/(1−β1ᵗ) · m / (sqrt(v) + eps).
    /// Differs from [`AdamEps::BiasCorrected`] only through eps.
    Uncorrected,
}

/// The hyperparameters every group of an AdamW (single-process or sharded) shares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHyper {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub eps_mode: AdamEps,
}

impl AdamHyper {
    /// PyTorch's bias-corrected eps ([`AdamEps::BiasCorrected`]).
    pub fn new(betas: (f64, f64), eps: f64, weight_decay: f64) -> Self {
        AdamHyper { beta1: betas.0, beta2: betas.1, eps, weight_decay, eps_mode: AdamEps::BiasCorrected }
    }

    /// The rule for step `step` (1-based) of a group with learning rate `lr`.
    pub fn rule(&self, lr: f64, step: i64) -> AdamUpdate {
        AdamUpdate { lr, step, hyper: *self }
    }
}

/// One AdamW update rule; `step` is the 1-based step being taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamUpdate {
    pub lr: f64,
    pub step: i64,
    pub hyper: AdamHyper,
}

impl AdamUpdate {
    /// Updates `p` in place from gradient `g`, advancing the moments `m` (exp_avg) and `v` (exp_avg_sq).
    /// `p`, `g`, `m` and `v` have the same shape; `p` may be a view (a shard of a larger parameter).
    pub fn apply(&self, p: &Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor) {
        match self.hyper.eps_mode {
            AdamEps::BiasCorrected => self.apply_fused(p, g, m, v),
            AdamEps::Uncorrected => self.apply_uncorrected(p, g, m, v),
        }
    }

    fn apply_fused(&self, p: &Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor) {
        // Handles to the same storage: the kernel writes p in place and only reads g.
        let (mut p, mut g) = (p.shallow_clone(), g.shallow_clone());
        // SAFETY: four live tensors of one shape, dtype and device (the moments are made from the parameter);
        // the kernel only updates them in place. The error buffer outlives the call.
        let done = crate::shim::call(|err, err_len| unsafe {
            nc_fused_adamw(
                p.as_mut_ptr(),
                g.as_mut_ptr(),
                m.as_mut_ptr(),
                v.as_mut_ptr(),
                self.step as f64,
                self.lr,
                self.hyper.beta1,
                self.hyper.beta2,
                self.hyper.weight_decay,
                self.hyper.eps,
                err,
                err_len,
            )
        });
        // Shapes, dtypes and devices match by construction: a failure here is a bug, not bad input.
        if let Err(message) = done {
            panic!("fused AdamW kernel failed: {message}");
        }
    }

    /// The [`AdamEps::Uncorrected`] rule, which no PyTorch kernel implements.
    fn apply_uncorrected(&self, p: &Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor) {
        let AdamHyper { beta1, beta2, eps, weight_decay, .. } = self.hyper;
        let t = self.step as f64;
        let bias1 = 1.0 - beta1.powf(t);
        let bias2_sqrt = (1.0 - beta2.powf(t)).sqrt();
        tch::no_grad(|| {
            let mut p = p.shallow_clone();
            if weight_decay != 0.0 {
                let _ = p.g_mul_scalar_(1.0 - self.lr * weight_decay);
            }
            let _ = m.lerp_(g, 1.0 - beta1);
            let _ = v.g_mul_scalar_(beta2).addcmul_(g, &g.g_mul_scalar(1.0 - beta2));
            let denom = v.sqrt() + eps;
            let _ = p.g_sub_(&(&*m / &denom * (self.lr * bias2_sqrt / bias1)));
        });
    }
}

pub struct AdamGroup {
    pub name: String,
    pub params: Vec<Tensor>,
    /// The group's base learning rate; the schedule sets `lr = initial_lr · multiplier`.
    pub initial_lr: f64,
    pub lr: f64,
}

pub struct AdamW {
    pub groups: Vec<AdamGroup>,
    pub hyper: AdamHyper,
    /// Steps taken so far (bias correction uses step + 1 during a step).
    pub step: i64,
    /// (exp_avg, exp_avg_sq) per parameter, group by group; created on the first step.
    pub(crate) moments: Vec<Vec<(Tensor, Tensor)>>,
}

impl AdamW {
    pub fn new(groups: Vec<AdamGroup>, betas: (f64, f64), eps: f64, weight_decay: f64) -> Self {
        AdamW { groups, hyper: AdamHyper::new(betas, eps, weight_decay), step: 0, moments: Vec::new() }
    }

    pub fn set_lr_multiplier(&mut self, multiplier: f64) {
        for g in &mut self.groups {
            g.lr = g.initial_lr * multiplier;
        }
    }

    /// One update from the parameters' `.grad()`. Parameters without a gradient are left alone.
    pub fn step(&mut self) {
        if self.moments.is_empty() {
            self.moments = self
                .groups
                .iter()
                .map(|g| g.params.iter().map(|p| (p.zeros_like(), p.zeros_like())).collect())
                .collect();
        }
        self.step += 1;
        for (group, moments) in self.groups.iter().zip(self.moments.iter_mut()) {
            let rule = self.hyper.rule(group.lr, self.step);
            for (p, (m, v)) in group.params.iter().zip(moments.iter_mut()) {
                let g = p.grad();
                if g.defined() {
                    rule.apply(p, &g, m, v);
                }
            }
        }
    }
}

impl AdamW {
    /// Moments and step count as named tensors, for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("adamw.step".to_string(), Tensor::from(self.step))];
        for (group, moments) in self.groups.iter().zip(&self.moments) {
            for (i, (m, v)) in moments.iter().enumerate() {
                out.push((format!("adamw.{}.{i}.exp_avg", group.name), m.shallow_clone()));
                out.push((format!("adamw.{}.{i}.exp_avg_sq", group.name), v.shallow_clone()));
            }
        }
        out
    }

    /// Restores what [`AdamW::state_tensors`] saved; every moment must be present.
    pub fn load_state_tensors(
        &mut self,
        state: &std::collections::HashMap<String, Tensor>,
    ) -> Result<(), super::DistOptimError> {
        use super::DistOptimError::State;
        let get = |name: &str| state.get(name).ok_or_else(|| State(format!("optimizer state lacks `{name}`")));
        self.step = get("adamw.step")?.int64_value(&[]);
        let mut moments = Vec::new();
        for group in &self.groups {
            let mut per_param = Vec::new();
            for (i, p) in group.params.iter().enumerate() {
                let load = |kind: &str| -> Result<Tensor, super::DistOptimError> {
                    let t = get(&format!("adamw.{}.{i}.{kind}", group.name))?;
                    if t.size() != p.size() {
                        return Err(State(format!(
                            "optimizer state for {} has shape {:?}, expected {:?}",
                            group.name,
                            t.size(),
                            p.size()
                        )));
                    }
                    Ok(t.to_device(p.device()).to_kind(p.kind()))
                };
                per_param.push((load("exp_avg")?, load("exp_avg_sq")?));
            }
            moments.push(per_param);
        }
        self.moments = moments;
        Ok(())
    }
}
