//! Continuous batching (DESIGN.md "the server schedules per token"): one model replica runs a batch of
//! sequences one token step at a time. Sequences join between steps ([`Scheduler::admit`]) and leave
//! as soon as they end, are cancelled or time out, without waiting for the rest of the batch.
//!
//! Each step packs the new tokens of every running sequence into one forward pass
//! ([`PackedModel::packed_logits`]): one token for each decoding sequence and a chunk of the prompt
//! for each prefilling one, at most `prefill_chunk` prompt tokens a step in all, so a long prompt is
//! prefilled over several steps while the others keep decoding. Keys and values live in a
//! [`KvArena`] reserved at admission; each sequence attends to its own run of it.
//!
//! Per sequence, as NANOCHAT.md §7 generates one row: its sampling settings (temperature 0: argmax;
//! else top-k, temperature, softmax, one draw from its own Mersenne Twister seeded with its seed, so
//! its tokens do not depend on the other sequences' draws), the stop rule (`<|assistant_end|>` or
//! `<|bos|>`, max tokens, the model's context, a deadline) and the calculator's forced tokens.
use std::time::Instant;

use tch::{Kind, Tensor};

use super::chat_engine::{draw, row_probabilities, RowState};
use super::kv_arena::{Extent, KvArena, KvShape};
use crate::chat::ChatTokens;
use crate::model::Gpt;
use crate::pyrandom::python::PyRandom;
use crate::tokenizer::{BpeEncoder, TokenizerError};

/// What continuous batching needs of a model.
pub trait PackedModel {
    /// The shape and dtype of its keys and values.
    fn kv_shape(&self) -> KvShape;
    /// Positions (prompt + generated) it works over; None: no limit.
    fn context(&self) -> Option<usize>;
    /// Logits (M, V) at the packed indices `wanted` of the tokens `ids` (N,) at `positions`, with
    /// `attend` doing attention per layer (see [`Gpt::forward_packed`]).
    fn packed_logits(
        &self,
        ids: &Tensor,
        positions: &[i64],
        wanted: &Tensor,
        attend: &mut dyn FnMut(usize, &Tensor, &Tensor, &Tensor) -> Tensor,
    ) -> Tensor;
}

impl PackedModel for Gpt {
    fn kv_shape(&self) -> KvShape {
        KvShape {
            n_layer: self.config.n_layer as usize,
            n_kv_head: self.config.n_kv_head,
            head_dim: self.config.head_dim(),
            kind: self.precision.compute_kind(),
            device: self.device(),
        }
    }
    fn context(&self) -> Option<usize> {
        super::chat_engine::CausalModel::context(self)
    }
    fn packed_logits(
        &self,
        ids: &Tensor,
        positions: &[i64],
        wanted: &Tensor,
        attend: &mut dyn FnMut(usize, &Tensor, &Tensor, &Tensor) -> Tensor,
    ) -> Tensor {
        self.forward_packed(ids, positions, wanted, attend)
    }
}

/// Why a sequence ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// `<|assistant_end|>` or `<|bos|>` (not passed to the sink).
    Stop,
    /// Its max tokens or the model's context.
    Length,
    /// Its deadline passed.
    Timeout,
    /// Its sink said the receiver is gone.
    Cancelled,
    /// The step failed (an internal error); every sequence of that step ends so.
    Failed,
}

/// Where a sequence's tokens go.
pub trait SequenceSink {
    /// A generated token (`forced`: from the calculator); false when nobody listens any more.
    fn token(&mut self, token: u32, forced: bool) -> bool;
    /// Whether the receiver has gone: checked before every step, the sequence's KV is freed at once.
    fn is_cancelled(&self) -> bool;
    /// The end, with the number of tokens passed to [`SequenceSink::token`].
    fn finish(&mut self, generated: usize, finish: Finish);
}

/// One sequence's sampling and stop settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SequenceSettings {
    pub max_tokens: usize,
    /// 0: greedy.
    pub temperature: f64,
    /// None: sample from all logits.
    pub top_k: Option<i64>,
    /// Seeds the sequence's own generator.
    pub seed: i64,
    pub deadline: Option<Instant>,
}

/// A sequence asking to join.
pub struct NewSequence<'s> {
    pub prompt: Vec<u32>,
    pub settings: SequenceSettings,
    pub sink: Box<dyn SequenceSink + 's>,
}

/// The batch's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Sequences running at once.
    pub max_batch: usize,
    /// Prompt tokens prefilled in one step, over all sequences.
    pub prefill_chunk: usize,
}

struct Sequence<'s> {
    prompt: Vec<u32>,
    /// Positions already in the KV cache.
    fed: usize,
    /// The last emitted token, the next step's input.
    last: u32,
    generated: usize,
    extent: Extent,
    settings: SequenceSettings,
    rng: PyRandom,
    tools: RowState,
    sink: Box<dyn SequenceSink + 's>,
    finish: Option<Finish>,
}

/// Rows sampled together: temperature and top-k.
type SamplingKey = (f64, Option<i64>);

/// The tokens one sequence adds to a step.
struct Segment {
    sequence: usize,
    /// Where its tokens start in the packed step.
    offset: i64,
    tokens: i64,
    /// Positions cached before this step.
    cached: i64,
    start: i64,
    samples: bool,
}

pub struct Scheduler<'a> {
    model: &'a dyn PackedModel,
    encoder: &'a BpeEncoder,
    tokens: ChatTokens,
    arena: KvArena,
    limits: BatchLimits,
    context: usize,
    running: Vec<Sequence<'a>>,
}

impl<'a> Scheduler<'a> {
    pub fn new(
        model: &'a dyn PackedModel,
        encoder: &'a BpeEncoder,
        arena: KvArena,
        limits: BatchLimits,
    ) -> Result<Self, TokenizerError> {
        let context = model.context().unwrap_or(usize::MAX);
        let limits = BatchLimits { max_batch: limits.max_batch.max(1), prefill_chunk: limits.prefill_chunk.max(1) };
        Ok(Scheduler { model, encoder, tokens: ChatTokens::of(encoder)?, arena, limits, context, running: Vec::new() })
    }

    pub fn chat_tokens(&self) -> &ChatTokens {
        &self.tokens
    }

    pub fn encoder(&self) -> &'a BpeEncoder {
        self.encoder
    }

    /// The model's context in positions, if it has one.
    pub fn context(&self) -> Option<usize> {
        (self.context != usize::MAX).then_some(self.context)
    }

    pub fn limits(&self) -> BatchLimits {
        self.limits
    }

    pub fn arena(&self) -> &KvArena {
        &self.arena
    }

    /// Sequences in the batch.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// KV positions a sequence reserves: its prompt and its longest reply, within the context.
    pub fn reservation(&self, prompt_len: usize, max_tokens: usize) -> usize {
        prompt_len + max_tokens.min(self.context.saturating_sub(prompt_len))
    }

    /// Whether `rows` sequences of this prompt length and max tokens would be admitted now.
    pub fn fits(&mut self, rows: usize, prompt_len: usize, max_tokens: usize) -> bool {
        if self.running.len() + rows > self.limits.max_batch {
            return false;
        }
        let need = self.reservation(prompt_len, max_tokens);
        let extents: Vec<Extent> = (0..rows).map_while(|_| self.arena.reserve(need)).collect();
        let fits = extents.len() == rows;
        extents.into_iter().for_each(|e| self.arena.release(e));
        fits
    }

    /// Admits all of `rows` at once when the batch has room and the KV cache a run for each;
    /// otherwise admits none and hands them back.
    pub fn admit(&mut self, rows: Vec<NewSequence<'a>>) -> Result<(), Vec<NewSequence<'a>>> {
        if self.running.len() + rows.len() > self.limits.max_batch {
            return Err(rows);
        }
        let mut extents = Vec::with_capacity(rows.len());
        for row in &rows {
            match self.arena.reserve(self.reservation(row.prompt.len(), row.settings.max_tokens)) {
                Some(extent) => extents.push(extent),
                None => {
                    extents.into_iter().for_each(|e| self.arena.release(e));
                    return Err(rows);
                }
            }
        }
        for (row, extent) in rows.into_iter().zip(extents) {
            let last = row.prompt.last().copied().unwrap_or(self.tokens.bos);
            self.running.push(Sequence {
                rng: PyRandom::new(row.settings.seed),
                prompt: row.prompt,
                fed: 0,
                last,
                generated: 0,
                extent,
                settings: row.settings,
                tools: RowState::default(),
                sink: row.sink,
                finish: None,
            });
        }
        Ok(())
    }

    /// One token step of every running sequence (a prompt chunk for those still prefilling); ended
    /// sequences leave and free their KV. Returns the tokens emitted. If the model panics no sequence
    /// has advanced; the caller then ends them all with [`Scheduler::fail_all`].
    pub fn step(&mut self) -> usize {
        self.drop_cancelled();
        let mut ids: Vec<i64> = Vec::new();
        let mut positions: Vec<i64> = Vec::new();
        let mut destinations: Vec<i64> = Vec::new();
        let mut segments: Vec<Segment> = Vec::new();
        let mut budget = self.limits.prefill_chunk;
        for (i, s) in self.running.iter().enumerate() {
            let (tokens, samples): (&[u32], bool) = if s.fed < s.prompt.len() {
                let n = budget.min(s.prompt.len() - s.fed);
                budget -= n;
                (&s.prompt[s.fed..s.fed + n], s.fed + n == s.prompt.len())
            } else {
                (std::slice::from_ref(&s.last), true)
            };
            if tokens.is_empty() {
                continue;
            }
            let (offset, cached, start) = (ids.len() as i64, s.fed as i64, s.extent.start());
            ids.extend(tokens.iter().map(|&t| i64::from(t)));
            positions.extend(cached..cached + tokens.len() as i64);
            destinations.extend(start + cached..start + cached + tokens.len() as i64);
            segments.push(Segment { sequence: i, offset, tokens: tokens.len() as i64, cached, start, samples });
        }
        if segments.is_empty() {
            return 0;
        }
        let device = self.arena.device();
        let wanted: Vec<i64> = segments.iter().filter(|s| s.samples).map(|s| s.offset + s.tokens - 1).collect();
        let logits = tch::no_grad(|| {
            let ids = Tensor::from_slice(&ids).to_device(device);
            let destinations = Tensor::from_slice(&destinations).to_device(device);
            let wanted = Tensor::from_slice(&wanted).to_device(device);
            let arena = &self.arena;
            let mut attend = |layer: usize, q: &Tensor, k: &Tensor, v: &Tensor| -> Tensor {
                arena.write(layer, &destinations, k, v);
                let gqa = q.size()[1] != k.size()[1];
                // (1, H, N, hd): each sequence's queries are a slice of it.
                let q = q.transpose(0, 1).unsqueeze(0);
                let (keys, values) = arena.layer(layer);
                let outputs: Vec<Tensor> = (segments.iter())
                    .map(|s| {
                        let (k, v) = (
                            keys.narrow(2, s.start, s.cached + s.tokens),
                            values.narrow(2, s.start, s.cached + s.tokens),
                        );
                        attention(&q.narrow(2, s.offset, s.tokens), &k, &v, gqa)
                    })
                    .collect();
                Tensor::cat(&outputs, 2).squeeze_dim(0).transpose(0, 1)
            };
            self.model.packed_logits(&ids, &positions, &wanted, &mut attend)
        });
        let sampled = self.sample(&logits, &segments);
        let mut emitted = 0;
        let mut picks = sampled.into_iter();
        for segment in &segments {
            let s = &mut self.running[segment.sequence];
            s.fed += segment.tokens as usize;
            if segment.samples {
                let sampled = picks.next().unwrap_or(i64::from(self.tokens.bos));
                emitted += emit(s, sampled as u32, &self.tokens, self.encoder, self.context);
            }
        }
        self.remove_finished();
        emitted
    }

    /// One token per sampling segment: argmax for the greedy ones (one pass over all rows), and for
    /// the others one softmax per group of rows with the same temperature and top-k, then a draw from
    /// each sequence's own generator.
    fn sample(&mut self, logits: &Tensor, segments: &[Segment]) -> Vec<i64> {
        let rows: Vec<usize> = segments.iter().filter(|s| s.samples).map(|s| s.sequence).collect();
        let mut picked = vec![0i64; rows.len()];
        let settings = |i: usize| self.running[i].settings;
        if rows.iter().any(|&i| settings(i).temperature <= 0.0) {
            let greedy = Vec::<i64>::try_from(logits.argmax(-1, false).to_device(tch::Device::Cpu)).unwrap_or_default();
            for (j, &i) in rows.iter().enumerate() {
                if settings(i).temperature <= 0.0 {
                    picked[j] = greedy.get(j).copied().unwrap_or_default();
                }
            }
        }
        let mut groups: Vec<(SamplingKey, Vec<usize>)> = Vec::new();
        for (j, &i) in rows.iter().enumerate() {
            let key = (settings(i).temperature, settings(i).top_k);
            if key.0 <= 0.0 {
                continue;
            }
            match groups.iter_mut().find(|g| g.0 == key) {
                Some(group) => group.1.push(j),
                None => groups.push((key, vec![j])),
            }
        }
        let device = logits.device();
        for ((temperature, top_k), members) in groups {
            let at = Tensor::from_slice(&members.iter().map(|&j| j as i64).collect::<Vec<_>>()).to_device(device);
            let (probs, ids, width) = row_probabilities(&logits.index_select(0, &at), temperature, top_k);
            for (n, &j) in members.iter().enumerate() {
                let range = n * width..(n + 1) * width;
                picked[j] = draw(&probs[range.clone()], &ids[range], &mut self.running[rows[j]].rng);
            }
        }
        picked
    }

    fn drop_cancelled(&mut self) {
        for s in &mut self.running {
            if s.sink.is_cancelled() {
                s.finish = Some(Finish::Cancelled);
            }
        }
        self.remove_finished();
    }

    /// Ends every running sequence as failed and frees their KV (after a step that panicked).
    pub fn fail_all(&mut self) {
        for s in &mut self.running {
            s.finish = Some(Finish::Failed);
        }
        self.remove_finished();
    }

    fn remove_finished(&mut self) {
        let arena = &mut self.arena;
        self.running.retain_mut(|s| match s.finish {
            Some(finish) => {
                arena.release(s.extent);
                s.sink.finish(s.generated, finish);
                false
            }
            None => true,
        });
    }
}

/// SDPA of one sequence's (1, H, Tq, hd) queries over its (1, H_kv, Tk, hd) keys and values, as the
/// model's cached attention (§7): causal when the chunk is all there is, everything cached for one
/// query, else the cached prefix plus causal within the chunk.
fn attention(q: &Tensor, k: &Tensor, v: &Tensor, gqa: bool) -> Tensor {
    let (tq, tk) = (q.size()[2], k.size()[2]);
    if tq == tk || tq == 1 {
        return Tensor::scaled_dot_product_attention(q, k, v, None::<Tensor>, 0.0, tq > 1, None, gqa);
    }
    let prefix = Tensor::ones([tq, tk - tq], (Kind::Bool, q.device()));
    let chunk = Tensor::ones([tq, tq], (Kind::Bool, q.device())).tril(0);
    let mask = Tensor::cat(&[prefix, chunk], 1);
    Tensor::scaled_dot_product_attention(q, k, v, Some(mask), 0.0, false, None, gqa)
}

/// Applies one sampled token to a sequence (forced tokens first, §7) and returns 1 if it was emitted.
fn emit(s: &mut Sequence<'_>, sampled: u32, t: &ChatTokens, encoder: &BpeEncoder, context: usize) -> usize {
    let (token, forced) = match s.tools.forced.pop_front() {
        Some(token) => (token, true),
        None => (sampled, false),
    };
    s.tools.track_tool_use(t, encoder, token);
    if token == t.assistant_end || token == t.bos {
        s.finish = Some(Finish::Stop);
        return 0;
    }
    s.generated += 1;
    s.last = token;
    if !s.sink.token(token, forced) {
        s.finish = Some(Finish::Cancelled);
    } else if s.generated >= s.settings.max_tokens || s.prompt.len() + s.generated >= context {
        s.finish = Some(Finish::Length);
    } else if s.settings.deadline.is_some_and(|d| Instant::now() >= d) {
        s.finish = Some(Finish::Timeout);
    }
    1
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use tch::Device;

    use super::*;
    use crate::tokenizer::SPECIAL_TOKENS;

    /// Byte-level tokens (0-255) plus nanochat's specials (256-264).
    fn encoder() -> BpeEncoder {
        BpeEncoder::new((0..=255u8).map(|b| vec![b]).collect(), &SPECIAL_TOKENS).unwrap()
    }

    /// The logits after position p put all mass on script[p - 2] (a sequence with a prompt of 3 tokens
    /// reads the script from its start); attention runs over the arena with zero keys.
    struct Scripted {
        script: Vec<u32>,
    }

    impl PackedModel for Scripted {
        fn kv_shape(&self) -> KvShape {
            KvShape { n_layer: 1, n_kv_head: 1, head_dim: 4, kind: Kind::Float, device: Device::Cpu }
        }
        fn context(&self) -> Option<usize> {
            None
        }
        fn packed_logits(
            &self,
            ids: &Tensor,
            positions: &[i64],
            wanted: &Tensor,
            attend: &mut dyn FnMut(usize, &Tensor, &Tensor, &Tensor) -> Tensor,
        ) -> Tensor {
            let n = ids.size()[0];
            let zeros = Tensor::zeros([n, 1, 4], (Kind::Float, Device::Cpu));
            assert_eq!(attend(0, &zeros, &zeros, &zeros).size(), [n, 1, 4]);
            let wanted = Vec::<i64>::try_from(wanted).unwrap();
            let logits = Tensor::zeros([wanted.len() as i64, 265], (Kind::Float, Device::Cpu));
            for (row, &i) in wanted.iter().enumerate() {
                let token = self.script.get(positions[i as usize] as usize - 2).copied().unwrap_or(u32::from(b'.'));
                let _ = logits.get(row as i64).narrow(0, i64::from(token), 1).fill_(10.0);
            }
            logits
        }
    }

    #[derive(Default)]
    struct Log {
        tokens: Vec<(u32, bool)>,
        finish: Option<(usize, Finish)>,
        cancel_after: Option<usize>,
    }

    #[derive(Clone, Default)]
    struct Sink(Rc<RefCell<Log>>);

    impl SequenceSink for Sink {
        fn token(&mut self, token: u32, forced: bool) -> bool {
            self.0.borrow_mut().tokens.push((token, forced));
            true
        }
        fn is_cancelled(&self) -> bool {
            let log = self.0.borrow();
            log.cancel_after.is_some_and(|n| log.tokens.len() >= n)
        }
        fn finish(&mut self, generated: usize, finish: Finish) {
            self.0.borrow_mut().finish = Some((generated, finish));
        }
    }

    fn greedy(max_tokens: usize) -> SequenceSettings {
        SequenceSettings { max_tokens, temperature: 0.0, top_k: None, seed: 1, deadline: None }
    }

    /// Four sequences in one batch, each with its own state: one calls the calculator and gets its
    /// result forced while the others sample, one stops at its max tokens, one is cancelled (its KV
    /// is freed before the next step), and a long prompt is prefilled in chunks meanwhile.
    #[test]
    fn sequences_keep_their_own_tools_limits_and_cancellation_in_one_batch() {
        let enc = encoder();
        let t = ChatTokens::of(&enc).unwrap();
        let b = |c: u8| u32::from(c);
        let script = vec![b(b'x'), t.python_start, b(b'1'), b(b'+'), b(b'2'), t.python_end]
            .into_iter()
            .chain([b(b'?'), b(b'?'), b(b'?'), b(b'!'), t.assistant_end])
            .collect();
        let model = Scripted { script };
        let arena = KvArena::new(model.kv_shape(), 1).unwrap();
        let mut scheduler =
            Scheduler::new(&model, &enc, arena, BatchLimits { max_batch: 4, prefill_chunk: 8 }).unwrap();
        let sinks: Vec<Sink> = (0..4).map(|_| Sink::default()).collect();
        sinks[3].0.borrow_mut().cancel_after = Some(1);
        let prompt = |len: usize| vec![t.bos; len];
        let rows = vec![
            NewSequence { prompt: prompt(3), settings: greedy(50), sink: Box::new(sinks[0].clone()) },
            NewSequence { prompt: prompt(5), settings: greedy(50), sink: Box::new(sinks[1].clone()) },
            NewSequence { prompt: prompt(3), settings: greedy(2), sink: Box::new(sinks[2].clone()) },
            NewSequence { prompt: prompt(20), settings: greedy(50), sink: Box::new(sinks[3].clone()) },
        ];
        assert!(scheduler.admit(rows).is_ok());
        assert!(!scheduler.fits(1, 3, 5), "the batch is full");
        // Step 1: three short prompts (11 tokens) exceed the prefill chunk of 8: the first two get theirs.
        scheduler.step();
        assert_eq!(sinks.iter().map(|s| s.0.borrow().tokens.len()).collect::<Vec<_>>(), [1, 1, 0, 0]);
        let mut blocks = vec![scheduler.arena().blocks_in_use()];
        while scheduler.running() > 0 {
            scheduler.step();
            blocks.push(scheduler.arena().blocks_in_use());
        }
        assert_eq!(scheduler.arena().blocks_in_use(), 0);
        assert!(blocks.windows(2).all(|w| w[1] <= w[0]), "blocks are only given back: {blocks:?}");
        let tokens = |i: usize| sinks[i].0.borrow().tokens.clone();
        let finish = |i: usize| sinks[i].0.borrow().finish;
        let sampled = |s: &str| s.bytes().map(|c| (b(c), false)).collect::<Vec<_>>();
        let mut a = sampled("x");
        a.push((t.python_start, false));
        a.extend(sampled("1+2"));
        a.extend([(t.python_end, false), (t.output_start, true), (b(b'3'), true), (t.output_end, true)]);
        a.extend(sampled("!"));
        assert_eq!(tokens(0), a, "the calculator's result is forced in place of the sampled tokens");
        assert_eq!(finish(0), Some((10, Finish::Stop)));
        let mut b_tokens = sampled("1+2");
        b_tokens.push((t.python_end, false));
        b_tokens.extend(sampled("???!"));
        assert_eq!(tokens(1), b_tokens, "no <|python_start|> of its own: nothing is forced");
        assert_eq!(finish(1), Some((8, Finish::Stop)));
        assert_eq!((tokens(2).len(), finish(2)), (2, Some((2, Finish::Length))));
        assert_eq!(finish(3), Some((1, Finish::Cancelled)));
    }

    /// A 200-token prompt joining a decoding sequence is prefilled 16 tokens a step (decode tokens do not
    /// count against the chunk), and the decoding sequence gets one token at every one of those steps.
    #[test]
    fn a_long_prompt_is_prefilled_in_chunks_while_others_keep_decoding() {
        let enc = encoder();
        let t = ChatTokens::of(&enc).unwrap();
        let model = Scripted { script: vec![u32::from(b'a'); 400] };
        let arena = KvArena::new(model.kv_shape(), 1).unwrap();
        let mut scheduler =
            Scheduler::new(&model, &enc, arena, BatchLimits { max_batch: 2, prefill_chunk: 16 }).unwrap();
        let (decoding, long) = (Sink::default(), Sink::default());
        let first = NewSequence { prompt: vec![t.bos; 3], settings: greedy(100), sink: Box::new(decoding.clone()) };
        assert!(scheduler.admit(vec![first]).is_ok());
        scheduler.step();
        let second = NewSequence { prompt: vec![t.bos; 200], settings: greedy(5), sink: Box::new(long.clone()) };
        assert!(scheduler.admit(vec![second]).is_ok());
        for step in 1..=13 {
            scheduler.step();
            assert_eq!(decoding.0.borrow().tokens.len(), 1 + step, "one token a step while the prompt is prefilled");
            assert_eq!(long.0.borrow().tokens.len(), usize::from(step == 13), "200 tokens take 13 steps of 16");
        }
    }
}
