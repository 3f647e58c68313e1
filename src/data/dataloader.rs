//! The distributed pretraining dataloader (NANOCHAT.md §2.2, Appendix-free part of [A']): rank r reads
//! row groups r, r+W, r+2W, … of each shard, shards in order, forever (one epoch after another); each
//! row group is tokenized in batches of 128 documents with `<|bos|>` before every document; all tokens
//! form one stream from which every batch takes exactly B·T+1 tokens (inputs = first B·T, targets =
//! shifted by one). Tokenization runs in a background thread with a bounded queue.
//!
//! Unlike the reference's approximate resume, the position is exact: the document batch holding the
//! next unconsumed token plus the offset into its tokens, so a resumed run sees the same tokens.
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::data::batch_source::{host_to_device, BatchError, BatchSource};

/// Documents per tokenizer call (§2.2).
pub const TOKENIZER_BATCH_DOCS: usize = 128;
/// Tokenized document batches the background thread may run ahead.
pub const QUEUE_DEPTH: usize = 8;

/// Reads documents of parquet shards by row group.
pub trait DocumentSource: Send + Sync {
    fn num_row_groups(&self, shard: &std::path::Path) -> Result<usize, BatchError>;
    fn read_row_group(&self, shard: &std::path::Path, row_group: usize) -> Result<Vec<String>, BatchError>;
}

/// Encodes documents, each with the BOS token prepended.
pub trait DocumentEncoder: Send + Sync {
    fn encode_with_bos(&self, docs: &[String]) -> Result<Vec<Vec<u32>>, BatchError>;
}

/// Where the next unconsumed token is: document batch `doc_batch` of row group `rg_idx` of shard
/// `pq_idx` in pass `epoch`, `offset` tokens into that batch's token stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LoaderPosition {
    pub epoch: u64,
    pub pq_idx: usize,
    pub rg_idx: usize,
    pub doc_batch: usize,
    pub offset: usize,
}

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub shards: Vec<PathBuf>,
    pub batch_size: usize,
    pub seq_len: usize,
    pub rank: usize,
    pub world_size: usize,
    pub device: Device,
}

/// One tokenized document batch (each document BOS-prefixed) and where it came from.
pub(crate) struct TokenChunk {
    pub(crate) position: LoaderPosition,
    pub(crate) docs: Vec<Vec<u32>>,
}

/// What the background producer sends: a document batch, or why it stopped.
pub(crate) type Chunks = Receiver<Result<TokenChunk, String>>;

/// Checks `config` and starts the background producer at `start`.
pub(crate) fn start_producer(
    config: &LoaderConfig,
    source: Arc<dyn DocumentSource>,
    encoder: Arc<dyn DocumentEncoder>,
    start: LoaderPosition,
) -> Result<Chunks, BatchError> {
    if config.shards.is_empty() {
        return Err("no data shards found; run `nanochat data download` first".into());
    }
    if config.world_size == 0 || config.rank >= config.world_size {
        return Err(format!("rank {} is not below world size {}", config.rank, config.world_size).into());
    }
    let (tx, rx) = sync_channel(QUEUE_DEPTH);
    let (shards, rank, world) = (config.shards.clone(), config.rank, config.world_size);
    std::thread::Builder::new()
        .name("dataloader".into())
        .spawn(move || produce(&shards, rank, world, start, source.as_ref(), encoder.as_ref(), &tx))
        .map_err(|e| format!("cannot start the dataloader thread: {e}"))?;
    Ok(rx)
}

pub struct DistributedLoader {
    config: LoaderConfig,
    chunks: Chunks,
    /// Tokens not yet consumed, with the chunk boundaries they came from (for the position).
    buffer: VecDeque<u32>,
    pending: VecDeque<(LoaderPosition, usize)>,
    position: LoaderPosition,
}

impl DistributedLoader {
    pub fn new(
        config: LoaderConfig,
        source: Arc<dyn DocumentSource>,
        encoder: Arc<dyn DocumentEncoder>,
        resume: Option<LoaderPosition>,
    ) -> Result<Self, BatchError> {
        let start = resume.unwrap_or(LoaderPosition { rg_idx: config.rank, ..Default::default() });
        let rx = start_producer(&config, source, encoder, start)?;
        Ok(DistributedLoader { config, chunks: rx, buffer: VecDeque::new(), pending: VecDeque::new(), position: start })
    }

    /// Takes the next B·T+1 tokens from the stream.
    fn next_tokens(&mut self) -> Result<Vec<i64>, BatchError> {
        let needed = self.config.batch_size * self.config.seq_len + 1;
        while self.buffer.len() < needed {
            let chunk = self.chunks.recv().map_err(|_| "the dataloader thread stopped")??;
            let len = chunk.docs.iter().map(Vec::len).sum();
            // A resumed first chunk starts `offset` tokens in; every other chunk at 0.
            let skip = chunk.position.offset.min(len);
            self.buffer.extend(chunk.docs.iter().flatten().skip(skip));
            self.pending.push_back((LoaderPosition { offset: skip, ..chunk.position }, len));
        }
        let tokens: Vec<i64> = self.buffer.drain(..needed).map(i64::from).collect();
        self.advance_position(needed);
        Ok(tokens)
    }

    /// Moves the recorded position `n` tokens forward across chunk boundaries. A chunk consumed to its
    /// very end stays the position (offset = its length) until more is consumed: resuming there skips it.
    fn advance_position(&mut self, mut n: usize) {
        while let Some((pos, len)) = self.pending.front_mut() {
            let left = *len - pos.offset;
            if n <= left {
                pos.offset += n;
                self.position = *pos;
                return;
            }
            n -= left;
            self.pending.pop_front();
        }
    }

    pub fn position(&self) -> LoaderPosition {
        self.position
    }
}

impl BatchSource for DistributedLoader {
    fn next_batch(&mut self) -> Result<(Tensor, Tensor), BatchError> {
        let (b, t) = (self.config.batch_size as i64, self.config.seq_len as i64);
        let tokens = Tensor::from_slice(&self.next_tokens()?);
        let inputs = tokens.narrow(0, 0, b * t).view([b, t]);
        let targets = tokens.narrow(0, 1, b * t).view([b, t]);
        let device = self.config.device;
        Ok((host_to_device(&inputs, device), host_to_device(&targets, device)))
    }

    fn state(&self) -> serde_json::Value {
        serde_json::to_value(self.position).unwrap_or_default()
    }
}

/// The background producer: walks shards / row groups / document batches from `start`, forever.
fn produce(
    shards: &[PathBuf],
    rank: usize,
    world: usize,
    start: LoaderPosition,
    source: &dyn DocumentSource,
    encoder: &dyn DocumentEncoder,
    tx: &std::sync::mpsc::SyncSender<Result<TokenChunk, String>>,
) {
    let mut pos = start;
    let mut first = true;
    loop {
        let mut produced_any = false;
        while pos.pq_idx < shards.len() {
            let shard = &shards[pos.pq_idx];
            let groups = match source.num_row_groups(shard) {
                Ok(n) => n,
                Err(e) => {
                    let _ = tx.send(Err(format!("{}: {e}", shard.display())));
                    return;
                }
            };
            if !first {
                pos.rg_idx = rank;
            }
            while pos.rg_idx < groups {
                let docs = match source.read_row_group(shard, pos.rg_idx) {
                    Ok(d) => d,
                    Err(e) => {
                        let _ = tx.send(Err(format!("{} row group {}: {e}", shard.display(), pos.rg_idx)));
                        return;
                    }
                };
                let batches: Vec<&[String]> = docs.chunks(TOKENIZER_BATCH_DOCS).collect();
                let begin = if first { pos.doc_batch } else { 0 };
                for (i, batch) in batches.iter().enumerate().skip(begin) {
                    let offset = if first { pos.offset } else { 0 };
                    first = false;
                    let docs = match encoder.encode_with_bos(batch) {
                        Ok(encoded) => encoded,
                        Err(e) => {
                            let _ = tx.send(Err(format!("tokenizing {}: {e}", shard.display())));
                            return;
                        }
                    };
                    produced_any |= docs.iter().any(|d| !d.is_empty());
                    let chunk = TokenChunk { position: LoaderPosition { doc_batch: i, offset, ..pos }, docs };
                    if tx.send(Ok(chunk)).is_err() {
                        return; // the loader was dropped
                    }
                }
                first = false;
                pos.doc_batch = 0;
                pos.offset = 0;
                pos.rg_idx += world;
            }
            first = false;
            pos.pq_idx += 1;
        }
        if !produced_any && pos.epoch > start.epoch {
            let _ = tx.send(Err(format!(
                "rank {rank} gets no documents from {} shard(s): too few row groups for {world} ranks",
                shards.len()
            )));
            return;
        }
        pos = LoaderPosition { epoch: pos.epoch + 1, pq_idx: 0, rg_idx: rank, doc_batch: 0, offset: 0 };
    }
}
