//! The reference's `tokenizer.pkl` (NANOCHAT.md §1.5): a pickled `tiktoken.core.Encoding` whose
//! state holds `mergeable_ranks` (bytes → rank) and `special_tokens` (string → id). Read without
//! executing anything (src/pickle.rs); the special tokens must be nanochat's nine,
//! right after the mergeable ranks, so ids mean the same in both implementations.
use std::path::Path;

use super::bpe_encoder::BpeEncoder;
use super::error::{Result, TokenizerError};
use super::special_tokens::SPECIAL_TOKENS;
use crate::pickle::{unpickle, Value};

fn dict_entries(value: &Value) -> Option<Vec<(Value, Value)>> {
    match value {
        Value::Dict(d) => Some(d.borrow().0.clone()),
        _ => None,
    }
}

/// The encoder of a reference `tokenizer.pkl`.
pub fn load_tiktoken_pickle(path: &Path) -> Result<BpeEncoder> {
    let bad =
        |reason: &str| TokenizerError::Input(format!("{} is not a nanochat tokenizer.pkl: {reason}", path.display()));
    let data = std::fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
    let value = unpickle(&data).map_err(|e| bad(&e.to_string()))?;
    let Value::Object { module, name, state: Some(state), .. } = &value else {
        return Err(bad(&format!("expected a pickled tiktoken Encoding, found {}", value.kind())));
    };
    if module != "tiktoken.core" || name != "Encoding" {
        return Err(bad(&format!("expected tiktoken.core.Encoding, found {module}.{name}")));
    }
    let fields = state.0.first().and_then(dict_entries).ok_or_else(|| bad("the Encoding state is not a dict"))?;
    let field = |key: &str| fields.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v.clone());
    let ranks = field("mergeable_ranks").and_then(|v| dict_entries(&v)).ok_or_else(|| bad("no mergeable_ranks"))?;
    let mut tokens: Vec<Option<Vec<u8>>> = vec![None; ranks.len()];
    for (bytes, rank) in ranks {
        let (Value::Bytes(bytes), Value::Int(rank)) = (bytes, rank) else {
            return Err(bad("mergeable_ranks must map bytes to int"));
        };
        let slot =
            usize::try_from(rank).ok().and_then(|r| tokens.get_mut(r)).ok_or_else(|| bad("ranks are not 0..n"))?;
        *slot = Some(bytes);
    }
    let tokens: Vec<Vec<u8>> = tokens.into_iter().collect::<Option<_>>().ok_or_else(|| bad("ranks are not 0..n"))?;
    let specials = field("special_tokens").and_then(|v| dict_entries(&v)).ok_or_else(|| bad("no special_tokens"))?;
    for (i, special) in SPECIAL_TOKENS.iter().enumerate() {
        let id = specials.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == special)).map(|(_, v)| v);
        if !matches!(id, Some(Value::Int(id)) if *id == (tokens.len() + i) as i64) {
            return Err(bad(&format!("special token {special} is not id {}", tokens.len() + i)));
        }
    }
    BpeEncoder::new(tokens, &SPECIAL_TOKENS)
}
