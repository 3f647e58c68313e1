//! AdamW sharded over the ranks, ZeRO-2 style, as the reference's DistAdamW (NANOCHAT.md §4.3):
//! per parameter, the gradient is reduce-scattered (average) along dim 0 so rank r receives rows
//! [r·n/W, (r+1)·n/W); rank r updates only those rows, with Adam moments kept for its slice alone,
//! then the parameter is all-gathered. The update rule is [`AdamUpdate`], shared with [`AdamW`].
//! Eps is bias-corrected by default; [`AdamEps::Uncorrected`] reproduces [A]/[A'] (§14 item 9).
//! A step first starts every reduce-scatter (group by group, parameter by parameter); then, in the
//! same order, waits for each, updates the rank's rows and starts the parameter's all-gather, which
//! runs while the next parameters are updated; last it waits for the all-gathers. Every rank issues
//! the collectives in this order.
use std::collections::HashMap;

use tch::Tensor;

use super::adamw::{AdamEps, AdamGroup, AdamHyper, AdamW};
use super::DistOptimError;
use crate::dist::{ProcessGroup, ReduceOp};

const NAME: &str = "DistAdamW";

pub struct DistAdamW {
    pub groups: Vec<AdamGroup>,
    pub hyper: AdamHyper,
    /// Steps taken so far.
    pub step: i64,
    pub rank: usize,
    pub world_size: usize,
    /// (exp_avg, exp_avg_sq) of this rank's rows of each parameter, group by group; created on the
    /// first step.
    moments: Vec<Vec<(Tensor, Tensor)>>,
}

fn param_name(group: &AdamGroup, i: usize) -> String {
    if group.params.len() == 1 {
        group.name.clone()
    } else {
        format!("{}[{i}]", group.name)
    }
}

impl DistAdamW {
    /// Checks that every parameter's dim 0 divides by `world_size`.
    pub fn new(
        groups: Vec<AdamGroup>,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
        rank: usize,
        world_size: usize,
    ) -> Result<Self, DistOptimError> {
        Self::with_hyper(groups, AdamHyper::new(betas, eps, weight_decay), rank, world_size)
    }

    fn with_hyper(
        groups: Vec<AdamGroup>,
        hyper: AdamHyper,
        rank: usize,
        world_size: usize,
    ) -> Result<Self, DistOptimError> {
        assert!(rank < world_size && world_size > 0, "rank {rank} of {world_size}");
        for group in &groups {
            for (i, p) in group.params.iter().enumerate() {
                let shape = p.size();
                let rows = shape.first().copied().unwrap_or(1);
                if shape.is_empty() || rows % world_size as i64 != 0 {
                    return Err(DistOptimError::IndivisibleRows {
                        param: param_name(group, i),
                        shape,
                        rows,
                        world_size,
                    });
                }
            }
        }
        Ok(DistAdamW { groups, hyper, step: 0, rank, world_size, moments: Vec::new() })
    }

    /// The same groups and hyperparameters as `adamw`. Moments it already holds (a single-process
    /// optimiser that has stepped or loaded state) are cut down to this rank's rows.
    pub fn from_adamw(adamw: AdamW, rank: usize, world_size: usize) -> Result<Self, DistOptimError> {
        let AdamW { groups, hyper, step, moments } = adamw;
        let mut dist = DistAdamW::with_hyper(groups, hyper, rank, world_size)?;
        dist.step = step;
        dist.moments = moments
            .iter()
            .map(|per_param| {
                per_param.iter().map(|(m, v)| (dist.own_rows(m).copy(), dist.own_rows(v).copy())).collect()
            })
            .collect();
        Ok(dist)
    }

    /// Selects the eps placement (the reference [A]/[A'] used [`AdamEps::Uncorrected`]).
    pub fn with_eps_mode(mut self, eps_mode: AdamEps) -> Self {
        self.hyper.eps_mode = eps_mode;
        self
    }

    pub fn set_lr_multiplier(&mut self, multiplier: f64) {
        for g in &mut self.groups {
            g.lr = g.initial_lr * multiplier;
        }
    }

    /// This rank's rows of a tensor shaped like one of the parameters (a view).
    fn own_rows(&self, t: &Tensor) -> Tensor {
        let rows = t.size()[0] / self.world_size as i64;
        t.narrow(0, self.rank as i64 * rows, rows)
    }

    /// One step from the parameters' local `.grad()`s: averages them over the ranks and leaves the
    /// updated parameters identical on every rank. Every rank must call it with the same groups.
    /// The local gradients may be used as scratch space (zero them before the next backward).
    pub fn step(&mut self, pg: &ProcessGroup) -> Result<(), DistOptimError> {
        if pg.world_size != self.world_size {
            return Err(DistOptimError::WorldSizeMismatch {
                optimizer: NAME,
                expected: self.world_size,
                actual: pg.world_size,
            });
        }
        for group in &self.groups {
            for (i, p) in group.params.iter().enumerate() {
                if !p.grad().defined() {
                    return Err(DistOptimError::MissingGradient { optimizer: NAME, param: param_name(group, i) });
                }
            }
        }
        if self.moments.is_empty() {
            let moments = self
                .groups
                .iter()
                .map(|g| {
                    let zeros = |p: &Tensor| self.own_rows(p).zeros_like();
                    g.params.iter().map(|p| (zeros(p), zeros(p))).collect()
                })
                .collect();
            self.moments = moments;
        }
        self.step += 1;
        let (rank, world_size) = (self.rank as i64, self.world_size as i64);
        tch::no_grad(|| -> Result<(), DistOptimError> {
            // (1) Every reduce-scatter: this rank's rows of each averaged gradient.
            let mut scatters = Vec::new();
            for (group, moments) in self.groups.iter().zip(&self.moments) {
                for (p, (m, _)) in group.params.iter().zip(moments) {
                    let grad_slice = m.zeros_like();
                    let work = pg.reduce_scatter_async(&grad_slice, &p.grad().contiguous(), ReduceOp::Avg)?;
                    scatters.push((work, grad_slice));
                }
            }
            // (2) In the same order: update this rank's rows, then start the all-gather of the parameter
            // (into the parameter itself when it is contiguous).
            let (hyper, step) = (self.hyper, self.step);
            let updates = self.groups.iter().zip(self.moments.iter_mut()).flat_map(|(group, moments)| {
                let rule = hyper.rule(group.lr, step);
                group.params.iter().zip(moments.iter_mut()).map(move |(p, moment)| (rule, p, moment))
            });
            let mut gathers = Vec::new();
            for ((rule, p, (m, v)), (work, grad_slice)) in updates.zip(scatters) {
                work.wait()?;
                let rows = p.size()[0] / world_size;
                let p_slice = p.narrow(0, rank * rows, rows).copy();
                rule.apply(&p_slice, &grad_slice, m, v);
                let target = if p.is_contiguous() { p.shallow_clone() } else { p.empty_like().contiguous() };
                gathers.push((pg.all_gather_async(&target, &p_slice)?, target, p));
            }
            // (3) Wait for the all-gathers; copy into the parameters that are not contiguous.
            for (work, gathered, p) in gathers {
                work.wait()?;
                if !p.is_contiguous() {
                    p.shallow_clone().copy_(&gathered);
                }
            }
            Ok(())
        })
    }

    /// The step count and this rank's moment slices as named tensors, for the per-rank optimizer
    /// checkpoint (`optim_XXXXXX_rankR`). Names are [`AdamW`]'s; the world size is recorded too.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![
            ("adamw.step".to_string(), Tensor::from(self.step)),
            ("adamw.world_size".to_string(), Tensor::from(self.world_size as i64)),
        ];
        for (group, moments) in self.groups.iter().zip(&self.moments) {
            for (i, (m, v)) in moments.iter().enumerate() {
                out.push((format!("adamw.{}.{i}.exp_avg", group.name), m.shallow_clone()));
                out.push((format!("adamw.{}.{i}.exp_avg_sq", group.name), v.shallow_clone()));
            }
        }
        out
    }

    /// Restores what [`DistAdamW::state_tensors`] saved on this rank with the same world size. A
    /// single-process [`AdamW`] state (full moments, no world size recorded) is accepted too: this
    /// rank keeps its rows.
    pub fn load_state_tensors(&mut self, state: &HashMap<String, Tensor>) -> Result<(), DistOptimError> {
        let missing = |name: &str| DistOptimError::State(format!("{NAME} state lacks `{name}`"));
        let get = |name: &str| state.get(name).ok_or_else(|| missing(name));
        let saved_world = state.get("adamw.world_size").map(|t| t.int64_value(&[]));
        if let Some(saved) = saved_world {
            if saved != self.world_size as i64 {
                return Err(DistOptimError::State(format!(
                    "{NAME} state was saved by {saved} ranks, this run has {}; resume with the same number of processes",
                    self.world_size
                )));
            }
        }
        let step = get("adamw.step")?.int64_value(&[]);
        let mut moments = Vec::new();
        for group in &self.groups {
            let mut per_param = Vec::new();
            for (i, p) in group.params.iter().enumerate() {
                let expected = self.own_rows(p).size();
                let load = |kind: &str| -> Result<Tensor, DistOptimError> {
                    let mut t = get(&format!("adamw.{}.{i}.{kind}", group.name))?.shallow_clone();
                    if saved_world.is_none() && t.size() == p.size() {
                        t = self.own_rows(&t);
                    }
                    if t.size() != expected {
                        return Err(DistOptimError::State(format!(
                            "{NAME} state for {} has shape {:?}, expected this rank's slice {:?} (saved with another world size?)",
                            param_name(group, i),
                            t.size(),
                            expected
                        )));
                    }
                    Ok(t.to_device(p.device()).to_kind(p.kind()).copy())
                };
                per_param.push((load("exp_avg")?, load("exp_avg_sq")?));
            }
            moments.push(per_param);
        }
        self.step = step;
        self.moments = moments;
        Ok(())
    }
}
