//! The trained merge list and its export as mergeable ranks (NANOCHAT.md §1.3 "Export"):
//! ids 0..=255 are the single bytes, merge `i` creates id `256 + i` whose bytes are the
//! concatenation of its two parts; the rank of a token is its id. Merged byte strings must be
//! unique, otherwise a rank table keyed by bytes (tiktoken) would collapse two of them.

use std::collections::HashMap;

use super::error::{Result, TokenizerError};

/// Ordered BPE merges: `pairs[i] = (left, right)` creates token `256 + i`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Merges {
    pub pairs: Vec<(u32, u32)>,
}

impl Merges {
    pub fn new(pairs: Vec<(u32, u32)>) -> Self {
        Merges { pairs }
    }

    /// Number of merges.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Number of mergeable tokens: 256 bytes plus one per merge.
    pub fn vocab_size(&self) -> u32 {
        256 + self.pairs.len() as u32
    }

    /// Byte string of every token, indexed by id (= rank). Fails if a merge refers to a token
    /// that does not exist yet or if two tokens have the same bytes.
    pub fn token_bytes(&self) -> Result<Vec<Vec<u8>>> {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        tokens.reserve(self.pairs.len());
        let mut seen: HashMap<Vec<u8>, u32> = HashMap::with_capacity(self.pairs.len());
        for (i, &(left, right)) in self.pairs.iter().enumerate() {
            let part = |t: u32| -> Result<&Vec<u8>> {
                tokens.get(t as usize).ok_or(TokenizerError::MergeRefersToUnknownToken { index: i, token: t })
            };
            let mut bytes = part(left)?.clone();
            bytes.extend_from_slice(part(right)?);
            let id = 256 + i as u32;
            if bytes.len() <= 1 {
                // Cannot happen for two non-empty parts; kept for completeness.
                return Err(TokenizerError::InvalidVocabulary(format!("merge {i} has {} bytes", bytes.len())));
            }
            if let Some(&first) = seen.get(&bytes) {
                return Err(TokenizerError::DuplicateMergedToken { first, second: id, bytes });
            }
            seen.insert(bytes.clone(), id);
            tokens.push(bytes);
        }
        Ok(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bytes_concatenate_parts() {
        let m = Merges::new(vec![(b'a' as u32, b'b' as u32), (256, b'c' as u32)]);
        let t = m.token_bytes().unwrap();
        assert_eq!(t.len(), 258);
        assert_eq!(t[256], b"ab");
        assert_eq!(t[257], b"abc");
    }

    #[test]
    fn duplicate_byte_strings_are_rejected() {
        // "abc" twice: (ab, c) and (a, bc).
        let (a, b, c) = (b'a' as u32, b'b' as u32, b'c' as u32);
        let m = Merges::new(vec![(a, b), (b, c), (256, c), (a, 257)]);
        match m.token_bytes() {
            Err(TokenizerError::DuplicateMergedToken { first, second, .. }) => {
                assert_eq!((first, second), (258, 259))
            }
            other => panic!("expected a duplicate error, got {other:?}"),
        }
    }

    #[test]
    fn unknown_part_is_rejected() {
        let m = Merges::new(vec![(300, 1)]);
        assert!(matches!(m.token_bytes(), Err(TokenizerError::MergeRefersToUnknownToken { index: 0, token: 300 })));
    }
}
