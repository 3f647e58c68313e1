//! Evaluation: bits per byte (§6.2); categorical accuracy on multiple-choice chat tasks (§6.3); CORE and the generative chat tasks join here as they are built.
pub mod bpb;
pub mod categorical;
pub mod humaneval;
pub mod sandbox;
pub mod unigram;
