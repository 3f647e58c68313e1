//! Inference (NANOCHAT.md §7): KV-cached generation; the chat engine with tools builds on it.
pub mod generate;
