//! HuggingFace `tokenizer.json` writer (DESIGN.md "Tokenizer"): a byte-level BPE model that
//! `tokenizers` (Python or Rust) loads and that encodes ordinary text to our ids. Pre-tokenizer
//! Sequence[Split(SPLIT_PATTERN, Isolated), ByteLevel(no prefix space, no regex)], ByteLevel
//! decoder, vocab in GPT-2's byte alphabet, special tokens (NANOCHAT.md §1.2) as added tokens.
//!
//! To mirror tiktoken's rules (see `bpe_encoder`), the model sets `ignore_merges` (a chunk
//! that is a token is taken whole) and lists, for each token in rank order, every split into
//! two tokens as a merge, so that any two adjacent parts whose concatenation is a token merge
//! at that token's priority.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::bpe_encoder::BpeEncoder;
use super::byte_level_alphabet::bytes_to_string;
use super::error::{Result, TokenizerError};
use super::split_pattern::SPLIT_PATTERN;

/// The merges, in priority order, as (left, right) token ids.
pub fn merge_list(encoder: &BpeEncoder) -> Vec<(u32, u32)> {
    let mut merges = Vec::new();
    for bytes in encoder.mergeable_tokens() {
        for split in 1..bytes.len() {
            let (l, r) = bytes.split_at(split);
            if let (Some(l), Some(r)) = (encoder.rank_of(l), encoder.rank_of(r)) {
                merges.push((l, r));
            }
        }
    }
    merges
}

/// The `tokenizer.json` document.
pub fn tokenizer_json(encoder: &BpeEncoder) -> Value {
    let tokens = encoder.mergeable_tokens();
    let names: Vec<String> = tokens.iter().map(|t| bytes_to_string(t)).collect();
    let mut vocab = Map::new();
    for (id, name) in names.iter().enumerate() {
        vocab.insert(name.clone(), json!(id));
    }
    let merges: Vec<Value> = merge_list(encoder)
        .into_iter()
        .map(|(l, r)| Value::String(format!("{} {}", names[l as usize], names[r as usize])))
        .collect();
    let added: Vec<Value> = encoder
        .special_tokens()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            json!({
                "id": tokens.len() + i,
                "content": s,
                "single_word": false,
                "lstrip": false,
                "rstrip": false,
                "normalized": false,
                "special": true
            })
        })
        .collect();
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": { "Regex": SPLIT_PATTERN },
                    "behavior": "Isolated",
                    "invert": false
                },
                {
                    "type": "ByteLevel",
                    "add_prefix_space": false,
                    "trim_offsets": true,
                    "use_regex": false
                }
            ]
        },
        "post_processor": null,
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": true,
            "trim_offsets": true,
            "use_regex": true
        },
        "model": {
            "type": "BPE",
            "dropout": null,
            "unk_token": null,
            "continuing_subword_prefix": null,
            "end_of_word_suffix": null,
            "fuse_unk": false,
            "byte_fallback": false,
            "ignore_merges": true,
            "vocab": vocab,
            "merges": merges
        }
    })
}

/// Writes `tokenizer.json` atomically.
pub fn save_tokenizer_json(path: &Path, encoder: &BpeEncoder) -> Result<()> {
    let text = serde_json::to_string(&tokenizer_json(encoder))?;
    crate::fsutil::write_atomic(path, text.as_bytes()).map_err(|e| TokenizerError::io(path, e))
}

/// The mergeable tokens of a `tokenizer.json` (id order), from its byte-level `model.vocab`;
/// the added (special) tokens are left out.
pub fn mergeable_tokens_from_json(text: &str, path: &Path) -> Result<Vec<Vec<u8>>> {
    let bad = |reason: String| TokenizerError::Input(format!("{}: {reason}", path.display()));
    let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let vocab = value["model"]["vocab"].as_object().ok_or_else(|| bad("no model.vocab object".into()))?;
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; vocab.len()];
    for (name, id) in vocab {
        let id = id.as_u64().ok_or_else(|| bad(format!("vocab entry {name:?} has no integer id")))? as usize;
        let bytes = crate::tokenizer::byte_level_alphabet::string_to_bytes(name)
            .ok_or_else(|| bad(format!("vocab entry {name:?} is not byte-level BPE")))?;
        let slot = tokens.get_mut(id).ok_or_else(|| bad(format!("vocab id {id} is not below the vocab size")))?;
        *slot = Some(bytes);
    }
    tokens.into_iter().enumerate().map(|(id, t)| t.ok_or_else(|| bad(format!("vocab id {id} is missing")))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::Merges;

    #[test]
    fn lists_every_split_in_rank_order() {
        let (a, b, c) = (b'a' as u32, b'b' as u32, b'c' as u32);
        // 256 "bc", 257 "ab", 258 "abc" (= ab+c = a+bc)
        let e = BpeEncoder::from_merges(&Merges::new(vec![(b, c), (a, b), (257, c)])).unwrap();
        assert_eq!(merge_list(&e), vec![(b, c), (a, b), (a, 256), (257, c)]);
        let j = tokenizer_json(&e);
        assert_eq!(j["model"]["merges"][2], "a bc");
        assert_eq!(j["model"]["vocab"]["Ġ"], 32);
        assert_eq!(j["added_tokens"][0]["id"], 259);
        assert_eq!(j["added_tokens"][0]["content"], "<|bos|>");
    }
}
