//! Token generation with the KV cache (NANOCHAT.md §7): prefill the prompt once, then one token at
//! a time. Temperature 0 is greedy (argmax); otherwise top-k sampling from a seeded generator.
use tch::{Device, Kind, Tensor};

use crate::model::{Gpt, KvCache};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingSettings {
    pub max_tokens: usize,
    pub temperature: f64,
    pub top_k: Option<i64>,
    pub seed: i64,
}

impl SamplingSettings {
    pub fn greedy(max_tokens: usize) -> Self {
        SamplingSettings { max_tokens, temperature: 0.0, top_k: None, seed: 42 }
    }
}

/// Picks the next token from (1, V) logits: argmax at temperature 0, else softmax(logits/T) over the
/// top-k (or all) logits.
pub fn sample_next(logits: &Tensor, s: &SamplingSettings) -> i64 {
    if s.temperature <= 0.0 {
        return logits.argmax(-1, false).int64_value(&[0]);
    }
    let (values, indices) = match s.top_k {
        Some(k) => logits.topk(k.min(logits.size()[1]), -1, true, true),
        None => (logits.shallow_clone(), Tensor::arange(logits.size()[1], (Kind::Int64, logits.device())).unsqueeze(0)),
    };
    let probs = (values / s.temperature).softmax(-1, Kind::Float);
    let choice = probs.multinomial(1, false);
    indices.gather(-1, &choice, false).int64_value(&[0, 0])
}

/// Generates up to `max_tokens` after `prompt`, calling `on_token` for each; stops early when
/// `on_token` returns false. Returns the generated tokens.
pub fn generate(model: &Gpt, prompt: &[u32], s: &SamplingSettings, mut on_token: impl FnMut(u32) -> bool) -> Vec<u32> {
    tch::no_grad(|| {
        let device: Device = model.device();
        if s.temperature > 0.0 {
            tch::manual_seed(s.seed);
        }
        let mut cache = KvCache::new(model.config.n_layer as usize);
        let ids: Vec<i64> = prompt.iter().map(|&t| t as i64).collect();
        let mut logits = model.forward(&Tensor::from_slice(&ids).view([1, -1]).to_device(device), Some(&mut cache));
        let mut out = Vec::new();
        for _ in 0..s.max_tokens {
            let last = logits.select(1, logits.size()[1] - 1);
            let next = sample_next(&last, s);
            out.push(next as u32);
            if !on_token(next as u32) {
                break;
            }
            logits = model.forward(&Tensor::from_slice(&[next]).view([1, 1]).to_device(device), Some(&mut cache));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GptConfig;

    #[test]
    fn cached_greedy_generation_equals_recomputing_everything() {
        tch::manual_seed(5);
        let model = Gpt::new(GptConfig::from_depth(1, 64, 32), Device::Cpu).unwrap();
        tch::no_grad(|| {
            for (_, mut p) in model.named_parameters() {
                let _ = p.normal_(0.0, 0.5);
            }
        });
        let prompt = [3u32, 9, 27];
        let cached = generate(&model, &prompt, &SamplingSettings::greedy(8), |_| true);
        let mut seq: Vec<i64> = prompt.iter().map(|&t| t as i64).collect();
        for _ in 0..8 {
            let logits = tch::no_grad(|| model.forward(&Tensor::from_slice(&seq).view([1, -1]), None));
            seq.push(logits.select(1, seq.len() as i64 - 1).argmax(-1, false).int64_value(&[0]));
        }
        assert_eq!(cached.iter().map(|&t| t as i64).collect::<Vec<_>>(), seq[3..].to_vec());
        let stopped = generate(&model, &prompt, &SamplingSettings::greedy(8), |_| false);
        assert_eq!(stopped.len(), 1);
    }

    #[test]
    fn top_k_sampling_is_seeded_and_stays_in_the_top_k() {
        let logits = Tensor::from_slice(&[0.0f32, 5.0, 4.0, -1.0, 4.5]).view([1, 5]);
        let s = SamplingSettings { max_tokens: 1, temperature: 1.0, top_k: Some(2), seed: 1 };
        for _ in 0..50 {
            assert!([1, 4].contains(&sample_next(&logits, &s)));
        }
        assert_eq!(sample_next(&logits, &SamplingSettings::greedy(1)), 1);
    }
}
