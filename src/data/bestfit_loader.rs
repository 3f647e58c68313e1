//! The BOS-aligned best-fit pretraining loader of nanochat 92d63d4 (NANOCHAT.md §2.3,
//! `tokenizing_distributed_data_loader_with_state_bos_bestfit`): the same document stream as
//! [`DistributedLoader`](super::dataloader::DistributedLoader) (row groups strided over ranks,
//! 128-document tokenizer batches, `<|bos|>` before every document, endless epochs), but each of the
//! B rows of T+1 tokens is packed from whole documents: from a buffer of at least 1,000 documents,
//! the largest one that still fits, again and again; when none fits, the shortest one is cropped to
//! fill the row exactly (the rest of it is dropped). Every row starts with BOS, nothing is padded.
//!
//! Resume is the reference's approximate one: a checkpoint stores the shard, row group and epoch of
//! the last document batch read, and a resumed loader starts at this rank's next row group after it,
//! with an empty buffer.
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::batch_source::{host_to_device, BatchError, BatchSource};
use super::dataloader::{start_producer, Chunks, DocumentEncoder, DocumentSource, LoaderConfig, LoaderPosition};

/// Documents kept in the buffer the rows are packed from (the reference's `buffer_size`).
pub const BUFFER_DOCS: usize = 1000;

/// Where the last document batch read came from: what a checkpoint stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BestFitState {
    pub pq_idx: usize,
    pub rg_idx: usize,
    pub epoch: u64,
}

pub struct BestFitLoader {
    config: LoaderConfig,
    chunks: Chunks,
    /// Tokenized documents, in the order read; packing takes them out from anywhere.
    buffer: Vec<Vec<u32>>,
    state: BestFitState,
}

impl BestFitLoader {
    pub fn new(
        config: LoaderConfig,
        source: Arc<dyn DocumentSource>,
        encoder: Arc<dyn DocumentEncoder>,
        resume: Option<BestFitState>,
    ) -> Result<Self, BatchError> {
        let (rank, world) = (config.rank, config.world_size.max(1));
        let start = match resume {
            // The next row group of this rank after the stored one, in the stored shard (the producer
            // moves on to the next shard when there is none).
            Some(s) => LoaderPosition {
                epoch: s.epoch,
                pq_idx: s.pq_idx,
                rg_idx: (s.rg_idx / world + 1) * world + rank,
                ..LoaderPosition::default()
            },
            None => LoaderPosition { rg_idx: rank, ..LoaderPosition::default() },
        };
        let chunks = start_producer(&config, source, encoder, start)?;
        Ok(BestFitLoader { config, chunks, buffer: Vec::new(), state: resume.unwrap_or_default() })
    }

    fn refill(&mut self) -> Result<(), BatchError> {
        let chunk = self.chunks.recv().map_err(|_| "the dataloader thread stopped")??;
        let p = chunk.position;
        self.state = BestFitState { pq_idx: p.pq_idx, rg_idx: p.rg_idx, epoch: p.epoch };
        self.buffer.extend(chunk.docs);
        Ok(())
    }

    /// One row of `capacity` tokens, packed from the buffer.
    fn pack_row(&mut self, capacity: usize, row: &mut Vec<i64>) -> Result<(), BatchError> {
        let mut filled = 0;
        while filled < capacity {
            while self.buffer.len() < BUFFER_DOCS {
                self.refill()?;
            }
            let remaining = capacity - filled;
            // The largest document that fits whole (the first of equals), else the shortest (the first
            // of equals), cropped.
            let mut best: Option<(usize, usize)> = None;
            for (i, doc) in self.buffer.iter().enumerate() {
                if doc.len() <= remaining && best.is_none_or(|(_, len)| doc.len() > len) {
                    best = Some((i, doc.len()));
                }
            }
            let take = match best {
                Some((i, _)) => i,
                None => (0..self.buffer.len()).min_by_key(|&i| self.buffer[i].len()).unwrap_or(0),
            };
            let doc = self.buffer.remove(take);
            let used = doc.len().min(remaining);
            row.extend(doc[..used].iter().map(|&t| i64::from(t)));
            filled += used;
        }
        Ok(())
    }
}

impl BatchSource for BestFitLoader {
    fn next_batch(&mut self) -> Result<(Tensor, Tensor), BatchError> {
        let (b, t) = (self.config.batch_size, self.config.seq_len);
        let mut rows = Vec::with_capacity(b * (t + 1));
        for _ in 0..b {
            self.pack_row(t + 1, &mut rows)?;
        }
        let rows = Tensor::from_slice(&rows).view([b as i64, t as i64 + 1]);
        let inputs = rows.narrow(1, 0, t as i64).contiguous();
        let targets = rows.narrow(1, 1, t as i64).contiguous();
        let device = self.config.device;
        Ok((host_to_device(&inputs, device), host_to_device(&targets, device)))
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.state).unwrap_or_default()
    }
}
