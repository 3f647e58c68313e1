//! Evaluation: bits per byte (§6.2); the chat evaluation (§6.3: categorical accuracy on the
//! multiple-choice tasks, the generative tasks through the engine, ChatCORE).
pub mod bpb;
pub mod categorical;
pub mod chat_eval;
pub mod unigram;
