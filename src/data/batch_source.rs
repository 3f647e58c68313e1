//! What training loops read (the data side's interface to them): batches of (inputs, targets) with a position that checkpoints store, so a
//! resumed run continues with exactly the batches an uninterrupted run would have seen.
use tch::Tensor;

pub type BatchError = Box<dyn std::error::Error + Send + Sync>;

pub trait BatchSource {
    /// The next (inputs, targets), each (B, T) int64 on the training device.
    fn next_batch(&mut self) -> Result<(Tensor, Tensor), BatchError>;
    /// The position just after the last batch returned (JSON, stored in checkpoint meta).
    fn state(&self) -> serde_json::Value;
}
