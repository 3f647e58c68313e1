//! The policy-gradient loss of chat RL (NANOCHAT.md §5.5, §14.15): on-policy REINFORCE with
//! token-level normalisation and the advantage `reward − mean reward of the question's samples`.
//!
//! One question's rollouts (prompt + generated tokens without the terminal `<|assistant_end|>`, which
//! the engine strips, so it is never trained; the engine's masks; the rewards) are right-padded with
//! `<|assistant_end|>`; inputs are `ids[:, :-1]`, targets `ids[:, 1:]` set to −1 where the shifted
//! mask is 0 (prompt, forced calculator output, padding). Each pass of `device_batch_size` rows
//! backpropagates `−Σ(logp · A) / (trained targets in the pass · passes · examples per rank)`, so the
//! gradients of every pass and question of a process add up to its share of one optimizer step.
use tch::{Device, Kind, Reduction, Tensor};

use super::TrainError;
use crate::model::Gpt;

/// One question's samples as the engine returned them, with their rewards.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rollouts {
    /// Prompt + generated tokens of each sample, without the terminal token.
    pub sequences: Vec<Vec<u32>>,
    /// Per token: 1 where the model sampled it, 0 for the prompt and forced tokens.
    pub masks: Vec<Vec<u8>>,
    pub rewards: Vec<f64>,
}

/// The training tensors of one question's rollouts.
#[derive(Debug)]
pub struct PolicyBatch {
    /// (N, T − 1) token ids, T the longest sequence.
    pub inputs: Tensor,
    /// (N, T − 1) next tokens; −1 where not trained.
    pub targets: Tensor,
    /// (N,) fp32: reward − mean reward (no division by the standard deviation).
    pub advantages: Tensor,
}

impl Rollouts {
    /// Pads every sequence to the longest with `pad` (mask 0) and builds inputs, targets and advantages.
    pub fn collate(&self, pad: u32, device: Device) -> Result<PolicyBatch, TrainError> {
        let n = self.sequences.len();
        let bad = |what: String| Err(TrainError::Rollouts(what));
        if n == 0 {
            return bad("no samples".into());
        }
        if self.masks.len() != n || self.rewards.len() != n {
            return bad(format!("{n} sequences, {} masks and {} rewards", self.masks.len(), self.rewards.len()));
        }
        if let Some(i) = (0..n).find(|&i| self.masks[i].len() != self.sequences[i].len()) {
            let (ids, mask) = (self.sequences[i].len(), self.masks[i].len());
            return bad(format!("sample {i} has {ids} tokens but {mask} mask values"));
        }
        let width = self.sequences.iter().map(Vec::len).max().unwrap_or(0);
        if width < 2 {
            return bad("every sequence has fewer than two tokens".into());
        }
        let mut inputs = Vec::with_capacity(n * (width - 1));
        let mut targets = Vec::with_capacity(n * (width - 1));
        for (ids, mask) in self.sequences.iter().zip(&self.masks) {
            let token = |t: usize| i64::from(ids.get(t).copied().unwrap_or(pad));
            let trained = |t: usize| mask.get(t).is_some_and(|&m| m != 0);
            inputs.extend((0..width - 1).map(token));
            targets.extend((1..width).map(|t| if trained(t) { token(t) } else { -1 }));
        }
        let shape = [n as i64, width as i64 - 1];
        let rewards: Vec<f32> = self.rewards.iter().map(|&r| r as f32).collect();
        let rewards = Tensor::from_slice(&rewards).to_device(device);
        Ok(PolicyBatch {
            inputs: Tensor::from_slice(&inputs).view(shape).to_device(device),
            targets: Tensor::from_slice(&targets).view(shape).to_device(device),
            advantages: &rewards - rewards.mean(Kind::Float),
        })
    }

    /// The mean reward of the samples.
    pub fn mean_reward(&self) -> f64 {
        self.rewards.iter().sum::<f64>() / self.rewards.len().max(1) as f64
    }
}

/// Backpropagates the loss of each pass of `device_batch_size` rows of `batch` (gradients add up in
/// the parameters); `examples_per_rank` is the number of questions this process accumulates before
/// the step. Returns each pass's loss.
pub fn backward_passes(
    model: &Gpt,
    batch: &PolicyBatch,
    device_batch_size: usize,
    examples_per_rank: usize,
) -> Result<Vec<f64>, TrainError> {
    let rows = batch.inputs.size()[0] as usize;
    if device_batch_size == 0 || !rows.is_multiple_of(device_batch_size) || examples_per_rank == 0 {
        return Err(TrainError::Config(format!(
            "RL: {rows} samples do not split into passes of device_batch_size {device_batch_size}"
        )));
    }
    let passes = rows / device_batch_size;
    let normaliser = (passes * examples_per_rank) as i64;
    let mut losses = Vec::with_capacity(passes);
    for pass in 0..passes {
        let (start, len) = ((pass * device_batch_size) as i64, device_batch_size as i64);
        let inputs = batch.inputs.narrow(0, start, len);
        let targets = batch.targets.narrow(0, start, len);
        let advantages = batch.advantages.narrow(0, start, len);
        let logp = -model.loss(&inputs, &targets, Reduction::None).view_as(&inputs);
        let objective = (logp * advantages.unsqueeze(-1)).sum(Kind::Float);
        // Targets of −1 contribute logp = 0; a pass without any trained target divides by 1.
        let valid = targets.ge(0).sum(Kind::Int64).clamp_min(1);
        let loss = -(objective / (valid * normaliser));
        loss.backward();
        losses.push(loss.double_value(&[]));
    }
    Ok(losses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GptConfig;

    const PAD: u32 = 99;

    fn rollouts() -> Rollouts {
        Rollouts {
            // A prompt of 3 tokens; sample 0 ended early, sample 1 has a forced tool output (mask 0) and
            // hit max tokens, sample 2 generated nothing.
            sequences: vec![vec![1, 2, 3, 10, 11], vec![1, 2, 3, 20, 21, 22, 23, 24], vec![1, 2, 3]],
            masks: vec![vec![0, 0, 0, 1, 1], vec![0, 0, 0, 1, 0, 0, 1, 1], vec![0, 0, 0]],
            rewards: vec![1.0, 0.0, 0.5],
        }
    }

    fn rows(t: &Tensor) -> Vec<Vec<i64>> {
        Vec::<Vec<i64>>::try_from(t).unwrap()
    }

    #[test]
    fn collation_trains_only_sampled_tokens() {
        let batch = rollouts().collate(PAD, Device::Cpu).unwrap();
        assert_eq!(
            rows(&batch.inputs),
            [vec![1, 2, 3, 10, 11, 99, 99], vec![1, 2, 3, 20, 21, 22, 23], vec![1, 2, 3, 99, 99, 99, 99]]
        );
        assert_eq!(
            rows(&batch.targets),
            [
                // Padding (and so a terminal <|assistant_end|>) is never a target.
                vec![-1, -1, 10, 11, -1, -1, -1],
                // The forced tokens 21, 22 are not trained; the last token of a row that hit max tokens is.
                vec![-1, -1, 20, -1, -1, 23, 24],
                // Nothing generated: nothing trained.
                vec![-1; 7],
            ]
        );
        let advantages = Vec::<f32>::try_from(&batch.advantages).unwrap();
        assert_eq!(advantages, [0.5, -0.5, 0.0]);
    }

    #[test]
    fn malformed_rollouts_are_errors() {
        let mut r = rollouts();
        r.masks[1].pop();
        assert!(r.collate(PAD, Device::Cpu).unwrap_err().to_string().contains("sample 1 has 8 tokens but 7"));
        let short = Rollouts { sequences: vec![vec![1]], masks: vec![vec![0]], rewards: vec![1.0] };
        assert!(short.collate(PAD, Device::Cpu).is_err());
        assert!(Rollouts::default().collate(PAD, Device::Cpu).is_err());
    }

    /// A depth-1 model whose every parameter gets a gradient (lm_head and the projections are not zero).
    fn model() -> Gpt {
        tch::manual_seed(3);
        let mut model = Gpt::new(GptConfig::from_depth(1, 128, 16), Device::Cpu).unwrap();
        model.init_weights();
        tch::no_grad(|| {
            for (_, mut p) in model.named_parameters() {
                p.copy_(&(Tensor::randn_like(&p) * 0.05));
            }
        });
        model
    }

    fn grads(model: &Gpt) -> Vec<f64> {
        model.named_parameters().iter().map(|(_, p)| p.grad().norm().double_value(&[])).collect()
    }

    #[test]
    fn the_loss_is_the_token_normalised_policy_gradient() {
        let model = model();
        let r = rollouts();
        let batch = r.collate(PAD, Device::Cpu).unwrap();
        // One pass of all three rows, as one of two questions of this process.
        let losses = backward_passes(&model, &batch, 3, 2).unwrap();
        // By hand: −Σ over trained targets of logp · A, over 5 trained targets · 1 pass · 2 questions;
        // each row on its own, without padding (causal attention: padding changes nothing before it).
        let mut expected = 0.0;
        for (i, (ids, mask)) in r.sequences.iter().zip(&r.masks).enumerate() {
            let a = [0.5, -0.5, 0.0][i];
            if ids.len() < 2 {
                continue;
            }
            let x = Tensor::from_slice(&ids[..ids.len() - 1].iter().map(|&t| i64::from(t)).collect::<Vec<_>>());
            let logits = tch::no_grad(|| model.forward(&x.view([1, -1]), None)).squeeze_dim(0);
            let logp = logits.log_softmax(-1, Kind::Float);
            for t in 1..ids.len() {
                if mask[t] == 1 {
                    expected += a * logp.double_value(&[t as i64 - 1, i64::from(ids[t])]);
                }
            }
        }
        expected = -expected / (5.0 * 2.0);
        assert!((losses[0] - expected).abs() < 1e-6, "{} vs {expected}", losses[0]);
        assert!(grads(&model).iter().all(|&g| g > 0.0), "every parameter gets a gradient");
    }

    #[test]
    fn passes_normalise_by_their_own_trained_targets_and_an_empty_pass_gives_zero() {
        let model = model();
        let mut r = rollouts();
        r.sequences.push(vec![1, 2, 3, 30]);
        r.masks.push(vec![0, 0, 0, 1]);
        r.rewards.push(1.0);
        // Passes of two: rows 0-1 (4 trained targets), rows 2-3 (1 trained target, in row 3).
        let batch = r.collate(PAD, Device::Cpu).unwrap();
        let losses = backward_passes(&model, &batch, 2, 1).unwrap();
        assert_eq!(losses.len(), 2);
        let a3 = 1.0 - (1.0 + 0.0 + 0.5 + 1.0) / 4.0;
        let logits = tch::no_grad(|| model.forward(&Tensor::from_slice(&[1i64, 2, 3]).view([1, 3]), None));
        let logp = logits.squeeze_dim(0).log_softmax(-1, Kind::Float).double_value(&[2, 30]);
        assert!((losses[1] - (-a3 * logp / (1.0 * 2.0))).abs() < 1e-6, "{losses:?}");
        // A pass whose rows train nothing: loss 0, no NaN from a division by zero.
        let empty = Rollouts {
            sequences: vec![vec![1, 2, 3], vec![1, 2]],
            masks: vec![vec![0, 0, 0], vec![0, 0]],
            rewards: vec![1.0, 0.0],
        };
        model.zero_grad();
        let losses = backward_passes(&model, &empty.collate(PAD, Device::Cpu).unwrap(), 2, 1).unwrap();
        assert_eq!(losses, [0.0]);
        assert!(grads(&model).iter().all(|&g| g == 0.0));
        assert!(backward_passes(&model, &batch, 3, 1).is_err(), "4 samples are not passes of 3");
    }

    #[test]
    fn equal_rewards_give_no_gradient() {
        let model = model();
        let mut r = rollouts();
        r.rewards = vec![1.0; 3];
        let losses = backward_passes(&model, &r.collate(PAD, Device::Cpu).unwrap(), 3, 1).unwrap();
        assert_eq!(losses, [0.0]);
        assert!(grads(&model).iter().all(|&g| g == 0.0), "{:?}", grads(&model));
    }
}
