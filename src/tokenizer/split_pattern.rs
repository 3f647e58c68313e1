//! The nanochat pre-tokenization regex (NANOCHAT.md §1.1): the GPT-4 (cl100k) pattern with
//! the digit group shortened to `\p{N}{1,2}`. It needs possessive quantifiers and a negative
//! lookahead, hence `fancy-regex` (the engine rustbpe 0.16 and tiktoken use).
//!
//! The hot paths (training, encoding) use the hand-written `ChunkSplitter`, which yields the
//! same chunks; this compiled regex is the reference it is tested against, and what gets
//! written into `tokenizer.json` for HuggingFace `tokenizers`.

use fancy_regex::Regex;

use super::error::Result;

/// NANOCHAT.md §1.1 `SPLIT_PATTERN`.
pub const SPLIT_PATTERN: &str =
    r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+";

/// Compiles [`SPLIT_PATTERN`] with fancy-regex.
pub fn compile_split_regex() -> Result<Regex> {
    Regex::new(SPLIT_PATTERN).map_err(|e| Box::new(e).into())
}

/// Splits `text` with a compiled fancy-regex, the way rustbpe and tiktoken do (`find_iter`).
/// Slow; used as the reference for [`super::chunk_splitter::ChunkSplitter`].
pub fn regex_chunks<'t>(regex: &Regex, text: &'t str) -> Result<Vec<&'t str>> {
    let mut out = Vec::new();
    for m in regex.find_iter(text) {
        let m = m.map_err(Box::new)?;
        out.push(m.as_str());
    }
    Ok(out)
}
