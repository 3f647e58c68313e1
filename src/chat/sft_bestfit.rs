//! The SFT loader of nanochat 92d63d4 (`sft_data_generator_bos_bestfit` of scripts/chat_sft.py,
//! NANOCHAT.md §12): rendered conversations (ids and loss mask) packed whole into rows of T+1
//! tokens, best fit first, padded instead of cropped.
//!
//! Rank v of S renders conversations v, v+S, v+2S, … of the dataset into a buffer kept at
//! `buffer_size` conversations (the cursor wraps past the end, `cursor %= len`, and the epoch, counted
//! from 1, goes up). Each row takes, again and again, the longest buffered conversation that still
//! fits whole (the first of equals); when none fits, the rest of the row is `<|bos|>` with mask 0.
//! Inputs are `row[:-1]`, targets `row[1:]` with −1 where `mask[1:]` is 0; that includes every
//! target from the padding on (`targets[content_len-1:]`, which the reference also sets
//! explicitly), since the padding's mask is 0. A conversation longer than T+1 never fits and stays
//! in the buffer.
//!
//! After each batch: `consumed` (conversations packed, counted in the reference's way: starting at
//! the rank and going up by S each), the epoch of the cursor, the batch count `it`, the progress
//! (`it / num_iterations` when that is set, else `consumed / len`) and `last_step` (`it` reached
//! num_iterations, or consumed reached the dataset's length): what drives chat_sft.py's schedule.
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use super::batches::{render, ChatBatchError, StreamSlot, IGNORE_INDEX};
use super::render::Rendered;
use super::tasks::SharedTask;
use crate::data::batch_source::host_to_device;
use crate::tokenizer::BpeEncoder;

/// Conversations kept in the buffer rows are packed from (the reference's `buffer_size` default).
pub const SFT_BUFFER_CONVERSATIONS: usize = 100;

/// Conversation `index` of the dataset, rendered.
pub type RenderSource = Box<dyn Fn(usize) -> Result<Rendered, ChatBatchError> + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SftPackConfig {
    pub batch_size: usize,
    /// T: rows hold T+1 tokens.
    pub seq_len: usize,
    pub buffer_size: usize,
    /// chat_sft.py's `--num-iterations` when positive: the progress is `it / n` and the last step
    /// comes at `it == n` at the latest. None: the dataset's length decides both.
    pub num_iterations: Option<u64>,
    /// This rank and the world size.
    pub slot: StreamSlot,
    pub device: Device,
}

/// The generator's counters after a batch (its locals `cursor`, `consumed`, `epoch`, `it`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SftPackState {
    /// The next conversation to render.
    pub cursor: usize,
    pub consumed: usize,
    /// The cursor's epoch, from 1.
    pub epoch: u64,
    /// Batches made.
    pub it: u64,
}

/// One batch and where the loader stands after it.
pub struct SftBatch {
    /// (B, T) int64.
    pub inputs: Tensor,
    /// (B, T) int64, −1 where not trained.
    pub targets: Tensor,
    pub state: SftPackState,
    /// chat_sft.py's `approx_progress` (training only).
    pub progress: f64,
    /// chat_sft.py's `last_step` (training only).
    pub last_step: bool,
}

pub struct SftBestFit {
    source: RenderSource,
    len: usize,
    bos: u32,
    config: SftPackConfig,
    buffer: Vec<Rendered>,
    state: SftPackState,
}

impl SftBestFit {
    /// A loader over `len` conversations given by `source`, padding with `bos`.
    pub fn new(len: usize, source: RenderSource, bos: u32, config: SftPackConfig) -> Result<Self, ChatBatchError> {
        let c = &config;
        if c.batch_size == 0 || c.seq_len == 0 || c.buffer_size == 0 || c.slot.streams == 0 {
            return Err(ChatBatchError::InvalidPacking(format!(
                "batch size {}, sequence length {}, buffer size {} and world size {} must all be at least 1",
                c.batch_size, c.seq_len, c.buffer_size, c.slot.streams
            )));
        }
        if len <= c.slot.stream {
            return Err(ChatBatchError::TooFewExamples {
                task: "the SFT dataset".into(),
                len,
                stream: c.slot.stream,
                streams: c.slot.streams,
            });
        }
        let state = SftPackState { cursor: c.slot.stream, consumed: c.slot.stream, epoch: 1, it: 0 };
        Ok(SftBestFit { source, len, bos, config, buffer: Vec::new(), state })
    }

    /// A loader over a task's conversations, rendered with `encoder` (at most 2,048 tokens each, as
    /// `render_conversation`'s default).
    pub fn from_task(
        task: SharedTask,
        encoder: Arc<BpeEncoder>,
        config: SftPackConfig,
    ) -> Result<Self, ChatBatchError> {
        let bos = encoder.special_id("<|bos|>")?;
        let len = task.len();
        Self::new(len, Box::new(move |index| render(&encoder, &task, index)), bos, config)
    }

    pub fn state(&self) -> SftPackState {
        self.state
    }

    fn refill(&mut self) -> Result<(), ChatBatchError> {
        while self.buffer.len() < self.config.buffer_size {
            self.buffer.push((self.source)(self.state.cursor)?);
            self.state.cursor += self.config.slot.streams;
            if self.state.cursor >= self.len {
                self.state.cursor %= self.len;
                self.state.epoch += 1;
            }
        }
        Ok(())
    }

    /// One row of `capacity` tokens appended to `ids` and `mask`.
    fn pack_row(&mut self, capacity: usize, ids: &mut Vec<i64>, mask: &mut Vec<u8>) -> Result<(), ChatBatchError> {
        let mut filled = 0;
        while filled < capacity {
            self.refill()?;
            let remaining = capacity - filled;
            // The longest conversation that fits whole, the first of equals.
            let (mut best, mut best_len) = (None, 0);
            for (i, conv) in self.buffer.iter().enumerate() {
                let n = conv.ids.len();
                if n <= remaining && n > best_len {
                    (best, best_len) = (Some(i), n);
                }
            }
            let Some(i) = best else {
                ids.extend(std::iter::repeat_n(i64::from(self.bos), remaining));
                mask.extend(std::iter::repeat_n(0, remaining));
                return Ok(());
            };
            let conv = self.buffer.remove(i);
            ids.extend(conv.ids.iter().map(|&t| i64::from(t)));
            mask.extend(&conv.mask);
            filled += best_len;
            self.state.consumed += self.config.slot.streams;
        }
        Ok(())
    }

    pub fn next_batch(&mut self) -> Result<SftBatch, ChatBatchError> {
        let (b, t) = (self.config.batch_size, self.config.seq_len);
        let mut ids = Vec::with_capacity(b * (t + 1));
        let mut mask = Vec::with_capacity(b * (t + 1));
        for _ in 0..b {
            self.pack_row(t + 1, &mut ids, &mut mask)?;
        }
        let mut inputs = Vec::with_capacity(b * t);
        let mut targets = Vec::with_capacity(b * t);
        for r in 0..b {
            let row = r * (t + 1);
            inputs.extend_from_slice(&ids[row..row + t]);
            targets.extend((row + 1..row + t + 1).map(|k| if mask[k] == 0 { IGNORE_INDEX } else { ids[k] }));
        }
        self.state.it += 1;
        let (it, consumed, len) = (self.state.it, self.state.consumed, self.len);
        let (progress, by_iterations) = match self.config.num_iterations.filter(|&n| n > 0) {
            Some(n) => (it as f64 / n as f64, it >= n),
            None => (consumed as f64 / len as f64, false),
        };
        let shape = [b as i64, t as i64];
        let device = self.config.device;
        Ok(SftBatch {
            inputs: host_to_device(&Tensor::from_slice(&inputs).view(shape), device),
            targets: host_to_device(&Tensor::from_slice(&targets).view(shape), device),
            state: self.state,
            progress,
            last_step: by_iterations || consumed >= len,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    const BOS: u32 = 99;

    /// Conversation i of `lengths`: tokens 100 + 10i + j, mask 0 on its first token, 1 after.
    fn source(lengths: &'static [usize], calls: Arc<Mutex<Vec<usize>>>) -> RenderSource {
        Box::new(move |i| {
            calls.lock().unwrap().push(i);
            let ids = (0..lengths[i]).map(|j| (100 + 10 * i + j) as u32).collect();
            let mask = (0..lengths[i]).map(|j| u8::from(j > 0)).collect();
            Ok(Rendered { ids, mask })
        })
    }

    fn config(b: usize, t: usize, buffer_size: usize, stream: usize, streams: usize) -> SftPackConfig {
        SftPackConfig {
            batch_size: b,
            seq_len: t,
            buffer_size,
            num_iterations: None,
            slot: StreamSlot { stream, streams },
            device: Device::Cpu,
        }
    }

    fn rows(t: &Tensor) -> Vec<Vec<i64>> {
        (0..t.size()[0]).map(|r| Vec::<i64>::try_from(t.get(r)).unwrap()).collect()
    }

    /// Lengths 3, 6, 2, 9, 4 into rows of 8 from a buffer of 3 (worked through by hand from the
    /// reference's loop): the longest that fits first, padding when none does, the cursor wrapping.
    #[test]
    fn rows_take_the_longest_fit_and_pad_when_none_fits() {
        const LENGTHS: &[usize] = &[3, 6, 2, 9, 4];
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut l = SftBestFit::new(5, source(LENGTHS, calls.clone()), BOS, config(2, 7, 3, 0, 1)).unwrap();
        let b = l.next_batch().unwrap();
        // Row 0: conversation 1 (6 tokens), then 2 (2); row 1: 4 (4), 0 (3), one BOS of padding.
        assert_eq!(rows(&b.inputs), [vec![110, 111, 112, 113, 114, 115, 120], vec![140, 141, 142, 143, 100, 101, 102]]);
        assert_eq!(rows(&b.targets), [vec![111, 112, 113, 114, 115, -1, 121], vec![141, 142, 143, -1, 101, 102, -1]]);
        assert_eq!(b.state, SftPackState { cursor: 2, consumed: 4, epoch: 2, it: 1 });
        assert_eq!((b.progress, b.last_step), (0.8, false));
        let b = l.next_batch().unwrap();
        // Row 0: 1, 2; row 1: 0 (second time round), 4, padding. The 9-token conversation never fits.
        assert_eq!(rows(&b.inputs)[1], [100, 101, 102, 140, 141, 142, 143]);
        assert_eq!(rows(&b.targets)[1], [101, 102, -1, 141, 142, 143, -1]);
        assert_eq!(b.state, SftPackState { cursor: 1, consumed: 8, epoch: 3, it: 2 });
        assert_eq!((b.progress, b.last_step), (1.6, true));
        assert_eq!(*calls.lock().unwrap(), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0]);
    }

    #[test]
    fn a_conversation_longer_than_a_row_leaves_the_row_padding_only() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut l = SftBestFit::new(1, source(&[9], calls), BOS, config(1, 4, 2, 0, 1)).unwrap();
        let b = l.next_batch().unwrap();
        assert_eq!(rows(&b.inputs), [vec![99; 4]]);
        assert_eq!(rows(&b.targets), [vec![-1; 4]]);
        assert_eq!((b.state.consumed, b.progress, b.last_step), (0, 0.0, false));
    }

    #[test]
    fn ranks_stride_over_the_dataset() {
        const LENGTHS: &[usize] = &[2, 2, 2, 2, 2];
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut l = SftBestFit::new(5, source(LENGTHS, calls.clone()), BOS, config(1, 3, 4, 1, 2)).unwrap();
        let b = l.next_batch().unwrap();
        // Rank 1 of 2 reads 1, 3, then 0, 2 of the next epoch; two conversations of 2 fill a row of 4.
        assert_eq!(*calls.lock().unwrap(), [1, 3, 0, 2, 4]);
        assert_eq!(rows(&b.inputs), [vec![110, 111, 130]]);
        assert_eq!(b.state, SftPackState { cursor: 1, consumed: 5, epoch: 3, it: 1 });
        assert!(b.last_step, "consumed 5 of 5");
    }

    #[test]
    fn num_iterations_set_the_progress_and_the_last_step() {
        const LENGTHS: &[usize] = &[2; 100];
        let calls = Arc::new(Mutex::new(Vec::new()));
        let c = SftPackConfig { num_iterations: Some(4), ..config(1, 3, 4, 0, 1) };
        let mut l = SftBestFit::new(100, source(LENGTHS, calls), BOS, c).unwrap();
        let steps: Vec<(f64, bool)> =
            (0..4).map(|_| l.next_batch().unwrap()).map(|b| (b.progress, b.last_step)).collect();
        assert_eq!(steps, [(0.25, false), (0.5, false), (0.75, false), (1.0, true)]);
    }

    #[test]
    fn bad_configurations_are_errors() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let e = SftBestFit::new(2, source(&[2, 2], calls.clone()), BOS, config(1, 3, 0, 0, 1)).err().unwrap();
        assert!(matches!(e, ChatBatchError::InvalidPacking(_)), "{e}");
        let e = SftBestFit::new(2, source(&[2, 2], calls), BOS, config(1, 3, 4, 2, 3)).err().unwrap();
        assert!(matches!(e, ChatBatchError::TooFewExamples { len: 2, stream: 2, .. }), "{e}");
    }
}
