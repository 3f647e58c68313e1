//! Typed errors of the tokenizer module (training, encoding, decoding, file formats).
//! Follows the DESIGN.md rule "library modules return typed errors"; the checks they
//! report come from NANOCHAT.md §1.3 (unique merged byte strings) and §1.5 (files).

use std::path::PathBuf;

/// Everything that can go wrong in `crate::tokenizer`.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("vocab size {requested} is too small: it must be at least 256 (one token per byte)")]
    VocabTooSmall { requested: u32 },

    #[error(
        "merges {first} and {second} both produce the byte string {bytes:?}; token byte strings must be unique (NANOCHAT.md §1.3)"
    )]
    DuplicateMergedToken { first: u32, second: u32, bytes: Vec<u8> },

    #[error("merge {index} refers to token {token}, which does not exist yet")]
    MergeRefersToUnknownToken { index: usize, token: u32 },

    #[error("token id {0} is outside the vocabulary")]
    UnknownTokenId(u32),

    #[error("unknown special token {0:?}")]
    UnknownSpecialToken(String),

    #[error("invalid vocabulary: {0}")]
    InvalidVocabulary(String),

    #[error("rank file {path}, line {line}: {reason}")]
    RankFileSyntax { path: PathBuf, line: usize, reason: String },

    #[error("invalid split pattern: {0}")]
    Pattern(#[from] Box<fancy_regex::Error>),

    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("JSON error: {0}")]
    Json(#[from] serde_json::Error),

    #[error("training input error: {0}")]
    Input(String),
}

impl TokenizerError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TokenizerError::Io { path: path.into(), source }
    }
}

/// Result alias for the tokenizer module.
pub type Result<T> = std::result::Result<T, TokenizerError>;
