//! The GPT model (NANOCHAT.md §3): sizing, rotary embeddings, the network, its fused pointwise pieces and
//! its KV cache.
pub mod chunked_loss;
pub mod config;
pub mod fp8;
pub mod fused_ops;
pub mod gpt;
pub mod kv_cache;
pub mod precision;
pub mod rotary;

pub use config::{ConfigError as ModelConfigError, GptConfig};
pub use gpt::Gpt;
pub use kv_cache::KvCache;
pub use precision::Precision;
