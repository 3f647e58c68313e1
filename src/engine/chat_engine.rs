//! The inference engine (NANOCHAT.md §7, [A'] `Engine`): KV-cached batched generation with the
//! calculator tool.
//!
//! The prompt is prefilled once with batch 1, the cache copied to `num_samples` rows, and then each
//! step samples one token per row independently (temperature 0: argmax; else softmax over the top-k
//! logits / temperature, multinomial from a generator seeded with `seed`), applies forced tokens,
//! streams the column of tokens with its masks (1 sampled, 0 forced) and feeds the column back.
//! A row is complete after `<|assistant_end|>` or `<|bos|>`; generation stops at `max_tokens`, at the
//! model's context (prompt + generated tokens), or when every row is complete. Tool use, per row: `<|python_start|>` starts collecting tokens,
//! `<|python_end|>` decodes them and calls the calculator; a result is forced as
//! `<|output_start|>` + its tokens + `<|output_end|>` (the sampled tokens of those steps are dropped).
use std::collections::VecDeque;

use tch::{Device, Kind, Tensor};

use super::calculator::use_calculator;
use crate::chat::ChatTokens;
use crate::model::{Gpt, KvCache};
use crate::pyrandom::python::PyRandom;
use crate::tokenizer::{BpeEncoder, TokenizerError};

/// What the engine needs of a model: the next-token logits (B, V) after ids (B, T), continuing a
/// KV cache.
pub trait CausalModel {
    fn logits(&self, ids: &Tensor, cache: &mut KvCache) -> Tensor;
    fn n_layer(&self) -> usize;
    fn device(&self) -> Device;
    /// Positions (prompt + generated) the model works over; generation stops there. None: no limit.
    fn context(&self) -> Option<usize> {
        None
    }
}

impl CausalModel for Gpt {
    fn logits(&self, ids: &Tensor, cache: &mut KvCache) -> Tensor {
        self.forward_last(ids, Some(cache)).squeeze_dim(1)
    }
    fn n_layer(&self) -> usize {
        self.config.n_layer as usize
    }
    fn device(&self) -> Device {
        Gpt::device(self)
    }
    /// The rotary table's length, 10× sequence_len: the reference's forward asserts beyond it.
    fn context(&self) -> Option<usize> {
        Some((self.config.sequence_len * crate::model::rotary::ROTARY_OVERCOMPUTE) as usize)
    }
}

/// Where the random draws of sampling come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SamplingRng {
    /// torch's default generator reseeded with `seed` (the reference's draws, token for token). It is
    /// process-wide: two generations running at once on different threads disturb each other.
    #[default]
    Torch,
    /// A Mersenne Twister of this generation alone, seeded with `seed`: the same seed gives the same
    /// tokens whatever else runs concurrently (the server's workers), though not the reference's.
    Private,
}

/// Generation settings (§7 `generate`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenerationSettings {
    pub num_samples: usize,
    /// None: until every row completes.
    pub max_tokens: Option<usize>,
    /// 0: greedy.
    pub temperature: f64,
    /// None: sample from all logits.
    pub top_k: Option<i64>,
    pub seed: i64,
    pub rng: SamplingRng,
}

impl GenerationSettings {
    pub fn greedy(max_tokens: usize) -> Self {
        GenerationSettings {
            num_samples: 1,
            max_tokens: Some(max_tokens),
            temperature: 0.0,
            top_k: None,
            seed: 42,
            rng: SamplingRng::Torch,
        }
    }
}

/// (B, V) logits → (B,) next tokens, as the reference's `sample_next_token`.
pub fn sample_tokens(logits: &Tensor, temperature: f64, top_k: Option<i64>) -> Vec<i64> {
    let picked = if temperature <= 0.0 {
        logits.argmax(-1, true)
    } else if let Some(k) = top_k {
        let (values, indices) = logits.topk(k.min(logits.size()[1]), -1, true, true);
        let probs = (values / temperature).softmax(-1, Kind::Float);
        indices.gather(1, &probs.multinomial(1, false), false)
    } else {
        (logits / temperature).softmax(-1, Kind::Float).multinomial(1, false)
    };
    Vec::<i64>::try_from(picked.view([-1]).to_device(Device::Cpu)).unwrap_or_default()
}

/// (B, V) logits → (B,) next tokens with the draws from `rng`: the same distribution as
/// [`sample_tokens`] (top-k, temperature, softmax), inverted at one uniform draw per row on the CPU.
pub fn sample_tokens_with(logits: &Tensor, temperature: f64, top_k: Option<i64>, rng: &mut PyRandom) -> Vec<i64> {
    if temperature <= 0.0 {
        return sample_tokens(logits, temperature, top_k);
    }
    let (probs, ids, width) = row_probabilities(logits, temperature, top_k);
    probs.chunks(width).zip(ids.chunks(width)).map(|(row, ids)| draw(row, ids, rng)).collect()
}

/// Each row's softmax(logits / temperature) over its top-k (or all) logits, on the CPU: the
/// probabilities and their token ids, `width` per row.
pub(crate) fn row_probabilities(logits: &Tensor, temperature: f64, top_k: Option<i64>) -> (Vec<f32>, Vec<i64>, usize) {
    let (values, indices) = match top_k {
        Some(k) => logits.topk(k.min(logits.size()[1]), -1, true, true),
        None => {
            (logits.shallow_clone(), Tensor::arange(logits.size()[1], (Kind::Int64, logits.device())).expand_as(logits))
        }
    };
    let probs = (values / temperature).softmax(-1, Kind::Float).to_device(Device::Cpu);
    let indices = indices.to_device(Device::Cpu);
    let width = probs.size()[1] as usize;
    let probs = Vec::<f32>::try_from(probs.view([-1])).unwrap_or_default();
    let indices = Vec::<i64>::try_from(indices.contiguous().view([-1])).unwrap_or_default();
    (probs, indices, width)
}

/// One token of a row by inverting its cumulative distribution at a uniform draw from `rng`.
pub(crate) fn draw(row: &[f32], ids: &[i64], rng: &mut PyRandom) -> i64 {
    let total: f64 = row.iter().map(|&p| f64::from(p)).sum();
    let target = rng.random() * total;
    let mut cumulative = 0.0;
    let picked = row.iter().position(|&p| {
        cumulative += f64::from(p);
        cumulative > target
    });
    // Rounding can leave the target above the last partial sum: the last non-zero entry.
    ids[picked.unwrap_or_else(|| row.iter().rposition(|&p| p > 0.0).unwrap_or(0))]
}

/// One row's calculator state (§7) and whether it has completed.
#[derive(Debug, Default)]
pub(crate) struct RowState {
    /// Tokens to emit instead of the sampled ones (a calculator result).
    pub(crate) forced: VecDeque<u32>,
    in_python: bool,
    python_tokens: Vec<u32>,
    completed: bool,
}

impl RowState {
    /// The calculator state machine of one row (§7), after `token` was emitted.
    pub(crate) fn track_tool_use(&mut self, t: &ChatTokens, encoder: &BpeEncoder, token: u32) {
        if token == t.python_start {
            self.in_python = true;
            self.python_tokens.clear();
        } else if token == t.python_end && self.in_python {
            self.in_python = false;
            if !self.python_tokens.is_empty() {
                let expr = encoder.decode_lossy(&self.python_tokens).unwrap_or_default();
                if let Some(result) = use_calculator(&expr) {
                    self.forced.push_back(t.output_start);
                    self.forced.extend(encoder.encode_ordinary(&result));
                    self.forced.push_back(t.output_end);
                }
            }
            self.python_tokens.clear();
        } else if self.in_python {
            self.python_tokens.push(token);
        }
    }
}

pub struct Engine<'a, M: CausalModel> {
    model: &'a M,
    encoder: &'a BpeEncoder,
    tokens: ChatTokens,
}

impl<'a, M: CausalModel> Engine<'a, M> {
    pub fn new(model: &'a M, encoder: &'a BpeEncoder) -> Result<Self, TokenizerError> {
        Ok(Engine { model, encoder, tokens: ChatTokens::of(encoder)? })
    }

    pub fn chat_tokens(&self) -> &ChatTokens {
        &self.tokens
    }

    pub fn encoder(&self) -> &'a BpeEncoder {
        self.encoder
    }

    /// The model's context in positions (prompt + generated), if it has one.
    pub fn context(&self) -> Option<usize> {
        self.model.context()
    }

    /// Streams columns of `num_samples` tokens and their masks to `on_column`; it returns false to
    /// stop early. Returns the number of columns generated.
    pub fn generate(
        &self,
        prompt: &[u32],
        s: &GenerationSettings,
        mut on_column: impl FnMut(&[u32], &[u8]) -> bool,
    ) -> usize {
        tch::no_grad(|| {
            let device = self.model.device();
            let mut private_rng = match s.rng {
                SamplingRng::Torch => {
                    tch::manual_seed(s.seed);
                    None
                }
                SamplingRng::Private => Some(PyRandom::new(s.seed)),
            };
            let t = &self.tokens;
            // Prefill once with batch 1, then one cache row per sample.
            let mut prefill = KvCache::new(self.model.n_layer());
            let ids: Vec<i64> = prompt.iter().map(|&id| i64::from(id)).collect();
            let logits = self.model.logits(&Tensor::from_slice(&ids).view([1, -1]).to_device(device), &mut prefill);
            let rows = s.num_samples.max(1);
            let mut logits = logits.expand([rows as i64, -1], false);
            let mut cache = prefill.repeated(rows as i64);
            let mut states: Vec<RowState> = (0..rows).map(|_| RowState::default()).collect();
            let mut generated = 0;
            let context = self.model.context().unwrap_or(usize::MAX);
            while s.max_tokens.is_none_or(|max| generated < max)
                && prompt.len() + generated < context
                && !states.iter().all(|r| r.completed)
            {
                let sampled = match private_rng.as_mut() {
                    None => sample_tokens(&logits, s.temperature, s.top_k),
                    Some(rng) => sample_tokens_with(&logits, s.temperature, s.top_k, rng),
                };
                let mut column = Vec::with_capacity(rows);
                let mut masks = Vec::with_capacity(rows);
                for (state, &sample) in states.iter_mut().zip(&sampled) {
                    let (token, mask) = match state.forced.pop_front() {
                        Some(forced) => (forced, 0),
                        None => (sample as u32, 1),
                    };
                    column.push(token);
                    masks.push(mask);
                    if token == t.assistant_end || token == t.bos {
                        state.completed = true;
                    }
                    state.track_tool_use(t, self.encoder, token);
                }
                generated += 1;
                if !on_column(&column, &masks) {
                    break;
                }
                let ids: Vec<i64> = column.iter().map(|&id| i64::from(id)).collect();
                logits =
                    self.model.logits(&Tensor::from_slice(&ids).view([rows as i64, 1]).to_device(device), &mut cache);
            }
            generated
        })
    }

    /// Every row's prompt + generated tokens without the terminal `<|assistant_end|>`/`<|bos|>`, and
    /// masks (0 for the prompt and forced tokens), as the reference's `generate_batch`.
    pub fn generate_batch(&self, prompt: &[u32], s: &GenerationSettings) -> (Vec<Vec<u32>>, Vec<Vec<u8>>) {
        let rows = s.num_samples.max(1);
        let mut results = vec![prompt.to_vec(); rows];
        let mut masks = vec![vec![0u8; prompt.len()]; rows];
        let mut completed = vec![false; rows];
        let t = self.tokens;
        self.generate(prompt, s, |column, column_masks| {
            for (i, (&token, &mask)) in column.iter().zip(column_masks).enumerate() {
                if completed[i] {
                    continue;
                }
                if token == t.assistant_end || token == t.bos {
                    completed[i] = true;
                } else {
                    results[i].push(token);
                    masks[i].push(mask);
                }
            }
            !completed.iter().all(|&c| c)
        });
        (results, masks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::SPECIAL_TOKENS;

    /// Byte-level tokens (0-255) plus nanochat's specials (256-264).
    fn encoder() -> BpeEncoder {
        BpeEncoder::new((0..=255u8).map(|b| vec![b]).collect(), &SPECIAL_TOKENS).unwrap()
    }

    /// Emits a fixed script: the logits at generated position i put all mass on script[i] for every row.
    struct Scripted {
        script: Vec<u32>,
        prompt_len: i64,
        vocab: i64,
        context: Option<usize>,
    }

    impl CausalModel for Scripted {
        fn logits(&self, ids: &Tensor, cache: &mut KvCache) -> Tensor {
            let (b, t) = (ids.size()[0], ids.size()[1]);
            let zeros = Tensor::zeros([b, 1, t, 2], (Kind::Float, Device::Cpu));
            for layer in 0..2 {
                let _ = cache.insert(layer, &zeros, &zeros);
            }
            let step = (cache.pos() - self.prompt_len) as usize;
            let token = self.script.get(step).copied().unwrap_or(b'.' as u32);
            let logits = Tensor::zeros([b, self.vocab], (Kind::Float, Device::Cpu));
            let _ = logits.narrow(1, i64::from(token), 1).fill_(10.0);
            logits
        }
        fn n_layer(&self) -> usize {
            2
        }
        fn device(&self) -> Device {
            Device::Cpu
        }
        fn context(&self) -> Option<usize> {
            self.context
        }
    }

    #[test]
    fn calculator_results_are_forced_with_mask_zero() {
        let enc = encoder();
        let t = ChatTokens::of(&enc).unwrap();
        let mut script = vec![b'x' as u32, t.python_start];
        script.extend("12/60".bytes().map(u32::from));
        script.push(t.python_end);
        // While the output is forced, whatever the model says is dropped.
        script.extend([b'?' as u32; 5]);
        script.extend([b'!' as u32, t.assistant_end]);
        let model = Scripted { script, prompt_len: 3, vocab: 265, context: None };
        let engine = Engine::new(&model, &enc).unwrap();
        let prompt = [t.bos, b'h' as u32, t.assistant_start];
        let (rows, masks) = engine.generate_batch(&prompt, &GenerationSettings::greedy(40));
        let mut expected = prompt.to_vec();
        expected.extend([b'x' as u32, t.python_start]);
        expected.extend("12/60".bytes().map(u32::from));
        expected.extend([t.python_end, t.output_start]);
        expected.extend("0.2".bytes().map(u32::from));
        expected.extend([t.output_end, b'!' as u32]);
        assert_eq!(rows[0], expected, "the terminal <|assistant_end|> is not returned");
        let forced_from = prompt.len() + 2 + 5 + 1;
        let mut expected_masks = vec![0u8; prompt.len()];
        expected_masks.extend(vec![1u8; 2 + 5 + 1]);
        expected_masks.extend(vec![0u8; 5]);
        expected_masks.push(1);
        assert_eq!(masks[0], expected_masks);
        assert_eq!(masks[0][forced_from], 0);
    }

    #[test]
    fn rows_stop_at_max_tokens_and_every_row_completes() {
        let enc = encoder();
        let t = ChatTokens::of(&enc).unwrap();
        let model = Scripted {
            script: vec![b'a' as u32, b'b' as u32, t.assistant_end],
            prompt_len: 1,
            vocab: 265,
            context: None,
        };
        let engine = Engine::new(&model, &enc).unwrap();
        let s = GenerationSettings { num_samples: 3, ..GenerationSettings::greedy(2) };
        let (rows, _) = engine.generate_batch(&[t.bos], &s);
        assert_eq!(rows, vec![vec![t.bos, b'a' as u32, b'b' as u32]; 3]);
        let mut columns = 0;
        engine.generate(&[t.bos], &GenerationSettings { max_tokens: None, ..s }, |column, masks| {
            assert_eq!((column.len(), masks), (3, &[1u8, 1, 1][..]));
            columns += 1;
            true
        });
        assert_eq!(columns, 3, "stops when every row has ended");
        // A context of 2 positions: the prompt's one and one generated token.
        let short = Scripted { context: Some(2), ..model };
        let (rows, _) = Engine::new(&short, &enc).unwrap().generate_batch(&[t.bos], &GenerationSettings::greedy(10));
        assert_eq!(rows[0], vec![t.bos, b'a' as u32]);
        let full = Scripted { context: Some(1), ..short };
        let (rows, _) = Engine::new(&full, &enc).unwrap().generate_batch(&[t.bos], &GenerationSettings::greedy(10));
        assert_eq!(rows[0], vec![t.bos], "a prompt filling the context gets nothing");
    }

    #[test]
    fn private_sampling_follows_the_distribution_and_its_seed() {
        // Probabilities 0.1, 0.2, 0.3, 0.4 over four tokens, two rows.
        let logits = Tensor::from_slice(&[0.1f32, 0.2, 0.3, 0.4]).log().view([1, 4]).repeat([2, 1]);
        let draw = |seed: i64, top_k: Option<i64>, n: usize| -> Vec<i64> {
            let mut rng = PyRandom::new(seed);
            (0..n).flat_map(|_| sample_tokens_with(&logits, 1.0, top_k, &mut rng)).collect()
        };
        let draws = draw(7, None, 10_000);
        let mut counts = [0usize; 4];
        for &t in &draws {
            counts[t as usize] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let expected = 0.1 * (i + 1) as f64 * draws.len() as f64;
            assert!((c as f64 - expected).abs() < 0.05 * draws.len() as f64, "token {i}: {c} of {}", draws.len());
        }
        // top-k 2 keeps tokens 3 and 2 only, in proportion 4:3.
        let top2 = draw(7, Some(2), 5_000);
        assert!(top2.iter().all(|&t| t == 2 || t == 3));
        let threes = top2.iter().filter(|&&t| t == 3).count() as f64 / top2.len() as f64;
        assert!((threes - 4.0 / 7.0).abs() < 0.03, "{threes}");
        // The seed alone decides the draws; temperature 0 is argmax.
        assert_eq!(draw(7, Some(3), 200), draw(7, Some(3), 200));
        assert_ne!(draw(7, Some(3), 200), draw(8, Some(3), 200));
        assert_eq!(sample_tokens_with(&logits, 0.0, None, &mut PyRandom::new(1)), vec![3, 3]);
    }
}
