//! The GPT-2 and GPT-4 tokenizers that tok-eval compares against (NANOCHAT.md §1.6), built from
//! tiktoken's published rank files (`r50k_base.tiktoken`, `cl100k_base.tiktoken`) with their own
//! split patterns; only ordinary encoding is needed to count tokens.
use std::path::Path;

use super::bpe_encoder::BpeEncoder;
use super::error::{Result, TokenizerError};
use super::rank_file;

/// GPT-2's split pattern (tiktoken `r50k_base`).
pub const GPT2_PATTERN: &str = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// GPT-4's split pattern (tiktoken `cl100k_base`).
pub const GPT4_PATTERN: &str =
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

pub struct BaselineTokenizer {
    pub name: String,
    split: fancy_regex::Regex,
    encoder: BpeEncoder,
}

impl BaselineTokenizer {
    pub fn from_rank_file(name: &str, path: &Path, pattern: &str) -> Result<Self> {
        let split = fancy_regex::Regex::new(pattern).map_err(Box::new)?;
        let encoder = BpeEncoder::new(rank_file::load_rank_file(path)?, &[])?;
        Ok(BaselineTokenizer { name: name.to_string(), split, encoder })
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut chunks = Vec::new();
        for m in self.split.find_iter(text) {
            let m = m.map_err(|e| TokenizerError::Input(format!("{} split failed: {e}", self.name)))?;
            chunks.push(m.as_str());
        }
        Ok(self.encoder.encode_chunks(chunks))
    }

    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u8>> {
        self.encoder.decode(ids)
    }
}
