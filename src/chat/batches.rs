//! Training batches from conversations, as the chat stages read them.
//!
//! - [`ConversationStream`] (midtraining, NANOCHAT.md §5.3): stream `v` of `S` renders conversations
//!   v, v+S, v+2S, … of the task (mask ignored: every token is trained), concatenates their ids and
//!   pops B·T+1 tokens per batch; the cursor wraps past the end (`cursor -= len`), which marks the
//!   end of the epoch. Progress is the cursor's fraction of the task.
//! - [`ExampleBatches`] (SFT, §5.4): stream `v` of `S` takes examples v, v+S, … (again from v after
//!   the end), B per batch, collated to the longest: inputs padded with `<|assistant_end|>`, targets
//!   −1 where padded or where the loss mask is 0.
//!
//! Stream v of S is rank v of the reference's S ranks; a process with A accumulation steps reads
//! streams r·A+m, so k processes and one process with k× accumulation train on the same batches.
use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use super::render::{ChatRenderer, RenderError, MAX_CONVERSATION_TOKENS};
use super::tasks::{SharedTask, TaskError};
use crate::data::batch_source::host_to_device;
use crate::tokenizer::{BpeEncoder, TokenizerError};

/// Targets that are not trained (PyTorch's cross-entropy `ignore_index`).
pub const IGNORE_INDEX: i64 = -1;

#[derive(Debug, thiserror::Error)]
pub enum ChatBatchError {
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("{task} example {index}: {source}")]
    Render { task: String, index: usize, source: RenderError },
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("{task} has {len} examples, too few for data stream {stream} of {streams}; use fewer processes or less accumulation")]
    TooFewExamples { task: String, len: usize, stream: usize, streams: usize },
    #[error("invalid SFT packing: {0}")]
    InvalidPacking(String),
    #[error("a saved data position does not fit this task: {0}")]
    BadPosition(String),
}

/// Which of the interleaved streams this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSlot {
    pub stream: usize,
    pub streams: usize,
}

impl StreamSlot {
    /// A stream needs at least one example of its own.
    fn check(&self, task: &SharedTask) -> Result<(), ChatBatchError> {
        if task.len() <= self.stream {
            return Err(ChatBatchError::TooFewExamples {
                task: task.name(),
                len: task.len(),
                stream: self.stream,
                streams: self.streams,
            });
        }
        Ok(())
    }
}

pub(super) fn render(
    encoder: &BpeEncoder,
    task: &SharedTask,
    index: usize,
) -> Result<super::render::Rendered, ChatBatchError> {
    let conversation = task.get(index)?;
    ChatRenderer::new(encoder)?
        .render(&conversation, MAX_CONVERSATION_TOKENS)
        .map_err(|source| ChatBatchError::Render { task: task.name(), index, source })
}

/// Where a [`ConversationStream`] stands: the next conversation and the tokens rendered but not yet
/// batched (stored in checkpoints for an exact resume).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub cursor: usize,
    pub buffer: Vec<u32>,
}

/// The midtraining loader of §5.3 for one stream.
pub struct ConversationStream {
    task: SharedTask,
    encoder: Arc<BpeEncoder>,
    slot: StreamSlot,
    batch_size: usize,
    seq_len: usize,
    device: Device,
    cursor: usize,
    buffer: VecDeque<u32>,
}

/// One batch of a [`ConversationStream`].
pub struct StreamBatch {
    pub inputs: Tensor,
    pub targets: Tensor,
    /// The cursor passed the end of the task while this batch was assembled (the epoch ended).
    pub wrapped: bool,
    /// cursor / number of conversations after this batch.
    pub progress: f64,
}

impl ConversationStream {
    pub fn new(
        task: SharedTask,
        encoder: Arc<BpeEncoder>,
        slot: StreamSlot,
        batch_size: usize,
        seq_len: usize,
        device: Device,
    ) -> Result<Self, ChatBatchError> {
        slot.check(&task)?;
        let cursor = slot.stream;
        Ok(ConversationStream { task, encoder, slot, batch_size, seq_len, device, cursor, buffer: VecDeque::new() })
    }

    pub fn position(&self) -> StreamPosition {
        StreamPosition { cursor: self.cursor, buffer: self.buffer.iter().copied().collect() }
    }

    pub fn restore(&mut self, position: &StreamPosition) -> Result<(), ChatBatchError> {
        if position.cursor >= self.task.len() {
            return Err(ChatBatchError::BadPosition(format!(
                "cursor {} is past the {} examples of {}",
                position.cursor,
                self.task.len(),
                self.task.name()
            )));
        }
        self.cursor = position.cursor;
        self.buffer = position.buffer.iter().copied().collect();
        Ok(())
    }

    pub fn next_batch(&mut self) -> Result<StreamBatch, ChatBatchError> {
        let needed = self.batch_size * self.seq_len + 1;
        let len = self.task.len();
        let mut wrapped = false;
        while self.buffer.len() < needed {
            let rendered = render(&self.encoder, &self.task, self.cursor)?;
            self.buffer.extend(rendered.ids);
            self.cursor += self.slot.streams;
            if self.cursor >= len {
                self.cursor -= len;
                wrapped = true;
            }
        }
        let tokens: Vec<i64> = self.buffer.drain(..needed).map(i64::from).collect();
        let all = Tensor::from_slice(&tokens);
        let shape = [self.batch_size as i64, self.seq_len as i64];
        let inputs = host_to_device(&all.narrow(0, 0, needed as i64 - 1).view(shape), self.device);
        let targets = host_to_device(&all.narrow(0, 1, needed as i64 - 1).view(shape), self.device);
        Ok(StreamBatch { inputs, targets, wrapped, progress: self.cursor as f64 / len as f64 })
    }
}

/// The SFT loader of §5.4 for one stream.
pub struct ExampleBatches {
    task: SharedTask,
    encoder: Arc<BpeEncoder>,
    slot: StreamSlot,
    batch_size: usize,
    pad: u32,
    device: Device,
    /// The next example to take.
    next: usize,
}

impl ExampleBatches {
    pub fn new(
        task: SharedTask,
        encoder: Arc<BpeEncoder>,
        slot: StreamSlot,
        batch_size: usize,
        device: Device,
    ) -> Result<Self, ChatBatchError> {
        slot.check(&task)?;
        let pad = encoder.special_id("<|assistant_end|>")?;
        Ok(ExampleBatches { task, encoder, slot, batch_size, pad, device, next: slot.stream })
    }

    /// The next example index (stored in checkpoints).
    pub fn position(&self) -> usize {
        self.next
    }

    pub fn restore(&mut self, next: usize) -> Result<(), ChatBatchError> {
        if next >= self.task.len() || next % self.slot.streams != self.slot.stream {
            return Err(ChatBatchError::BadPosition(format!(
                "example {next} is not one of stream {} of {} over {} examples",
                self.slot.stream,
                self.slot.streams,
                self.task.len()
            )));
        }
        self.next = next;
        Ok(())
    }

    /// The next batch: (inputs, targets), each (B, longest − 1).
    pub fn next_batch(&mut self) -> Result<(Tensor, Tensor), ChatBatchError> {
        let mut rows = Vec::with_capacity(self.batch_size);
        while rows.len() < self.batch_size {
            rows.push(render(&self.encoder, &self.task, self.next)?);
            self.next += self.slot.streams;
            if self.next >= self.task.len() {
                self.next = self.slot.stream;
            }
        }
        let (inputs, targets) = collate(&rows, self.pad);
        Ok((host_to_device(&inputs, self.device), host_to_device(&targets, self.device)))
    }
}

/// §5.4 collation: width = longest − 1; inputs `ids[:-1]` padded with `pad`; targets `ids[1:]`,
/// −1 where `mask[1:]` is 0 and in the padding.
pub fn collate(rows: &[super::render::Rendered], pad: u32) -> (Tensor, Tensor) {
    let width = rows.iter().map(|r| r.ids.len()).max().unwrap_or(1).saturating_sub(1);
    let mut inputs = vec![i64::from(pad); rows.len() * width];
    let mut targets = vec![IGNORE_INDEX; rows.len() * width];
    for (r, row) in rows.iter().enumerate() {
        let n = row.ids.len();
        for t in 0..n.saturating_sub(1) {
            inputs[r * width + t] = i64::from(row.ids[t]);
            if row.mask[t + 1] == 1 {
                targets[r * width + t] = i64::from(row.ids[t + 1]);
            }
        }
    }
    let shape = [rows.len() as i64, width as i64];
    (Tensor::from_slice(&inputs).view(shape), Tensor::from_slice(&targets).view(shape).to_kind(Kind::Int64))
}

#[cfg(test)]
mod tests {
    use super::super::render::Rendered;
    use super::*;

    #[test]
    fn collation_pads_and_masks() {
        let rows = vec![
            Rendered { ids: vec![1, 2, 3, 4], mask: vec![0, 0, 1, 1] },
            Rendered { ids: vec![5, 6], mask: vec![0, 1] },
        ];
        let (x, y) = collate(&rows, 9);
        assert_eq!(Vec::<i64>::try_from(x.view([-1])).unwrap(), [1, 2, 3, 5, 9, 9]);
        assert_eq!(Vec::<i64>::try_from(y.view([-1])).unwrap(), [-1, 3, 4, 6, -1, -1]);
    }
}
