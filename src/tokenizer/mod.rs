//! Byte-level BPE tokenizer of nanochat (NANOCHAT.md §1): a trainer that reproduces rustbpe's
//! merges, a tiktoken-compatible encoder/decoder, token byte lengths for bits-per-byte, and
//! the file formats (HuggingFace `tokenizer.json`, tiktoken-style rank file).

pub mod artifacts;
pub mod baseline;
pub mod bpe_encoder;
pub mod bpe_trainer;
pub mod byte_level_alphabet;
pub mod capped_documents;
pub mod char_class;
pub mod chunk_counter;
pub mod chunk_splitter;
pub mod error;
pub mod hf_json;
pub mod merges;
pub mod rank_file;
pub mod special_tokens;
pub mod split_pattern;
pub mod tiktoken_pickle;
pub mod token_bytes;
pub mod tokenizer_training;

pub use bpe_encoder::{AllowedSpecial, BpeEncoder};
pub use bpe_trainer::{BpeTrainer, TrainProgress};
pub use capped_documents::CappedDocuments;
pub use chunk_splitter::split_chunks;
pub use error::{Result, TokenizerError};
pub use merges::Merges;
pub use special_tokens::{BOS_TOKEN, NUM_SPECIAL_TOKENS, SPECIAL_TOKENS};
pub use split_pattern::SPLIT_PATTERN;
pub use token_bytes::token_byte_lengths;
pub use tokenizer_training::{train_tokenizer, TokenizerTrainingConfig, TrainedTokenizer};
