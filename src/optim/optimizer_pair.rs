//! The optimizers a training loop steps: late 2025's AdamW + Muon pair (NANOCHAT.md §4.1: AdamW
//! first, then Muon), single-process or with a process group the distributed ones, which average the
//! gradients themselves (reduce_scatter, update the owned slice, all_gather; §4.2, §4.3); or
//! 92d63d4's `MuonAdamW`, one implementation for one and many processes (§12).
use std::collections::HashMap;

use tch::Tensor;

use super::{
    setup_dist_optimizers, setup_muon_adamw, setup_optimizers, AdamW, DistAdamW, DistMuon, DistOptimError, Muon,
    MuonAdamW, MuonAdamWSettings, OptimizerSettings,
};
use crate::dist::ProcessGroup;
use crate::model::Gpt;

pub enum Optimizers {
    Single {
        adamw: AdamW,
        muon: Muon,
    },
    Distributed {
        adamw: DistAdamW,
        muon: DistMuon,
    },
    /// 92d63d4's optimizer, with or without a process group (its `step` takes it).
    MuonAdamW(MuonAdamW),
}

impl Optimizers {
    /// The optimizers for `model`: late 2025's pair, or `MuonAdamW` for a model with 92d63d4's
    /// parameters (value embeddings, lambdas, smear), which the pair does not cover. `MuonAdamW` gets
    /// the settings' LRs and weight decay, 92d63d4's scalar LR, and every group's LR times
    /// `init_lr_frac`, as 92d63d4's chat_sft.py sets them up.
    pub fn new(
        model: &Gpt,
        settings: &OptimizerSettings,
        group: Option<&ProcessGroup>,
    ) -> Result<Self, DistOptimError> {
        if model.config.has_92d63d4_parameters() {
            let s = MuonAdamWSettings {
                unembedding_lr: settings.unembedding_lr,
                embedding_lr: settings.embedding_lr,
                matrix_lr: settings.matrix_lr,
                weight_decay: settings.weight_decay,
                ..MuonAdamWSettings::reference()
            };
            let mut optimizer = setup_muon_adamw(model, &s)?;
            optimizer.scale_initial_lrs(settings.init_lr_frac);
            return Ok(Optimizers::MuonAdamW(optimizer));
        }
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

    /// 92d63d4's `GPT.setup_optimizer` with these (already scaled) settings.
    pub fn muon_adamw(model: &Gpt, settings: &MuonAdamWSettings) -> Result<Self, DistOptimError> {
        Ok(Optimizers::MuonAdamW(setup_muon_adamw(model, settings)?))
    }

    /// Every group's LR multiplier and Muon's momentum; Muon's weight decay where the schedule sets
    /// one (92d63d4's cosine decay; `None` keeps the configured one).
    pub fn set_schedule(&mut self, lr_multiplier: f64, muon_momentum: f64, muon_weight_decay: Option<f64>) {
        match self {
            Optimizers::MuonAdamW(o) => o.set_schedule(lr_multiplier, muon_momentum, muon_weight_decay),
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
            (Optimizers::MuonAdamW(o), g) => Ok(o.step(g)?),
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
            Optimizers::MuonAdamW(o) => return o.state_tensors(),
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
            Optimizers::MuonAdamW(o) => Ok(o.load_state_tensors(state)?),
        }
    }
}
