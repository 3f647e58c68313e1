//! Data: the distributed dataloader (NANOCHAT.md §2).
pub mod dataloader;
