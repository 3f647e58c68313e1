//! The AdamW + Muon pair a training loop steps (NANOCHAT.md §4.1: AdamW first, then Muon): the
//! single-process optimisers, or with a process group the distributed ones, which average the
//! gradients themselves (reduce_scatter, update the owned slice, all_gather; §4.2, §4.3).
use std::collections::HashMap;

use tch::Tensor;

use super::{
    setup_dist_optimizers, setup_optimizers, AdamW, DistAdamW, DistMuon, DistOptimError, Muon, OptimizerSettings,
};
use crate::dist::ProcessGroup;
use crate::model::Gpt;

pub enum Optimizers {
    Single { adamw: AdamW, muon: Muon },
    Distributed { adamw: DistAdamW, muon: DistMuon },
}

impl Optimizers {
    pub fn new(
        model: &Gpt,
        settings: &OptimizerSettings,
        group: Option<&ProcessGroup>,
    ) -> Result<Self, DistOptimError> {
        Ok(match group {
            Some(g) => {
                let (adamw, muon) = setup_dist_optimizers(model, settings, g.rank, g.world_size)?;
                Optimizers::Distributed { adamw, muon }
            }
            None => {
                let (adamw, muon) = setup_optimizers(model, settings);
                Optimizers::Single { adamw, muon }
            }
        })
    }

    /// LR multiplier for both, Muon's momentum.
    pub fn set_schedule(&mut self, lr_multiplier: f64, muon_momentum: f64) {
        match self {
            Optimizers::Single { adamw, muon } => {
                adamw.set_lr_multiplier(lr_multiplier);
                muon.set_lr_multiplier(lr_multiplier);
                muon.momentum = muon_momentum;
            }
            Optimizers::Distributed { adamw, muon } => {
                adamw.set_lr_multiplier(lr_multiplier);
                muon.set_lr_multiplier(lr_multiplier);
                muon.momentum = muon_momentum;
            }
        }
    }

    /// One update; the distributed pair needs the group it was built for.
    pub fn step(&mut self, group: Option<&ProcessGroup>) -> Result<(), DistOptimError> {
        match (self, group) {
            (Optimizers::Single { adamw, muon }, _) => {
                adamw.step();
                muon.step();
                Ok(())
            }
            (Optimizers::Distributed { adamw, muon }, Some(g)) => {
                adamw.step(g)?;
                muon.step(g)
            }
            (Optimizers::Distributed { .. }, None) => {
                Err(DistOptimError::State("distributed optimizers stepped without their process group".into()))
            }
        }
    }

    /// This rank's optimizer state, for `optim_XXXXXX_rankR`.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let (mut a, b) = match self {
            Optimizers::Single { adamw, muon } => (adamw.state_tensors(), muon.state_tensors()),
            Optimizers::Distributed { adamw, muon } => (adamw.state_tensors(), muon.state_tensors()),
        };
        a.extend(b);
        a
    }

    pub fn load_state_tensors(&mut self, state: &HashMap<String, Tensor>) -> Result<(), DistOptimError> {
        match self {
            Optimizers::Single { adamw, muon } => {
                adamw.load_state_tensors(state)?;
                muon.load_state_tensors(state)
            }
            Optimizers::Distributed { adamw, muon } => {
                adamw.load_state_tensors(state)?;
                muon.load_state_tensors(state)
            }
        }
    }
}
