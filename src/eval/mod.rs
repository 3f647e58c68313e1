//! Evaluation: bits per byte (§6.2); CORE of a base model on an eval bundle (§6.1); categorical accuracy on multiple-choice chat tasks (§6.3); the generative chat tasks join here as they are built.
pub mod bpb;
pub mod categorical;
pub mod core;
pub mod unigram;
