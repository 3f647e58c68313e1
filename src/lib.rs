//! nanochat: Karpathy's nanochat LLM pipeline as one Rust binary (see DESIGN.md and
//! shared/reference/NANOCHAT.md). Each module is one concern; `cli` is the edge.
pub mod build_info;
pub mod chat;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod container;
pub mod data;
pub mod dist;
pub mod engine;
pub mod eval;
pub mod fsutil;
pub mod hw;
pub mod logging;
pub mod model;
pub mod op_count;
pub mod optim;
pub mod paths;
pub mod progress;
pub mod pyrandom;
pub mod report;
pub mod serve;
mod shim;
pub mod speedrun;
pub mod tokenizer;
pub mod torch_pickle;
pub mod train;
