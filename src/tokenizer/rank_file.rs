//! Compact tiktoken-style rank file (NANOCHAT.md §1.5 suggests it for `tokenizer.pkl`'s
//! `mergeable_ranks`): one line per token, `base64(bytes) rank`, standard alphabet with
//! padding. Ranks must be exactly 0..n (in any line order). Special tokens and the split
//! pattern are fixed by nanochat and are not stored here.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::error::{Result, TokenizerError};

/// The rank file text of `tokens` (`tokens[r]` has rank `r`).
pub fn rank_file_string(tokens: &[Vec<u8>]) -> String {
    let mut out = String::with_capacity(tokens.len() * 16);
    for (rank, t) in tokens.iter().enumerate() {
        out.push_str(&STANDARD.encode(t));
        out.push(' ');
        out.push_str(&rank.to_string());
        out.push('\n');
    }
    out
}

/// Parses rank file text; `path` is only used in error messages.
pub fn parse_rank_file(text: &str, path: &Path) -> Result<Vec<Vec<u8>>> {
    let err = |line: usize, reason: String| TokenizerError::RankFileSyntax { path: path.to_path_buf(), line, reason };
    let mut slots: Vec<Option<Vec<u8>>> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let (b64, rank) = line.split_once(' ').ok_or_else(|| err(line_no, "expected `base64 rank`".into()))?;
        let rank: usize = rank.trim().parse().map_err(|e| err(line_no, format!("bad rank {rank:?}: {e}")))?;
        let bytes = STANDARD.decode(b64).map_err(|e| err(line_no, format!("bad base64: {e}")))?;
        if rank >= slots.len() {
            slots.resize(rank + 1, None);
        }
        if slots[rank].replace(bytes).is_some() {
            return Err(err(line_no, format!("rank {rank} appears twice")));
        }
    }
    slots.into_iter().enumerate().map(|(r, s)| s.ok_or_else(|| err(0, format!("rank {r} is missing")))).collect()
}

/// Writes the rank file atomically (temporary name, then rename).
pub fn save_rank_file(path: &Path, tokens: &[Vec<u8>]) -> Result<()> {
    crate::fsutil::write_atomic(path, rank_file_string(tokens).as_bytes()).map_err(|e| TokenizerError::io(path, e))
}

/// Reads a rank file.
pub fn load_rank_file(path: &Path) -> Result<Vec<Vec<u8>>> {
    let text = std::fs::read_to_string(path).map_err(|e| TokenizerError::io(path, e))?;
    parse_rank_file(&text, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let tokens = vec![b"a".to_vec(), b" the".to_vec(), vec![0xff, 0x00]];
        let text = rank_file_string(&tokens);
        assert_eq!(text.lines().next(), Some("YQ== 0"));
        let p = Path::new("x");
        assert_eq!(parse_rank_file(&text, p).unwrap(), tokens);
        assert!(parse_rank_file("YQ== 0\nYg== 0\n", p).is_err());
        assert!(parse_rank_file("YQ== 1\n", p).is_err());
        assert!(parse_rank_file("!!! 0\n", p).is_err());
        assert!(parse_rank_file("YQ==\n", p).is_err());
    }
}
