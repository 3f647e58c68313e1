//! Muon over W ranks with the reference's DistMuon communication (NANOCHAT.md §4.2): parameters are
//! grouped by shape (groups sorted by shape, parameters in the given order within a group) and
//! taken W at a time; in a chunk rank r owns parameter base + r. A reduce-scatter (average) of the
//! chunk's W gradients, zero-padded when the chunk is short, hands each owner its averaged
//! gradient; the owner applies [`MuonUpdate`] (the rule shared with [`Muon`]; momentum buffers live
//! only on the owner); an all-gather of the chunk's updated parameters (padded again) leaves every
//! rank with the same parameters. Collectives run on flat concatenations of the chunk's tensors.
//!
//! A step first starts every reduce-scatter (group by group, chunk by chunk); then, group by group,
//! waits for the group's reduce-scatters, updates the rank's matrices of the group together
//! ([`MuonUpdate::apply_group`]: one Newton–Schulz on their stack) and
//! starts the group's all-gathers, which run while the next group is updated; last it waits for the
//! all-gathers and copies the gathered matrices in. Every rank issues the collectives in this order.
use std::collections::{BTreeMap, HashMap};

use tch::Tensor;

use super::muon::{Muon, MuonUpdate};
use super::DistOptimError;
use crate::dist::{ProcessGroup, ReduceOp};

const NAME: &str = "DistMuon";

pub struct DistMuon {
    pub params: Vec<Tensor>,
    pub initial_lr: f64,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub ns_steps: u32,
    pub rank: usize,
    pub world_size: usize,
    /// Indices into `params`, grouped by shape; groups sorted by shape.
    groups: Vec<Vec<usize>>,
    /// Momentum buffers, `Some` only for parameters this rank owns (after their first step).
    buffers: Vec<Option<Tensor>>,
}

fn param_name(index: usize, p: &Tensor) -> String {
    format!("matrix {index} (shape {:?})", p.size())
}

impl DistMuon {
    /// Every parameter must be 2-D; parameters of one shape must share a dtype.
    pub fn new(
        params: Vec<Tensor>,
        lr: f64,
        momentum: f64,
        ns_steps: u32,
        rank: usize,
        world_size: usize,
    ) -> Result<Self, DistOptimError> {
        assert!(rank < world_size && world_size > 0, "rank {rank} of {world_size}");
        let mut by_shape: BTreeMap<Vec<i64>, Vec<usize>> = BTreeMap::new();
        for (index, p) in params.iter().enumerate() {
            let shape = p.size();
            if shape.len() != 2 {
                return Err(DistOptimError::NotAMatrix { index, shape });
            }
            let group = by_shape.entry(shape.clone()).or_default();
            if let Some(&first) = group.first() {
                let (first, other) = (params[first].kind(), p.kind());
                if first != other {
                    return Err(DistOptimError::MixedKinds { shape, first, other });
                }
            }
            group.push(index);
        }
        let buffers = params.iter().map(|_| None).collect();
        Ok(DistMuon {
            params,
            initial_lr: lr,
            lr,
            momentum,
            nesterov: true,
            ns_steps,
            rank,
            world_size,
            groups: by_shape.into_values().collect(),
            buffers,
        })
    }

    /// The same parameters and hyperparameters as `muon`, keeping the momentum buffers it holds for
    /// the parameters this rank owns.
    pub fn from_muon(muon: Muon, rank: usize, world_size: usize) -> Result<Self, DistOptimError> {
        let Muon { params, initial_lr, lr, momentum, nesterov, ns_steps, buffers } = muon;
        let mut dist = DistMuon::new(params, initial_lr, momentum, ns_steps, rank, world_size)?;
        dist.lr = lr;
        dist.nesterov = nesterov;
        for (i, buf) in buffers.into_iter().enumerate() {
            if dist.owner(i) == rank {
                dist.buffers[i] = buf;
            }
        }
        Ok(dist)
    }

    pub fn set_lr_multiplier(&mut self, multiplier: f64) {
        self.lr = self.initial_lr * multiplier;
    }

    /// The update rule with the current lr and momentum.
    pub fn rule(&self) -> MuonUpdate {
        MuonUpdate { lr: self.lr, momentum: self.momentum, nesterov: self.nesterov, ns_steps: self.ns_steps }
    }

    /// The rank that updates parameter `index` (its position within its shape group, modulo W).
    /// Panics if there is no such parameter.
    pub fn owner(&self, index: usize) -> usize {
        self.groups
            .iter()
            .find_map(|g| g.iter().position(|&i| i == index))
            .map(|pos| pos % self.world_size)
            .unwrap_or_else(|| panic!("{NAME} has no parameter {index}"))
    }

    /// The parameter indices in processing order: groups sorted by shape, given order within.
    pub fn shape_groups(&self) -> &[Vec<usize>] {
        &self.groups
    }

    /// One step from the parameters' local `.grad()`s: averages them over the ranks and leaves the
    /// updated parameters identical on every rank. Every rank must call it with the same parameters.
    pub fn step(&mut self, pg: &ProcessGroup) -> Result<(), DistOptimError> {
        if pg.world_size != self.world_size {
            return Err(DistOptimError::WorldSizeMismatch {
                optimizer: NAME,
                expected: self.world_size,
                actual: pg.world_size,
            });
        }
        if let Some((i, p)) = self.params.iter().enumerate().find(|(_, p)| !p.grad().defined()) {
            return Err(DistOptimError::MissingGradient { optimizer: NAME, param: param_name(i, p) });
        }
        let rule = self.rule();
        tch::no_grad(|| self.step_collectives(pg, rule))
    }

    fn step_collectives(&mut self, pg: &ProcessGroup, rule: MuonUpdate) -> Result<(), DistOptimError> {
        let (rank, world_size) = (self.rank, self.world_size);
        let DistMuon { params, groups, buffers, .. } = self;
        // (1) Every reduce-scatter: the owner of slot j of a chunk receives the average of gradient j.
        let mut scatters = Vec::with_capacity(groups.len());
        for group in groups.iter() {
            let first = &params[group[0]];
            let (shape, options) = (first.size(), (first.kind(), first.device()));
            let numel = first.numel() as i64;
            let mut works = Vec::new();
            for chunk in group.chunks(world_size) {
                let parts: Vec<Tensor> = (0..world_size)
                    .map(|j| match chunk.get(j) {
                        Some(&i) => params[i].grad().reshape([-1]),
                        None => Tensor::zeros([numel], options),
                    })
                    .collect();
                let grad = Tensor::zeros(shape.as_slice(), options);
                let work = pg.reduce_scatter_async(&grad, &Tensor::cat(&parts, 0), ReduceOp::Avg)?;
                works.push((work, grad, chunk.get(rank).copied()));
            }
            scatters.push(works);
        }
        // (2) Group by group: the owned matrices' update, then the group's all-gathers.
        let mut gathers = Vec::new();
        for (group, works) in groups.iter().zip(scatters) {
            let mut mine = Vec::new(); // (index, averaged gradient) of this rank's matrices
            for (work, grad, owner) in works {
                work.wait()?;
                mine.extend(owner.map(|i| (i, grad)));
            }
            rule.apply_group(params, buffers, mine);
            let first = &params[group[0]];
            let (numel, options) = (first.numel() as i64, (first.kind(), first.device()));
            for chunk in group.chunks(world_size) {
                let send = match chunk.get(rank) {
                    Some(&i) => params[i].reshape([-1]).contiguous(),
                    None => Tensor::zeros([numel], options),
                };
                let gathered = Tensor::empty([world_size as i64 * numel], options);
                let work = pg.all_gather_async(&gathered, &send)?;
                gathers.push((work, gathered, chunk));
            }
        }
        // (3) Every rank copies in the matrices it does not own.
        for (work, gathered, chunk) in gathers {
            work.wait()?;
            let shape = params[chunk[0]].size();
            let numel = params[chunk[0]].numel() as i64;
            for (j, &i) in chunk.iter().enumerate() {
                if j != rank {
                    let slot = gathered.narrow(0, j as i64 * numel, numel).view(shape.as_slice());
                    params[i].shallow_clone().copy_(&slot);
                }
            }
        }
        Ok(())
    }

    /// This rank's momentum buffers (of the parameters it owns) as named tensors, for the per-rank
    /// optimizer checkpoint. Names are [`Muon`]'s, indexed by position in `params`; the world size
    /// is recorded too.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = vec![("muon.world_size".to_string(), Tensor::from(self.world_size as i64))];
        for (i, b) in self.buffers.iter().enumerate() {
            if let Some(b) = b {
                out.push((format!("muon.{i}.momentum_buffer"), b.shallow_clone()));
            }
        }
        out
    }

    /// Restores what [`DistMuon::state_tensors`] saved on this rank with the same world size. A
    /// single-process [`Muon`] state (no world size recorded) is accepted too: this rank keeps the
    /// buffers of the parameters it owns.
    pub fn load_state_tensors(&mut self, state: &HashMap<String, Tensor>) -> Result<(), DistOptimError> {
        let saved_world = state.get("muon.world_size").map(|t| t.int64_value(&[]));
        if let Some(saved) = saved_world {
            if saved != self.world_size as i64 {
                return Err(DistOptimError::State(format!(
                    "{NAME} state was saved by {saved} ranks, this run has {}; resume with the same number of processes",
                    self.world_size
                )));
            }
        }
        let mut buffers = Vec::with_capacity(self.params.len());
        for (i, p) in self.params.iter().enumerate() {
            let owned = self.owner(i) == self.rank;
            buffers.push(match state.get(&format!("muon.{i}.momentum_buffer")) {
                Some(_) if !owned && saved_world.is_some() => {
                    return Err(DistOptimError::State(format!(
                        "{NAME} state holds the momentum of {}, which rank {} does not own (state of another rank?)",
                        param_name(i, p),
                        self.rank
                    )))
                }
                Some(_) if !owned => None,
                Some(t) if t.size() == p.size() => Some(t.to_device(p.device()).to_kind(p.kind()).copy()),
                Some(t) => {
                    return Err(DistOptimError::State(format!(
                        "{NAME} momentum of {} has shape {:?}",
                        param_name(i, p),
                        t.size()
                    )))
                }
                None => None,
            });
        }
        self.buffers = buffers;
        Ok(())
    }
}
