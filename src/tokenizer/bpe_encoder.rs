//! `BpeEncoder`: encodes text to token ids and decodes them back, with tiktoken's semantics
//! (NANOCHAT.md §1.3 "Encoding"): split with the nanochat pattern; a chunk that is itself a
//! token becomes that token; otherwise start from single bytes and repeatedly merge the
//! adjacent pair whose concatenation has the lowest rank (leftmost on ties) until no adjacent
//! concatenation is a token. Special tokens (NANOCHAT.md §1.2) get ids after the mergeable
//! ones and are only recognised by `encode_with_special`; ordinary text never produces them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hashbrown::HashMap;
use rayon::prelude::*;

use super::chunk_splitter::split_chunks;
use super::error::{Result, TokenizerError};
use super::merges::Merges;
use super::special_tokens::{BOS_TOKEN, SPECIAL_TOKENS};

/// Chunks at least this long are merged with a heap (O(n log n)) instead of rescanning.
const HEAP_MERGE_MIN_BYTES: usize = 128;
const NO_RANK: u32 = u32::MAX;

/// Which special tokens `encode_with_special` recognises in the text.
#[derive(Clone, Copy, Debug)]
pub enum AllowedSpecial<'a> {
    None,
    All,
    Only(&'a [&'a str]),
}

/// Encoder/decoder over mergeable ranks (token id = rank) plus special tokens.
pub struct BpeEncoder {
    tokens: Vec<Vec<u8>>,
    specials: Vec<String>,
    byte_token: [u32; 256],
    token_of_bytes: HashMap<Box<[u8]>, u32>,
    /// `(left, right)` -> rank of `bytes(left) ++ bytes(right)`, for every such pair of
    /// tokens whose concatenation is a token.
    pair_rank: HashMap<u64, u32>,
}

#[inline(always)]
fn pair_key(left: u32, right: u32) -> u64 {
    ((left as u64) << 32) | right as u64
}

impl BpeEncoder {
    /// `tokens[r]` is the byte string of rank (and id) `r`; `specials` get ids
    /// `tokens.len() + i`. Every single byte must be a token and byte strings must be unique.
    pub fn new(tokens: Vec<Vec<u8>>, specials: &[&str]) -> Result<Self> {
        let mut token_of_bytes: HashMap<Box<[u8]>, u32> = HashMap::with_capacity(tokens.len());
        for (id, bytes) in tokens.iter().enumerate() {
            if bytes.is_empty() {
                return Err(TokenizerError::InvalidVocabulary(format!("token {id} is empty")));
            }
            if let Some(first) = token_of_bytes.insert(bytes.clone().into_boxed_slice(), id as u32) {
                return Err(TokenizerError::DuplicateMergedToken { first, second: id as u32, bytes: bytes.clone() });
            }
        }
        let mut byte_token = [0u32; 256];
        for b in 0..=255u8 {
            byte_token[b as usize] = *token_of_bytes
                .get(&[b][..])
                .ok_or_else(|| TokenizerError::InvalidVocabulary(format!("byte {b:#04x} is not a token")))?;
        }
        let mut pair_rank = HashMap::with_capacity(tokens.len() * 2);
        for (id, bytes) in tokens.iter().enumerate() {
            for split in 1..bytes.len() {
                let (l, r) = bytes.split_at(split);
                if let (Some(&l), Some(&r)) = (token_of_bytes.get(l), token_of_bytes.get(r)) {
                    pair_rank.insert(pair_key(l, r), id as u32);
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for s in specials {
            if !seen.insert(*s) || s.is_empty() {
                return Err(TokenizerError::InvalidVocabulary(format!("special token {s:?} is empty or repeated")));
            }
        }
        Ok(BpeEncoder {
            tokens,
            specials: specials.iter().map(|s| s.to_string()).collect(),
            byte_token,
            token_of_bytes,
            pair_rank,
        })
    }

    /// nanochat's encoder: trained merges plus the 9 special tokens.
    pub fn from_merges(merges: &Merges) -> Result<Self> {
        Self::new(merges.token_bytes()?, &SPECIAL_TOKENS)
    }

    /// Number of mergeable (BPE) tokens.
    pub fn num_mergeable(&self) -> u32 {
        self.tokens.len() as u32
    }

    /// Total vocabulary size, special tokens included.
    pub fn vocab_size(&self) -> u32 {
        (self.tokens.len() + self.specials.len()) as u32
    }

    /// Byte strings of the mergeable tokens, indexed by id.
    pub fn mergeable_tokens(&self) -> &[Vec<u8>] {
        &self.tokens
    }

    /// Special token strings, in id order.
    pub fn special_tokens(&self) -> &[String] {
        &self.specials
    }

    /// Id of a special token.
    pub fn special_id(&self, name: &str) -> Result<u32> {
        self.specials
            .iter()
            .position(|s| s == name)
            .map(|i| (self.tokens.len() + i) as u32)
            .ok_or_else(|| TokenizerError::UnknownSpecialToken(name.to_string()))
    }

    /// Id of `<|bos|>`.
    pub fn bos_id(&self) -> Result<u32> {
        self.special_id(BOS_TOKEN)
    }

    /// Bytes of one token (special tokens: their UTF-8 text).
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        match self.tokens.get(i) {
            Some(b) => Some(b),
            None => self.specials.get(i - self.tokens.len()).map(|s| s.as_bytes()),
        }
    }

    /// Whether `id` is a special token (or beyond the vocabulary).
    pub fn is_special(&self, id: u32) -> bool {
        id as usize >= self.tokens.len()
    }

    /// Rank (= id) of a byte string, if it is a mergeable token.
    pub fn rank_of(&self, bytes: &[u8]) -> Option<u32> {
        self.token_of_bytes.get(bytes).copied()
    }

    /// Encodes text, treating special-token strings as ordinary text (tiktoken
    /// `encode_ordinary`; NANOCHAT.md §1.2).
    pub fn encode_ordinary(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        self.encode_ordinary_into(text, &mut out);
        out
    }

    /// Appends the ids of `text` to `out`.
    pub fn encode_ordinary_into(&self, text: &str, out: &mut Vec<u32>) {
        let mut parts = Vec::new();
        for chunk in split_chunks(text) {
            self.encode_chunk(chunk.as_bytes(), out, &mut parts);
        }
    }

    /// Encodes chunks that were split by some other pattern (the GPT-2/GPT-4 baselines of tok-eval).
    pub fn encode_chunks<'a>(&self, chunks: impl IntoIterator<Item = &'a str>) -> Vec<u32> {
        let (mut out, mut parts) = (Vec::new(), Vec::new());
        for chunk in chunks {
            self.encode_chunk(chunk.as_bytes(), &mut out, &mut parts);
        }
        out
    }

    /// `<|bos|>` followed by the ordinary encoding of `text` (NANOCHAT.md §2.2).
    pub fn encode_with_bos(&self, text: &str) -> Result<Vec<u32>> {
        let mut out = Vec::with_capacity(text.len() / 4 + 2);
        out.push(self.bos_id()?);
        self.encode_ordinary_into(text, &mut out);
        Ok(out)
    }

    /// Encodes texts in parallel on the rayon pool.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Vec<Vec<u32>> {
        texts.par_iter().map(|t| self.encode_ordinary(t.as_ref())).collect()
    }

    /// Encodes texts in parallel, each prefixed with `<|bos|>`.
    pub fn encode_batch_with_bos<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let bos = self.bos_id()?;
        Ok(texts
            .par_iter()
            .map(|t| {
                let t = t.as_ref();
                let mut out = Vec::with_capacity(t.len() / 4 + 2);
                out.push(bos);
                self.encode_ordinary_into(t, &mut out);
                out
            })
            .collect())
    }

    /// Encodes text, turning occurrences of the allowed special tokens into their ids
    /// (tiktoken `encode(text, allowed_special=...)`, except that disallowed specials are
    /// encoded as ordinary text instead of raising).
    pub fn encode_with_special(&self, text: &str, allowed: AllowedSpecial<'_>) -> Result<Vec<u32>> {
        let mut specials: Vec<(&str, u32)> = Vec::new();
        match allowed {
            AllowedSpecial::None => {}
            AllowedSpecial::All => {
                for s in &self.specials {
                    specials.push((s.as_str(), self.special_id(s)?));
                }
            }
            AllowedSpecial::Only(names) => {
                for s in names {
                    specials.push((s, self.special_id(s)?));
                }
            }
        }
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        let mut parts = Vec::new();
        let mut pos = 0;
        // Next occurrence (byte offset) of each special at or after `pos`.
        let mut next: Vec<Option<usize>> = specials.iter().map(|(s, _)| text.find(s)).collect();
        loop {
            let found =
                next.iter().enumerate().filter_map(|(i, o)| o.map(|o| (o, Reverse(specials[i].0.len()), i))).min();
            let Some((at, _, i)) = found else { break };
            for chunk in split_chunks(&text[pos..at]) {
                self.encode_chunk(chunk.as_bytes(), &mut out, &mut parts);
            }
            out.push(specials[i].1);
            pos = at + specials[i].0.len();
            for (j, o) in next.iter_mut().enumerate() {
                if o.is_some_and(|o| o < pos) {
                    *o = text[pos..].find(specials[j].0).map(|f| f + pos);
                }
            }
        }
        for chunk in split_chunks(&text[pos..]) {
            self.encode_chunk(chunk.as_bytes(), &mut out, &mut parts);
        }
        Ok(out)
    }

    /// Exact bytes of a sequence of ids.
    pub fn decode(&self, ids: &[u32]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            out.extend_from_slice(self.token_bytes(id).ok_or(TokenizerError::UnknownTokenId(id))?);
        }
        Ok(out)
    }

    /// Decodes to a string, replacing invalid UTF-8 with U+FFFD (tiktoken `decode`).
    pub fn decode_lossy(&self, ids: &[u32]) -> Result<String> {
        Ok(String::from_utf8_lossy(&self.decode(ids)?).into_owned())
    }

    #[inline]
    fn rank(&self, left: u32, right: u32) -> u32 {
        *self.pair_rank.get(&pair_key(left, right)).unwrap_or(&NO_RANK)
    }

    /// Encodes one chunk (tiktoken: whole-chunk lookup first, then byte-pair merging).
    #[inline]
    fn encode_chunk(&self, piece: &[u8], out: &mut Vec<u32>, parts: &mut Vec<(u32, u32)>) {
        if let Some(&id) = self.token_of_bytes.get(piece) {
            out.push(id);
        } else if piece.len() >= HEAP_MERGE_MIN_BYTES {
            self.merge_with_heap(piece, out);
        } else {
            self.merge_by_scanning(piece, out, parts);
        }
    }

    /// tiktoken's `_byte_pair_merge`: parts hold (token, rank of merging with the next part).
    fn merge_by_scanning(&self, piece: &[u8], out: &mut Vec<u32>, parts: &mut Vec<(u32, u32)>) {
        parts.clear();
        parts.extend(piece.iter().map(|&b| (self.byte_token[b as usize], NO_RANK)));
        for i in 0..parts.len().saturating_sub(1) {
            parts[i].1 = self.rank(parts[i].0, parts[i + 1].0);
        }
        loop {
            let mut best = (NO_RANK, 0usize);
            for (i, p) in parts.iter().enumerate() {
                if p.1 < best.0 {
                    best = (p.1, i);
                }
            }
            let (rank, i) = best;
            if rank == NO_RANK {
                break;
            }
            parts[i].0 = rank;
            parts.remove(i + 1);
            parts[i].1 = match parts.get(i + 1) {
                Some(next) => self.rank(rank, next.0),
                None => NO_RANK,
            };
            if i > 0 {
                parts[i - 1].1 = self.rank(parts[i - 1].0, rank);
            }
        }
        out.extend(parts.iter().map(|p| p.0));
    }

    /// Same result as `merge_by_scanning` (lowest rank, then leftmost) with a heap and a
    /// linked list, for long chunks.
    fn merge_with_heap(&self, piece: &[u8], out: &mut Vec<u32>) {
        let n = piece.len();
        let mut token: Vec<u32> = piece.iter().map(|&b| self.byte_token[b as usize]).collect();
        let mut next: Vec<usize> = (1..=n).collect(); // n = end
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        // (rank, left part, left token, right token); min-heap via Reverse.
        let mut heap: BinaryHeap<Reverse<(u32, usize, u32, u32)>> = BinaryHeap::new();
        for i in 0..n - 1 {
            let r = self.rank(token[i], token[i + 1]);
            if r != NO_RANK {
                heap.push(Reverse((r, i, token[i], token[i + 1])));
            }
        }
        while let Some(Reverse((rank, i, lt, rt))) = heap.pop() {
            let j = next[i];
            if !alive[i] || j >= n || token[i] != lt || token[j] != rt {
                continue; // stale
            }
            token[i] = rank;
            alive[j] = false;
            next[i] = next[j];
            if next[j] < n {
                prev[next[j]] = i;
                let k = next[j];
                let r = self.rank(rank, token[k]);
                if r != NO_RANK {
                    heap.push(Reverse((r, i, rank, token[k])));
                }
            }
            let p = prev[i];
            if p < n {
                let r = self.rank(token[p], rank);
                if r != NO_RANK {
                    heap.push(Reverse((r, p, token[p], rank)));
                }
            }
        }
        let mut i = 0;
        while i < n {
            out.push(token[i]);
            i = next[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> BpeEncoder {
        // b+c -> 256 "bc", a+b -> 257 "ab", 257+c -> 258 "abc"
        let (a, b, c) = (b'a' as u32, b'b' as u32, b'c' as u32);
        let merges = Merges::new(vec![(b, c), (a, b), (257, c)]);
        BpeEncoder::from_merges(&merges).unwrap()
    }

    #[test]
    fn tiktoken_semantics_merge_by_bytes_not_by_merge_list() {
        let e = toy();
        // Whole chunk "abc" is a token: taken directly.
        assert_eq!(e.encode_ordinary("abc"), vec![258]);
        // "abcc": [a,b,c,c] -> bc (256) -> [a, bc, c]; "abc" = a ++ bc is a token (258)
        // although the merge list only has (ab, c): tiktoken merges by bytes, so [abc, c].
        assert_eq!(e.encode_ordinary("abcc"), vec![258, b'c' as u32]);
    }

    #[test]
    fn heap_and_scan_agree_on_long_chunks() {
        let e = toy();
        let piece: Vec<u8> = (0..300).map(|i| b"abcabccba"[i % 9]).collect();
        let (mut x, mut y, mut parts) = (Vec::new(), Vec::new(), Vec::new());
        e.merge_by_scanning(&piece, &mut x, &mut parts);
        e.merge_with_heap(&piece, &mut y);
        assert_eq!(x, y);
    }

    #[test]
    fn specials_only_when_allowed() {
        let e = toy();
        let text = "ab<|bos|>c";
        let bos = e.bos_id().unwrap();
        assert!(!e.encode_ordinary(text).contains(&bos));
        let ids = e.encode_with_special(text, AllowedSpecial::All).unwrap();
        assert_eq!(ids, vec![257, bos, b'c' as u32]);
        let ids = e.encode_with_special(text, AllowedSpecial::Only(&["<|user_start|>"])).unwrap();
        assert_eq!(ids, e.encode_ordinary(text));
        assert!(e.encode_with_special(text, AllowedSpecial::Only(&["<|nope|>"])).is_err());
        assert_eq!(e.decode(&ids).unwrap(), text.as_bytes());
    }

    #[test]
    fn decode_rejects_unknown_ids() {
        let e = toy();
        assert!(matches!(e.decode(&[1, 99_999]), Err(TokenizerError::UnknownTokenId(99_999))));
    }
}
