//! What training loops read (the data side's interface to them): batches of (inputs, targets) with
//! a position that checkpoints store, so a resumed run continues with exactly the batches an
//! uninterrupted run would have seen.
use tch::{Device, Kind, Tensor};

use super::parquet_shards::ShardError;
use crate::tokenizer::TokenizerError;

/// Why a batch could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The loader itself (no shards, a stopped background thread, a shard's error passed on from it).
    #[error("{0}")]
    Loader(String),
}

impl From<String> for BatchError {
    fn from(message: String) -> Self {
        BatchError::Loader(message)
    }
}

impl From<&str> for BatchError {
    fn from(message: &str) -> Self {
        BatchError::Loader(message.to_string())
    }
}

pub trait BatchSource {
    /// The next (inputs, targets), each (B, T) int64 on the training device.
    fn next_batch(&mut self) -> Result<(Tensor, Tensor), BatchError>;
    /// The position just after the last batch returned (JSON, stored in checkpoint meta).
    fn state(&self) -> serde_json::Value;
}

/// A host batch on the training device without waiting for the GPU: on CUDA through pinned memory
/// and a non-blocking copy (the reference's `pin_memory` + `non_blocking=True`), so the training
/// step's queue is not drained once per micro-batch; on CPU the tensor itself.
pub fn host_to_device(t: &Tensor, device: Device) -> Tensor {
    if device == Device::Cpu {
        t.shallow_clone()
    } else {
        t.contiguous().pin_memory(device).to_device_(device, Kind::Int64, true, false)
    }
}
