//! Evaluation: bits per byte (§6.2); CORE and the chat tasks join here as they are built.
pub mod bpb;
pub mod unigram;
