//! Inference (NANOCHAT.md §7): KV-cached generation, the batched engine with the calculator tool,
//! chat sessions, and loading a checkpoint for inference.
pub mod calculator;
pub mod chat_engine;
pub mod chat_session;
pub mod generate;
pub mod loaded_model;
pub mod utf8_stream;
