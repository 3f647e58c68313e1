//! Training: batch sources, checkpoints and the loops of the training stages (NANOCHAT.md §4, §5).
pub mod base_loop;
pub mod batch_fit;
pub mod batches;
pub mod checkpoint;
