//! Inference (NANOCHAT.md §7): KV-cached generation, the batched engine with the calculator tool,
//! chat sessions, loading a checkpoint for inference, and continuous batching for the server
//! (a KV arena allocated once and a per-token scheduler).
pub mod calculator;
pub mod chat_engine;
pub mod chat_session;
pub mod generate;
pub mod kv_arena;
pub mod loaded_model;
pub mod scheduler;
pub mod utf8_stream;
