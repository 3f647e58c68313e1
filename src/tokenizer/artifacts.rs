//! The trained tokenizer on disk, under base_dir/tok/ (NANOCHAT.md §1.5, DESIGN.md "Data and
//! artifacts"): `tokenizer.json` (HuggingFace format, for the ecosystem), `tokenizer.ranks`
//! (tiktoken-style rank file, what nanochat itself loads) and `token_bytes.json` (bytes per token id,
//! 0 for specials, for bits per byte).
use std::path::{Path, PathBuf};

use super::bpe_encoder::BpeEncoder;
use super::error::{Result, TokenizerError};
use super::special_tokens::SPECIAL_TOKENS;
use super::{hf_json, rank_file, token_bytes};

pub const TOKENIZER_JSON: &str = "tokenizer.json";
pub const RANK_FILE: &str = "tokenizer.ranks";
pub const TOKEN_BYTES: &str = "token_bytes.json";

/// Writes all three files (each atomically) and returns their paths.
pub fn save(dir: &Path, encoder: &BpeEncoder) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| TokenizerError::io(dir, e))?;
    let ranks = dir.join(RANK_FILE);
    rank_file::save_rank_file(&ranks, encoder.mergeable_tokens())?;
    let json = dir.join(TOKENIZER_JSON);
    hf_json::save_tokenizer_json(&json, encoder)?;
    let bytes = dir.join(TOKEN_BYTES);
    crate::fsutil::write_json_atomic(&bytes, &token_bytes::token_byte_lengths(encoder))
        .map_err(|e| TokenizerError::io(&bytes, e))?;
    Ok(vec![json, ranks, bytes])
}

/// Loads the encoder from `dir/tokenizer.ranks` with nanochat's special tokens.
pub fn load(dir: &Path) -> Result<BpeEncoder> {
    let path = dir.join(RANK_FILE);
    if !path.exists() {
        return Err(TokenizerError::Input(format!(
            "no trained tokenizer at {}; run `nanochat tok-train` first",
            path.display()
        )));
    }
    BpeEncoder::new(rank_file::load_rank_file(&path)?, &SPECIAL_TOKENS)
}

/// Bytes per token id (`token_bytes.json`).
pub fn load_token_bytes(dir: &Path) -> Result<Vec<u32>> {
    let path = dir.join(TOKEN_BYTES);
    let text = std::fs::read_to_string(&path).map_err(|e| TokenizerError::io(&path, e))?;
    Ok(serde_json::from_str(&text)?)
}

/// A tokenizer given on the command line: a directory holding `tokenizer.ranks` (what tok-train
/// writes) or the reference's `tokenizer/tokenizer.pkl`, a rank file, a HuggingFace
/// `tokenizer.json` (ours, or any byte-level BPE whose vocabulary ids are its ranks), or the
/// reference's `tokenizer.pkl`; nanochat's special tokens follow the mergeable tokens.
pub fn load_from(path: &Path) -> Result<BpeEncoder> {
    if !path.exists() {
        return Err(TokenizerError::Input(format!(
            "no tokenizer at {}: train one with `nanochat tok-train`, or pass --tokenizer with a tok/ directory, \
             a tokenizer.ranks, a tokenizer.json or the reference's tokenizer.pkl",
            path.display()
        )));
    }
    if path.is_dir() {
        let pickle = path.join("tokenizer.pkl");
        if !path.join(RANK_FILE).exists() && pickle.exists() {
            return super::tiktoken_pickle::load_tiktoken_pickle(&pickle);
        }
        return load(path);
    }
    if path.extension().is_some_and(|e| e == "pkl") {
        return super::tiktoken_pickle::load_tiktoken_pickle(path);
    }
    if path.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(path).map_err(|e| TokenizerError::io(path, e))?;
        return BpeEncoder::new(hf_json::mergeable_tokens_from_json(&text, path)?, &SPECIAL_TOKENS);
    }

    BpeEncoder::new(rank_file::load_rank_file(path)?, &SPECIAL_TOKENS)
}
